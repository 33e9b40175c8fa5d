"""What every benchmark records beside its numbers: the machine, the package versions and the command."""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
from pathlib import Path


def write_record(out: str, script: str, record: dict, argv: list[str] | None, packages: tuple[str, ...]) -> None:
    """Write `record` as JSON to `out`, with the machine, `packages`' versions and the command that ran."""
    import torch

    record = {**record,
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
              "versions": {name: importlib.import_module(name).__version__ for name in packages},
              "command": " ".join([f"python -m {script}"] + (argv if argv is not None else sys.argv[1:]))}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(record, indent=2))
    print(f"\nwrote {out}")
