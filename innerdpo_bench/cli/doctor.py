"""`innerdpo doctor`: check what a workspace's files claim against what they are; `--repair` does what needs no guess."""

from __future__ import annotations

import typer

from innerdpo_bench.cli.app import HELP, app, console, handle_errors, home_option


@app.command("doctor", context_settings=HELP)
@handle_errors
def doctor_command(
    home: str | None = home_option(),
    repair: bool = typer.Option(False, "--repair", help="Do the repairs that need no guess, none deleting a result: "
                                "record a run's verified results in the store again, queue a run whose files cannot "
                                "be trusted again (its checkpoint moved aside when that is what is wrong), import run "
                                "directories the store does not know (rebuilding a lost store), delete leftovers of "
                                "killed writes and broken cache entries."),
) -> None:
    """Check what each file of the workspace claims against what it is: the store (SQLite quick_check), each
    finished run's files (status.json, config.json, metrics.jsonl, the adapter and its sha256 against eval.json's,
    eval.json against its rows and against the store), run directories the store does not know and store runs whose
    directory is gone, the caches (evaluations, base-model scores, built models) and leftovers of killed writes.
    Prints each problem with the file, and what --repair does about it or the command that fixes it.

    A corrupt store gets the sqlite3 .recover command and is never touched. Exit code 0: healthy (or, with
    --repair, every problem repaired); 1: problems remain; 2: no store and no run directories at --home.
    """
    from rich.markup import escape

    from innerdpo_bench.doctor import diagnose
    from innerdpo_bench.errors import UserError
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
                console.print(f"  [green]repaired:[/green] {escape(finding.repair_text)}", soft_wrap=True)
            except (OSError, UserError) as err:
                reason = err.strerror if isinstance(err, OSError) and err.strerror else err
                console.print(f"  [red]repair failed:[/red] {escape(str(reason))}", soft_wrap=True)
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
