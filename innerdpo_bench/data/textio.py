"""Text data files read with every fault (bad UTF-8, bad or absurdly nested JSON) as one line naming the file and line."""

from __future__ import annotations

import json

from innerdpo_bench.errors import UserError


def decode_utf8(data: bytes, where: str) -> str:
    """The bytes of a data file as text; UserError naming `where` and the line of the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise UserError(f"{where}:{line}: not valid UTF-8 (byte {err.start}: {err.reason}); save the file as UTF-8") from None


def parse_jsonl(text: str, where: str) -> list:
    """One JSON document per non-blank line; UserError naming `where` and the line."""
    return [parse_json(line, where, lineno) for lineno, line in enumerate(text.splitlines(), start=1) if line.strip()]


def parse_json(text: str, where: str, lineno: int | None = None):
    """One JSON document of a data file; UserError naming the file (and line) for bad or absurdly nested JSON."""
    at_line = f"{where}:{lineno}" if lineno is not None else where
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        at = f" at line {err.lineno}" if lineno is None else ""
        raise UserError(f"{at_line}: not valid JSON ({err.msg}{at})") from None
    except RecursionError:
        raise UserError(f"{at_line}: JSON nested too deeply to be a preference row") from None
