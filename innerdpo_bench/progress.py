"""Plain progress lines for long commands (`demo`, `train`, `eval`, `worker`) when their output is not a terminal.

rich's live displays draw only on a terminal: piped to a file or a CI log they printed nothing for half an hour.
Off a terminal these commands print lines like

    [1m05s] run 2/6 dpo: training 8/20 (40%)

one when the stage changes (a new run, training → evaluating) and one each time the count crosses another
tenth of its total, so a 500-step run gives about ten lines, never a line per step. `eval` and `worker` always
print such lines (they have no live display); `train` and `demo` keep rich's bars on a terminal.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

Say = Callable[[str], None]
TAIL_BYTES = 8192   # how much of a growing metrics.jsonl or log is read for its last record
ATTEMPT_HEADER = "===== "   # the line a worker writes into train.log / eval.log before each attempt's stage


def is_terminal(stream=None) -> bool:
    """Whether `stream` (default stdout) is a terminal, where rich's live display draws."""
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def format_elapsed(seconds: float) -> str:
    """45s, 12m05s, 3h05m."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressLines:
    """Turns a stream of (stage, done, total) updates into a few lines for `say`: one per new stage, then one
    per `fraction` of `total` crossed (and at the end). `clock` gives seconds; tests may pass their own."""

    def __init__(self, say: Say, fraction: float = 0.1, clock: Callable[[], float] = time.monotonic) -> None:
        self.say = say
        self.fraction = fraction
        self.clock = clock
        self.started = clock()
        self.stage: str | None = None
        self._next_mark = 0   # the next multiple of `fraction` (as an integer count of tenths) that prints

    def update(self, stage: str, done: int | None = None, total: int | None = None, detail: str = "") -> bool:
        """Report `done` of `total` in `stage`; whether a line was printed."""
        marks = round(1 / self.fraction)
        if stage != self.stage:
            self.stage, self._next_mark = stage, 0
        elif not total or done is None:
            return False
        if total and done is not None:
            reached = math.floor(min(done, total) / total * marks + 1e-9)
            if reached < self._next_mark:
                return False
            self._next_mark = reached + 1
        self.say(self.line(stage, done, total, detail))
        return True

    def line(self, stage: str, done: int | None = None, total: int | None = None, detail: str = "") -> str:
        text = f"[{format_elapsed(self.clock() - self.started)}] {stage}"
        if total and done is not None:
            text += f" {done}/{total} ({min(done, total) / total:.0%})"
        return text + (f" {detail}" if detail else "")


def last_step(metrics: Path) -> int | None:
    """The step of the last complete record of a training run's metrics.jsonl (an integer step); None before the
    first record."""
    record = last_metrics_record(metrics, lambda record: isinstance(record.get("step"), int))
    return None if record is None else record["step"]


_LINE = re.compile(r"^\[[^\]]*\] (?P<stage>.+?) (?P<done>\d+)/(?P<total>\d+) \(\d+%\)")


def _tail(path: Path) -> str | None:
    """The last TAIL_BYTES of a growing file, decoded; None when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - TAIL_BYTES))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return None


def last_count_line(log: Path) -> tuple[str, int, int] | None:
    """(stage, done, total) of the last `ProgressLines` line with a count in a log (an eval.log: "scoring with
    the base model", 120, 400) since the worker's last attempt header ("===== ..."); None before the first one."""
    for line in reversed((_tail(log) or "").splitlines()):
        if line.startswith(ATTEMPT_HEADER):
            return None
        match = _LINE.match(line.strip())
        if match is not None:
            return match["stage"], int(match["done"]), int(match["total"])
    return None


def last_metrics_record(metrics: Path, wanted: Callable[[dict], bool] = lambda record: "step" in record
                        ) -> dict | None:
    """The last complete JSON object of a metrics.jsonl that `wanted` accepts (default: it has a step), reading
    only its tail (the file grows for hours); None when there is none."""
    tail = _tail(metrics)
    if tail is None:
        return None
    for line in reversed(tail.splitlines()):
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a half-written last line, or the cut first one
        if isinstance(record, dict) and wanted(record):
            return record
    return None
