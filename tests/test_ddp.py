"""The multi-process path on CPU: two torchrun ranks on gloo (spec §14)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from innerdpo_bench import rundir

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port())] + args
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("align_method", ["para_signed", "learned_sign"])
def test_two_ranks_end_with_identical_adapter_and_transform(tmp_path, tiny_model_path, align_method):
    """With learned_sign, the signs (attached to the model, ignored by DDP, averaged by the trainer) end identical too,
    and moved from their start."""
    proc = run([str(Path(__file__).with_name("ddp_script.py")), str(tmp_path), "hs-ether-InnerDPO", align_method])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "world 2" in proc.stdout and "accumulation 1" in proc.stdout  # 2 ranks x 2 pairs = effective 4
    rank0, rank1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    assert any("innerdpo_transform" in k for k in rank0)
    if align_method == "learned_sign":
        assert (rank0["innerdpo_learned_sign.logits"] != 1.0).any()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    # and training moved them: lora_B starts at zero
    assert any(v.abs().sum() > 0 for k, v in rank0.items() if "lora_B" in k)


def test_cli_under_torchrun_writes_one_complete_run(tmp_path, tiny_model_path):
    out = tmp_path / "run"
    proc = run(["-m", "innerdpo_bench", "train", "hs-none-InnerDPO", "--base-model", "tiny-random",
                           "--dataset", "mini:in_domain", "--max-steps", "3", "--batch-size", "2", "--effective-batch", "4",
                           "--logging-steps", "1", "--output-dir", str(out), "--quiet"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert rundir.read_status(out)["state"] == "complete"
    config = json.loads((out / rundir.CONFIG).read_text())
    assert config["world_size"] == 2 and config["gradient_accumulation_steps"] == 1
    records = [json.loads(line) for line in (out / rundir.METRICS).read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]  # one writer, one record per step
    assert len(records) == 4 and "train_runtime" in records[-1]    # then the runtime summary
