"""`innerdpo runs`: the results table over the store's runs (filter, sort, group seeds, baseline deltas, exports)."""

from __future__ import annotations

import typer

from innerdpo_bench.cli.app import app, console, err_console, handle_errors, home_option, open_store
from innerdpo_bench.results import table as results_table


@app.command("runs")
@handle_errors
def runs_command(
    home: str | None = home_option(),
    fmt: str = typer.Option("table", "--format", help="table | markdown (GitHub, 3 decimals) | csv | json."),
    as_json: bool = typer.Option(False, "--json", help="Same as --format json: every run with its spec, status, "
                                 "results and provenance."),
    sort: str | None = typer.Option(None, "--sort", help="Column to sort by: name, in_domain, difficulty_scaling, "
                                    "moral_transfer, orthogonal, mean, nll_ratio, status, seed, id (default), n. "
                                    "Missing values go last.", show_default=False),
    reverse: bool = typer.Option(False, "--reverse", help="Sort descending (missing values still last)."),
    group_seeds: bool = typer.Option(False, "--group-seeds", help="One row per set of runs that differ only by "
                                     "seed: mean ± sample std, and n."),
    baseline: int | None = typer.Option(None, "--baseline", help="Show the four shift columns as differences from "
                                        "this run's.", show_default=False),
    filter_expr: str = typer.Option("", "--filter", help=results_table.FILTER_HELP),
    metric: str = typer.Option("acc", "--metric", help=results_table.TABLE_METRIC_HELP),
    columns: str | None = typer.Option(None, "--columns", help="Comma-separated columns to show, in order: the "
                                       "default ones, n (with --group-seeds), and the sample statistics rep, "
                                       "distinct2, len, gen_nll_ratio (docs/statistics.md). Example: "
                                       "name,rep,distinct2,nll_ratio.", show_default=False),
) -> None:
    """The results table: acc per shift, their mean, nll_ratio, status, seed and id, one row per run.

    Base models (queue add-base) are the `none` rows. --format markdown pastes into a paper unchanged and ends
    with a caption naming the data behind each column. With --baseline, a delta whose 95% paired bootstrap
    interval (over the rows both runs scored) includes 0 is marked (ns).
    """
    fmt = "json" if as_json else fmt
    if fmt not in results_table.FORMATS:
        from innerdpo_bench.errors import unknown_choice

        raise unknown_choice("--format", fmt, results_table.FORMATS)
    from innerdpo_bench.results import cells

    problems: cells.Problems = {}   # runs whose result files are unusable: one line each on stderr, after the table
    shift_values, significance = cells.shift_cells(metric, problems), cells.significance_marks(metric, problems)
    with open_store(home, readonly=True) as store:
        runs = store.list_runs()
        provenance = store.all_provenance() if fmt in ("json", "markdown") else {}
    view = results_table.make_table(runs, filter_expr=filter_expr, sort=sort, reverse=reverse,
                                    group_seeds=group_seeds, baseline=baseline, shift_values=shift_values,
                                    significance=significance,
                                    columns=results_table.parse_columns(columns, group_seeds))
    if fmt == "json":
        typer.echo(results_table.to_json(view, provenance), nl=False)
    elif fmt == "markdown":
        shown = [run for row in view.rows for run in row.runs if run.results]
        caption = cells.provenance_caption(shown, provenance) if shown else ""
        notes = cells.below_chance_notes(shown)
        caption = "\n\n".join(part for part in (caption, "\n".join(notes)) if part)
        typer.echo(results_table.to_markdown(view) + (f"\n{caption}\n" if caption else ""), nl=False)
    elif fmt == "csv":
        typer.echo(results_table.to_csv(view), nl=False)
    else:
        _print_rich(view)
    from rich.markup import escape

    for run_id, problem in sorted(problems.items()):
        err_console.print(f"[yellow]run {run_id} unreadable:[/yellow] {escape(problem)}", soft_wrap=True)


def _print_rich(view: results_table.Table) -> None:
    from rich.markup import escape
    from rich.table import Table

    title = "runs" + (f" (shift columns: Δ vs run {view.baseline})" if view.baseline is not None else "")
    rich_table = Table(title=title, title_justify="left")
    numeric = set(results_table.ALL_NUMERIC) | {"seed", "id", "n"}
    for column in view.columns:
        rich_table.add_column(results_table.header(column, view), justify="right" if column in numeric else "left")
    styles = {"done": "green", "failed": "red", "running": "cyan", "cancelled": "yellow"}
    for row in view.rows:
        cells = [escape(results_table.cell(row, column, view)) for column in view.columns]
        style = styles.get(str(row.values.get("status")))
        if style and "status" in view.columns:
            status_index = view.columns.index("status")
            cells[status_index] = f"[{style}]{cells[status_index]}[/{style}]"
        rich_table.add_row(*cells)
    console.print(rich_table)
    if not view.rows:
        console.print("[dim]no runs match; queue some with innerdpo queue add[/dim]")
