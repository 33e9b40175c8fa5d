"""The `innerdpo` command line, one module per command group; imports run one way.

    app.py     the typer app, consoles, error handling, the options commands share
    train.py   train, methods, demo          eval.py    eval, tasks-path
    queue.py   queue add/ls/...             runs.py    runs (the results table)
    worker.py  worker
    store.py   store show, store copy
    stats.py   rescore, compare, transfer   plot.py    plot (charts.py: its line plots)
    gate.py    gate                          tui.py     tui
    main.py    imports every command module onto `app`; `main()` is the console script

Commands only parse flags, call the library and format output. Import `innerdpo_bench.cli.main` for the
whole app (this package's `__init__` imports nothing, so `app.py` can be imported on its own).
"""
