"""Score one checkpoint on the four preference shifts through lm-eval, and write eval.json (spec §11).

CHECKPOINT is one of
  * a run directory (`config.json` naming a method, `adapter/`; its status must be `complete`);
  * a PEFT adapter directory (`adapter_config.json`; the base model is its `base_model_name_or_path`);
  * a full model directory, a hub id, or a built-in base (`tiny-random`, `smollm2-135m`): the
    base-model row of a results table (method "none").

How it runs. The base model is loaded once (fp32 by default), the adapter is put on it with PEFT,
and the PeftModel is wrapped in `fastlm.FastHFLM` (lm-eval's HFLM returning the same log-likelihoods
with the LM head applied only at continuation tokens, plus a per-model score cache that makes the base
model's rows a one-off per base and suite). `lm_eval.simple_evaluate` runs the `innerdpo_*`
tasks of `tasks/` (a TaskManager with `include_path` and no built-in tasks; metadata carries the
suite, the row cap and the tokenizer) with `log_samples`: first inside `peft_model.disable_adapter()`, scoring the base model (usually from the
score cache), then with the adapter, on exactly the same requests. In fp32 the adapter is merged into the
weights for its pass (the same function, without LoRA's extra matmuls; tested equal to 1e-4). For a
base-model checkpoint the base IS the checkpoint and one pass serves both.

Metrics per shift (`tasks/utils.py`, `pair_metrics`): `acc` = mean per-token log-prob of chosen >
rejected (strict; open_pref_eval's default), `acc_sum` = summed log-prob strict >, `logratio` = mean
over rows of the mean-token log-prob difference; each with lm-eval's stderr. `aggregate` is the
`innerdpo_shifts` group row: the unweighted mean over the shifts scored.

Coherence (spec §11): the per-token NLL of a chosen completion is −logp_c / n_c; `nll` is its mean
over the in_domain rows. nll_ratio = nll(checkpoint) / nll(base) and nll_diff = nll(checkpoint) −
nll(base), both on the same rows and token counts. The journal read nll_diff 0–2 as fine and above 2
as likely incoherent. For a base model they are exactly 1.0 and 0.0.

Transforms. A run's `transforms.json` (ETHER, SupressedHS) shapes only the hidden-state loss during
training; it never changes the model's output distribution (spec §5), so evaluation ignores it and
eval.json says `transforms_applied: false`.

Outputs: eval.json (in the run directory, else `--output`, default `./eval-<name>.json`), and beside
it `<stem>_rows.jsonl` (`eval_rows.jsonl` in a run directory): one record per row per shift with the
checkpoint's and the base model's summed log-probs, token counts, row id and correctness.

Rows. `limit` rows per shift: the first ones, or with `sample="random"` the ones `suites.sample_indices`
picks with `sample_seed` (the task metadata `sample` / `sample_seed`, so plain lm_eval can ask for them too).

Whole-evaluation cache. Before any model is loaded, `eval_cache_key` hashes what the numbers depend on:
the base model (path or hub id; small files by content, weight files by name, size and mtime), the
adapter (sha256 of its weights and adapter_config.json), the task version (sha256 of `tasks/` YAML and
utils.py plus the scoring and data code: this module, fastlm.py, suites.py, data/pairs.py, data/mini.py),
the installed lm_eval / transformers / peft / torch versions, the suite (a data directory: its path and
file contents), the row cap, the sampling, the chat-template setting and the dtype. A hit copies
`cache_dir()/evals/<key>/` (eval.json and rows.jsonl) to the outputs, with `cache: {"hit": true, "key": …}`
in eval.json, and runs no model and no harness. Device and batch size are not in the key: they change
scores only by float rounding. `use_cache=False` (`--no-cache`) neither reads this cache nor the per-request
score cache, and refreshes the entry with the recomputed result.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from innerdpo_bench import __version__, rundir, suites
from innerdpo_bench.suites import SHIFTS
from innerdpo_bench.errors import UserError
from innerdpo_bench.models import builtin_name, cache_dir, load_causal_lm, load_tokenizer, resolve_base_model

GROUP = "innerdpo_shifts"
METRICS = ("acc", "acc_sum", "logratio")
DEFAULT_BATCH_SIZE = 16


def task_name(shift: str) -> str:
    return f"innerdpo_{shift}"


def row_id(doc: dict) -> str:
    """Stable id of a pair: first 16 hex digits of sha256(prompt \\0 chosen \\0 rejected)."""
    text = "\x00".join((doc["prompt"], doc["chosen"], doc["rejected"]))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def rows_path_for(eval_path: Path) -> Path:
    """`eval.json` → `eval_rows.jsonl`; `eval-x.json` → `eval-x_rows.jsonl`."""
    return eval_path.with_name(eval_path.stem + "_rows.jsonl")


# --------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class Checkpoint:
    """What CHECKPOINT resolved to."""

    spec: str                  # as given
    kind: str                  # run | adapter | model
    base_model: str            # as named: run config's base_model, adapter's base_model_name_or_path, or spec
    base_model_path: str       # what from_pretrained gets
    adapter: str | None = None
    run_dir: Path | None = None
    config: dict = field(default_factory=dict)

    def identity(self) -> dict:
        """method / display_name / seed for eval.json: from the run config; "none" for a base model;
        unknown (None, the directory name) for a bare adapter."""
        if self.kind == "run":
            return {k: self.config.get(k) for k in ("method", "display_name", "seed")}
        if self.kind == "model":
            return {"method": "none", "display_name": "none", "seed": None}
        return {"method": None, "display_name": self.name, "seed": None}

    @property
    def name(self) -> str:
        """A file-name-safe label for `eval-<name>.json`."""
        if self.run_dir is not None:
            label = self.run_dir.name
        elif self.adapter is not None:
            path = Path(self.adapter)
            label = f"{path.parent.name}-{path.name}" if path.name == rundir.ADAPTER else path.name
        else:
            label = builtin_name(self.spec) or (Path(self.spec).name if Path(self.spec).is_dir() else self.spec)
        return re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-") or "checkpoint"


def _looks_like_path(text: str) -> bool:
    first = text.split("/", 1)[0]
    return text.startswith((".", "/", "~")) or text.count("/") > 1 or ("/" in text and Path(first).is_dir())


def _is_run_dir(path: Path) -> bool:
    if not rundir.is_run_dir(path):
        return False
    try:
        config = json.loads((path / rundir.CONFIG).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(config, dict) and "method" in config and "base_model" in config


def resolve_checkpoint(spec: str) -> Checkpoint:
    """Classify CHECKPOINT (see the module docstring) and resolve its base model; UserError if it is
    missing, unfinished or unrecognisable."""
    text = spec.strip()
    path = Path(text).expanduser()
    if path.is_dir():
        path = path.resolve()
        if (path / "adapter_config.json").is_file():
            return _adapter_checkpoint(text, path)
        if _is_run_dir(path):
            return _run_checkpoint(text, path)
        if (path / "config.json").is_file():
            return Checkpoint(text, "model", str(path), resolve_base_model(str(path)))
        raise UserError(f"checkpoint {text} is not a run, adapter or model directory "
                        "(no config.json or adapter_config.json)")
    if path.exists():
        raise UserError(f"checkpoint {text} is a file; give a run, adapter or model directory, a hub id or a built-in name")
    if _looks_like_path(text):
        raise UserError(f"checkpoint {text} does not exist")
    return Checkpoint(text, "model", text, resolve_base_model(text))


def _run_checkpoint(text: str, path: Path) -> Checkpoint:
    config = rundir.read_config(path)
    state = rundir.read_status(path).get("state", "unknown")
    if state != "complete":
        raise UserError(f"run {path} is not complete (status {state}); only finished runs can be evaluated")
    adapter = path / rundir.ADAPTER
    if not (adapter / "adapter_config.json").is_file():
        raise UserError(f"run {path} has no adapter ({adapter}/adapter_config.json is missing)")
    base_path = config.get("base_model_path")
    if not base_path or not Path(base_path).exists():  # cache moved, or a hub id: resolve the name again
        base_path = resolve_base_model(config["base_model"])
    return Checkpoint(text, "run", config["base_model"], base_path, str(adapter), path, config)


def _adapter_checkpoint(text: str, path: Path) -> Checkpoint:
    try:
        adapter_config = json.loads((path / "adapter_config.json").read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path}/adapter_config.json is not valid JSON ({err.msg})") from None
    base = adapter_config.get("base_model_name_or_path")
    if not base:
        raise UserError(f"{path}/adapter_config.json has no base_model_name_or_path; evaluate the run directory instead")
    return Checkpoint(text, "adapter", base, resolve_base_model(base), str(path))


# --------------------------------------------------------------------------- harness


def _resolve_device(device: str | None) -> str:
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _batch_size(value) -> int | str:
    text = str(value).strip()
    if text.isdigit() and int(text) > 0:
        return int(text)
    if re.fullmatch(r"auto(:\d+)?", text):
        return text
    raise UserError(f"--batch-size must be a positive integer, auto or auto:N, got {value!r}")


def _shift_group(task_manager, shifts: list[str]):
    """The `innerdpo_shifts` group (aggregate metrics from its YAML) holding the tasks of `shifts`.

    Built here rather than loaded by name so a suite without a shift (math_easy: moral_transfer)
    still gets its aggregate row over the shifts it has. Loading the tasks loads their data.
    """
    import yaml
    from lm_eval.api.group import Group

    config = yaml.safe_load((suites.tasks_dir() / f"{GROUP}.yaml").read_text())
    config["task"] = [task_name(s) for s in shifts]
    group = Group.from_config(config)
    tasks = task_manager.load([task_name(s) for s in shifts])["tasks"]
    for shift in shifts:
        group.add(tasks[task_name(shift)])
    return group, tasks


def _run_harness(lm, group, task_manager, apply_chat_template: bool) -> dict:
    from lm_eval import simple_evaluate

    return simple_evaluate(model=lm, tasks=[group], task_manager=task_manager, log_samples=True,
                           apply_chat_template=apply_chat_template)


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):  # "N/A" stderr of a single row
        return None


def _metrics(row: dict) -> dict:
    out = {}
    for metric in METRICS:
        out[metric] = _number(row.get(f"{metric},none"))
        out[f"{metric}_stderr"] = _number(row.get(f"{metric}_stderr,none"))
    out["n"] = int(row.get("sample_len", 0))
    return out


def _rows(results: dict, tasks: dict, shift: str) -> list[dict]:
    """Per-row scores of one shift from the harness's logged samples (sorted by doc id)."""
    task = tasks[task_name(shift)]
    records = []
    for sample in sorted(results["samples"][task_name(shift)], key=lambda s: s["doc_id"]):
        (chosen_args, rejected_args) = sample["arguments"][:2]
        records.append({
            "shift": shift,
            "doc_id": sample["doc_id"],
            "row_id": row_id(sample["doc"]),
            "logp_chosen": float(sample["filtered_resps"][0][0]),
            "logp_rejected": float(sample["filtered_resps"][1][0]),
            "n_chosen": task.count_tokens(*chosen_args[:2]),
            "n_rejected": task.count_tokens(*rejected_args[:2]),
            "correct": bool(sample["acc"]),
        })
    return records


def _merge_base(rows: list[dict], base_rows: list[dict]) -> list[dict]:
    merged = []
    for row, base in zip(rows, base_rows, strict=True):
        if row["row_id"] != base["row_id"]:  # same tasks, same docs: a mismatch is a bug, not bad input
            raise RuntimeError(f"base and checkpoint rows differ at {row['shift']} doc {row['doc_id']}")
        merged.append({**row, "base_logp_chosen": base["logp_chosen"], "base_logp_rejected": base["logp_rejected"],
                       "base_correct": base["correct"]})
    return merged


def coherence(in_domain_rows: list[dict]) -> dict:
    """nll_ratio and nll_diff from in_domain rows (see the module docstring); None without rows."""
    if not in_domain_rows:
        return {"nll": None, "base_nll": None, "nll_ratio": None, "nll_diff": None}
    nll = sum(-r["logp_chosen"] / r["n_chosen"] for r in in_domain_rows) / len(in_domain_rows)
    base_nll = sum(-r["base_logp_chosen"] / r["n_chosen"] for r in in_domain_rows) / len(in_domain_rows)
    return {"nll": nll, "base_nll": base_nll, "nll_ratio": nll / base_nll if base_nll else None,
            "nll_diff": nll - base_nll}


def _harness_section(results: dict) -> dict:
    """The harness's own record, minus samples and the long per-task `configs`; JSON-safe."""
    keep = ("results", "groups", "group_subtasks", "versions", "n-shot", "n-samples", "higher_is_better", "config",
            "lm_eval_version", "transformers_version", "date")
    return json.loads(json.dumps({k: results[k] for k in keep if k in results}, default=str))


def _versions() -> dict[str, str]:
    import lm_eval
    import peft
    import torch
    import transformers

    return {"innerdpo_bench": __version__, "lm_eval": lm_eval.__version__, "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__}


def _load_model(ckpt: Checkpoint, device: str, dtype, apply_chat_template: bool):
    """The base model with the adapter on (a PeftModel) or the plain model, in eval mode, and its tokenizer."""
    tokenizer = load_tokenizer(ckpt.base_model_path)
    if apply_chat_template and not getattr(tokenizer, "chat_template", None):
        raise UserError(f"--chat-template on: base model {ckpt.base_model} has no chat template")
    model = load_causal_lm(ckpt.base_model_path, dtype=dtype, device=device)
    if ckpt.adapter is not None:
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, ckpt.adapter)
        except (OSError, ValueError, RuntimeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(f"cannot load adapter {ckpt.adapter} on {ckpt.base_model}: {first}") from err
    return model.eval(), tokenizer


# --------------------------------------------------------------------------- whole-evaluation cache


@dataclass
class EvalResult:
    report: dict          # the content of eval.json
    eval_path: Path
    rows_path: Path


EVAL_CACHE = "evals"                      # under models.cache_dir()
CACHED_ROWS = "rows.jsonl"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack", ".ckpt")
HASHED_FILE_BYTES = 64 << 20              # base-model files above this are fingerprinted, not hashed
# Besides tasks/: the code that turns data into scores. Any edit to these starts a fresh cache.
SCORING_CODE = ("evaluate.py", "fastlm.py", "suites.py", "data/pairs.py", "data/mini.py", "data/real.py",
                "data/genies.py", "data/ethics.py", "data/shipped.py", "data/textio.py")
KEYED_PACKAGES = ("lm_eval", "transformers", "peft", "torch")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sha256_files(paths: list[Path], root: Path) -> str:
    """One digest over the names (relative to `root`) and contents of `paths`."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + _sha256_file(path).encode() + b"\0")
    return digest.hexdigest()


def task_version() -> str:
    """sha256 of the lm-eval task folder (every YAML and utils.py) and of `SCORING_CODE`."""
    tasks = suites.tasks_dir()
    task_files = sorted(p for p in tasks.iterdir() if p.is_file() and ("yaml" in p.name or p.name == "utils.py"))
    package = Path(__file__).parent
    return hashlib.sha256((_sha256_files(task_files, tasks) +
                           _sha256_files([package / name for name in SCORING_CODE], package)).encode()).hexdigest()


def base_identity(base_model_path: str) -> dict:
    """The base model as the cache sees it: its path (or hub id) and, for a directory, every file: weights by
    name, size and mtime (hashing gigabytes would cost more than a cache hit saves), the rest (config,
    tokenizer, chat template) by content."""
    root = Path(base_model_path)
    if not root.is_dir():
        return {"base": str(base_model_path)}
    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        stat = path.stat()
        if path.suffix in WEIGHT_SUFFIXES or stat.st_size > HASHED_FILE_BYTES:
            # whole seconds: a CI cache restored from a tar keeps them, not always the nanoseconds
            files[str(path.relative_to(root))] = f"{stat.st_size}:{int(stat.st_mtime)}"
        else:
            files[str(path.relative_to(root))] = _sha256_file(path)
    return {"base": str(root), "files": files}


def adapter_sha256(adapter_dir: str | None) -> str | None:
    """sha256 of the adapter's weights file (`rows.adapter_checksum` reads it back from eval.json)."""
    if adapter_dir is None:
        return None
    for name in ("adapter_model.safetensors", "adapter_model.bin"):
        if (Path(adapter_dir) / name).is_file():
            return _sha256_file(Path(adapter_dir) / name)
    return None


def _installed_versions() -> dict[str, str | None]:
    """Package versions from their metadata: no import, so a cache hit does not pay for importing torch."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {"innerdpo_bench": __version__}
    for package in KEYED_PACKAGES:
        try:
            found[package] = version(package.replace("_", "-"))
        except PackageNotFoundError:
            found[package] = None
    return found


def eval_cache_key(ckpt: Checkpoint, label: str, data_dir: str | None, rows_cap: int, sample: str,
                   sample_seed: int | None, apply_chat_template: bool | None, dtype: str) -> tuple[str, dict]:
    """(key, identity): 24 hex digits of sha256 over everything an evaluation's numbers depend on (module
    docstring), and that identity itself (written beside the cached files as key.json)."""
    data = suites.data_identity(label)   # a suite read from files: their sha256 too
    if data_dir is not None:
        root = Path(data_dir).expanduser().resolve()
        data = {"data_dir": str(root),
                "files": _sha256_files([root / f"{shift}.jsonl" for shift in SHIFTS], root)}
    adapter = None
    if ckpt.adapter is not None:
        adapter_dir = Path(ckpt.adapter)
        adapter = {"weights": adapter_sha256(ckpt.adapter) or str(adapter_dir.resolve()),
                   "config": _sha256_file(adapter_dir / "adapter_config.json")}
    identity = {"base_model": base_identity(ckpt.base_model_path), "adapter": adapter, "task_version": task_version(),
                "versions": _installed_versions(), "data": data, "rows": rows_cap, "sample": sample,
                "sample_seed": sample_seed, "apply_chat_template": apply_chat_template, "dtype": dtype}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]
    return key, identity


def eval_cache_dir(key: str) -> Path:
    return cache_dir() / EVAL_CACHE / key


def _read_cached(key: str) -> tuple[dict, str] | None:
    """(eval.json, rows text) of a cached evaluation, or None when absent, partial or corrupt."""
    entry = eval_cache_dir(key)
    try:
        report = json.loads((entry / rundir.EVAL).read_text(encoding="utf-8"))
        rows_text = (entry / CACHED_ROWS).read_text(encoding="utf-8")
    except (OSError, json.JSONDecodeError):
        return None
    recorded = (report.get("cache") or {}).get("rows_sha256") if isinstance(report, dict) else None
    if recorded != hashlib.sha256(rows_text.encode("utf-8")).hexdigest():  # a half-copied or clobbered entry
        return None
    return report, rows_text


def _write_cached(key: str, identity: dict, report: dict, rows_text: str) -> None:
    """Store an evaluation: rows first, eval.json (naming the rows' checksum) last, each written atomically,
    so a reader sees a whole entry or a checksum mismatch, never half of one."""
    entry = eval_cache_dir(key)
    entry.mkdir(parents=True, exist_ok=True)
    rundir.atomic_write_text(entry / CACHED_ROWS, rows_text)
    rundir.write_json(entry / "key.json", identity)
    rundir.write_json(entry / rundir.EVAL, report)


def _from_cache(key: str, ckpt: Checkpoint, eval_path: Path, started: float) -> EvalResult | None:
    """A cached evaluation written to `eval_path` as this checkpoint's, or None on a miss. The numbers and how
    they were computed (versions, device, timestamp) stay as cached; what names the checkpoint is this one's."""
    cached = _read_cached(key)
    if cached is None:
        return None
    report, rows_text = cached
    computed = {"computed_at": report.get("timestamp"), "computed_seconds": report.get("seconds")}
    report.update({
        "checkpoint": str(ckpt.run_dir or ckpt.adapter or ckpt.spec), "kind": ckpt.kind, "base_model": ckpt.base_model,
        "base_model_path": ckpt.base_model_path, "adapter": ckpt.adapter, **ckpt.identity(),
        "rows_file": rows_path_for(eval_path).name,
        # no request was scored by this call
        "score_cache": {name: {**entry, "hits": 0, "misses": 0} for name, entry in (report.get("score_cache") or {}).items()},
        "cache": {**report["cache"], "hit": True, "key": key, **computed},
    })
    report["seconds"] = round(time.time() - started, 2)
    return _write_outputs(eval_path, report, rows_text)


def _write_outputs(eval_path: Path, report: dict, rows_text: str) -> EvalResult:
    eval_path.parent.mkdir(parents=True, exist_ok=True)
    rows_path = rows_path_for(eval_path)
    rundir.atomic_write_text(rows_path, rows_text)
    rundir.write_json(eval_path, report)
    return EvalResult(report, eval_path, rows_path)


# --------------------------------------------------------------------------- evaluate


def evaluate(checkpoint: str, suite: str | None = None, limit: int | None = None,
             batch_size: int | str = DEFAULT_BATCH_SIZE, device: str | None = "auto", data_dir: str | None = None,
             apply_chat_template: bool | None = None, output: str | None = None, dtype: str = "float32",
             use_cache: bool = True, sample: str | None = None, sample_seed: int | None = None,
             progress: Callable[[str], None] | None = None) -> EvalResult:
    """Score `checkpoint` on every shift of `suite` (or `data_dir`), `limit` rows each (default 500; the first
    ones, or `sample="random"` seeded by `sample_seed`), write eval.json and the rows file, and return the
    report. `progress` receives status lines. `apply_chat_template` None (auto) uses the model's chat template
    when it has one, as training does. `use_cache`: return the cached evaluation when every input is unchanged
    (module docstring; eval.json then says `cache.hit`), else reuse scores of identical requests for the same
    model identity (`fastlm.ScoreCache`): the base model's rows are computed once and shared by every adapter
    of that base. False recomputes everything and refreshes the whole-evaluation cache."""
    say = progress or (lambda message: None)
    started = time.time()
    ckpt = resolve_checkpoint(checkpoint)
    # Suite, data directory, row cap and sampling are checked before anything heavy is loaded.
    refs = suites.suite_refs(suite, data_dir)
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1, got {limit}")
    rows_cap = suites.check_rows(limit)
    how, seed = suites.check_sample(sample, sample_seed)
    label = suites.suite_label(suite, data_dir)
    shifts = [s for s in SHIFTS if refs[s] is not None]
    skipped = {s: f"suite {label} has no {s} dataset" for s in SHIFTS if refs[s] is None}
    batch = _batch_size(batch_size)
    eval_path = Path(output).expanduser() if output else (
        ckpt.run_dir / rundir.EVAL if ckpt.run_dir is not None else Path.cwd() / f"eval-{ckpt.name}.json")
    key, identity = eval_cache_key(ckpt, label, data_dir, rows_cap, how, seed, apply_chat_template, dtype)
    if use_cache:
        hit = _from_cache(key, ckpt, eval_path, started)
        if hit is not None:
            return hit

    import torch
    from innerdpo_bench.fastlm import FastHFLM, ScoreCache, model_identity
    from lm_eval.tasks import TaskManager

    picked = "first" if how == "first" else f"random, seed {seed}"
    say(f"loading {label} data: {', '.join(shifts)} (up to {rows_cap} rows each, {picked})")
    metadata = {"rows": rows_cap, "tokenizer": ckpt.base_model_path}
    if how == "random":
        metadata.update(sample=how, sample_seed=seed)
    metadata.update({"data_dir": str(Path(data_dir).expanduser().resolve())} if data_dir is not None else {"suite": label})
    task_manager = TaskManager(include_path=str(suites.tasks_dir()), include_defaults=False, metadata=metadata)
    group, tasks = _shift_group(task_manager, shifts)

    device = _resolve_device(device)
    say(f"loading {ckpt.base_model}" + (f" + adapter {ckpt.adapter}" if ckpt.adapter else "") + f" on {device}")
    model, tokenizer = _load_model(ckpt, device, getattr(torch, dtype), apply_chat_template)
    if apply_chat_template is None:  # auto: as training renders, so scores match what the adapter learnt
        apply_chat_template = bool(getattr(tokenizer, "chat_template", None))
    lm = FastHFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch)
    caches = {"model": None, "base": None}
    if use_cache:
        caches = {name: ScoreCache(model_identity(ckpt.base_model_path, adapter, dtype, lm.max_length))
                  for name, adapter in (("model", ckpt.adapter), ("base", None))}

    n_requests = 2 * sum(len(task.eval_docs) for task in tasks.values())
    if ckpt.adapter is not None:
        say(f"scoring {n_requests} requests with the base model (adapter off)")
        lm.score_cache = caches["base"]
        with model.disable_adapter():
            base_results = _run_harness(lm, group, task_manager, apply_chat_template)
        if dtype == "float32":
            # Fold the adapter into the weights (W + sBA): the same function without a pair of LoRA matmuls per
            # linear layer (a third of the time at rank 64). Only in fp32: rounding W + sBA to bf16/fp16
            # would lose part of the adapter. The base rows are already scored, and the model is not reused.
            model.merge_adapter()
    say(f"scoring {n_requests} requests with the {ckpt.kind}" + (" (adapter on)" if ckpt.adapter else ""))
    lm.score_cache = caches["model"] if ckpt.adapter is not None else caches["base"]
    results = _run_harness(lm, group, task_manager, apply_chat_template)
    if ckpt.adapter is None:
        base_results = results

    rows = {s: _merge_base(_rows(results, tasks, s), _rows(base_results, tasks, s)) for s in shifts}
    shift_metrics = {s: _metrics(results["results"][task_name(s)]) for s in shifts}
    report = {
        "checkpoint": str(ckpt.run_dir or ckpt.adapter or ckpt.spec),
        "kind": ckpt.kind,
        "base_model": ckpt.base_model,
        "base_model_path": ckpt.base_model_path,
        "adapter": ckpt.adapter,
        **ckpt.identity(),
        "suite": label,
        "data_dir": metadata.get("data_dir"),
        "limit": rows_cap,
        "sample": how,
        "sample_seed": seed,
        "apply_chat_template": bool(apply_chat_template),
        "transforms_applied": False,
        "device": device,
        "dtype": dtype,
        "batch_size": batch,
        "versions": _versions(),
        "timestamp": rundir.now_iso(),
        "score_cache": {name: {"hits": c.hits, "misses": c.misses, "file": str(c.path)}
                        for name, c in caches.items() if c is not None},
        "shifts": shift_metrics,
        "skipped_shifts": skipped,
        "aggregate": _metrics(results["groups"][GROUP]),
        "base": {
            "shifts": {s: _metrics(base_results["results"][task_name(s)]) for s in shifts},
            "aggregate": _metrics(base_results["groups"][GROUP]),
        },
        "coherence": coherence(rows.get("in_domain", [])),
        "provenance": {s: suites.provenance(refs[s], shift_metrics[s]["n"], how, seed) for s in shifts},
        "rows_file": rows_path_for(eval_path).name,
        "adapter_sha256": adapter_sha256(ckpt.adapter),
        "harness": _harness_section(results),
    }
    report["seconds"] = round(time.time() - started, 2)  # model loading and both harness runs

    rows_text = "\n".join(json.dumps(r, sort_keys=True) for s in shifts for r in rows[s]) + "\n"
    report["cache"] = {"hit": False, "key": key, "rows_sha256": hashlib.sha256(rows_text.encode("utf-8")).hexdigest()}
    try:
        _write_cached(key, identity, report, rows_text)
    except OSError as err:  # a read-only or full cache costs the next run its shortcut, not this result
        say(f"could not store the evaluation in the cache {eval_cache_dir(key)} ({err.strerror or err})")
    return _write_outputs(eval_path, report, rows_text)
