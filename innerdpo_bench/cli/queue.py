"""`innerdpo queue ...`: queue runs, list, follow, reorder and edit them (`cli/worker.py` works through them)."""

from __future__ import annotations

import inspect
import json
import time
from pathlib import Path

import typer

from innerdpo_bench import rundir
from innerdpo_bench.cli.app import (HELP, app, console, err_console, handle_errors, home_option,
                                    limit_option, open_store, store_option, suite_option)
from innerdpo_bench.cli.train import config_parameters
from innerdpo_bench.errors import UserError
from innerdpo_bench.queue.labels import parse_tags, run_names
from innerdpo_bench.results import table as results_table
from innerdpo_bench.store import MAX_RETRIES, STATUSES, claims

queue_app = typer.Typer(
    help="Queue runs for `innerdpo worker`: add, add-base, ls, log, cancel, retry, rm, move.",
    no_args_is_help=True,
    context_settings=HELP,
)
app.add_typer(queue_app, name="queue")

def queue_samples_option(panel: str | None = None):
    return typer.Option(0, "--samples", help="After scoring, write greedy completions of the adapter and the base for "
                        "the first N prompts of each shift (RUN/samples.jsonl, `innerdpo samples`); 0: none.",
                        rich_help_panel=panel)


RETRIES_HELP = ("Queue a run again by itself, up to N times, when an attempt fails the way a cluster fails: its "
                "training or evaluation killed by a signal (out of memory, a scheduler) or its worker gone silent (a "
                "lost node). An error the run reports itself (a bad flag: exit 2; a NaN loss: exit 1) is never "
                "retried. queue ls shows each attempt and why it ended.")


def retries_option(panel: str | None = None):
    return typer.Option(1, "--retries", help=RETRIES_HELP, rich_help_panel=panel, min=0, max=MAX_RETRIES)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, time.time() - seconds)
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f}m" if seconds < 7200 else f"{seconds / 3600:.0f}h"


# --------------------------------------------------------------------------- queue add


def _add_parameters() -> list[inspect.Parameter]:
    """train's TrainConfig flags (minus --output-dir, --quiet and --genies-dir, a worker flag; METHOD optional,
    it may come from --grid or --sweep) plus the queue's own."""
    from innerdpo_bench.queue.sweep import GRID_HELP

    params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)]
    for param in config_parameters():
        if param.name in ("output_dir", "quiet", "genies_dir"):  # genies_dir: the worker's flag
            continue
        if param.name == "method":
            param = param.replace(default=typer.Argument(None, metavar="METHOD", show_default=False,
                                                         help=param.default.help + " (optional with a method "
                                                         "axis in --grid or --sweep)"), annotation=str | None)
        params.append(param)
    extra = {
        "seeds": (str | None, typer.Option(None, "--seeds", help="Comma-separated seeds, one run each "
                                           "(overrides --seed).", rich_help_panel="Queue", show_default=False)),
        "grid": (list[str] | None, typer.Option(None, "--grid", help=GRID_HELP, rich_help_panel="Queue",
                                                show_default=False)),
        "sweep": (str | None, typer.Option(None, "--sweep", help="A YAML file of base options, grid, seeds, suite "
                                           "and limit (see `innerdpo_bench/queue/sweep.py`); flags given here override "
                                           "it.", rich_help_panel="Queue", show_default=False)),
        "dry_run": (bool, typer.Option(False, "--dry-run", help="Print the runs it would queue (each one checked) "
                                       "and queue nothing.", rich_help_panel="Queue")),
        "name": (str | None, typer.Option(None, "--name", help="The run's name in `runs` and the dashboard (default: "
                                          "the display name, the method and every setting that differs from its "
                                          "defaults); with several runs, NAME then the sweep's values.",
                                          rich_help_panel="Queue", show_default=False)),
        "tag": (list[str] | None, typer.Option(None, "--tag", help="A label for the runs (repeatable, or comma-"
                                               "separated); filter with tag:LABEL.", rich_help_panel="Queue",
                                               show_default=False)),
        "note": (str | None, typer.Option(None, "--note", help="Free text kept with the runs (shown and exported).",
                                          rich_help_panel="Queue", show_default=False)),
        "suite": (str | None, suite_option("Queue")),
        "limit": (int | None, limit_option("Queue")),
        "samples": (int, queue_samples_option("Queue")),
        "retries": (int, retries_option("Queue")),
        "home": (str | None, home_option("Queue")),
        "store": (str | None, store_option("Queue")),
    }
    for name, (annotation, option) in extra.items():
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation))
    return params


@handle_errors
def add_command(ctx: typer.Context, **kwargs) -> None:
    """Queue METHOD for training then evaluation: one run per seed, or per grid cell and seed. Takes every
    `innerdpo train` flag. Every run is checked now (flags, dataset, base model shape), so a queued run does
    not fail on a bad flag; one bad run queues nothing.

    Examples: innerdpo queue add hs-none-InnerDPO --seeds 1,2,3 --suite mini --limit 100;
    innerdpo queue add hs-none-InnerDPO --grid align_method=para_signed,logodds --grid alpha=0.1,1 --seeds 1,2
    """
    from innerdpo_bench.queue import sweep as sweeps
    from innerdpo_bench.queue.runspec import parse_seeds

    seeds, grid, sweep_file, dry_run = (kwargs.pop(key) for key in ("seeds", "grid", "sweep", "dry_run"))
    name, tags, note = kwargs.pop("name"), parse_tags(kwargs.pop("tag")), kwargs.pop("note")
    suite, limit, samples, home = kwargs.pop("suite"), kwargs.pop("limit"), kwargs.pop("samples"), kwargs.pop("home")
    store_url, retries = kwargs.pop("store"), kwargs.pop("retries")
    plan = sweeps.load_sweep(sweep_file) if sweep_file else sweeps.Sweep()
    # typer vendors its own click: its ParameterSource is compared by name
    given = {name: value for name, value in kwargs.items()
             if ctx.get_parameter_source(name).name not in ("DEFAULT", "DEFAULT_MAP")}
    plan.base = {**plan.base, **given}
    plan.grid = {**plan.grid, **sweeps.parse_grid(grid or [])}
    plan.seeds = parse_seeds(seeds) if seeds is not None else plan.seeds
    plan.suite = suite if suite is not None else plan.suite
    plan.limit = limit if limit is not None else plan.limit
    plan.samples = samples if samples else plan.samples
    ident = sweeps.sweep_id()
    specs = sweeps.sweep_specs(plan, ident)
    for line in dict.fromkeys(line for spec in specs for line in spec.train.warnings()):
        err_console.print(f"[yellow]warning:[/yellow] {line}", soft_wrap=True, highlight=False)
    names = run_names(name, specs, plan.grid)
    if dry_run:
        console.print(f"would queue {len(specs)} run(s) (--dry-run: nothing queued):", soft_wrap=True)
        for index, (spec, run_name) in enumerate(zip(specs, names), 1):
            console.print(f"  {index}. {run_name} seed {spec.train.seed}", soft_wrap=True, markup=False)
        return
    with open_store(home, create=True, store=store_url) as store:
        run_ids = store.add_runs(specs, name=names, tags=tags, note=note or "", retries=retries)   # whole or none
        home_path = store.home
    for run_id, spec, run_name in zip(run_ids, specs, names):
        console.print(f"queued run {run_id}: {run_name} seed {spec.train.seed}", soft_wrap=True,
                      markup=False)
    if len(specs) > 1:
        console.print(f"sweep {ident}: {len(specs)} runs (innerdpo runs --filter sweep:{ident})", soft_wrap=True)
    console.print(f"[dim]start a worker: innerdpo worker --home {home_path}[/dim]", soft_wrap=True)


add_command.__signature__ = inspect.Signature(_add_parameters())
queue_app.command("add", context_settings=HELP)(add_command)


@queue_app.command("add-base")
@handle_errors
def add_base_command(
    base_model: str = typer.Argument(..., help="Hub id, model directory, or a built-in base (tiny-random, "
                                     "smollm2-135m).", show_default=False),
    suite: str | None = suite_option(),
    limit: int | None = limit_option(),
    samples: int = queue_samples_option(),
    retries: int = retries_option(),
    home: str | None = home_option(),
    store_url: str | None = store_option(),
) -> None:
    """Queue an eval-only run of a base model (method "none"): the reference row of the results table."""
    from innerdpo_bench.queue.runspec import base_spec

    spec = base_spec(base_model, suite, limit, samples)
    with open_store(home, create=True, store=store_url) as store:
        run_id = store.add_run(spec, kind="eval", retries=retries)
    console.print(f"queued run {run_id}: base model {spec.eval.checkpoint} (eval only)", soft_wrap=True)


# --------------------------------------------------------------------------- queue ls, cancel, retry, rm, move


@queue_app.command("ls")
@handle_errors
def ls_command(
    as_json: bool = typer.Option(False, "--json", help="Every run as JSON, in queue order."),
    show_all: bool = typer.Option(False, "--all", "-a", help="Show done runs too."),
    home: str | None = home_option(),
) -> None:
    """The queue: running runs, queued runs in the order workers take them, then failed and cancelled ones."""
    from innerdpo_bench.store.claims import queue_order

    with open_store(home, readonly=True) as store:
        runs = queue_order(store.list_runs())
    if as_json:
        records = [results_table.run_record(run) for run in runs]
        typer.echo(json.dumps(records, indent=2, ensure_ascii=False))
        return
    shown = [run for run in runs if show_all or run.status != "done"]
    from innerdpo_bench.cli.app import print_aligned

    title = f"queue ({', '.join(f'{n} {s}' for s, n in _counts(runs).items() if n)})" if runs else "queue (empty)"
    history = any(run.requeues for run in shown)   # the column of earlier attempts, when any run has one
    header = ["id", "status", "name", "seed", "attempts", *(["earlier attempts"] if history else []), "worker",
              "heartbeat", "error"]
    styles = {"running": "cyan", "failed": "red", "cancelled": "yellow", "done": "green"}
    rows, paints = [], []
    for run in shown:
        seed = run.spec.seed
        rows.append([str(run.id), claims.running_note(run) or run.status, run.name, "-" if seed is None else str(seed),
                     str(run.claims), *([claims.earlier_attempts(run)] if history else []), run.worker or "-",
                     _age(run.heartbeat_at) if run.status == "running" else "-", run.error or ""])
        paints.append({1: styles[run.status]} if run.status in styles else {})
    print_aligned(title, header, rows, [True, False, False, True, True, *([False] if history else []), False, True,
                                        False], paints)
    done = sum(run.status == "done" for run in runs)
    if done and not show_all:
        console.print(f"[dim]{done} done run(s) hidden: innerdpo runs (results) or queue ls --all[/dim]")


def _counts(runs) -> dict[str, int]:
    return {status: sum(run.status == status for run in runs) for status in STATUSES}


@queue_app.command("log")
@handle_errors
def log_command(
    run_id: int = typer.Argument(..., help="Run id (innerdpo queue ls)."),
    stage: str | None = typer.Option(None, "--stage", help="train: the training log (step lines, from "
                                     "RUN/checkpoint/train.log; the subprocess's output before it exists) | eval | "
                                     "worker (claims, commands, exit codes). Default: eval once it has started, "
                                     "else train.", show_default=False),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines until the run finishes."),
    poll: float = typer.Option(0.5, "--poll", help="Seconds between looks at the log with --follow."),
    home: str | None = home_option(),
) -> None:
    """Print a run's log; --follow prints new lines as they come, like tail -f, until the run is no longer
    queued or running."""
    from innerdpo_bench.errors import unknown_choice
    from innerdpo_bench.rundir import RunPaths

    if stage is not None and stage not in LOG_STAGES:
        raise unknown_choice("--stage", stage, LOG_STAGES)
    with open_store(home, readonly=True) as store:
        run = store.get_run(run_id)
        offsets: dict[str, int] = {}
        while True:
            if run.run_dir:
                paths = RunPaths.of(run)
                chosen = stage or ("eval" if paths.eval_log.exists() else "train")
                path = _log_path(paths, chosen)
                if path.exists():
                    offsets.setdefault(str(path), 0)
                    with path.open("rb") as handle:
                        handle.seek(offsets[str(path)])
                        chunk = handle.read()
                    offsets[str(path)] += len(chunk)
                    typer.echo(chunk.decode("utf-8", "replace"), nl=False)
            elif not follow:
                raise UserError(f"run {run_id} has no run directory yet (status {run.status}): no log to show")
            if not follow or run.status not in ("queued", "running"):
                return
            time.sleep(poll)
            run = store.get_run(run_id)


LOG_STAGES = ("train", "eval", "worker")


def _log_path(paths, stage: str):
    """The file `queue log --stage` reads: the training log once training has written one, else the train
    subprocess's output (a crash before training started); eval.log; worker.log."""
    if stage == "train":
        return paths.checkpoint.train_log if paths.checkpoint.train_log.exists() else paths.train_log
    return paths.eval_log if stage == "eval" else paths.worker_log


@queue_app.command("cancel")
@handle_errors
def cancel_command(run_id: int = typer.Argument(..., help="Run id (innerdpo queue ls)."),
                   home: str | None = home_option()) -> None:
    """Cancel a run: a queued one at once, a running one within a few seconds (its worker stops it)."""
    with open_store(home) as store:
        outcome = store.cancel(run_id)
    console.print(f"run {run_id} cancelled" if outcome == "cancelled" else
                  f"run {run_id}: cancel requested; its worker stops it at its next heartbeat")


@queue_app.command("retry")
@handle_errors
def retry_command(run_id: int = typer.Argument(..., help="Run id of a failed or cancelled run."),
                  home: str | None = home_option()) -> None:
    """Queue a failed or cancelled run again (a complete checkpoint it left is reused, not retrained)."""
    with open_store(home) as store:
        store.retry(run_id)
    console.print(f"run {run_id} queued again")


@queue_app.command("rm")
@handle_errors
def rm_command(run_id: int = typer.Argument(..., help="Run id of a run that is not running."),
               home: str | None = home_option()) -> None:
    """Remove a run and its results from the store; its run directory stays on disk."""
    with open_store(home) as store:
        try:
            run_dir = store.get_run(run_id).run_dir
        except UserError:  # no such run (remove says so), or a row whose spec is unreadable: removing it is the fix
            run_dir = None
        store.remove(run_id)
    if run_dir and Path(run_dir).is_dir():   # so that `doctor --repair` does not import it back
        try:
            rundir.append_note(Path(run_dir) / rundir.WORKER_LOG, f"{rundir.REMOVED_NOTE} (run {run_id})")
        except OSError:
            pass
    console.print(f"run {run_id} removed" + (f"; its directory {run_dir} is kept" if run_dir else ""), soft_wrap=True)


@queue_app.command("edit")
@handle_errors
def edit_command(
    run_id: int = typer.Argument(..., help="Run id (innerdpo queue ls, innerdpo runs)."),
    name: str | None = typer.Option(None, "--name", help="A new name.", show_default=False),
    tag: list[str] | None = typer.Option(None, "--tag", help="Add this tag (repeatable, or comma-separated).",
                                         show_default=False),
    untag: list[str] | None = typer.Option(None, "--untag", help="Remove this tag.", show_default=False),
    note: str | None = typer.Option(None, "--note", help="Replace the note ('' clears it).", show_default=False),
    home: str | None = home_option(),
) -> None:
    """Rename a run, tag or untag it, or set its note, whatever its status (the dashboard's `n` does the same)."""
    if name is not None and not name.strip():
        raise UserError("--name is empty")
    with open_store(home) as store:
        run = store.get_run(run_id)
        removed = set(parse_tags(untag))
        tags = [tag_ for tag_ in [*run.tags, *parse_tags(tag)] if tag_ not in removed] if tag or untag else None
        store.annotate(run_id, name=name.strip() if name else None, tags=tags, note=note)
        run = store.get_run(run_id)
    console.print(f"run {run_id}: {run.name}" + (f" · tags {', '.join(run.tags)}" if run.tags else "")
                  + (f" · note {run.note}" if run.note else ""), soft_wrap=True, markup=False)


@queue_app.command("move")
@handle_errors
def move_command(
    run_id: int = typer.Argument(..., help="Queued run to move."),
    before: int | None = typer.Option(None, "--before", help="Put it just ahead of this queued run.",
                                      show_default=False),
    to_front: bool = typer.Option(False, "--to-front", help="Put it first in the queue."),
    home: str | None = home_option(),
) -> None:
    """Reorder the queue: move a queued run to the front, or ahead of another queued run."""
    if to_front == (before is not None):
        raise UserError("queue move needs exactly one of --before RUN_ID or --to-front")
    with open_store(home) as store:
        store.move(run_id, before=before, to_front=to_front)
    console.print(f"run {run_id} moved " + ("to the front" if to_front else f"ahead of run {before}"))


# --------------------------------------------------------------------------- worker
