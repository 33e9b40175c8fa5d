"""`innerdpo doctor`: check a workspace and its caches, say what is wrong and what repairs it; `--repair` does the safe part."""

from __future__ import annotations

import typer

from innerdpo_bench.cli.app import HELP, app, console, handle_errors, home_option


@app.command("doctor", context_settings=HELP)
@handle_errors
def doctor_command(
    home: str | None = home_option(),
    repair: bool = typer.Option(False, "--repair", help="Do the safe repairs: delete leftovers of killed writes, "
                                "broken cache entries and half-built models (all rebuilt on demand), rewrite a score "
                                "cache without its cut lines. Never touches the store or a run's results."),
) -> None:
    """Check the workspace: the store (SQLite quick_check), each finished run's directory (status.json, adapter
    files and their headers, eval.json, its rows file and sha256), the caches (evaluations, base-model scores,
    built models) and leftovers of killed writes. Prints each problem with the file and the command that fixes it,
    and what --repair would do.

    --repair never changes the store and never requeues a run (that would replace recorded results): a corrupt
    store gets the sqlite3 .recover command, a run whose eval.json or rows are missing or mismatched gets the
    `innerdpo eval` command that rebuilds them. Exit code 0: healthy (or, with --repair, every problem repaired);
    1: problems remain; 2: no store at --home.
    """
    from rich.markup import escape

    from innerdpo_bench.doctor import diagnose
    from innerdpo_bench.models import cache_dir
    from innerdpo_bench.store import resolve_home

    home_path, cache = resolve_home(home), cache_dir()
    findings, n_runs = diagnose(home_path, cache)
    runs = f"{n_runs} run(s)" if n_runs is not None else "store unreadable"
    console.print(f"doctor: workspace {home_path} ({runs}), cache {cache}", soft_wrap=True, markup=False)
    left = 0
    for finding in findings:
        console.print(f"[red]problem:[/red] {escape(finding.problem)}", soft_wrap=True, highlight=False)
        if finding.fix:
            console.print(f"  fix: {finding.fix}", soft_wrap=True, markup=False)
        if finding.repair is None:
            left += 1
        elif not repair:
            console.print(f"  --repair would {finding.repair_text}", soft_wrap=True, markup=False)
            left += 1
        else:
            try:
                finding.repair()
                console.print(f"  [green]repaired:[/green] {finding.repair_text}", soft_wrap=True)
            except OSError as err:
                console.print(f"  [red]repair failed:[/red] {err.strerror or err}", soft_wrap=True)
                left += 1
    if not findings:
        console.print("[green]healthy[/green]: the store, every finished run's files and the caches check out")
        return
    repairable = sum(f.repair is not None for f in findings)
    if repair:
        console.print(f"{len(findings)} problem(s), {len(findings) - left} repaired, {left} left")
    else:
        console.print(f"{len(findings)} problem(s); " + (f"--repair repairs {repairable} of them" if repairable
                                                          else "none that --repair can fix: see each fix"))
    if left:
        raise typer.Exit(1)
