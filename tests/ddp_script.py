"""Run by tests/test_ddp.py under `torchrun --nproc_per_node 2`: train, then dump this rank's trainable weights."""

import sys
from pathlib import Path

import torch.distributed as dist
from safetensors.torch import save_file

from innerdpo_bench.config import TrainConfig
from innerdpo_bench.data.pairs import load_pairs
from innerdpo_bench.models import resolve_base_model
from innerdpo_bench.train.trainer import build_trainer

out = Path(sys.argv[1])
cfg = TrainConfig(method=sys.argv[2] if len(sys.argv) > 2 else "hs-ether-InnerDPO", base_model="tiny-random", dataset="mini:train", max_rows=32, max_steps=4,
                  batch_size=2, effective_batch=4, learning_rate=1e-2, logging_steps=1, output_dir=str(out),
                  align_method=sys.argv[3] if len(sys.argv) > 3 else "para_signed").validate()
prepared = build_trainer(cfg, out, resolve_base_model(cfg.base_model), load_pairs(cfg.dataset, cfg.max_rows), cfg.dataset)
prepared.trainer.train()
rank = dist.get_rank()
model = prepared.trainer.accelerator.unwrap_model(prepared.trainer.model)
state = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
save_file(state, str(out / f"rank{rank}.safetensors"))
print(f"rank {rank} world {dist.get_world_size()} accumulation {prepared.trainer.args.gradient_accumulation_steps}")
