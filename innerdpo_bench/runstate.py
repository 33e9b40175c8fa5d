"""The training state a run directory (or a checkpoint folder) holds beside the adapter: the InnerDPO transform
and the learned signs, written atomically, and where its resumable checkpoints lie (found without torch). `methods/` turns them into and from tensors (`transform_state`,
`LearnedSign.from_logits`) and does no I/O itself."""

from __future__ import annotations

import json
import re
from pathlib import Path

from innerdpo_bench.files import atomic_save_tensors, atomic_write_text
from innerdpo_bench.rundir import LEARNED_SIGN, TRANSFORMS_CONFIG, TRANSFORMS_WEIGHTS


def save_transform(folder: Path, meta: dict, tensors: dict) -> None:
    """`transforms.json` (`methods.transforms.transform_state`'s description) and, when the transform has
    tensors, `transforms.safetensors`; the weights first, so a description never names missing weights."""
    folder = Path(folder)
    if tensors:
        atomic_save_tensors(folder / TRANSFORMS_WEIGHTS, tensors)
    atomic_write_text(folder / TRANSFORMS_CONFIG, json.dumps(meta, indent=2))


def load_transform(folder: Path) -> tuple[dict, dict]:
    """What `save_transform` wrote: (description, tensors; {} for a parameter-free transform)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    meta = json.loads((folder / TRANSFORMS_CONFIG).read_text(encoding="utf-8"))
    weights = folder / TRANSFORMS_WEIGHTS
    return meta, (load_file(str(weights)) if weights.is_file() else {})


def save_learned_sign(folder: Path, layers: list[int], logits) -> None:
    """`learned_sign.safetensors`: tensor `logits` [layers, hidden], metadata `layers` (a JSON list)."""
    atomic_save_tensors(Path(folder) / LEARNED_SIGN, {"logits": logits.detach().cpu().contiguous()},
                        metadata={"layers": json.dumps(list(layers))})


def load_learned_sign(folder: Path):
    """What `save_learned_sign` wrote: (layers, logits)."""
    from safetensors import safe_open

    with safe_open(str(Path(folder) / LEARNED_SIGN), framework="pt") as handle:
        return json.loads(handle.metadata()["layers"]), handle.get_tensor("logits")


CHECKPOINTS = "checkpoints"           # RUN/checkpoints/checkpoint-N/: resumable training checkpoints (`train.resume`)
CHECKPOINT_MARKER = "complete.json"   # written last into a checkpoint-N/ that was saved whole
CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")


def checkpoints_dir(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINTS


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every checkpoint-N folder, oldest first."""
    root = checkpoints_dir(run_dir)
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := CHECKPOINT_NAME.match(p.name)) and p.is_dir()] \
        if root.is_dir() else []
    return sorted(found)


def has_checkpoint(run_dir: Path) -> bool:
    """Whether a run directory holds a checkpoint with a completion marker (cheap: no checksums; the worker's
    test before it passes --resume, without importing torch; `train.resume.pick_checkpoint` verifies)."""
    return any((folder / CHECKPOINT_MARKER).is_file() for _, folder in list_checkpoints(run_dir))
