"""`innerdpo gate`: evaluate a checkpoint (or read its evaluation) and pass or fail it for CI; logic in gate.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from innerdpo_bench import rundir
from innerdpo_bench.cli.app import (HELP, app, apply_chat_template, batch_size_option, chat_template_option, console,
                                    data_dir_option, device_option, err_console, genies_dir_option, handle_errors,
                                    home_option, limit_option, quiet_libraries, say_cache_hit, say_progress,
                                    suite_option, use_genies_dir)
from innerdpo_bench.errors import UserError
from innerdpo_bench.evaluation import scoring
from innerdpo_bench.results import gate as gating
from innerdpo_bench.results import locate

SUMMARY_ENV = "GITHUB_STEP_SUMMARY"


@app.command("gate", context_settings=HELP)
@handle_errors
def gate_command(
    checkpoint: str = typer.Argument(..., help="What to gate: a run, adapter or model directory, hub id or built-in "
                                     "base (evaluated, or taken from the evaluation cache), or an eval.json (read "
                                     "as is).", show_default=False),
    suite: str | None = suite_option(),
    data_dir: str | None = data_dir_option(),
    genies_dir: str | None = genies_dir_option(),
    limit: int | None = limit_option(sampled=True),
    sample: str | None = typer.Option(None, "--sample", help="first (default) | random: which --limit rows.",
                                      show_default=False),
    sample_seed: int | None = typer.Option(None, "--sample-seed", help="Seed of --sample random (default 0); the same "
                                           "seed always picks the same rows.", show_default=False),
    baseline: str | None = typer.Option(None, "--baseline", help="The evaluation to measure drops against: a run "
                                        "directory with eval.json, an eval.json, or a store run id (with --home).",
                                        show_default=False),
    floors: list[str] | None = typer.Option(None, "--min", help="SHIFT=VALUE: fail when the accuracy on SHIFT is "
                                            "below VALUE. SHIFT all = every shift scored; repeatable.",
                                            show_default=False),
    max_drops: list[str] | None = typer.Option(None, "--max-drop", help="SHIFT=VALUE: fail when the accuracy drops "
                                               "by more than VALUE against --baseline AND McNemar's exact test says "
                                               "the drop is significant at --alpha (else: within noise). Default "
                                               "with --baseline: all=0.", show_default=False),
    alpha: float = typer.Option(gating.DEFAULT_ALPHA, "--alpha", help="Significance level of each drop check."),
    metric: str = typer.Option("acc", "--metric", help=scoring.metric_help(gating.METRICS)),
    junit: str | None = typer.Option(None, "--junit", help="Write a JUnit XML report: one test case per shift and "
                                     "check (in_domain.min, in_domain.max_drop, ...).", show_default=False),
    markdown: str | None = typer.Option(None, "--markdown", help=f"Write the summary table as Markdown (also "
                                        f"appended to ${SUMMARY_ENV} when it is set).", show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print the verdict and every check as JSON."),
    output: str | None = typer.Option(None, "--output", help="Where the evaluation writes eval.json (default "
                                      "RUN/eval.json, else ./eval-<name>.json).", show_default=False),
    no_cache: bool = typer.Option(False, "--no-cache", help="Evaluate again even when the cache holds this evaluation."),
    batch_size: str = batch_size_option(),
    device: str = device_option(),
    chat_template: str = chat_template_option(),
    home: str | None = home_option(),
) -> None:
    """Pass or fail CHECKPOINT for CI: accuracy floors per shift, and drops against a baseline that count only
    when significant.

    A drop fails only when it exceeds --max-drop AND McNemar's exact test on the rows both evaluations scored
    gives p ≤ --alpha; a larger drop that is not significant is reported as "within noise" and passes. The 95%
    paired bootstrap interval of the difference is reported beside it. Exit 0 pass, 1 fail, 2 usage error.
    A re-run on an unchanged checkpoint reuses the cached evaluation (no model is loaded).
    """
    quiet_libraries()
    use_genies_dir(genies_dir)
    # Everything that can be wrong with the flags is found before a model is loaded.
    metric = gating.check_metric(metric)
    gating.check_alpha(alpha)
    floor_specs = gating.parse_thresholds(floors, "--min")
    drop_specs = gating.parse_thresholds(max_drops, "--max-drop")
    gating.check_plan(floor_specs, drop_specs, baseline is not None)
    if sample_seed is not None and (sample or "first").strip().lower() != "random":
        raise UserError("--sample-seed picks the rows of --sample random; add --sample random (or drop the seed)")
    reference = locate.load_run(baseline, home) if baseline is not None else None
    run = _checkpoint_rows(checkpoint, suite=suite, data_dir=data_dir, limit=limit, sample=sample,
                           sample_seed=sample_seed, output=output, use_cache=not no_cache, batch_size=batch_size,
                           device=device, chat_template=chat_template)
    result = gating.run_gate(run, floor_specs, drop_specs, reference, metric, alpha)

    seconds = float(run.report.get("seconds") or 0.0)
    written = _write_reports(result, junit, markdown, seconds, run.report.get("timestamp"))
    if as_json:
        typer.echo(json.dumps({**result.to_dict(), "reports": written}, indent=2, ensure_ascii=False, default=str))
    else:
        _print_gate(result, written)
    if not result.passed:
        raise typer.Exit(1)


def _is_evaluation(checkpoint: str) -> bool:
    path = Path(checkpoint).expanduser()
    return path.is_file() and (path.suffix == ".json" or rundir.eval_path_for_rows(path) is not None)


def _checkpoint_rows(checkpoint: str, *, suite, data_dir, limit, sample, sample_seed, output, use_cache, batch_size,
                     device, chat_template) -> locate.RunRows:
    """The checkpoint's per-row records: read from an eval.json, else from `evaluate` (which answers from the
    whole-evaluation cache when nothing changed)."""
    if _is_evaluation(checkpoint):
        given = [flag for flag, value in (("--suite", suite), ("--data-dir", data_dir), ("--limit", limit),
                                          ("--sample", sample), ("--sample-seed", sample_seed),
                                          ("--output", output)) if value is not None]
        if given:
            raise UserError(f"{checkpoint} is an evaluation already: {', '.join(given)} only apply when gate "
                            "evaluates a checkpoint (give the run or adapter directory instead)")
        return locate.load_run(checkpoint)
    from innerdpo_bench.evaluation.evaluate import evaluate

    result = evaluate(checkpoint, suite=suite, limit=limit, batch_size=batch_size, device=device, data_dir=data_dir,
                      apply_chat_template=apply_chat_template(chat_template), output=output, use_cache=use_cache,
                      sample=sample, sample_seed=sample_seed, progress=say_progress)
    say_cache_hit(result.report)
    return locate.load_run(result.eval_path)


def _write_reports(result: gating.Gate, junit: str | None, markdown: str | None, seconds: float,
                   timestamp: str | None) -> dict[str, str]:
    """Write the requested reports; append the Markdown to $GITHUB_STEP_SUMMARY when it is set."""
    written = {}
    if junit is not None:
        written["junit"] = str(_write(Path(junit), gating.junit_xml(result, seconds, timestamp), "--junit"))
    summary = gating.markdown_summary(result)
    if markdown is not None:
        written["markdown"] = str(_write(Path(markdown), summary, "--markdown"))
    step_summary = os.environ.get(SUMMARY_ENV)
    if step_summary:
        try:
            with open(step_summary, "a", encoding="utf-8") as handle:
                handle.write(summary + "\n")
            written["step_summary"] = step_summary
        except OSError as err:  # the verdict still stands; the summary is a convenience
            err_console.print(f"[yellow]warning:[/yellow] cannot append to ${SUMMARY_ENV} {step_summary} "
                              f"({err.strerror or err})", soft_wrap=True)
    return written


def _write(path: Path, text: str, flag: str) -> Path:
    path = path.expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as err:
        raise UserError(f"{flag} {path}: cannot write ({err.strerror or err})") from None
    return path


def _print_gate(result: gating.Gate, written: dict[str, str]) -> None:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    title = f"innerdpo gate: {result.checkpoint} (--metric {result.metric}"
    title += f", baseline {result.baseline}, α {result.alpha:g})" if result.baseline else ")"
    table = Table(title=escape(title), title_justify="left", box=box.SIMPLE_HEAD)
    for column in gating.TABLE_HEADER:
        table.add_column(column, justify="right" if column in ("value", "baseline", "delta", "p") else "left",
                         no_wrap=column in ("shift", "95% CI"))
    for row in gating.table_rows(result):
        table.add_row(*(escape(cell) for cell in row))
    console.print(table)
    for note in result.notes:
        console.print(f"[dim]{escape(note)}[/dim]", soft_wrap=True)
    for check in result.within_noise:
        console.print(f"within noise: {escape(check.name)}: {escape(check.describe(result.metric, result.alpha))}",
                      soft_wrap=True, highlight=False)
    for kind, path in written.items():
        console.print(f"{kind}: {escape(path)}", soft_wrap=True, highlight=False)
    if result.passed:
        noise = f" ({len(result.within_noise)} within noise)" if result.within_noise else ""
        console.print(f"[green]gate passed[/green]: {len(result.checks)} checks{noise}")
    else:
        console.print(f"[red]gate failed[/red]: {', '.join(c.name for c in result.failed)}", soft_wrap=True)
        for check in result.failed:
            console.print(f"  {escape(check.name)}: {escape(check.describe(result.metric, result.alpha))}",
                          soft_wrap=True, highlight=False)
