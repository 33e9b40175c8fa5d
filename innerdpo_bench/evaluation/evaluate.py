"""Score one checkpoint on the four preference shifts through lm-eval, and write eval.json and its rows (spec §11).

How it runs. CHECKPOINT is resolved (`checkpoint.resolve_checkpoint`) and, unless `use_cache` is off, looked
up in the whole-evaluation cache (`evalcache`). On a miss the base model is loaded once (fp32 by default),
the adapter is put on it with PEFT, and the PeftModel is wrapped in `fastlm.FastHFLM` (lm-eval's HFLM
returning the same log-likelihoods with the LM head applied only at continuation tokens, plus a per-model
score cache that makes the base model's rows a one-off per base and suite). `lm_eval.simple_evaluate` runs
the `innerdpo_*` tasks of `tasks/` (a TaskManager with `include_path` and no built-in tasks; metadata
carries the suite, the row cap and the tokenizer) with `log_samples`: first inside
`peft_model.disable_adapter()`, scoring the base model (usually from the score cache), then with the
adapter, on exactly the same requests. In fp32 the adapter is merged into the weights for its pass (the
same function, without LoRA's extra matmuls; tested equal to 1e-4). For a base-model checkpoint the base
IS the checkpoint and one pass serves both.

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

Outputs: eval.json (`evalreport.EvalReport`; in the run directory, else `--output`, default
`./eval-<name>.json`), and beside it the rows file (`eval_rows-<sha16>.jsonl` in a run directory, named by its
content; `rundir.write_eval_pair` writes it first and eval.json, naming it and its `rows_sha256`, last, so the
two are one unit): one record per row per shift with the checkpoint's and the base model's summed log-probs,
token counts, row id and correctness.

Scored tokens. Each row's (summed log-prob, token count) of a completion is what training computes for it: the
completion's own tokens after the prompt as training renders it (`tasks/utils.py`, `PrefTask`). A row longer than
the model follows lm-eval's rule: the prompt is cut from the left (`truncated`), and a row whose completion alone
does not fit is skipped; both are counted per shift in the provenance and shown beside the score.

Rows. `limit` rows per shift: the first ones, or with `sample="random"` the ones `suites.sample_indices`
picks with `sample_seed` (the task metadata `sample` / `sample_seed`, so plain lm_eval can ask for them too).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from innerdpo_bench import rundir
from innerdpo_bench.errors import UserError, name_too_long
from innerdpo_bench.evaluation import audit, scoring, suites
from innerdpo_bench.evaluation.cache import cached_evaluation, eval_cache_key, store_evaluation
from innerdpo_bench.evaluation.checkpoint import Checkpoint, resolve_checkpoint
from innerdpo_bench.evaluation.report import EvalReport
from innerdpo_bench.evaluation.suites import SHIFTS
from innerdpo_bench.models import load_causal_lm, load_tokenizer
from innerdpo_bench.progress import ProgressLines
from innerdpo_bench.runlog import installed_versions

GROUP = "innerdpo_shifts"
METRICS = scoring.HARNESS_KEYS   # acc, acc_sum, logratio
DEFAULT_BATCH_SIZE = 16


@dataclass
class EvalResult:
    report: EvalReport    # the content of eval.json
    eval_path: Path
    rows_path: Path


@dataclass(frozen=True)
class _Plan:
    """What to score, checked before anything heavy is loaded."""

    refs: dict                 # shift → suites.ShiftRef or None
    label: str                 # the suite's name, or the data directory
    data_dir: str | None
    rows_cap: int
    sample: str                # first | random
    sample_seed: int | None
    batch: int | str

    @property
    def shifts(self) -> list[str]:
        return [s for s in SHIFTS if self.refs[s] is not None]


def task_name(shift: str) -> str:
    return f"innerdpo_{shift}"


def row_id(doc: dict) -> str:
    """Stable id of a pair: first 16 hex digits of sha256(prompt \\0 chosen \\0 rejected)."""
    text = "\x00".join((doc["prompt"], doc["chosen"], doc["rejected"]))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


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
    (`evalcache`; eval.json then says `cache.hit`), else reuse scores of identical requests for the same
    model identity (`fastlm.ScoreCache`): the base model's rows are computed once and shared by every adapter
    of that base. False recomputes everything and refreshes the whole-evaluation cache."""
    say = progress or (lambda message: None)
    started = time.time()
    ckpt = resolve_checkpoint(checkpoint)
    plan = _plan(suite, data_dir, limit, sample, sample_seed, batch_size)
    eval_path = Path(output).expanduser() if output else ckpt.default_eval_path()
    _check_output(eval_path)
    key, identity = eval_cache_key(ckpt, plan.label, data_dir, plan.rows_cap, plan.sample, plan.sample_seed,
                                   apply_chat_template, dtype)
    cached = cached_evaluation(key, ckpt) if use_cache else None
    report, rows_text = cached or _score(ckpt, plan, device, dtype, apply_chat_template, use_cache, say)
    report["seconds"] = round(time.time() - started, 2)  # model loading and both harness runs, or the cache hit
    if cached is None:
        problem = store_evaluation(key, identity, report, rows_text)
        if problem:
            say(problem)
    return _write_outputs(eval_path, report, rows_text)


def _plan(suite: str | None, data_dir: str | None, limit: int | None, sample: str | None, sample_seed: int | None,
          batch_size: int | str) -> _Plan:
    refs = suites.suite_refs(suite, data_dir)
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1, got {limit}")
    rows_cap = suites.check_rows(limit)
    how, seed = suites.check_sample(sample, sample_seed)
    return _Plan(refs, suites.suite_label(suite, data_dir), data_dir, rows_cap, how, seed, _batch_size(batch_size))


def _score(ckpt: Checkpoint, plan: _Plan, device: str | None, dtype: str, apply_chat_template: bool | None,
           use_cache: bool, say: Callable[[str], None]) -> tuple[EvalReport, str]:
    """Load the model, run the harness with the adapter off and on; eval.json (without `seconds`, `cache` and
    the rows file's name and checksum, which `rundir.write_eval_pair` adds) and the rows file's text."""
    import torch

    from innerdpo_bench.evaluation.fastlm import FastHFLM, ScoreCache, model_identity

    task_manager, metadata = _task_manager(ckpt, plan, say)
    group, tasks = _shift_group(task_manager, plan.shifts)
    device = _resolve_device(device)
    say(f"loading {ckpt.base_model}" + (f" + adapter {ckpt.adapter}" if ckpt.adapter else "") + f" on {device}")
    model, tokenizer = _load_model(ckpt, device, getattr(torch, dtype), apply_chat_template)
    if apply_chat_template is None:  # auto: as training renders, so scores match what the adapter learnt
        apply_chat_template = bool(getattr(tokenizer, "chat_template", None))
    lm = FastHFLM(pretrained=model, tokenizer=tokenizer, batch_size=plan.batch)
    for task in tasks.values():  # the model decides how a long row is cut (tasks/utils.py, PrefTask)
        task.max_length = lm.max_length
    caches = {"model": None, "base": None}
    if use_cache:
        caches = {name: ScoreCache(model_identity(ckpt.base_model_path, adapter, dtype, lm.max_length))
                  for name, adapter in (("model", ckpt.adapter), ("base", None))}
    results, base_results = _run_both(ckpt, model, lm, caches, group, task_manager, tasks, apply_chat_template,
                                      dtype, say)
    rows = {s: _merge_base(_rows(results, tasks, s), _rows(base_results, tasks, s)) for s in plan.shifts}
    shift_metrics = _audited({s: _metrics(results["results"][task_name(s)]) for s in plan.shifts})
    base_metrics = _audited({s: _metrics(base_results["results"][task_name(s)]) for s in plan.shifts})
    report = EvalReport(
        **ckpt.describe(), suite=plan.label, data_dir=metadata.get("data_dir"), limit=plan.rows_cap,
        sample=plan.sample, sample_seed=plan.sample_seed, apply_chat_template=bool(apply_chat_template),
        transforms_applied=False, device=device, dtype=dtype, batch_size=plan.batch, versions=installed_versions("lm_eval", "torch", "transformers", "peft"),
        timestamp=rundir.now_iso(),
        score_cache={name: {"hits": c.hits, "misses": c.misses, "file": str(c.path)}
                     for name, c in caches.items() if c is not None},
        shifts=shift_metrics,
        skipped_shifts={s: f"suite {plan.label} has no {s} dataset" for s in SHIFTS if plan.refs[s] is None},
        aggregate=_metrics(results["groups"][GROUP]),
        base={"shifts": base_metrics, "aggregate": _metrics(base_results["groups"][GROUP])},
        coherence=coherence(rows.get("in_domain", [])),
        provenance={s: {**suites.provenance(plan.refs[s], shift_metrics[s]["n"], plan.sample, plan.sample_seed),
                        **long_rows(tasks[task_name(s)])} for s in plan.shifts},
        adapter_sha256=rundir.adapter_sha256(ckpt.adapter), harness=_harness_section(results),
    )
    rows_text = "\n".join(json.dumps(r, sort_keys=True) for s in plan.shifts for r in rows[s]) + "\n"
    return report, rows_text


def _audited(shift_metrics: dict[str, dict]) -> dict[str, dict]:
    """Each shift's metrics with the label-orientation audit (`audit.audit_shifts`): `below_chance` (accuracy
    under 0.5 with an exact binomial p < 0.01: chosen is likely the less plausible text for this model) and
    `chance_p`, the two-sided p-value against 0.5."""
    audits = audit.audit_shifts({s: m for s, m in shift_metrics.items() if m.get("acc") is not None and m.get("n")})
    return {s: {**m, **({"below_chance": audits[s].below_chance, "chance_p": audits[s].p_value} if s in audits else {})}
            for s, m in shift_metrics.items()}


def _check_output(eval_path: Path) -> None:
    """Make eval.json's directory before any work, so a path that cannot be written fails in one line first."""
    try:
        eval_path.parent.mkdir(parents=True, exist_ok=True)
        os.stat(eval_path)
    except FileNotFoundError:
        pass
    except OSError as err:
        if err.errno == errno.ENAMETOOLONG:
            raise name_too_long(err, "--output") from None
        raise UserError(f"cannot write {eval_path} ({err.strerror or err}); choose another --output") from None


def _write_outputs(eval_path: Path, report: EvalReport, rows_text: str) -> EvalResult:
    try:
        eval_path.parent.mkdir(parents=True, exist_ok=True)
        rows_path = rundir.write_eval_pair(eval_path, report, rows_text)
    except OSError as err:
        raise UserError(f"cannot write {eval_path} ({err.strerror or err}); choose another --output") from None
    return EvalResult(report, eval_path, rows_path)


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


def _task_manager(ckpt: Checkpoint, plan: _Plan, say: Callable[[str], None]):
    """lm-eval's TaskManager over `tasks/`, its metadata naming the suite (or data directory), rows and tokenizer."""
    from lm_eval.tasks import TaskManager

    picked = "first" if plan.sample == "first" else f"random, seed {plan.sample_seed}"
    say(f"loading {plan.label} data: {', '.join(plan.shifts)} (up to {plan.rows_cap} rows each, {picked})")
    metadata = {"rows": plan.rows_cap, "tokenizer": ckpt.base_model_path}
    if plan.sample == "random":
        metadata.update(sample=plan.sample, sample_seed=plan.sample_seed)
    metadata.update({"data_dir": str(Path(plan.data_dir).expanduser().resolve())} if plan.data_dir is not None
                    else {"suite": plan.label})
    task_manager = TaskManager(include_path=str(suites.tasks_dir()), include_defaults=False, metadata=metadata)
    return task_manager, metadata


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


def quiet_git_hash() -> str | None:
    """lm-eval's `get_git_commit_hash` (the hash it records in its results) with git's error output discarded: None
    outside a git repository instead of a `fatal: ...` line on stderr."""
    import subprocess

    try:
        return subprocess.run(["git", "describe", "--always"], capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _run_both(ckpt: Checkpoint, model, lm, caches: dict, group, task_manager, tasks: dict,
              apply_chat_template: bool, dtype: str, say: Callable[[str], None]) -> tuple[dict, dict]:
    """(results with the adapter on, with it off) from the harness; one pass for a base-model checkpoint."""
    import lm_eval.evaluator as harness
    from lm_eval import simple_evaluate

    harness.get_git_commit_hash = quiet_git_hash   # its `git describe` wrote "fatal: not a git repository" to eval.log

    def run_harness() -> dict:
        return simple_evaluate(model=lm, tasks=[group], task_manager=task_manager, log_samples=True,
                               apply_chat_template=apply_chat_template)

    n_pairs = sum(len(task.eval_docs) for task in tasks.values())
    lines = ProgressLines(say)   # every ~10% of a pass's requests (the harness scores all shifts in one batch)
    if ckpt.adapter is None:
        say(f"scoring {n_pairs} pairs with the {ckpt.kind}")
        lm.on_scored = lambda done, total: lines.update(f"scoring with the {ckpt.kind}", done, total)
        lm.score_cache = caches["base"]
        results = run_harness()
        return results, results
    say(f"scoring {n_pairs} pairs with the base model (adapter off)")
    lm.on_scored = lambda done, total: lines.update("scoring with the base model", done, total)
    lm.score_cache = caches["base"]
    with model.disable_adapter():
        base_results = run_harness()
    if dtype == "float32":
        # Fold the adapter into the weights (W + sBA): the same function without a pair of LoRA matmuls per
        # linear layer (a third of the time at rank 64). Only in fp32: rounding W + sBA to bf16/fp16
        # would lose part of the adapter. The base rows are already scored, and the model is not reused.
        model.merge_adapter()
    say(f"scoring {n_pairs} pairs with the {ckpt.kind} (adapter on)")
    lm.on_scored = lambda done, total: lines.update(f"scoring with the {ckpt.kind}", done, total)
    lm.score_cache = caches["model"]
    return run_harness(), base_results


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
    """Per-row scores of one shift from the harness's logged samples (sorted by doc id): the task's own
    (summed log-prob, token count) of each completion (`PrefTask.row_scores`, what `acc` compares)."""
    task = tasks[task_name(shift)]
    records = []
    for sample in sorted(results["samples"][task_name(shift)], key=lambda s: s["doc_id"]):
        scores = task.row_scores(sample["doc"], sample["filtered_resps"])
        records.append({
            "shift": shift,
            "doc_id": sample["doc_id"],
            "row_id": row_id(sample["doc"]),
            "logp_chosen": scores["logp_chosen"],
            "logp_rejected": scores["logp_rejected"],
            "n_chosen": scores["n_chosen"],
            "n_rejected": scores["n_rejected"],
            "truncated": scores["truncated"],
            "correct": bool(sample["acc"]),
        })
    return records


def long_rows(task) -> dict:
    """A shift's rows longer than the model, for its provenance: `max_length` (the model's positions),
    `truncated` (rows scored with the prompt cut from the left) and `skipped` (rows not scored: a completion
    alone longer than the model; not in `n`)."""
    report = task.length_report
    return {"max_length": report["max_length"], "truncated": report["truncated"], "skipped": report["skipped"]}


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


def _load_model(ckpt: Checkpoint, device: str, dtype, apply_chat_template: bool):
    """The base model with the adapter on (a PeftModel) or the plain model, in eval mode, and its tokenizer."""
    tokenizer = load_tokenizer(ckpt.base_model_path)
    if apply_chat_template and not getattr(tokenizer, "chat_template", None):
        raise UserError(f"--chat-template on: base model {ckpt.base_model} has no chat template")
    model = load_causal_lm(ckpt.base_model_path, dtype=dtype, device=device)
    if ckpt.adapter is not None:
        from peft import PeftModel
        from safetensors import SafetensorError

        try:
            model = PeftModel.from_pretrained(model, ckpt.adapter)
        except SafetensorError as err:  # a truncated or overwritten adapter_model.safetensors
            raise UserError(f"cannot load adapter {ckpt.adapter}: {Path(ckpt.adapter) / rundir.ADAPTER_WEIGHTS[0]} is "
                            f"not a valid safetensors file ({err}); train the run again") from None
        except (OSError, ValueError, RuntimeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(f"cannot load adapter {ckpt.adapter} on {ckpt.base_model}: {first}") from err
    return model.eval(), tokenizer
