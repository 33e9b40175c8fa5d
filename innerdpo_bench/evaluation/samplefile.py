"""The samples file (`samples.jsonl`, written by `samples.generate_samples`): where it lies and how to read it, without torch."""

from __future__ import annotations

import json
from pathlib import Path

from innerdpo_bench import rundir
from innerdpo_bench.errors import UserError

SAMPLES = "samples.jsonl"


def samples_path_for(eval_path: Path) -> Path:
    """Where the samples of an evaluation go: `eval.json` → `samples.jsonl`; `eval-x.json` → `eval-x_samples.jsonl`."""
    eval_path = Path(eval_path)
    return eval_path.with_name(SAMPLES if eval_path.name == rundir.EVAL else f"{eval_path.stem}_samples.jsonl")


def read_samples(path: str | Path) -> tuple[dict, list[dict]]:
    """(header, records) of a samples file; UserError naming the file and line when it is not one."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise UserError(f"cannot read samples file {path}: {err.strerror or err}") from None
    parsed = []
    for number, line in enumerate(lines, 1):
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise UserError(f"{path}:{number}: not JSON ({err.msg})") from None
    if not parsed or not isinstance(parsed[0], dict) or "settings" not in parsed[0]:
        raise UserError(f"{path}:1: not a samples file (the first line has no settings)")
    for number, record in enumerate(parsed[1:], 2):
        if not isinstance(record, dict) or not all(key in record for key in ("shift", "prompt", "model", "base")):
            raise UserError(f"{path}:{number}: a sample needs shift, prompt, model and base")
    return parsed[0], parsed[1:]


def sample_columns(eval_json: Path) -> dict[str, dict]:
    """{"samples": rep, distinct2, len, gen_nll_ratio, ...} (`textstats.run_columns`) from the samples file that
    eval wrote beside `eval_json`: what the store records for a run's sample columns. UserError when unreadable."""
    from innerdpo_bench.evaluation import textstats

    _, records = read_samples(samples_path_for(eval_json))
    return {textstats.SAMPLES_GROUP: textstats.run_columns(records)}
