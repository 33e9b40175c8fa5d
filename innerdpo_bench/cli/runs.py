"""`innerdpo runs`: the results table over the store's runs (filter, sort, group seeds, baseline deltas, exports)."""

from __future__ import annotations

import typer

from innerdpo_bench.cli.app import app, err_console, handle_errors, home_option, open_store
from innerdpo_bench.evaluation import scoring
from innerdpo_bench.results import summaries  # noqa: F401  (registers the training-summary columns)
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
                                    "Scores (the shifts, mean) sort best first, the rest ascending; missing values "
                                    "go last.", show_default=False),
    reverse: bool = typer.Option(False, "--reverse", help="Sort the other way (missing values still last)."),
    group_seeds: bool = typer.Option(False, "--group-seeds", help="One row per set of runs that differ only by "
                                     "seed: mean ± sample std, and n."),
    baseline: int | None = typer.Option(None, "--baseline", help="Show the four shift columns as differences from "
                                        "this run's.", show_default=False),
    filter_expr: str = typer.Option("", "--filter", help=results_table.FILTER_HELP),
    metric: str = typer.Option("acc", "--metric", help=results_table.TABLE_METRIC_HELP),
    group_by: str | None = typer.Option(None, "--group-by", help="One row per set of runs with equal values of "
                                        "these comma-separated keys (any column or train option, e.g. "
                                        "align_method,alpha; runs of different methods never share a row): mean ± "
                                        "std over its runs, and n. With --baseline, the baseline is the group of "
                                        "that run.", show_default=False),
    columns: str | None = typer.Option(None, "--columns", help="Comma-separated columns to show, in order: name, "
                                       "the shifts (or `shifts` for all four), mean, nll_ratio, status, seed, id, n, "
                                       "method, kind, sweep, attempts, tags, note, created, runtime_s, the training "
                                       "summaries final_loss, final_margin, final_acc, train_s, the sample statistics "
                                       "rep, distinct2, len, gen_nll_ratio (docs/statistics.md), or any train option "
                                       "(align_method, alpha, learning_rate, ...). For this call only (--save-view "
                                       "keeps it).", show_default=False),
    view_name: str | None = typer.Option(None, "--view", help="A named view (saved with --save-view or the "
                                         "dashboard's V): its columns, filter, sort and grouping; flags given here "
                                         "override it.", show_default=False),
    save_view: str | None = typer.Option(None, "--save-view", help="Save this call's columns, filter, sort and "
                                         "grouping as a named view of the workspace (--view NAME, the dashboard's V).",
                                         show_default=False),
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
    metric = scoring.resolve_metric(metric, results_table.TABLE_METRICS)   # an old spelling reads as its name
    shift_values, significance = cells.shift_cells(metric, problems), cells.significance_marks(metric, problems)
    with open_store(home, readonly=True) as store:
        runs = store.list_runs()
        provenance = store.all_provenance() if fmt in ("json", "markdown") else {}
        workspace = store.home
    from innerdpo_bench.results import views as viewprefs

    named = viewprefs.named_view(workspace, view_name) if view_name else {}
    shown = results_table.check_columns(_split(columns), runs) if columns else (
        [name for name in named.get("columns", ()) if name in _known(runs)] or None)
    filter_expr = filter_expr or named.get("filter", "")
    # --sort puts a score's best (highest) first unless --reverse; a saved view keeps the order it was saved with
    if sort:
        order = reverse != results_table.best_first(sort)
    else:
        sort, order = named.get("sort"), reverse != bool(named.get("reverse", False))
    grouping = _split(group_by) if group_by else list(named.get("group_by", ()))
    group_seeds = group_seeds or (named.get("group_seeds", False) and not grouping)
    view = results_table.make_table(runs, filter_expr=filter_expr, sort=sort, reverse=order,
                                    group_seeds=group_seeds, baseline=baseline, shift_values=shift_values,
                                    significance=significance, group_by=grouping, columns_shown=shown,
                                    metric=metric)
    if save_view:
        viewprefs.save_named(workspace, save_view, {"columns": list(shown or ()), "filter": filter_expr, "sort": sort,
                                                    "reverse": order, "group_by": grouping,
                                                    "group_seeds": group_seeds})
        err_console.print(f"[dim]saved view {save_view!r}: innerdpo runs --view {save_view}[/dim]", soft_wrap=True)
    if fmt == "json":
        typer.echo(results_table.to_json(view, provenance), nl=False)
    elif fmt == "markdown":
        scored = [run for row in view.rows for run in row.runs if run.results]
        caption = cells.provenance_caption(scored, provenance, metric=metric) if scored else ""
        notes = [cells.test_note(view, metric), *cells.below_chance_notes(scored)]
        caption = "\n\n".join(part for part in (caption, "\n".join(note for note in notes if note)) if part)
        typer.echo(results_table.to_markdown(view) + (f"\n{caption}\n" if caption else ""), nl=False)
    elif fmt == "csv":
        typer.echo(results_table.to_csv(view), nl=False)
    else:
        _print_rich(view)
    from rich.markup import escape

    for run_id, problem in sorted(problems.items()):
        err_console.print(f"[yellow]run {run_id} unreadable:[/yellow] {escape(problem)}", soft_wrap=True)


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _known(runs) -> set[str]:
    from innerdpo_bench.results import columns as registry

    return {*results_table.COLUMNS, "n", *registry.COLUMNS, *registry.config_keys(runs)}


def _print_rich(view: results_table.Table) -> None:
    """The table as aligned text (`app.print_aligned`), status and significant deltas coloured on a terminal."""
    from innerdpo_bench.cli.app import print_aligned

    title = "runs" + (f" (shift columns: Δ vs {'the group of ' if len(view.baseline_ids) > 1 else ''}run "
                      f"{view.baseline})" if view.baseline is not None else "")
    columns = view.columns
    styles = {"done": "green", "failed": "red", "running": "cyan", "cancelled": "yellow"}
    status_index = columns.index("status") if "status" in columns else None
    paints = []
    for row in view.rows:
        paint = {index: ("green" if row.values[column] > 0 else "red") for index, column in enumerate(columns)
                 if row.significant.get(column) and isinstance(row.values.get(column), float)}
        if status_index is not None and str(row.values.get("status")) in styles:
            paint[status_index] = styles[str(row.values["status"])]
        paints.append(paint)
    print_aligned(title, [results_table.header(column, view) for column in columns],
                  [[results_table.cell(row, column, view) for column in columns] for row in view.rows],
                  [results_table.is_numeric_column(column, view) for column in columns], paints,
                  empty="no runs match; queue some with innerdpo queue add")
