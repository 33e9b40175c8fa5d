"""An independent plain-torch scorer for the rows `innerdpo eval` scored: the second implementation of every number.

    python -m bench.plain_scorer EVAL_JSON [--device cpu]

It reads eval.json (base model, suite, rows, chat-template setting) and its rows file, loads the same rows from the
suite, and scores each completion with nothing but transformers: the prompt rendered as training renders it (a chat
template's user turn with the generation prompt; without one, the prompt without trailing whitespace and then
`" " + completion`), the prompt and the completion tokenised separately (as TRL and training do), one forward over
the whole sequence with the full-vocabulary log-softmax at every position, and the log-probs of the completion's
tokens summed. No lm-eval, no packing, no score cache, none of `innerdpo_bench.models.forward`.

It prints, per shift, the rows compared, the largest |Δ summed log-prob| (absolute, and relative to |logp|), how
many token counts differ and how many decisions (`acc`: mean per-token log-prob of chosen > rejected, strict)
differ, and exits 1 if any row disagrees: a count or decision differs, or |Δ| exceeds both 2e-4 and 2e-5 per token
(two float32 computations with other attention kernels and summation orders: logits near 30 through a 49,152-way
log-sum-exp round differently, by up to 1.4e-5 nats per token on SmolLM2). Rows the model cut (`truncated`) are scored by lm-eval's rule on a
different window, so they are listed but not compared. Only base-model evaluations (no adapter) are supported: the
rows' `logp_*` are then the base model's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TOLERANCE = 2e-4       # nats, absolute
PER_TOKEN = 2e-5       # nats per completion token: a 1,563-token completion may differ by 8e-3


def render(tokenizer, prompt: str, completion: str) -> tuple[list[int], list[int]]:
    """(prompt token ids, completion token ids), each tokenised on its own; the prompt gets the tokenizer's BOS
    unless its text already starts with it (a chat template that writes it)."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    else:
        text = prompt.rstrip()
        completion_ids = tokenizer(" " + completion, add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token if tokenizer.bos_token is not None else tokenizer.eos_token
    return tokenizer(text, add_special_tokens=not (bos and text.startswith(bos)))["input_ids"], completion_ids


class PlainScorer:
    """Summed log-prob and token count of a completion after a prompt, with a plain forward."""

    def __init__(self, model_path: str, device: str = "cpu"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).to(device).eval()
        self.device = device

    def __call__(self, prompt: str, completion: str) -> tuple[float, int]:
        torch = self.torch
        prompt_ids, completion_ids = render(self.tokenizer, prompt, completion)
        ids = torch.tensor([prompt_ids + completion_ids], device=self.device)
        with torch.no_grad():
            logits = self.model(ids).logits[0].float()
        logprobs = torch.log_softmax(logits[len(prompt_ids) - 1:-1], dim=-1)
        target = torch.tensor(completion_ids, device=self.device)
        return logprobs.gather(-1, target[:, None]).sum().item(), len(completion_ids)


def compare(eval_json: Path, device: str = "cpu") -> dict[str, dict]:
    """Per shift: rows compared, max |Δ logp|, count and decision mismatches, truncated rows left out."""
    from innerdpo_bench.evaluation import suites

    report = json.loads(eval_json.read_text())
    if report.get("adapter"):
        raise SystemExit("bench.plain_scorer compares base-model evaluations only (this one has an adapter)")
    rows = [json.loads(line) for line in (eval_json.parent / report["rows_file"]).read_text().splitlines()]
    scorer = PlainScorer(report["base_model_path"], device)
    if bool(report["apply_chat_template"]) != bool(getattr(scorer.tokenizer, "chat_template", None)):
        raise SystemExit("bench.plain_scorer renders as training does: the chat template exactly when the model has one")
    summary: dict[str, dict] = {}
    for shift in report["shifts"]:
        docs = suites.load_shift(shift, suite=report["suite"], rows=report["limit"], sample=report.get("sample"),
                                 sample_seed=report.get("sample_seed"))
        out = summary.setdefault(shift, {"rows": 0, "max_abs_diff": 0.0, "max_per_token_diff": 0.0, "beyond_tolerance": 0,
                                         "count_mismatches": 0, "decision_mismatches": 0, "truncated": 0})
        for row in (r for r in rows if r["shift"] == shift):
            if row.get("truncated"):
                out["truncated"] += 1
                continue
            doc = docs[row["doc_id"]]
            (logp_c, n_c), (logp_r, n_r) = scorer(doc["prompt"], doc["chosen"]), scorer(doc["prompt"], doc["rejected"])
            out["rows"] += 1
            for ours, theirs, n in ((logp_c, row["logp_chosen"], n_c), (logp_r, row["logp_rejected"], n_r)):
                diff = abs(ours - theirs)
                out["max_abs_diff"] = max(out["max_abs_diff"], diff)
                out["max_per_token_diff"] = max(out["max_per_token_diff"], diff / max(n, 1))
                out["beyond_tolerance"] += diff > max(TOLERANCE, PER_TOKEN * n)
            out["count_mismatches"] += (n_c, n_r) != (row["n_chosen"], row["n_rejected"])
            out["decision_mismatches"] += (logp_c / n_c > logp_r / n_r) != row["correct"]
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("eval_json", type=Path)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    summary = compare(args.eval_json, args.device)
    print(json.dumps(summary, indent=2))
    bad = [s for s, v in summary.items()
           if v["beyond_tolerance"] or v["count_mismatches"] or v["decision_mismatches"]]
    print("agree on every row" if not bad else f"disagree on {', '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
