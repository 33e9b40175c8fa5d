"""`innerdpo tui`: the live dashboard. Textual is imported only inside the command, never by the library."""

from __future__ import annotations

import typer

from innerdpo_bench.cli.app import app, handle_errors, home_option, open_store


@app.command("tui")
@handle_errors
def tui_command(
    home: str | None = home_option(),
    poll: float = typer.Option(1.0, "--poll", help="Seconds between reads of the store."),
) -> None:
    """Open the dashboard: live results table (sort, filter, baseline, pins, export), queue, run details.

    It only reads the store and run files and queues intents (runs, cancels, evaluations) through the store;
    quitting it never stops a run. Keys: ? for help, ctrl+p for every action by name, q to quit.
    """
    from innerdpo_bench.errors import UserError

    if not poll > 0:
        raise UserError(f"--poll must be positive, got {poll}")
    from innerdpo_bench.store import CorruptStore

    try:  # read-only, as every read of the dashboard: it never creates, migrates or repairs a store
        open_store(home, readonly=True).close()  # no store, or a locked, newer or older one: one error line first
    except CorruptStore:
        pass  # corrupt or empty: the dashboard opens on its error screen, naming the file and how to recover it
    from innerdpo_bench.tui.app import InnerDPOApp

    dashboard = InnerDPOApp(home, poll_s=poll)
    dashboard.run()
    if dashboard.return_code:  # it crashed (Textual printed the traceback); the runs go on regardless
        raise typer.Exit(dashboard.return_code)
