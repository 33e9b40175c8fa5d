"""How far apart the two WPO forms put their weights on real rows (docs/methods.md, `--wpo-form`).

    python -m bench.wpo_spread [--model smollm2-135m] [--rows 40] [--dataset genies:alpaca_easy#train]

The model as a policy at the start of training (LoRA is the identity then, so the base model), the first `--rows`
training pairs, rendered and encoded as training does; per completion lw = mean_t [log π(y_t) − log Σ_v π(v)²]
(`forward_pass(..., wpo=True)`), then both forms of `methods/output_losses.wpo_weights` over the rows. Prints the
largest and smallest weight of each form, their ratio (the spread) and the paper form's mean weight (by how much
`--wpo-form paper` scales the loss down at the first step; the reference form's mean is 1 by construction).
"""

from __future__ import annotations

import argparse
import json

import torch


def main(argv: list[str] | None = None) -> int:
    from innerdpo_bench.data.encode import PairCollator, encode_pairs
    from innerdpo_bench.data.pairs import load_pairs, parse_dataset
    from innerdpo_bench.methods.output_losses import wpo_weights
    from innerdpo_bench.models import load_causal_lm, load_tokenizer, resolve_base_model
    from innerdpo_bench.models.forward import forward_pass

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--dataset", default="genies:alpaca_easy#train")
    args = parser.parse_args(argv)
    path = resolve_base_model(args.model)
    tokenizer = load_tokenizer(path)
    model = load_causal_lm(path, dtype=torch.float32).eval()
    encoded, _ = encode_pairs(tokenizer, load_pairs(parse_dataset(args.dataset), args.rows))
    collate = PairCollator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    chosen, rejected = [], []
    for start in range(0, len(encoded), 4):
        with torch.no_grad():
            result = forward_pass(model, collate(encoded[start:start + 4]), layers=[], wpo=True)
        lw = result.wpo_sum / result.n_tokens.clamp_min(1)
        half = lw.shape[0] // 2
        chosen.append(lw[:half])
        rejected.append(lw[half:])
    chosen, rejected = torch.cat(chosen), torch.cat(rejected)
    report = {"model": args.model, "dataset": args.dataset, "pairs": len(chosen)}
    for form in ("reference", "paper"):
        weights = wpo_weights(chosen, rejected, form=form)
        report[form] = {"max": weights.max().item(), "min": weights.min().item(),
                        "spread": (weights.max() / weights.min()).item(), "mean": weights.mean().item()}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
