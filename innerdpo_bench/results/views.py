"""View choices remembered per workspace (`HOME/view.json`): the `runs` command's columns, the dashboard's view.

One JSON object, one key per consumer ("runs", "tui"). Reading never fails (a missing or damaged file is no
choices); writing is best-effort and atomic (a read-only workspace simply does not remember).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from innerdpo_bench import files

VIEW_FILE = "view.json"


def load(home: str | os.PathLike, key: str) -> dict[str, Any]:
    try:
        data = json.loads((Path(home) / VIEW_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, dict) else {}


def save(home: str | os.PathLike, key: str, value: dict[str, Any]) -> bool:
    """Replace `key`'s choices; False when the workspace cannot be written."""
    path = Path(home) / VIEW_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        data = data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        data = {}
    data[key] = value
    try:
        handle, tmp = tempfile.mkstemp(prefix=".view.", dir=path.parent)
        os.fchmod(handle, files.FILE_MODE)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2, ensure_ascii=False)
        os.replace(tmp, path)
    except OSError:
        return False
    return True
