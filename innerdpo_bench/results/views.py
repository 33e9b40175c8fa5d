"""View choices remembered per workspace (`HOME/view.json`): the dashboard's last view, and named views.

One JSON object, one key per consumer ("tui": the dashboard's state when last left) and "views": {NAME: view}, a
view being {"columns", "filter", "sort", "reverse", "group_by", "group_seeds"} (`runs --view NAME`, `runs
--save-view NAME`, the dashboard's V). Reading never fails (a missing or damaged file is no choices); writing is
best-effort and atomic (a read-only workspace simply does not remember).
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


NAMED = "views"


def named_views(home: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Every named view of the workspace, by name."""
    views = load(home, NAMED)
    return {name: view for name, view in views.items() if isinstance(view, dict)}


def named_view(home: str | os.PathLike, name: str) -> dict[str, Any]:
    """The named view `name`; UserError naming the saved ones when there is none."""
    from innerdpo_bench.errors import unknown_choice

    views = named_views(home)
    if name not in views:
        raise unknown_choice("--view", name, sorted(views) or ["(none saved: runs --save-view NAME)"])
    return clean(views[name])


def clean(view: dict[str, Any]) -> dict[str, Any]:
    """A stored view with only well-typed fields (a hand-edited file must not break `runs --view`)."""
    out: dict[str, Any] = {}
    for key in ("columns", "group_by"):
        if isinstance(view.get(key), list):
            out[key] = [item for item in view[key] if isinstance(item, str) and item]
    for key in ("filter", "sort"):
        if isinstance(view.get(key), str) and view[key]:
            out[key] = view[key]
    for key in ("reverse", "group_seeds"):
        if isinstance(view.get(key), bool):
            out[key] = view[key]
    return out


def save_named(home: str | os.PathLike, name: str, view: dict[str, Any]) -> bool:
    """Add or replace the named view `name`; False when the workspace cannot be written. UserError for an empty name."""
    from innerdpo_bench.errors import UserError

    if not name.strip():
        raise UserError("a view needs a name")
    views = named_views(home)
    views[name.strip()] = clean(view)
    return save(home, NAMED, views)

