"""A run's name, tags and note as the user gives them (`queue add --name/--tag/--note`, `queue edit`, the dashboard's
edit form): checked here, stored beside the spec (`Store.add_runs`, `Store.annotate`), never part of it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from innerdpo_bench.config.spec import RunSpec
from innerdpo_bench.errors import UserError


def parse_tags(values: Iterable[str] | None) -> list[str]:
    """--tag a --tag b,c → [a, b, c]; a tag is one word (no spaces: `tag:LABEL` filters on it)."""
    tags = [part.strip() for value in values or () for part in value.split(",") if part.strip()]
    for tag in tags:
        if any(character.isspace() for character in tag):
            raise UserError(f"--tag {tag!r}: a tag is one word (use - or _ between words)")
    return list(dict.fromkeys(tags))


def run_names(name: str | None, specs: Sequence[RunSpec], grid: Mapping[str, Any]) -> list[str]:
    """Each run's name: the display name, or --name (then, for several runs, the sweep's values after it)."""
    if not name:
        return [spec.name for spec in specs]
    if not name.strip():
        raise UserError("--name is empty")
    if len(specs) == 1:
        return [name.strip()]
    from innerdpo_bench.config.naming import label

    def text(value: Any) -> str:
        return f"{value:g}" if isinstance(value, float) else str(value)

    return [" ".join([name.strip(), *(f"{label(key)}={text(getattr(spec.train, key))}" for key in grid)])
            for spec in specs]
