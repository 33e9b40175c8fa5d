"""Synthetic evaluated runs: run directories with eval.json, per-row records, config.json and an adapter file
(`write_run`), and done store runs whose run directories hold them (`store_run`), with verdicts set per row."""

import hashlib
import json
from pathlib import Path

from innerdpo_bench.evaluation.suites import SCORING_RULE
from innerdpo_bench.store import Store

VERSIONS = {"innerdpo_bench": "0.1.0", "lm_eval": "0.4.13", "torch": "2.13.0", "transformers": "5.24.0",
            "peft": "0.21.2"}
RULE = SCORING_RULE   # the current rule: `doctor` names evaluations under any other


def row_id(shift: str, i: int) -> str:
    return hashlib.sha256(f"{shift}\0{i}".encode()).hexdigest()[:16]


def row(shift: str, i: int, correct: bool, base_correct: bool = True) -> dict:
    """A record whose `mean` verdict is `correct` (chosen at −1.0/token, rejected at −1.2 or −0.8)."""
    return {"shift": shift, "doc_id": i, "row_id": row_id(shift, i), "n_chosen": 10, "n_rejected": 10,
            "logp_chosen": -10.0, "logp_rejected": -12.0 if correct else -8.0,
            "base_logp_chosen": -11.0, "base_logp_rejected": -12.0 if base_correct else -10.0,
            "correct": correct, "base_correct": base_correct}


def write_run(directory: Path, correct: dict[str, list[bool]], *, base_correct: dict[str, list[bool]] | None = None,
              dataset: str = "mini:train", seed: int = 0, method: str = "dpo", adapter: bool = True,
              row_offset: int = 0, report: dict | None = None, name: str = "eval.json") -> Path:
    """A run directory with config.json, eval.json (harness metrics as the rows give them), the rows file and
    an adapter file; returns the eval.json path. Row i of a shift is row `row_offset + i` of that shift."""
    directory.mkdir(parents=True, exist_ok=True)
    records = []
    for shift, verdicts in correct.items():
        bases = (base_correct or {}).get(shift, [True] * len(verdicts))
        records += [row(shift, row_offset + i, c, b) for i, (c, b) in enumerate(zip(verdicts, bases))]
    eval_path = directory / name
    (eval_path.with_name(eval_path.stem + "_rows.jsonl")).write_text("".join(json.dumps(r) + "\n" for r in records))
    if adapter:
        (directory / "adapter").mkdir(exist_ok=True)
        (directory / "adapter" / "adapter_model.safetensors").write_bytes(f"weights {method} {seed}".encode())
    (directory / "config.json").write_text(json.dumps({"method": method, "seed": seed, "dataset": dataset,
                                                       "base_model": "tiny-random", "output_dir": str(directory)}))
    shifts = {shift: {"acc": sum(v) / len(v), "acc_sum": sum(v) / len(v), "n": len(v)} for shift, v in correct.items()}
    data = {
        "kind": "run" if adapter else "model", "base_model": "tiny-random", "method": method,
        "display_name": method, "seed": seed, "adapter": str(directory / "adapter") if adapter else None,
        "suite": "mini", "limit": max(len(v) for v in correct.values()), "versions": VERSIONS, "shifts": shifts,
        "provenance": {shift: {"dataset": "innerdpo_bench.data.mini", "config": None, "split": shift,
                               "rows": len(v), "scoring_rule": RULE} for shift, v in correct.items()},
        "rows_file": eval_path.stem + "_rows.jsonl",
    }
    eval_path.write_text(json.dumps({**data, **(report or {})}))
    return eval_path


def rows_file_of(eval_path: Path) -> Path:
    """The rows file an eval.json names (`innerdpo eval` names it by content: `<stem>_rows-<sha16>.jsonl`)."""
    return eval_path.with_name(json.loads(eval_path.read_text())["rows_file"])


def pattern(n: int, right: int) -> list[bool]:
    return [i < right for i in range(n)]


def store_run(store: Store, home: Path, correct: dict[str, list[bool]], *, method: str = "dpo", seed: int = 0,
              dataset: str = "mini:train", kind: str = "train_eval", **kwargs) -> int:
    """A done store run whose run directory holds the files `write_run` makes (checkpoint/ for train_eval)."""
    if kind == "train_eval":
        spec = {"name": method, "train": {"method": method, "seed": seed, "dataset": dataset,
                                          "base_model": "tiny-random"}, "eval": {"suite": "mini", "limit": None}}
    else:
        spec = {"name": "none", "eval": {"checkpoint": "tiny-random", "suite": "mini", "limit": None}}
    run_id = store.add_run(spec, kind=kind)
    run = store.claim_next("test")
    assert run.id == run_id
    run_dir = home / "runs" / f"{run_id}-{method}"
    eval_path = write_run(run_dir / "checkpoint" if kind == "train_eval" else run_dir, correct, method=method,
                          seed=seed, dataset=dataset, adapter=kind == "train_eval", **kwargs)
    store.set_run_dir(run_id, run_dir)
    report = json.loads(eval_path.read_text())
    store.record_results(run_id, report["shifts"], report["provenance"])
    assert store.finish(run_id, "test", "done")
    return run_id
