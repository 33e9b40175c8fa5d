"""Where a run's results are: the only module of the results layer that opens the store or resolves a RUN.

A RUN is named by

  * a store run id (`12`, with `--home`): its eval.json is `RUN_DIR/checkpoint/eval.json` for a
    train_eval run and `RUN_DIR/eval.json` for an eval-only run;
  * a run directory (`eval.json` in it, or in its `checkpoint/`);
  * an eval.json path (or its rows file).

`load_run` gives a `RunRows` (`records.py`): the eval.json, its per-row records (`rowsfile`) and the training config.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from innerdpo_bench import rundir
from innerdpo_bench.errors import UserError
from innerdpo_bench.evaluation.report import read_eval_report
from innerdpo_bench.results import transfer
from innerdpo_bench.results.records import RunRows
from innerdpo_bench.results.rowsfile import load_evaluation, read_json
from innerdpo_bench.results.seeds import seed_group_key
from innerdpo_bench.rundir import RunPaths, TrainPaths
from innerdpo_bench.store import STORE_FILE, Run, Store, resolve_home
from innerdpo_bench.store.location import has_store

RunRef = str | int | Path | Run


# --------------------------------------------------------------------------- resolving a RUN


def _existing_store(home: str | None) -> Store:
    """Open the store under `home` read-only (results only read it), never creating one where there is none (a
    mistyped --home): the check here names what else a RUN can be."""
    if not has_store(resolve_home(home)):
        path = resolve_home(home) / STORE_FILE
        raise UserError(f"no store at {path}: give --home (or set $INNERDPO_HOME), or name the run by its directory "
                        "or eval.json")
    return Store(home, readonly=True)


def _eval_json_candidates(run_dir: Path, run: Run | None = None) -> list[Path]:
    """Where eval.json may be in a run directory: for a store run, where the worker writes it; else
    RUN_DIR/eval.json, then RUN_DIR/checkpoint/eval.json."""
    if run is not None:
        return [RunPaths(run_dir, run.kind).eval_json]
    return [TrainPaths(run_dir).eval_json, RunPaths(run_dir, "train_eval").eval_json]


def _eval_path_of_dir(path: Path) -> Path:
    for candidate in _eval_json_candidates(path):
        if candidate.is_file():
            return candidate
    raise UserError(f"{path} has no eval.json (nor checkpoint/eval.json); score it first: innerdpo eval {path}")


def _eval_path_of_run(run: Run) -> Path:
    """A store run's eval.json; only a done run's counts. A run cancelled after its evaluation wrote its files
    (the cancel landed while eval was finishing), or failed after it, keeps them on disk, but they are never
    read as results: `rescore`, `compare`, `runs --metric` and the TUI all come through here. (The other
    choice, refusing such a cancel, would need the worker to tell the store when evaluation is done.)"""
    if run.status in ("cancelled", "failed"):
        raise UserError(f"run {run.id} is {run.status}: it has no results, whatever files its directory holds "
                        f"(innerdpo queue retry {run.id} runs it again)")
    if run.run_dir is None:
        raise UserError(f"run {run.id} has no results yet (status {run.status})")
    (path,) = _eval_json_candidates(Path(run.run_dir), run)
    if not path.is_file():
        raise UserError(f"run {run.id} has no eval.json at {path} (status {run.status})")
    return path


def resolve(ref: RunRef, home: str | None = None, store: Store | None = None) -> tuple[Path, Run | None]:
    """(eval.json path, store run or None) for a RUN (see the module docstring); UserError if it names nothing."""
    if isinstance(ref, Run):
        return _eval_path_of_run(ref), ref
    text = str(ref).strip()
    path = Path(text).expanduser()
    if path.is_dir():
        return _eval_path_of_dir(path.resolve()), None
    if path.is_file():
        path = rundir.eval_path_for_rows(path) or path
        if path.suffix != ".json":
            raise UserError(f"{text} is not an eval.json (nor a run directory or store run id)")
        return path.resolve(), None
    if text.isdigit():
        if store is not None:
            run = store.get_run(int(text))
        else:
            with _existing_store(home) as opened:
                run = opened.get_run(int(text))
        return _eval_path_of_run(run), run
    raise UserError(f"RUN {text!r} is not a store run id, a run directory or an eval.json (no such file)")


def eval_report(run: Run) -> dict:
    """A store run's eval.json, or {} when it has none yet (for captions: nothing is required to exist)."""
    if run.run_dir is None:
        return {}
    (path,) = _eval_json_candidates(Path(run.run_dir), run)
    try:
        return read_eval_report(path)
    except UserError:
        return {}


# --------------------------------------------------------------------------- loading


def load_run(ref: RunRef, home: str | None = None, store: Store | None = None) -> RunRows:
    """Locate a run (`resolve`) and load its eval.json and rows; UserError when it has no per-row records."""
    eval_path, run = resolve(ref, home, store)
    report, rows_path, shifts = load_evaluation(eval_path)
    label = f"run {run.id}" if run is not None else str(eval_path)
    if not shifts:
        raise UserError(f"{label} has no per-row records: {rows_path} is empty; re-run innerdpo eval")
    if run is not None:
        config = run.spec.train.to_dict() if run.spec.train is not None else {}
    elif eval_path.name == rundir.EVAL and TrainPaths(eval_path.parent).config.is_file():  # a run directory's
        config = rundir.read_config(eval_path.parent)
    else:
        config = read_json(TrainPaths(eval_path.parent).config) or {}
    return RunRows(eval_path, rows_path, report, shifts, run, config)


def load_runs(refs: Sequence[str], home: str | None = None) -> list[RunRows]:
    """Several RUNs, opening the store at most once."""
    if any(not Path(str(ref)).expanduser().exists() and str(ref).strip().isdigit() for ref in refs):
        with _existing_store(home) as store:
            return [load_run(ref, home, store) for ref in refs]
    return [load_run(ref, home) for ref in refs]


def done_runs(home: str | None = None) -> list[Run]:
    """Every done run in the store, by id."""
    with _existing_store(home) as store:
        return store.list_runs("done")


def _loadable(store: Store, runs: Sequence[Run], already: Sequence[RunRows] = ()) -> list[RunRows]:
    """`runs` loaded, reusing `already` loaded ones by id; those without per-row records are left out."""
    loaded = {rows.run.id: rows for rows in already if rows.run is not None}
    out = []
    for run in runs:
        if run.id in loaded:
            out.append(loaded[run.id])
            continue
        try:
            out.append(load_run(run, store=store))
        except UserError:
            continue
    return out


def seed_siblings(rows: RunRows, home: str | None = None) -> list[RunRows]:
    """A store run and every done run of the store that differs from it only by seed, by id; those without
    per-row records are left out."""
    if rows.run is None:
        raise UserError(f"--group-seeds finds a run's other seeds in the store: name {rows.ident} by its store run id "
                        "(with --home)")
    key = seed_group_key(rows.run)
    with _existing_store(home) as store:
        others = [run for run in store.list_runs("done")
                  if run.id != rows.run.id and seed_group_key(run) == key]
        return _loadable(store, sorted([rows.run, *others], key=lambda run: run.id), [rows])


def target_candidates(rows: RunRows, home: str | None = None) -> list[RunRows]:
    """The store's done train_eval runs with per-row records that were trained on one of `rows`' evaluation
    datasets (the candidates of `transfer.transfer_report`, which also checks the base model)."""
    recorded = rows.report.get("provenance") or {}
    wanted = {key for key in (transfer.eval_data_key(prov) for prov in recorded.values()) if key is not None}
    with _existing_store(home) as store:
        trained = [run for run in store.list_runs("done") if run.kind == "train_eval"
                   and run.spec.train is not None and transfer.train_data_key(run.spec.train.dataset) in wanted]
        return _loadable(store, trained, [rows])
