"""Evaluation inputs and the reference harness: preference pairs any real model should get right, a GENIES
distribution folder, and the plain `lm_eval` CLI run as a subprocess."""

import json
import subprocess
import sys
from pathlib import Path

from innerdpo_bench.evaluation import suites
from innerdpo_bench.evaluation.suites import SHIFTS

OBVIOUS = [
    ("What is the capital of France?", "The capital of France is Paris.", "The capital of France is Berlin."),
    ("What colour is the sky on a clear day?", "The sky is blue.", "The sky is green."),
    ("What is 2+2?", "The answer is 4.", "The answer is 5."),
    ("How many legs does a spider have?", "A spider has eight legs.", "A spider has three legs."),
    ("What do bees make?", "Bees make honey.", "Bees make cheese."),
]


def write_distribution(root: Path, name: str = "tiny", split: str = "test", rows=None) -> Path:
    """A GENIES distribution file, `root/name/split.json` (by default two prompts that make four pairs); its path."""
    rows = rows if rows is not None else [
        {"prompt": "Q1", "responses": {"a": 0.0, "b": 1.0, "c": 0.0, "d": 0.5}, "instruction": "q1"},
        {"prompt": "Q2", "responses": {"yes": 1.0, "no": 0.0}, "best_score": 1.0, "worse_score": 0.0},
    ]
    path = root / name / f"{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(rows if isinstance(rows, str) else json.dumps(rows))
    return path


def run_lm_eval_cli(out: Path, model_args: str, metadata: dict, limit: int, timeout: int = 300):
    """The real lm_eval CLI as a subprocess on the innerdpo_shifts group: (results.json, {shift: samples})."""
    lm_eval = Path(sys.executable).with_name("lm_eval")
    command = [str(lm_eval)] if lm_eval.exists() else [sys.executable, "-m", "lm_eval"]
    command += ["--model", "hf", "--model_args", model_args, "--device", "cpu", "--include_path",
                str(suites.tasks_dir()), "--tasks", "innerdpo_shifts", "--metadata", json.dumps(metadata),
                "--limit", str(limit), "--batch_size", "8", "--output_path", str(out), "--log_samples"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (results_file,) = out.rglob("results_*.json")
    samples = {shift: [json.loads(line) for line in next(out.rglob(f"samples_innerdpo_{shift}_*.jsonl")).open()]
               for shift in SHIFTS}
    return json.loads(results_file.read_text()), samples
