"""`innerdpo rescore`, `compare` and `transfer`: statistics from a run's per-row records, no model loaded (`plot` is
in `plot.py`).

A RUN is a store run id (with --home), a run directory, or an eval.json path. Formulas: docs/statistics.md.
"""

from __future__ import annotations

import dataclasses
import json
import math

import typer

from innerdpo_bench.cli.app import app, console, handle_errors, home_option
from innerdpo_bench.errors import RunFailed, UserError
from innerdpo_bench.evaluation import scoring
from innerdpo_bench.results import compare, locate, stats, transfer
from innerdpo_bench.results.provenance import provenance
from innerdpo_bench.results.seeds import seed_group_key

RUN_HELP = "A store run id (with --home), a run directory, or an eval.json path."
METRIC_HELP = "Scoring rule: " + scoring.metric_help()


def _metric_option(default: str = "acc", help_text: str = METRIC_HELP):
    return typer.Option(default, "--metric", help=help_text)


def _num(value: float | None, digits: int = 3, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2e}" if value < 1e-3 else f"{value:.4f}"


def _table(title: str):
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    return Table(title=escape(title), title_justify="left", box=box.SIMPLE_HEAD)


def _column(table, name: str, left: bool = False) -> None:
    """The shift column never wraps; numbers are right-aligned."""
    if name == "shift":
        table.add_column(name, no_wrap=True)
    else:
        table.add_column(name, justify="left" if left else "right", no_wrap=name == "95% CI")


def _echo_json(data) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _who(rows: locate.RunRows) -> str:
    seed = f" seed {rows.seed}" if rows.seed is not None else ""
    return f"{rows.ident} ({rows.name}{seed})"


# --------------------------------------------------------------------------- rescore


@app.command("rescore")
@handle_errors
def rescore_command(
    run: str = typer.Argument(..., help=RUN_HELP, show_default=False),
    metric: str = _metric_option("acc", "Checked against eval.json's metric of the same name: "
                                 + scoring.metric_help(scoring.HARNESS_METRICS)),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output, with full provenance."),
    home: str | None = home_option(),
) -> None:
    """Recompute RUN's accuracy per shift from its per-row records and check it equals eval.json's.

    Next to it: the implicit-reward accuracies (reward_acc, reward_acc_sum: logp_adapter − logp_base of
    chosen > rejected, per token / summed) and the base model's accuracy, from the same rows. Exit 1 if a
    recomputed accuracy differs from the harness's.
    """
    metric = scoring.resolve_metric(metric, scoring.HARNESS_METRICS)
    rows = locate.load_run(run, home)
    harness_key = scoring.METRICS[metric].harness_key
    reported = rows.report.get("shifts") or {}
    shifts = {}
    for shift, shift_rows in rows.shifts.items():
        correct = shift_rows.score(metric)
        acc = int(correct.sum()) / len(correct)
        harness = (reported.get(shift) or {}).get(harness_key)
        shifts[shift] = {
            "n": len(correct), "acc": acc, "harness": harness, "match": harness is not None and acc == harness,
            **{name: float(shift_rows.score(name).mean()) if rows.has_adapter else None
               for name in scoring.REWARD_METRICS},
            "base_acc": float(shift_rows.base_score(metric).mean()),
        }
    mismatched = [shift for shift, entry in shifts.items() if not entry["match"]]
    if as_json:
        _echo_json({"run": rows.ident, "name": rows.name, "seed": rows.seed, "eval_json": str(rows.eval_path),
                    "rows_file": str(rows.rows_path), "metric": metric, "harness_metric": harness_key,
                    "match": not mismatched, "shifts": shifts, "provenance": provenance(rows)})
    else:
        _print_rescore(rows, metric, harness_key, shifts)
    if mismatched:
        raise RunFailed(f"rescored {harness_key} differs from {rows.eval_path} on {', '.join(mismatched)}")


def _print_rescore(rows: locate.RunRows, metric: str, harness_key: str, shifts: dict) -> None:
    table = _table(f"{_who(rows)} rescored from {rows.rows_path.name} (--metric {metric})")
    for column in ("shift", "N", f"{harness_key} rows", "eval.json", "match", *scoring.REWARD_METRICS, "base"):
        _column(table, column)
    for shift, entry in shifts.items():
        table.add_row(shift, str(entry["n"]), _num(entry["acc"], 4), _num(entry["harness"], 4),
                      "[green]yes[/green]" if entry["match"] else "[red]NO[/red]",
                      *(_num(entry[name], 4) for name in scoring.REWARD_METRICS), _num(entry["base_acc"], 4))
    console.print(table)
    _print_provenance(rows)


def _print_provenance(rows: locate.RunRows) -> None:
    prov = provenance(rows)
    first = next(iter(prov.values()))
    data = "; ".join(f"{shift} = {entry['data']}, N={entry['n']}" for shift, entry in prov.items())
    versions = ", ".join(f"{k} {v}" for k, v in first["versions"].items() if k in ("innerdpo_bench", "lm_eval"))
    checksum = first["adapter_sha256"] or ("none (base model)" if not rows.has_adapter else "adapter file not found")
    console.print(f"[dim]data: {data}\nbase model {first['base_model']}; adapter sha256 {checksum}; {versions}[/dim]",
                  soft_wrap=True, markup=True, highlight=False)


# --------------------------------------------------------------------------- compare


@app.command("compare")
@handle_errors
def compare_command(
    run_a: str = typer.Argument(..., help="Run A, the reference. " + RUN_HELP, show_default=False),
    run_b: str = typer.Argument(..., help="Run B. " + RUN_HELP, show_default=False),
    shift: list[str] | None = typer.Option(None, "--shift", help="Only this shift (repeatable). Default: every "
                                           "shift both scored.", show_default=False),
    group_seeds: bool = typer.Option(False, "--group-seeds", help="Pool each run with the store's done runs that "
                                     "differ from it only by seed: per-seed accuracy, seed mean ± std, and the "
                                     "paired test on per-row seed-mean correctness."),
    metric: str = _metric_option(),
    resamples: int = typer.Option(stats.RESAMPLES, "--resamples", help="Paired bootstrap resamples."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap random seed (the interval is reproducible)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    home: str | None = home_option(),
) -> None:
    """Is B better than A? Per shift: accuracy of each, Δ = acc(B) − acc(A), its 95% paired bootstrap interval,
    McNemar's exact p and Holm-adjusted p over the shifts.

    Rows are matched by row id (sha256 of prompt, chosen, rejected): only rows both runs scored count.
    Bootstrap: rows resampled jointly with replacement, percentile interval. McNemar: b = rows A gets right
    and B wrong, c = the reverse, p = min(1, 2·P(X ≤ min(b, c))), X ~ Binomial(b + c, ½). Holm: the k-th
    smallest of m p-values times (m − k + 1), made monotone. A Δ in bold has an interval that excludes 0.
    """
    metric = scoring.resolve_metric(metric)
    shifts = compare.check_shifts(shift)
    a, b = locate.load_runs([run_a, run_b], home)
    runs_a, runs_b = [a], [b]
    if group_seeds:
        runs_a, runs_b = locate.seed_siblings(a, home), locate.seed_siblings(b, home)
        if seed_group_key(a) == seed_group_key(b):
            raise UserError(f"{a.ident} and {b.ident} differ only by seed: with --group-seeds both are the same group; "
                            "compare them without it")
    results = compare.compare_runs(runs_a, runs_b, metric, shifts, resamples, seed)
    if as_json:
        _echo_json({"a": _side(runs_a), "b": _side(runs_b), "metric": metric, "rule": scoring.METRICS[metric].rule,
                    "resamples": resamples, "seed": seed, "level": stats.LEVEL, "group_seeds": group_seeds,
                    "shifts": [result.to_dict() for result in results]})
        return
    _print_compare(runs_a, runs_b, results, metric, resamples, seed, group_seeds)


def _side(runs: list[locate.RunRows]) -> dict:
    return {"name": runs[0].name, "runs": [r.ident for r in runs], "seeds": [r.seed for r in runs],
            "eval_json": [str(r.eval_path) for r in runs]}


def _print_compare(runs_a, runs_b, results, metric, resamples, seed, group_seeds) -> None:
    from rich.markup import escape

    def side(runs) -> str:
        return _who(runs[0]) if len(runs) == 1 else f"{runs[0].name} ({len(runs)} seeds: " + \
            ", ".join(r.ident for r in runs) + ")"

    title = (f"B = {side(runs_b)}  vs  A = {side(runs_a)}\n--metric {metric}; Δ = B − A; 95% paired bootstrap over "
             f"rows ({resamples:,} resamples, seed {seed})")
    table = _table(title)
    for column in ("shift", "N", "acc A", "acc B", "Δ", "95% CI", "b/c", "p McNemar", "p Holm"):
        _column(table, column)
    for result in results:
        acc_a, acc_b = _num(result.acc_a), _num(result.acc_b)
        if group_seeds:
            acc_a, acc_b = (_seed_cell(result, "a"), _seed_cell(result, "b"))
        delta = _num(result.delta, signed=True)
        if result.significant:
            delta = f"[bold {'green' if result.delta > 0 else 'red'}]{delta}[/]"
        table.add_row(result.shift, str(result.n), acc_a, acc_b, delta,
                      f"[{_num(result.lo, signed=True)}, {_num(result.hi, signed=True)}]", f"{result.b}/{result.c}",
                      _p(result.p), _p(result.p_holm))
    console.print(table)
    for result in results:
        if result.interval == "exact":
            console.print(f"[dim]{result.shift}: no discordant rows of {result.n}: both score every row alike, so Δ = 0 "
                          f"here; [{_num(result.lo, signed=True)}, {_num(result.hi, signed=True)}] is the exact bound "
                          "on the gap these rows leave possible (rule of three), not a bootstrap[/dim]", soft_wrap=True)
        if result.n < max(result.n_a, result.n_b):
            console.print(f"[dim]{result.shift}: compared on the {result.n} rows both scored (A {result.n_a}, "
                          f"B {result.n_b})[/dim]")
    if group_seeds:
        for label, runs, attr in (("A", runs_a, "seeds_a"), ("B", runs_b, "seeds_b")):
            per_shift = "; ".join(f"{r.shift} " + ", ".join(f"s{s}={acc:.3f}" for s, acc in getattr(r, attr))
                                  for r in results)
            console.print(f"[dim]{label} per seed: {escape(per_shift)}[/dim]", soft_wrap=True)
        console.print("[dim]pooled test: per-row correctness averaged over each group's seeds; b / c count rows "
                      "where A's / B's seed mean is higher (sign test)[/dim]", soft_wrap=True)


def _seed_cell(result: compare.ShiftComparison, side: str) -> str:
    mean, std = result.seed_spread(side)
    seeds = len(result.seeds_a if side == "a" else result.seeds_b)
    return f"{mean:.3f} ± {std:.3f} ({seeds})" if std is not None else f"{mean:.3f} (1)"


# --------------------------------------------------------------------------- transfer


@app.command("transfer")
@handle_errors
def transfer_command(
    run: str = typer.Argument(..., help=RUN_HELP, show_default=False),
    metric: str = _metric_option("acc", "Scoring rule (the base model is scored by it too): "
                                 + scoring.metric_help(scoring.BASE_METRICS)),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    home: str | None = home_option(),
) -> None:
    """How much of RUN's in-domain improvement carries over to each shift, from its per-row records.

    gain(s) = acc(adapter, s) − acc(base, s), base = the same model with the adapter off, on the same rows.
    transfer(s) = gain(s) / gain(in_domain); undefined (-) when gain(in_domain) = 0.
    DE(s) = (acc(adapter, s) − acc(base, s)) / (acc(T, s) − acc(base, s)), GENIES' differential elicitation,
    where T is the store's best done run trained on s's own dataset (same base model), all on the rows both
    scored; shown when the store holds such a run.
    """
    metric = scoring.resolve_metric(metric, scoring.BASE_METRICS)
    rows = locate.load_runs([run], home)[0]
    try:
        candidates = locate.target_candidates(rows, home)
    except UserError:  # no store: normalised transfer only
        if rows.run is not None or home is not None:
            raise
        candidates = []
    report = transfer.transfer_report(rows, metric, candidates)
    if as_json:
        _echo_json({"run": rows.ident, "name": rows.name, "seed": rows.seed, "metric": metric,
                    "shifts": [dataclasses.asdict(entry) for entry in report]})
        return
    from rich.markup import escape

    table = _table(f"{_who(rows)}: transfer of the in-domain gain (--metric {metric})")
    for column in ("shift", "N", "acc", "base acc", "gain", "transfer", "DE", "trained-on-shift run (acc, N)"):
        _column(table, column, left=column.startswith("trained"))
    for entry in report:
        target = f"{entry.target_run} ({entry.target_acc:.3f}, N={entry.target_n})" if entry.target_run else "-"
        table.add_row(entry.shift, str(entry.n), _num(entry.acc), _num(entry.base_acc), _num(entry.gain, signed=True),
                      _num(entry.transfer, 2, signed=True), _num(entry.differential_elicitation, 2, signed=True),
                      escape(target))
    console.print(table)
