"""`innerdpo cache ls|clear`: show and free the reference-pass caches (`refcache.py`)."""

from __future__ import annotations

import json
import time

import typer

from innerdpo_bench.cli.app import HELP, app, console, handle_errors

cache_app = typer.Typer(help="Reference-pass caches: the frozen reference's outputs that training reuses.",
                        no_args_is_help=True, context_settings=HELP)
app.add_typer(cache_app, name="cache")

CACHE_HOME_HELP = ("Workspace whose caches to show (HOME/cache/refs; default: $INNERDPO_HOME's, else the user cache "
                   "$INNERDPO_CACHE/refs or ~/.cache/innerdpo-bench/refs, where a plain `innerdpo train` stores them).")


def _home_option():
    return typer.Option(None, "--home", help=CACHE_HOME_HELP, show_default=False)


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 2**10:.1f} KB"


@cache_app.command("ls")
@handle_errors
def ls_command(home: str | None = _home_option(),
               as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Every reference cache: key, size, pairs, base model, dtype, transform and layers."""
    from innerdpo_bench.train import refcache

    root, found = refcache.cache_root(home), refcache.entries(home)
    if as_json:
        typer.echo(json.dumps({"root": str(root), "entries": found}, indent=2))
        return
    if not found:
        console.print(f"no reference caches in {root}")
        return
    from rich.table import Table

    view = Table(title=f"reference caches in {root}", title_justify="left")
    view.add_column("key", no_wrap=True, min_width=24)  # the file's name: keep it whole
    for column in ("size", "pairs", "base", "dtype", "transform", "layers", "modified"):
        view.add_column(column, justify="right" if column in ("size", "pairs") else "left")
    for entry in found:
        layers = entry["layers"]
        view.add_row(entry["key"] if entry["valid_header"] else f"{entry['key']} (unreadable header)",
                     _size(entry["bytes"]), str(entry["pairs"] or "?"), str(entry["base"]), str(entry["dtype"] or "?"),
                     str(entry["transform"] or "- (log-probs only)"),
                     (f"{layers[0]}..{layers[-1]} ({len(layers)})" if layers else "-"),
                     time.strftime("%Y-%m-%d %H:%M", time.localtime(entry["modified"])))
    console.print(view)
    console.print(f"{len(found)} caches, {_size(sum(e['bytes'] for e in found))}")


@cache_app.command("clear")
@handle_errors
def clear_command(home: str | None = _home_option()) -> None:
    """Delete every reference cache (later runs rebuild what they need)."""
    from innerdpo_bench.train import refcache

    files, freed = refcache.clear(home)
    console.print(f"removed {files} reference caches ({_size(freed)}) from {refcache.cache_root(home)}")
