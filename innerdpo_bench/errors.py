"""Typed errors a user can act on; the CLI prints them as one line, never a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping


class UserError(Exception):
    """Bad input: a flag, a file, a row. The CLI prints the message and exits with code 2."""

    exit_code = 2


class RunFailed(Exception):
    """Work started and failed (NaN loss, a crashed subprocess). The CLI exits with code 1."""

    exit_code = 1


def did_you_mean(given: str, choices: Iterable[str], aliases: Mapping[str, str] | None = None) -> str:
    """" Did you mean 'x'?" for the closest of `choices` (or of `aliases`, old spelling → name, which suggest
    the name they stand for), or "" when none is close."""
    aliases = aliases or {}
    close = difflib.get_close_matches(given, [*choices, *aliases], n=1, cutoff=0.5)
    return f" Did you mean {aliases.get(close[0], close[0])!r}?" if close else ""


def unknown_choice(kind: str, given: str, choices: Iterable[str],
                   aliases: Mapping[str, str] | None = None) -> UserError:
    """A UserError for an unknown name, with a "did you mean" hint and the valid names."""
    choices = list(choices)
    return UserError(f"unknown {kind} {given!r}.{did_you_mean(given, choices, aliases)} Choose from: {', '.join(choices)}.")


def name_too_long(err: OSError, what: str = "") -> UserError:
    """A UserError for OSError 36 (ENAMETOOLONG): which component of the path is too long, by how much, and
    `what` names the input (a flag: "--output-dir") when the caller knows it."""
    import os
    from pathlib import Path

    path = Path(os.fsdecode(err.filename)) if err.filename else None
    if path is None:
        return UserError(f"{what + ': ' if what else ''}a file name is too long for the filesystem; choose a shorter one")
    existing = next((parent for parent in path.parents if _exists(parent)), Path("/"))
    try:
        limit = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    longest = max(path.parts, key=len)
    return UserError(f"{what + ': ' if what else ''}a path component of {len(longest)} characters ({longest[:24]}…) is "
                     f"longer than the filesystem allows ({limit}) in {path}; choose a shorter path")


def _exists(path) -> bool:
    try:
        return path.exists()
    except OSError:
        return False


DISK_FULL_WORDS = ("No space left on device", "Disk quota exceeded", "file write failed")   # OS, torch.save's writer


def disk_full(err: BaseException) -> str | None:
    """One line for a failure caused by a full disk (or quota): "the disk is full: cannot write PATH (reason)", or
    with the library's own words; None for any other failure. Looks through the exception's causes: torch and
    safetensors wrap the OS error in their own."""
    import errno

    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"the disk is full: cannot write {err.filename} ({err.strerror})" if err.filename else \
                f"the disk is full ({err.strerror})"
        if any(words in str(err) for words in DISK_FULL_WORDS):
            return f"the disk is full ({str(err).strip().splitlines()[0]})"
        err = err.__cause__ or err.__context__
    return None

