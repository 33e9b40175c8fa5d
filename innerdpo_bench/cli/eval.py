"""`innerdpo eval` and `innerdpo tasks-path`: score a checkpoint on the shifts, and locate the lm-eval tasks."""

from __future__ import annotations

import json

import typer

from innerdpo_bench.cli.app import (HELP, app, apply_chat_template, batch_size_option, chat_template_option, console,
                                    data_dir_option, device_option, err_console, genies_dir_option, handle_errors,
                                    limit_option, quiet_libraries, say_cache_hit, say_progress, suite_option,
                                    use_genies_dir)
from innerdpo_bench.evaluation import audit


@app.command("tasks-path")
@handle_errors
def tasks_path_command() -> None:
    """Print the lm-eval task folder: lm_eval ... --include_path "$(innerdpo tasks-path)" --tasks innerdpo_shifts"""
    from innerdpo_bench.evaluation.suites import tasks_dir

    typer.echo(str(tasks_dir()))


@app.command("eval", context_settings=HELP)
@handle_errors
def eval_command(
    checkpoint: str = typer.Argument(..., help="Run directory, PEFT adapter directory, model directory, hub id, "
                                     "or a built-in base (tiny-random, smollm2-135m) for the base-model row.",
                                     show_default=False),
    suite: str | None = suite_option(),
    limit: int | None = limit_option(sampled=True),
    sample: str = typer.Option("first", "--sample", help="Which --limit rows: first | random (seeded by "
                               "--sample-seed; the same seed always picks the same rows)."),
    sample_seed: int = typer.Option(0, "--sample-seed", help="Seed of --sample random."),
    batch_size: str = batch_size_option(),
    device: str = device_option(),
    data_dir: str | None = data_dir_option(),
    genies_dir: str | None = genies_dir_option(),
    chat_template: str = chat_template_option(),
    as_json: bool = typer.Option(False, "--json", help="Print eval.json to stdout instead of the table."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute everything. Otherwise an unchanged evaluation "
                                  "(same base, adapter checksum, tasks, suite, rows, sampling, chat template, dtype) "
                                  "is returned from the cache without loading a model, and the base model's rows are "
                                  "computed once per base and suite."),
    output: str | None = typer.Option(None, "--output", help="Where to write eval.json (default RUN/eval.json, else "
                                      "./eval-<name>.json); per-row scores go beside it as <stem>_rows-<sha16>.jsonl.",
                                      show_default=False),
    samples: int = typer.Option(0, "--samples", help="After scoring, also write greedy completions of the checkpoint "
                                "and of its base for the first N prompts of each shift, beside eval.json "
                                "(samples.jsonl; `innerdpo samples` for more options). 0: none."),
    report_to: str = typer.Option("none", "--report-to", help="Also send the accuracies to trackers: tensorboard "
                                  "(RUN/tensorboard, beside the training curves) | wandb | mlflow (an active run "
                                  "of theirs, else a new one); comma-separated."),
) -> None:
    """Score CHECKPOINT on the four preference shifts with lm-eval; write eval.json and per-row scores.

    acc: mean per-token log-prob of chosen > rejected (strict). acc_sum: summed log-prob, strict.
    logratio: mean over rows of the token-mean log-prob margin.
    nll_ratio / nll_diff: in_domain per-token NLL of chosen against the base model (diff above 2: likely incoherent).
    Training transforms never change the outputs, so evaluation does not load them.
    """
    quiet_libraries()
    use_genies_dir(genies_dir)
    from innerdpo_bench.config.trackers import parse_report_to
    from innerdpo_bench.evaluation.evaluate import evaluate
    from innerdpo_bench.train import trackers

    report_to_names = parse_report_to(report_to)
    trackers.require_installed(report_to_names)

    result = evaluate(checkpoint, suite=suite, limit=limit, batch_size=batch_size, device=device, data_dir=data_dir,
                      apply_chat_template=apply_chat_template(chat_template), output=output, progress=say_progress,
                      use_cache=not no_cache, sample=sample, sample_seed=sample_seed)
    say_cache_hit(result.report)
    if samples:
        _write_samples(checkpoint, result.eval_path, samples, suite, data_dir, chat_template, device, no_cache)
    if report_to_names:
        _push_to_trackers(report_to_names, result.report, checkpoint, to_stderr=as_json)
    if as_json:
        typer.echo(json.dumps(result.report, indent=2, sort_keys=True, default=str))
        return
    _print_table(result.report)
    console.print(f"eval: {result.eval_path}\nrows: {result.rows_path}", soft_wrap=True)


def _write_samples(checkpoint: str, eval_path, prompts: int, suite, data_dir, chat_template: str, device: str,
                   no_cache: bool) -> None:
    """`innerdpo samples` with its defaults, written beside eval.json (`samples.samples_path_for`)."""
    from innerdpo_bench.evaluation.samplefile import samples_path_for
    from innerdpo_bench.evaluation.samples import SampleSettings, generate_samples

    settings = SampleSettings(prompts=prompts, suite=suite, data_dir=data_dir,
                              apply_chat_template=apply_chat_template(chat_template))
    written = generate_samples(checkpoint, settings, output=samples_path_for(eval_path), device=device,
                               use_cache=not no_cache, progress=say_progress)
    err_console.print(f"[dim]samples: {written.path}[/dim]", soft_wrap=True)
def _push_to_trackers(names: list[str], report: dict, checkpoint: str, to_stderr: bool) -> None:
    """--report-to: eval.json's accuracies to each tracker, one line each (on stderr under --json)."""
    from pathlib import Path

    from innerdpo_bench import rundir
    from innerdpo_bench.train import trackers

    run_dir = Path(checkpoint) if rundir.is_run_dir(Path(checkpoint)) else None
    step = rundir.read_status(run_dir).get("steps") if run_dir is not None else None
    for line in trackers.push_eval(names, report, run_dir, step):
        typer.echo(line, err=to_stderr)


def _cell(metrics: dict, key: str, digits: int = 3, stderr: bool = True) -> str:
    value, err = metrics.get(key), metrics.get(f"{key}_stderr")
    if value is None:
        return "-"
    sign = "+" if key == "logratio" else ""
    return f"{value:{sign}.{digits}f}" + (f"±{err:.{digits}f}" if stderr and err is not None else "")


def long_rows_cell(provenance: dict) -> str:
    """Rows longer than the model, beside a shift's score: '3 cut, 1 skipped' (of max_length positions), or '-'."""
    cut, skipped = provenance.get("truncated"), provenance.get("skipped")
    if cut is None and skipped is None:
        return "?"   # an eval.json from before the long-row rule (scoring rule v1)
    if not cut and not skipped:
        return "-"
    return f"{cut} cut, {skipped} skipped (> {provenance.get('max_length')} tokens)"


def _print_table(report: dict) -> None:
    from rich.table import Table

    title = f"{report['display_name'] or report['checkpoint']} on {report['suite']} ({report['base_model']})"
    table = Table(title=title, title_justify="left")
    for column, justify in (("shift", "left"), ("n", "right"), ("acc", "right"), ("acc_sum", "right"),
                            ("logratio", "right"), ("base acc", "right"), ("long rows", "left")):
        table.add_column(column, justify=justify)
    base = report["base"]
    for shift, metrics in report["shifts"].items():
        base_acc = _cell(base["shifts"][shift], "acc", stderr=False)
        table.add_row(f"[red]{shift} ⚠[/red]" if metrics.get("below_chance") else shift, str(metrics["n"]),
                      _cell(metrics, "acc"), _cell(metrics, "acc_sum"), _cell(metrics, "logratio"),
                      f"[red]{base_acc} ⚠[/red]" if base["shifts"][shift].get("below_chance") else base_acc,
                      long_rows_cell(report.get("provenance", {}).get(shift, {})))
    for shift in report["skipped_shifts"]:
        table.add_row(shift, "-", "-", "-", "-", "-", "", style="dim")
    table.add_section()
    aggregate = report["aggregate"]
    table.add_row("aggregate", str(aggregate["n"]), _cell(aggregate, "acc"), _cell(aggregate, "acc_sum"),
                  _cell(aggregate, "logratio"), _cell(base["aggregate"], "acc", stderr=False), "", style="bold")
    console.print(table)
    coh = report["coherence"]
    if coh["nll_ratio"] is not None:
        verdict = "fine" if coh["nll_diff"] <= 2 else "likely incoherent"
        console.print(f"coherence: nll_ratio {coh['nll_ratio']:.3f}, nll_diff {coh['nll_diff']:+.3f} "
                      f"(in_domain chosen NLL vs base; {verdict})")
    for shift, reason in report["skipped_shifts"].items():
        console.print(f"[dim]{shift} skipped: {reason}[/dim]")
    for who, shifts in (("checkpoint", report["shifts"]), ("base model", base["shifts"])):
        for line in audit.warnings(audit.recorded(shifts)):
            console.print(f"[red]⚠ {who}, {line}[/red]", soft_wrap=True)
        if report["kind"] == "model":
            break  # a base model is its own base: one set of lines
