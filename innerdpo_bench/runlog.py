"""What a run records about where it ran: package versions (eval.json, config.json, cache keys) and the file log
that collects the library loggers' lines (`train.log`)."""

from __future__ import annotations

import logging
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from innerdpo_bench import __version__

LOGGERS = ("innerdpo_bench", "transformers", "peft")


def installed_versions(*packages: str, python: bool = False) -> dict[str, str | None]:
    """innerdpo_bench's version and each package's from its installed metadata (None when not installed).

    Read from metadata rather than `module.__version__`, so a cache lookup does not pay for importing torch; the
    two agree for every package named here (torch's metadata carries its local tag, e.g. `2.13.0+cpu`)."""
    found: dict[str, str | None] = {"innerdpo_bench": __version__}
    for package in packages:
        try:
            found[package] = version(package.replace("_", "-"))
        except PackageNotFoundError:
            found[package] = None
    if python:
        found["python"] = platform.python_version()
    return found


def attach_file_log(path: Path) -> logging.Handler:
    """From now on the library loggers (`LOGGERS`) also write timestamped lines to `path`; undo with
    `detach_file_log`."""
    handler = _RunLogHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in LOGGERS:
        logging.getLogger(name).addHandler(handler)
    logging.getLogger("innerdpo_bench").setLevel(logging.INFO)
    return handler


class _RunLogHandler(logging.FileHandler):
    """A FileHandler that drops a line it cannot write (a full disk) instead of printing logging's traceback on
    stderr: the command's own error line says what happened."""

    def handleError(self, record: logging.LogRecord) -> None:
        if not isinstance(sys.exc_info()[1], OSError):
            super().handleError(record)


def detach_file_log(handler: logging.Handler | None) -> None:
    if handler is None:
        return
    for name in LOGGERS:
        logging.getLogger(name).removeHandler(handler)
    handler.close()
