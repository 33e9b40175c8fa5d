"""A run's per-row records (the rows file beside eval.json) as numpy arrays, and the statistics built on them.

Every number here comes from the rows file `innerdpo eval` writes beside eval.json (`eval_rows.jsonl` in a
run directory, `<stem>_rows.jsonl` otherwise): one record per row per shift with the adapter's and the
base model's summed log-probs of chosen and rejected, their token counts, the row id and the harness's
verdict. No model is loaded. A RUN is named by

  * a store run id (`12`, with `--home`): its eval.json is `RUN_DIR/checkpoint/eval.json` for a
    train_eval run and `RUN_DIR/eval.json` for an eval-only run (`rundir.RunPaths.eval_json`);
  * a run directory (`eval.json` in it, or in its `checkpoint/`);
  * an eval.json path (or its rows file).

Scoring rules (`METRICS`): `mean` and `sum` are the harness's `acc` and `acc_sum`; `reward_mean` and
`reward_sum` score the DPO implicit reward logp_adapter − logp_base (see `stats.implicit_reward_correct`).
Rows of two runs are matched by row id (sha256 of prompt, chosen and rejected); the k-th repeat of a
duplicated pair is matched with the other run's k-th repeat.

Entry points for the results table: `metric_columns(run, metric)`, `delta_vs_baseline(runs, baseline)`
and `provenance_caption(runs)`. Loaded files are cached by path, size and modification time.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from innerdpo_bench import rundir, stats
from innerdpo_bench.data.mini import SHIFTS
from innerdpo_bench.errors import UserError, unknown_choice
from innerdpo_bench.evalreport import read_eval_report
from innerdpo_bench.rundir import RunPaths, TrainPaths
from innerdpo_bench.store import STORE_FILE, Run, Store, resolve_home

ROW_FIELDS = ("shift", "row_id", "logp_chosen", "logp_rejected", "n_chosen", "n_rejected", "base_logp_chosen",
              "base_logp_rejected", "correct")
MINI_DATASET = "innerdpo_bench.data.mini"   # how suites.provenance names the mini suite


# --------------------------------------------------------------------------- rows of one shift


@dataclass(frozen=True)
class ShiftRows:
    """One shift's rows, in file order; every array has shape [rows]. `keys` are the row ids made unique
    (`<row_id>#k` for the k-th repeat of a pair); `correct` is the harness's verdict (the `mean` rule)."""

    keys: np.ndarray
    logp_chosen: np.ndarray
    logp_rejected: np.ndarray
    n_chosen: np.ndarray
    n_rejected: np.ndarray
    base_logp_chosen: np.ndarray
    base_logp_rejected: np.ndarray
    correct: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)

    @functools.cached_property
    def position(self) -> dict[str, int]:
        """key → row index (a dict lookup matches rows 20x faster than sorting string arrays)."""
        return {key: index for index, key in enumerate(self.keys.tolist())}

    def score(self, metric: str) -> np.ndarray:
        """Per-row correctness under a scoring rule of METRICS; bool [rows]."""
        return METRICS[metric].score(self)

    def base_score(self, metric: str) -> np.ndarray:
        """Per-row correctness of the base model (adapter off) under `mean` or `sum`."""
        if metric not in BASE_METRICS:
            raise unknown_choice("base-model metric", metric, BASE_METRICS)
        return stats.logprob_correct(self.base_logp_chosen, self.base_logp_rejected, self.n_chosen,
                                     self.n_rejected, agg=metric)

    def take(self, index: np.ndarray) -> ShiftRows:
        return ShiftRows(*(getattr(self, f.name)[index] for f in dataclasses.fields(self)))


@dataclass(frozen=True)
class Metric:
    rule: str                                    # the scoring rule, as a caption states it
    score: Callable[[ShiftRows], np.ndarray]
    harness_key: str | None = None               # the eval.json metric it must reproduce
    needs_adapter: bool = False


METRICS: dict[str, Metric] = {
    "mean": Metric("mean per-token log-prob of chosen > rejected (strict)",
                   lambda r: stats.logprob_correct(r.logp_chosen, r.logp_rejected, r.n_chosen, r.n_rejected, "mean"),
                   harness_key="acc"),
    "sum": Metric("summed log-prob of chosen > rejected (strict)",
                  lambda r: stats.logprob_correct(r.logp_chosen, r.logp_rejected, r.n_chosen, r.n_rejected, "sum"),
                  harness_key="acc_sum"),
    "reward_mean": Metric("implicit reward, per token: (logp − logp_base)(chosen)/n_c > (logp − logp_base)"
                          "(rejected)/n_r (strict; base = adapter off)",
                          lambda r: stats.implicit_reward_correct(r.logp_chosen, r.logp_rejected, r.base_logp_chosen,
                                                                  r.base_logp_rejected, r.n_chosen, r.n_rejected,
                                                                  "mean"),
                          needs_adapter=True),
    "reward_sum": Metric("implicit reward: logp(chosen) − logp_base(chosen) > logp(rejected) − logp_base(rejected) "
                         "(strict; base = adapter off; reward-bench's DPO score)",
                         lambda r: stats.implicit_reward_correct(r.logp_chosen, r.logp_rejected, r.base_logp_chosen,
                                                                 r.base_logp_rejected, r.n_chosen, r.n_rejected,
                                                                 "sum"),
                         needs_adapter=True),
}
BASE_METRICS = ("mean", "sum")


def check_metric(metric: str, allowed: Iterable[str] = METRICS) -> str:
    allowed = list(allowed)
    if metric not in allowed:
        raise unknown_choice("--metric", metric, allowed)
    return metric


def check_shifts(shifts: Iterable[str] | None) -> list[str] | None:
    """Validate --shift names (UserError with a suggestion for a typo); None means every shift."""
    if not shifts:
        return None
    for shift in shifts:
        if shift not in SHIFTS:
            raise unknown_choice("shift", shift, SHIFTS)
    return list(dict.fromkeys(shifts))


# --------------------------------------------------------------------------- one run


@dataclass(frozen=True)
class RunRows:
    """A run's eval.json (`report`), its rows per shift (in SHIFTS order), the store run if it came from
    the store, and its training config (spec["train"], else the run directory's config.json)."""

    eval_path: Path
    rows_path: Path
    report: dict[str, Any]
    shifts: dict[str, ShiftRows]
    run: Run | None = None
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def ident(self) -> str:
        """How messages name the run: `run 12`, else its directory or eval.json."""
        if self.run is not None:
            return f"run {self.run.id}"
        return str(self.eval_path.parent if self.eval_path.name == rundir.EVAL else self.eval_path)

    @property
    def name(self) -> str:
        """Display name: the store's name, else eval.json's display_name, method, or directory name."""
        if self.run is not None:
            return self.run.name
        return str(self.report.get("display_name") or self.report.get("method") or self.eval_path.parent.name)

    @property
    def seed(self) -> int | None:
        seed = self.config.get("seed", self.report.get("seed"))
        return seed if isinstance(seed, int) else None

    @property
    def base_model(self) -> str | None:
        return self.report.get("base_model")

    @property
    def has_adapter(self) -> bool:
        return bool(self.report.get("adapter"))

    @property
    def train_dataset(self) -> str | None:
        return self.config.get("dataset")

    def shift(self, name: str) -> ShiftRows:
        if name not in self.shifts:
            scored = ", ".join(self.shifts) or "none"
            raise UserError(f"{self.ident} has no {name} rows (scored: {scored})")
        return self.shifts[name]

    def check_metric(self, metric: str) -> None:
        if METRICS[metric].needs_adapter and not self.has_adapter:
            raise UserError(f"{self.ident} is a base model (no adapter): --metric {metric} scores the implicit "
                            "reward logp_adapter − logp_base, which needs an adapter; use mean or sum")


def _existing_store(home: str | None) -> Store:
    """Open the store under `home` without creating one where there is none (a mistyped --home)."""
    path = resolve_home(home) / STORE_FILE
    if not path.is_file():
        raise UserError(f"no store at {path}: give --home (or set $INNERDPO_HOME), or name the run by its directory "
                        "or eval.json")
    return Store(home)


def _eval_path_of_dir(path: Path) -> Path:
    for candidate in (TrainPaths(path).eval_json, RunPaths(path, "train_eval").eval_json):
        if candidate.is_file():
            return candidate
    raise UserError(f"{path} has no eval.json (nor checkpoint/eval.json); score it first: innerdpo eval {path}")


def _eval_path_of_run(run: Run) -> Path:
    if run.run_dir is None:
        raise UserError(f"run {run.id} has no results yet (status {run.status})")
    path = RunPaths.of(run).eval_json
    if not path.is_file():
        raise UserError(f"run {run.id} has no eval.json at {path} (status {run.status})")
    return path


def resolve(ref: str | int | Path | Run, home: str | None = None,
            store: Store | None = None) -> tuple[Path, Run | None]:
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


def load_run(ref: str | int | Path | Run, home: str | None = None, store: Store | None = None) -> RunRows:
    """Locate a run (`resolve`) and load its eval.json and rows; UserError when it has no per-row records."""
    eval_path, run = resolve(ref, home, store)
    report, rows_path, shifts = _load_files(eval_path)
    label = f"run {run.id}" if run is not None else str(eval_path)
    if not shifts:
        raise UserError(f"{label} has no per-row records: {rows_path} is empty; re-run innerdpo eval")
    if run is not None:
        config = dict(run.spec.get("train", {}))
    else:
        config = _read_json(TrainPaths(eval_path.parent).config) or {}
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


# --------------------------------------------------------------------------- files (cached)


def _stamp(path: Path) -> tuple[str, int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return str(path), info.st_size, info.st_mtime_ns


def _read_json(path: Path) -> dict | None:
    stamp = _stamp(path)
    return None if stamp is None else _read_json_cached(stamp)


@functools.lru_cache(maxsize=4096)
def _read_json_cached(stamp: tuple[str, int, int]) -> dict | None:
    try:
        data = json.loads(Path(stamp[0]).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def rows_path_of(eval_path: Path, report: Mapping[str, Any]) -> Path:
    """The rows file eval.json names (`rows_file`), else `<stem>_rows.jsonl` beside it."""
    return eval_path.with_name(report["rows_file"]) if report.get("rows_file") else rundir.rows_path_for(eval_path)


def _load_files(eval_path: Path) -> tuple[dict, Path, dict[str, ShiftRows]]:
    report = read_eval_report(eval_path)
    rows_path = rows_path_of(eval_path, report)
    stamp = _stamp(rows_path)
    if stamp is None:
        raise UserError(f"{eval_path} has no per-row records ({rows_path.name} is missing beside it; evals before "
                        "per-row records were written need innerdpo eval again)")
    return report, rows_path, _parse_rows(stamp)


@functools.lru_cache(maxsize=256)
def _parse_rows(stamp: tuple[str, int, int]) -> dict[str, ShiftRows]:
    path = Path(stamp[0])
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    try:  # one C-level parse of the whole file: 3x faster than json.loads per line
        records = json.loads("[" + ",".join(lines) + "]")
    except json.JSONDecodeError:
        records = [_parse_line(path, number, line) for number, line in enumerate(lines, 1)]
    by_shift: dict[str, list[dict]] = {}
    required = set(ROW_FIELDS)
    for number, record in enumerate(records, 1):
        if not (isinstance(record, dict) and required <= record.keys()):
            missing = [name for name in ROW_FIELDS if not isinstance(record, dict) or name not in record]
            raise UserError(f"{path} line {number} lacks {missing[0]!r} (per-row records need "
                            f"{', '.join(ROW_FIELDS)}); re-run innerdpo eval")
        by_shift.setdefault(record["shift"], []).append(record)
    order = [*SHIFTS, *sorted(set(by_shift) - set(SHIFTS))]
    return {shift: _shift_rows(by_shift[shift]) for shift in order if shift in by_shift}


def _parse_line(path: Path, number: int, line: str) -> dict:
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        raise UserError(f"{path} line {number} is not valid JSON ({err.msg}); re-run innerdpo eval") from None


def _unique_keys(row_ids: list[str]) -> np.ndarray:
    seen: dict[str, int] = {}
    keys = []
    for row_id in row_ids:
        repeat = seen.get(row_id, 0)
        seen[row_id] = repeat + 1
        keys.append(row_id if repeat == 0 else f"{row_id}#{repeat}")
    return np.array(keys)


def _shift_rows(records: list[dict]) -> ShiftRows:
    arrays = {"keys": _unique_keys([r["row_id"] for r in records]),
              "correct": np.array([r["correct"] for r in records], dtype=bool)}
    for name in ("logp_chosen", "logp_rejected", "base_logp_chosen", "base_logp_rejected"):
        arrays[name] = np.array([r[name] for r in records], dtype=float)
    for name in ("n_chosen", "n_rejected"):
        arrays[name] = np.array([r[name] for r in records], dtype=np.int64)
    for array in arrays.values():
        array.setflags(write=False)  # cached and shared: nobody may change them
    return ShiftRows(**arrays)


# --------------------------------------------------------------------------- provenance


def adapter_checksum(rows: RunRows) -> str | None:
    """sha256 of the adapter's adapter_model.safetensors: eval.json's `adapter_sha256` if it has one, else
    computed from the adapter eval.json names (or `adapter/` beside eval.json, if the run moved).
    None for a base model or when the file is gone."""
    if rows.report.get("adapter_sha256"):
        return rows.report["adapter_sha256"]
    if not rows.has_adapter:
        return None
    for directory in (Path(rows.report["adapter"]), TrainPaths(rows.eval_path.parent).adapter):
        checksum = rundir.adapter_sha256(directory)
        if checksum is not None:
            return checksum
    return None


def data_label(prov: Mapping[str, Any]) -> str:
    """`dataset:config#split@revision`, each part only when known (the mini suite: `mini:<split>`)."""
    if prov.get("dataset") == MINI_DATASET:
        return f"mini:{prov.get('split')}"
    text = str(prov.get("dataset"))
    if prov.get("config"):
        text += f":{prov['config']}"
    if prov.get("split"):
        text += f"#{prov['split']}"
    if prov.get("revision"):
        text += f"@{prov['revision']}"
    return text


def provenance(rows: RunRows) -> dict[str, dict[str, Any]]:
    """Per shift, where its score comes from: dataset, config, split, revision (None when unknown), N (rows
    in the rows file), the scoring rules, base model, adapter checksum, suite, row limit and versions."""
    recorded = rows.report.get("provenance") or {}
    checksum = adapter_checksum(rows)
    out = {}
    for shift, shift_rows in rows.shifts.items():
        prov = recorded.get(shift) or {}
        out[shift] = {
            "dataset": prov.get("dataset"), "config": prov.get("config"), "split": prov.get("split"),
            "revision": prov.get("revision"), "data": data_label(prov) if prov else None, "n": len(shift_rows),
            "scoring_rule": prov.get("scoring_rule"),
            "scoring_rules": {name: metric.rule for name, metric in METRICS.items()},
            "base_model": rows.base_model, "adapter": rows.report.get("adapter"), "adapter_sha256": checksum,
            "suite": rows.report.get("suite"), "limit": rows.report.get("limit"),
            "versions": rows.report.get("versions") or {}, "eval_json": str(rows.eval_path),
            "rows_file": str(rows.rows_path),
        }
    return out


def _caption_source(item: Run | RunRows, provenance_by_run: Mapping[int, Mapping[str, dict]]) -> tuple[str, dict, dict]:
    """(label, {shift: provenance}, eval.json or {}) for one caption entry; nothing is required to exist."""
    if isinstance(item, RunRows):
        return item.ident, dict(item.report.get("provenance") or {}), item.report
    report: dict = {}
    if item.run_dir is not None:
        try:
            report = read_eval_report(_eval_path_of_run(item))
        except UserError:
            report = {}
    recorded = provenance_by_run.get(item.id) or report.get("provenance") or {}
    return str(item.id), dict(recorded), report


def provenance_caption(runs: Sequence[Run | RunRows], provenance_by_run: Mapping[int, Mapping[str, dict]] | None = None,
                       title: str = "Table 1", metric: str = "mean") -> str:
    """A caption naming the data behind each column of a results table over `runs`:

        Table 1: Accuracy per preference shift (mean per-token log-prob of chosen > rejected (strict)) of 3
        runs on base model tiny-random (lm_eval 0.4.13, innerdpo_bench 0.1.0), made up of:
        - in_domain: mini:in_domain, N=16
        - ...
        Scoring rule: ...

    Shift provenance comes from `provenance_by_run` (`Store.all_provenance()`), else each run's eval.json;
    a shift whose data differ between runs lists each source with its runs' ids.
    """
    check_metric(metric)
    provenance_by_run = provenance_by_run or {}
    sources: dict[str, dict[tuple[str, Any], list[str]]] = {}
    rules: dict[str, None] = {}
    base_models: dict[str, None] = {}
    versions: dict[str, dict[str, None]] = {}
    counted = 0
    for item in runs:
        label, recorded, report = _caption_source(item, provenance_by_run)
        if not recorded:
            continue
        counted += 1
        for shift in sorted(recorded, key=lambda s: SHIFTS.index(s) if s in SHIFTS else len(SHIFTS)):
            prov = recorded[shift]
            key = (data_label(prov), prov.get("rows", prov.get("n")))
            sources.setdefault(shift, {}).setdefault(key, []).append(label)
            if prov.get("scoring_rule"):
                rules[prov["scoring_rule"]] = None
        base = report.get("base_model")
        if not base and isinstance(item, Run):
            base = item.spec.get("train", {}).get("base_model") or item.spec.get("eval", {}).get("checkpoint")
        if base:
            base_models[str(base)] = None
        for package in ("lm_eval", "innerdpo_bench"):
            if (report.get("versions") or {}).get(package):
                versions.setdefault(package, {})[report["versions"][package]] = None
    if not sources:
        return f"{title}: no run in the table has been evaluated yet, so no data to cite.\n"
    version_text = ", ".join(f"{package} {'/'.join(found)}" for package, found in versions.items())
    base_text = f" on base model {', '.join(base_models)}" if base_models else ""
    head = (f"{title}: Accuracy per preference shift ({METRICS[metric].rule}) of {counted} "
            f"run{'s' if counted != 1 else ''}{base_text}" + (f" ({version_text})" if version_text else "") +
            ", made up of:")
    lines = [head]
    for shift, by_source in sources.items():
        parts = []
        for (data, n), labels in by_source.items():
            text = f"{data}, N={n}" if n is not None else data
            if len(by_source) > 1:
                text += f" (run{'s' if len(labels) > 1 else ''} {', '.join(labels)})"
            parts.append(text)
        lines.append(f"- {shift}: " + "; ".join(parts))
    if rules:
        lines.append("Scoring rule: " + " | ".join(rules))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- seed groups


def seed_group_key(rows: RunRows) -> str:
    """Everything that defines a run except its seed: the store spec (as the results table groups), else
    the run directory's training config, plus the eval suite and row limit."""
    if rows.run is not None:
        return _spec_group_key(rows.run)
    from innerdpo_bench.config import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"seed", "output_dir", "device"}
    config = {key: value for key, value in rows.config.items() if key in fields}
    identity = {key: rows.report.get(key) for key in ("method", "base_model", "suite", "limit", "data_dir")}
    if not config:
        identity["checkpoint"] = rows.report.get("checkpoint")
    return json.dumps([config, identity], sort_keys=True, default=str)


def _spec_group_key(run: Run) -> str:
    spec = {key: value for key, value in run.spec.items() if key != "name"}
    spec["train"] = {key: value for key, value in spec.get("train", {}).items() if key != "seed"}
    return json.dumps([run.kind, spec], sort_keys=True, default=str)


def group_by_seed(runs: Sequence[RunRows]) -> list[list[RunRows]]:
    """Runs that differ only by seed, together; groups in order of their first run."""
    groups: dict[str, list[RunRows]] = {}
    for rows in runs:
        groups.setdefault(seed_group_key(rows), []).append(rows)
    return list(groups.values())


def seed_siblings(rows: RunRows, home: str | None = None) -> list[RunRows]:
    """A store run and every done run of the store that differs from it only by seed, by id; those without
    per-row records are left out."""
    if rows.run is None:
        raise UserError(f"--group-seeds finds a run's other seeds in the store: name {rows.ident} by its store run id "
                        "(with --home)")
    key = _spec_group_key(rows.run)
    siblings = {rows.run.id: rows}
    with _existing_store(home) as store:
        for run in store.list_runs("done"):
            if run.id in siblings or _spec_group_key(run) != key:
                continue
            try:
                siblings[run.id] = load_run(run, store=store)
            except UserError:  # no per-row records: left out
                continue
    return [siblings[run_id] for run_id in sorted(siblings)]


# --------------------------------------------------------------------------- alignment and comparison


def align(shift_rows: Sequence[ShiftRows]) -> list[np.ndarray]:
    """Index arrays, one per input, that pick the rows present in every input, in the first input's order."""
    positions = [rows.position for rows in shift_rows]
    common = [key for key in positions[0] if all(key in other for other in positions[1:])]
    return [np.fromiter((position[key] for key in common), dtype=np.intp, count=len(common))
            for position in positions]


@dataclass(frozen=True)
class ShiftComparison:
    """B − A on one shift, on the rows both scored (matched by row id).

    With seed groups, `acc_a` / `acc_b` are the means over each group's seeds, the per-row score is the
    seed-mean correctness, and (b, c) count rows where A's / B's seed mean is higher (a sign test that is
    McNemar's for one seed each). `seeds_a` / `seeds_b` are (seed, accuracy) per run on the shared rows.
    """

    shift: str
    n: int                  # shared rows
    n_a: int                # rows A scored on this shift (the smallest of its seeds)
    n_b: int
    acc_a: float
    acc_b: float
    delta: float            # acc_b − acc_a
    lo: float               # 95 % paired bootstrap interval of delta
    hi: float
    b: int                  # A right, B wrong
    c: int                  # B right, A wrong
    p: float                # McNemar exact two-sided
    p_holm: float | None = None
    seeds_a: tuple[tuple[int | None, float], ...] = ()
    seeds_b: tuple[tuple[int | None, float], ...] = ()

    @property
    def significant(self) -> bool:
        """The 95 % paired interval excludes 0."""
        return not self.lo <= 0.0 <= self.hi

    def seed_spread(self, side: str) -> tuple[float, float | None]:
        """(mean, sample std) of the per-seed accuracies of side "a" or "b"."""
        seeds = self.seeds_a if side == "a" else self.seeds_b
        return stats.seed_spread([acc for _, acc in seeds])

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["significant"] = self.significant
        data["seeds_a"] = [{"seed": seed, "acc": acc} for seed, acc in self.seeds_a]
        data["seeds_b"] = [{"seed": seed, "acc": acc} for seed, acc in self.seeds_b]
        for side in ("a", "b"):
            data[f"seed_mean_{side}"], data[f"seed_std_{side}"] = self.seed_spread(side)
        return data


def _describe_data(rows: RunRows, shift: str) -> str:
    prov = (rows.report.get("provenance") or {}).get(shift)
    return f"{data_label(prov)}, N={len(rows.shifts[shift])}" if prov else f"N={len(rows.shifts[shift])}"


def compare_shift(runs_a: Sequence[RunRows], runs_b: Sequence[RunRows], shift: str, metric: str = "mean",
                  resamples: int = stats.RESAMPLES, seed: int = 0) -> ShiftComparison:
    """Compare two runs (or two seed groups) on one shift; UserError when they share no rows."""
    every = [*runs_a, *runs_b]
    for rows in every:
        rows.check_metric(metric)
    shift_rows = [rows.shift(shift) for rows in every]
    index = align(shift_rows)
    n = len(index[0])
    if n == 0:
        a, b = runs_a[0], runs_b[0]
        raise UserError(f"{a.ident} and {b.ident} share no {shift} rows: they were scored on different data "
                        f"({_describe_data(a, shift)} vs {_describe_data(b, shift)})")
    scores = [rows.score(metric)[i].astype(float) for rows, i in zip(shift_rows, index)]  # each [n]
    per_run = [(rows.seed, float(score.mean())) for rows, score in zip(every, scores)]
    score_a = np.mean(scores[: len(runs_a)], axis=0)
    score_b = np.mean(scores[len(runs_a):], axis=0)
    delta, lo, hi = stats.paired_bootstrap(score_a, score_b, resamples=resamples, seed=seed)
    b, c = stats.discordant(score_a, score_b)
    return ShiftComparison(
        shift=shift, n=n, n_a=min(len(rows) for rows in shift_rows[: len(runs_a)]),
        n_b=min(len(rows) for rows in shift_rows[len(runs_a):]), acc_a=float(score_a.mean()),
        acc_b=float(score_b.mean()), delta=delta, lo=lo, hi=hi, b=b, c=c, p=stats.mcnemar_exact(b, c),
        seeds_a=tuple(per_run[: len(runs_a)]), seeds_b=tuple(per_run[len(runs_a):]))


def compare_runs(runs_a: Sequence[RunRows], runs_b: Sequence[RunRows], metric: str = "mean",
                 shifts: Sequence[str] | None = None, resamples: int = stats.RESAMPLES,
                 seed: int = 0) -> list[ShiftComparison]:
    """Per shift, B − A with a paired bootstrap interval and McNemar's p, Holm-adjusted over the shifts
    compared. `shifts` None compares every shift both sides scored; a named shift must be in both."""
    check_metric(metric)
    if resamples < 1:
        raise UserError(f"--resamples must be at least 1, got {resamples}")
    every = [*runs_a, *runs_b]
    if shifts:
        wanted = check_shifts(shifts)
        for rows in every:
            for shift in wanted:
                rows.shift(shift)
    else:
        wanted = [shift for shift in every[0].shifts if all(shift in rows.shifts for rows in every)]
        if not wanted:
            raise UserError(f"{runs_a[0].ident} and {runs_b[0].ident} have no shift in common")
    results = [compare_shift(runs_a, runs_b, shift, metric, resamples, seed) for shift in wanted]
    adjusted = stats.holm([result.p for result in results])
    return [dataclasses.replace(result, p_holm=p) for result, p in zip(results, adjusted)]


# --------------------------------------------------------------------------- transfer


@dataclass(frozen=True)
class ShiftTransfer:
    """One shift of `transfer_report`: accuracies, gain over the base model, normalised transfer, and GENIES'
    differential elicitation against the best store run trained on the shift's own data (if any)."""

    shift: str
    n: int
    acc: float
    base_acc: float
    gain: float
    transfer: float | None
    target_run: str | None = None              # the best run trained on this shift's data
    target_acc: float | None = None            # its accuracy on the rows it shares with this run
    target_n: int | None = None                # those shared rows
    differential_elicitation: float | None = None


def _train_data_key(dataset: str | None) -> tuple | None:
    """What a training --dataset names, comparable with `_eval_data_key` (the split is ignored)."""
    if not dataset:
        return None
    from innerdpo_bench.data.pairs import parse_dataset

    try:
        ref = parse_dataset(str(dataset))
    except UserError:
        return None
    if ref.kind == "mini":
        return ("mini", ref.path)
    if ref.kind == "file":
        return ("file", str(Path(ref.path).resolve()))
    return ("hub", ref.path, ref.config)


def _eval_data_key(prov: Mapping[str, Any] | None) -> tuple | None:
    if not prov or not prov.get("dataset"):
        return None
    if prov["dataset"] == MINI_DATASET:
        return ("mini", prov.get("split"))
    if prov.get("split") is None:  # a file of a data directory
        return ("file", str(Path(prov["dataset"]).resolve()))
    return ("hub", prov["dataset"], prov.get("config"))


def transfer_report(rows: RunRows, metric: str = "mean", candidates: Sequence[RunRows] = ()) -> list[ShiftTransfer]:
    """Gains, normalised transfer and differential elicitation per shift of one run (formulas:
    `stats.normalised_transfer`, `stats.differential_elicitation`).

    `candidates` are other runs (typically every done run of the store); those trained on a shift's
    evaluation dataset (same dataset and config; any split) with the same base model are that shift's
    targets, scored on whichever of their shifts used that dataset. Differential elicitation uses the
    best target, all three accuracies taken on the rows this run and the target share.
    """
    check_metric(metric, BASE_METRICS)
    acc = {shift: float(r.score(metric).mean()) for shift, r in rows.shifts.items()}
    base_acc = {shift: float(r.base_score(metric).mean()) for shift, r in rows.shifts.items()}
    transfer = stats.normalised_transfer(acc, base_acc)
    recorded = rows.report.get("provenance") or {}
    out = []
    for shift, shift_rows in rows.shifts.items():
        best = _best_target(rows, shift, _eval_data_key(recorded.get(shift)), metric, candidates)
        entry = ShiftTransfer(shift, len(shift_rows), acc[shift], base_acc[shift], acc[shift] - base_acc[shift],
                              transfer[shift])
        if best is not None:
            target, target_acc, own_acc, own_base, shared = best
            entry = dataclasses.replace(entry, target_run=target.ident, target_acc=target_acc, target_n=shared,
                                        differential_elicitation=stats.differential_elicitation(own_acc, own_base,
                                                                                                target_acc))
        out.append(entry)
    return out


def _best_target(rows: RunRows, shift: str, data_key: tuple | None, metric: str,
                 candidates: Sequence[RunRows]) -> tuple[RunRows, float, float, float, int] | None:
    """(target, its acc, this run's acc, base acc, shared rows) for the best candidate trained on `data_key`."""
    if data_key is None:
        return None
    best = None
    for candidate in candidates:
        if _train_data_key(candidate.train_dataset) != data_key or candidate.base_model != rows.base_model:
            continue
        for their_shift, prov in (candidate.report.get("provenance") or {}).items():
            if _eval_data_key(prov) != data_key or their_shift not in candidate.shifts:
                continue
            own, theirs = rows.shifts[shift], candidate.shifts[their_shift]
            own_index, their_index = align([own, theirs])
            if len(own_index) == 0:
                continue
            target_acc = float(theirs.score(metric)[their_index].mean())
            if best is None or target_acc > best[1]:
                best = (candidate, target_acc, float(own.score(metric)[own_index].mean()),
                        float(own.base_score(metric)[own_index].mean()), len(own_index))
    return best


def target_candidates(rows: RunRows, home: str | None = None) -> list[RunRows]:
    """The store's done runs with per-row records that were trained on one of `rows`' evaluation datasets
    with the same base model (the candidates of `transfer_report`)."""
    recorded = rows.report.get("provenance") or {}
    wanted = {key for key in (_eval_data_key(prov) for prov in recorded.values()) if key is not None}
    out = []
    with _existing_store(home) as store:
        for run in store.list_runs("done"):
            if run.kind != "train_eval" or _train_data_key(run.spec.get("train", {}).get("dataset")) not in wanted:
                continue
            if rows.run is not None and run.id == rows.run.id:
                out.append(rows)
                continue
            try:
                out.append(load_run(run, store=store))
            except UserError:
                continue
    return out


# --------------------------------------------------------------------------- the results table


# table metric → scoring rule of METRICS ("transfer": normalised transfer of `acc`)
METRIC_COLUMNS: dict[str, str] = {"acc": "mean", "acc_sum": "sum", "reward_acc": "reward_mean",
                                  "reward_acc_sum": "reward_sum", "transfer": "mean"}


def metric_columns(run: Run, metric: str = "acc") -> dict[str, float | None]:
    """{shift: value} for every shift of SHIFTS, for a results-table row; None where the run has no value.

    acc, acc_sum: the harness's accuracy (store results; equal to the rows' by `innerdpo rescore`);
    reward_acc, reward_acc_sum: implicit-reward accuracy per token / summed (None for a base model);
    transfer: gain(shift) / gain(in_domain) with gain = acc − base acc (None where undefined).
    A run without per-row records gives None everywhere rather than an error, so a table still prints.
    """
    if metric not in METRIC_COLUMNS:
        raise unknown_choice("metric", metric, METRIC_COLUMNS)
    empty: dict[str, float | None] = {shift: None for shift in SHIFTS}
    if metric in ("acc", "acc_sum"):
        return {shift: _finite(run.results.get(shift, {}).get(metric)) for shift in SHIFTS}
    try:
        rows = load_run(run)
    except UserError:
        return empty
    if metric == "transfer":
        return empty | {entry.shift: entry.transfer for entry in transfer_report(rows, "mean")}
    if not rows.has_adapter:
        return empty
    rule = METRIC_COLUMNS[metric]
    return empty | {shift: float(r.score(rule).mean()) for shift, r in rows.shifts.items()}


def _finite(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


@dataclass(frozen=True)
class Delta:
    """A baseline delta with its 95 % paired bootstrap interval; `significant` when it excludes 0."""

    delta: float
    lo: float
    hi: float
    n: int
    p: float

    @property
    def significant(self) -> bool:
        return not self.lo <= 0.0 <= self.hi


def delta_vs_baseline(runs: Run | Sequence[Run], baseline: Run, metric: str = "acc",
                      resamples: int = stats.RESAMPLES, seed: int = 0) -> dict[str, Delta | None]:
    """{shift: Delta} of a run (or a seed group's runs, pooled) minus `baseline`, on their shared rows.

    None for a shift where either side has no per-row records, the shift, or shared rows, so a table
    can leave the cell unmarked. `metric` is a METRIC_COLUMNS name other than transfer.
    """
    if metric not in METRIC_COLUMNS or metric == "transfer":
        raise unknown_choice("metric for a baseline delta", metric, [m for m in METRIC_COLUMNS if m != "transfer"])
    rule = METRIC_COLUMNS[metric]
    group = [runs] if isinstance(runs, Run) else list(runs)
    out: dict[str, Delta | None] = {shift: None for shift in SHIFTS}
    try:
        reference = load_run(baseline)
        members = [load_run(run) for run in group]
    except UserError:
        return out
    if METRICS[rule].needs_adapter and not all(r.has_adapter for r in [reference, *members]):
        return out
    for shift in SHIFTS:
        if shift not in reference.shifts or not all(shift in m.shifts for m in members):
            continue
        try:
            result = compare_shift([reference], members, shift, rule, resamples, seed)
        except UserError:
            continue
        out[shift] = Delta(result.delta, result.lo, result.hi, result.n, result.p)
    return out


# --------------------------------------------------------------------------- plot data


@dataclass(frozen=True)
class Bar:
    """One bar of `innerdpo plot`: a run or a seed group on one shift; `lo`/`hi` are the whisker ends."""

    label: str
    shift: str
    value: float
    lo: float
    hi: float
    n_runs: int


def bar_series(runs: Sequence[RunRows], metric: str = "mean", group_seeds: bool = False,
               resamples: int = stats.RESAMPLES, seed: int = 0) -> list[Bar]:
    """Bars per (run or seed group) × shift. One run: accuracy with its 95 % bootstrap interval over rows.
    A seed group: the mean over seeds, whiskers ± the sample std over seeds (none for a single seed)."""
    check_metric(metric)
    for rows in runs:
        rows.check_metric(metric)
    groups = group_by_seed(runs) if group_seeds else [[rows] for rows in runs]
    labels = _labels(groups, group_seeds)
    bars = []
    for label, group in zip(labels, groups):
        for shift in SHIFTS:
            members = [rows for rows in group if shift in rows.shifts]
            if not members:
                continue
            if group_seeds:
                mean, std = stats.seed_spread([float(r.shifts[shift].score(metric).mean()) for r in members])
                spread = std or 0.0
                bars.append(Bar(label, shift, mean, mean - spread, mean + spread, len(members)))
            else:
                value, lo, hi = stats.bootstrap_interval(members[0].shifts[shift].score(metric), resamples, seed)
                bars.append(Bar(label, shift, value, lo, hi, 1))
    return bars


def _labels(groups: list[list[RunRows]], group_seeds: bool) -> list[str]:
    """Legend labels: the display name, with the seed (then the run) added where names repeat."""
    labels = [group[0].name + (f" (n={len(group)})" if group_seeds and len(group) > 1 else "") for group in groups]
    if len(set(labels)) == len(labels):
        return labels
    if not group_seeds:
        labels = [label + (f" s{group[0].seed}" if group[0].seed is not None else "")
                  for label, group in zip(labels, groups)]
    counts = {label: labels.count(label) for label in labels}
    return [f"{label} [{group[0].ident}]" if counts[label] > 1 else label for label, group in zip(labels, groups)]
