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


def unknown_choice(kind: str, given: str, choices: Iterable[str],
                   aliases: Mapping[str, str] | None = None) -> UserError:
    """A UserError for an unknown name, with a "did you mean" hint and the valid names. `aliases` (old
    spelling → name) are matched too, and a close alias suggests the name it stands for."""
    choices = list(choices)
    aliases = aliases or {}
    close = difflib.get_close_matches(given, [*choices, *aliases], n=1, cutoff=0.5)
    hint = f" Did you mean {aliases.get(close[0], close[0])!r}?" if close else ""
    return UserError(f"unknown {kind} {given!r}.{hint} Choose from: {', '.join(choices)}.")
