"""`innerdpo store show` and `innerdpo store copy`: which store a workspace uses, and moving it to another one."""

from __future__ import annotations

import json

import typer

from innerdpo_bench.cli.app import HELP, app, console, handle_errors, home_option, open_store, store_option

store_app = typer.Typer(
    help="The workspace's store: show it, or copy it into an empty PostgreSQL database (laptop → cluster).",
    no_args_is_help=True,
    context_settings=HELP,
)
app.add_typer(store_app, name="store")


@store_app.command("show")
@handle_errors
def show_command(
    as_json: bool = typer.Option(False, "--json", help="The same as JSON."),
    home: str | None = home_option(),
    store_url: str | None = store_option(),
) -> None:
    """The store this workspace uses (its URL, password masked), its schema version and its runs by status: what
    every node of a cluster should print alike."""
    from innerdpo_bench.store import SCHEMA_VERSION

    with open_store(home, readonly=True, store=store_url) as store:
        record = {"home": str(store.home), "store": store.url.masked, "backend": store.backend,
                  "schema_version": SCHEMA_VERSION, "runs": store.counts()}
    if as_json:
        typer.echo(json.dumps(record, indent=2))
        return
    counts = ", ".join(f"{n} {status}" for status, n in record["runs"].items() if n) or "no runs"
    console.print(f"workspace {record['home']}\nstore {record['store']} ({record['backend']}, schema version "
                  f"{record['schema_version']}): {counts}", soft_wrap=True, markup=False)


@store_app.command("copy")
@handle_errors
def copy_command(
    to: str = typer.Option(..., "--to", help="The destination: an empty database, postgresql://USER@HOST:PORT/DATABASE "
                           "(or sqlite:///PATH).", show_default=False),
    home: str | None = home_option(),
    store_url: str | None = store_option(),
) -> None:
    """Copy the workspace's runs, attempts, results, provenance and sweep ids into an empty database, keeping every
    run id, check every row read back, and switch the workspace to it (the old store is kept, no longer used).
    Stop the workers first."""
    from innerdpo_bench.store import Store
    from innerdpo_bench.store.copy import copy_store
    from innerdpo_bench.store.location import remember

    with open_store(home, store=store_url) as source:
        with Store(source.home, url=to, bind=False, busy_timeout_s=source.busy_timeout_s) as destination:
            copied = copy_store(source, destination)
            remember(source.home, destination.url)
            old, new, workspace = source.where, destination.where, source.home
    console.print(f"copied {copied['runs']} run(s), {copied['results']} result(s) and {copied['provenance']} "
                  f"provenance record(s) from {old} to {new}; every row read back the same", soft_wrap=True,
                  markup=False)
    console.print(f"workspace {workspace} now uses {new} (remembered in {workspace / 'store.url'}; the old store is "
                  "kept, no longer written); start the workers with --home alone", soft_wrap=True, markup=False)
