"""`innerdpo demo`: the whole pipeline offline — the base model and five methods trained on real GENIES rows
(`genies:alpaca_easy`, shipped with the package; `--suite mini` for the synthetic suite), each scored on the four
shifts by the harness, through the run queue — ending with the seed-style table.

Sizes are chosen so the default (SmolLM2-135M-Instruct on CPU) takes about 10 minutes on 2 idle cores with
nothing cached (measured in the README): a short, higher-learning-rate training (the spec's 500 steps at 1e-5 would take hours on a CPU) on
GENIES alpaca_easy's train pairs, prompt + completion cut at `max_length` tokens, and the first rows of each
shift. They are printed before anything runs, and every run is an ordinary
queue run: `innerdpo runs` and `innerdpo tui` show them afterwards, and re-running the demo reuses
finished runs with identical specs instead of training them again.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass

from innerdpo_bench import progress
from innerdpo_bench.evaluation import suites
from innerdpo_bench.config import TrainConfig
from innerdpo_bench.config.spec import RunSpec
from innerdpo_bench.queue.runspec import base_spec, eval_spec, train_specs
from innerdpo_bench.queue.worker import Worker, WorkerOptions
from innerdpo_bench.results import table
from innerdpo_bench.rundir import RunPaths
from innerdpo_bench.store import Run, Store, resolve_home

DEMO_METHODS = ("dpo", "ipo", "hs-none-InnerDPO", "hs-ether-InnerDPO", "hs-supr-InnerDPO")


DEMO_SUITE = "genies:alpaca_easy"
DEMO_SAMPLES = 3


@dataclass(frozen=True)
class DemoPlan:
    base_model: str
    max_steps: int
    learning_rate: float
    batch_size: int
    rows_per_shift: int
    train_rows: int
    max_length: int
    suite: str = DEMO_SUITE
    seed: int = 0
    samples: int = DEMO_SAMPLES   # prompts per shift with greedy completions (RUN/samples.jsonl; the TUI shows them)

    @classmethod
    def for_model(cls, base_model: str, quick: bool, suite: str = DEMO_SUITE) -> DemoPlan:
        if quick:
            return cls(base_model, max_steps=3, learning_rate=1e-3, batch_size=2, rows_per_shift=8, train_rows=64,
                       max_length=256, suite=suite, samples=2)
        if base_model.strip().lower() == "tiny-random":
            return cls(base_model, max_steps=40, learning_rate=2e-3, batch_size=4, rows_per_shift=60, train_rows=400,
                       max_length=256, suite=suite)
        # SmolLM2 on 2 CPU cores: one scoring pass costs about 4 CPU-seconds per row of the four shifts (GENIES
        # alpaca_hard answers and the Chinese medical ones run to hundreds of tokens), and the demo makes six.
        return cls(base_model, max_steps=20, learning_rate=3e-4, batch_size=4, rows_per_shift=20, train_rows=400,
                   max_length=256, suite=suite)

    @property
    def dataset(self) -> str:
        """What the adapters train on: the suite's in_domain distribution, train split."""
        return suites.train_dataset(self.suite)


def demo_specs(plan: DemoPlan) -> list[RunSpec]:
    """The six run specs: the base model ("none") and one training run per method."""
    specs = [base_spec(plan.base_model, suite=plan.suite, limit=plan.rows_per_shift, samples=plan.samples)]
    evaluation = eval_spec(plan.suite, plan.rows_per_shift, plan.samples)
    for method in DEMO_METHODS:
        config = TrainConfig(method=method, base_model=plan.base_model, dataset=plan.dataset, max_rows=plan.train_rows,
                             max_steps=plan.max_steps, learning_rate=plan.learning_rate, batch_size=plan.batch_size,
                             effective_batch=plan.batch_size, max_length=plan.max_length,
                             max_prompt_length=plan.max_length * 3 // 4, logging_steps=1, seed=plan.seed)
        # named by method alone: every run shares the demo's sizes and learning rate
        specs.extend(spec.replace(name=method) for spec in train_specs(config, evaluation=evaluation))
    return specs


def enqueue(store: Store, specs: list[RunSpec]) -> list[int]:
    """Queue each spec unless an identical run exists; failed or cancelled twins are retried."""
    existing = store.list_runs()
    ids = []
    for spec in specs:
        twin = next((r for r in reversed(existing) if r.spec == spec and r.status != "cancelled"), None)
        if twin is None:
            ids.append(store.add_run(spec, kind="eval" if spec.train is None else "train_eval"))
            continue
        if twin.status == "failed":
            store.retry(twin.id)
        ids.append(twin.id)
    return ids


def _current_step(run: Run) -> tuple[int, int]:
    """(steps logged, max steps) of a running training run, from its metrics.jsonl."""
    total = run.spec.train.max_steps if run.spec.train is not None else 0
    if not run.run_dir:
        return 0, total
    return progress.last_step(RunPaths.of(run).checkpoint.metrics) or 0, total


def _stage(run: Run) -> tuple[str, int, int]:
    """(training | evaluating, step, max steps) of a running run."""
    step, total = _current_step(run)
    return ("training" if run.kind == "train_eval" and step < total else "evaluating"), step, total


class _PlainDisplay:
    """The demo's progress off a terminal: `progress.ProgressLines` (a line per run and stage, and every ~10% of
    a run's training steps), since rich's live display would print nothing until the end."""

    def __init__(self, console, n_runs: int) -> None:
        self.lines = progress.ProgressLines(lambda line: console.print(line, markup=False, highlight=False,
                                                                       soft_wrap=True))
        self.n_runs = n_runs

    def show(self, finished: int, running: Run | None) -> None:
        if running is None:
            return
        stage, step, total = _stage(running)
        label = f"run {min(finished + 1, self.n_runs)}/{self.n_runs} {running.name}: {stage}"
        counted = progress.last_count_line(RunPaths.of(running).eval_log) \
            if stage == "evaluating" and running.run_dir else None
        if counted:   # evaluation's own count lines (scoring, sample generation), which take most of a run
            self.lines.update(f"{label}: {counted[0]}", counted[1], counted[2])
        else:
            self.lines.update(label, step if stage == "training" else None, total if stage == "training" else None)


def run_demo(base_model: str = "smollm2-135m", quick: bool = False, home: str | None = None, console=None,
             suite: str = DEMO_SUITE) -> str:
    """Queue the demo's runs, work through them with a progress display, and return the markdown table."""
    from rich.console import Console

    from innerdpo_bench.models import SMOLLM2, builtin_name, needs_building, resolve_base_model

    console = console or Console()
    suites.suite_refs(suite)   # an unknown suite: one line before any model is prepared
    plan = DemoPlan.for_model(base_model, quick, suite)
    home_path = resolve_home(home)
    console.print(f"[bold]innerdpo demo[/bold] in {home_path}: {json.dumps(asdict(plan))}")
    first = ("fetch and convert" if builtin_name(plan.base_model) == SMOLLM2 else "build it") \
        if needs_building(plan.base_model) else None
    preparing = f"preparing base model {plan.base_model}" + (f" (first time: {first})" if first else "")
    if not console.is_terminal:   # the status spinner below draws only on a terminal
        console.print(preparing, markup=False, highlight=False)
    with console.status(preparing):
        resolve_base_model(plan.base_model)

    with Store(home_path) as store:
        ids = enqueue(store, demo_specs(plan))
    stop = threading.Event()
    errors: list[str] = []
    worker = Worker(home_path, None, WorkerOptions(once=True, poll_s=0.5), stop,
                    say=lambda message: errors.append(message) if "failed" in message else None)
    thread = threading.Thread(target=worker.loop, name="demo-worker", daemon=True)
    started = time.time()
    thread.start()
    try:
        if console.is_terminal:
            runs = _watch_live(console, home_path, ids, thread)
        else:
            display = _PlainDisplay(console, len(ids))
            runs = _watch(home_path, ids, thread, display.show)
    except KeyboardInterrupt:
        stop.set()
        thread.join()
        raise
    failed = [r for r in runs.values() if r.status != "done"]
    for run in failed:
        console.print(f"[red]run {run.id} ({run.name}) {run.status}:[/red] {run.error}")
    view = table.make_table([runs[i] for i in ids])
    markdown = table.to_markdown(view)
    console.print(f"\n{plan.suite} suite (trained on {plan.dataset}), base model {plan.base_model}, "
                  f"{plan.rows_per_shift} rows per shift, {plan.max_steps} training steps "
                  f"({time.time() - started:.0f}s):\n")
    console.print(markdown, markup=False, highlight=False, soft_wrap=True)
    at_home = f" --home {home}" if home else ""
    console.print(f"\nOpen the dashboard with [bold]innerdpo tui{at_home}[/bold]; compare runs with "
                  f"[bold]innerdpo runs{at_home}[/bold].")
    return markdown


def _watch(home, ids: list[int], thread: threading.Thread, show) -> dict[int, Run]:
    """Poll the store until the worker thread ends, calling `show(finished, running run or None)` each time; the
    demo's runs by id at the end."""
    with Store(home) as store:
        while thread.is_alive():
            runs = {r.id: r for r in store.list_runs() if r.id in ids}
            finished = sum(r.status in ("done", "failed", "cancelled") for r in runs.values())
            show(finished, next((r for r in runs.values() if r.status == "running"), None))
            thread.join(0.5)
        return {r.id: r for r in store.list_runs() if r.id in ids}


def _watch_live(console, home, ids: list[int], thread: threading.Thread) -> dict[int, Run]:
    """`_watch` with rich's live bars: all runs, and the current run's training steps."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console)
    with bars:
        overall = bars.add_task("runs", total=len(ids))
        current = bars.add_task("", total=1, visible=False)

        def show(finished: int, running: Run | None) -> None:
            bars.update(overall, completed=finished)
            if running is not None:
                stage, step, total = _stage(running)
                training = stage == "training"
                bars.update(current, visible=True, description=f"{running.name}: {stage}",
                            completed=min(step, total) if training else 0, total=total if training else None)

        runs = _watch(home, ids, thread, show)
        bars.update(overall, completed=len(ids))
        bars.update(current, visible=False)
    return runs
