"""Messages that thread workers post to the UI: pure data, never widgets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.message import Message

from innerdpo_bench.store.integrity import CorruptStore
from innerdpo_bench.tui.data import Snapshot


class SnapshotReady(Message):
    """A poll of the store finished; `view` is the runs view built in the poll's thread for the view state `state`
    (None when it could not be: the UI thread builds it then)."""

    def __init__(self, snapshot: Snapshot, view: Any = None, state: dict | None = None) -> None:
        super().__init__()
        self.snapshot, self.view, self.state = snapshot, view, state


class PollFailed(Message):
    """A poll of the store raised (locked past the busy timeout, unreadable): the last snapshot stays; `corrupt` is
    the CorruptStore when the store failed its integrity check (the app then stops polling)."""

    def __init__(self, error: str, corrupt: CorruptStore | None = None) -> None:
        super().__init__()
        self.error = error
        self.corrupt = corrupt


class IntentDone(Message):
    """A write through the store (enqueue, cancel, retry, move, evaluate) finished or failed."""

    def __init__(self, text: str, error: bool = False) -> None:
        super().__init__()
        self.text = text
        self.error = error


class LogLines(Message):
    """Lines appended to a followed log; `reset` when the file was replaced and earlier lines are void."""

    def __init__(self, path: Path, lines: list[str], reset: bool) -> None:
        super().__init__()
        self.path, self.lines, self.reset = path, lines, reset


class MetricsRecords(Message):
    """New metrics.jsonl records of the run on the detail screen."""

    def __init__(self, records: list[dict[str, Any]], reset: bool) -> None:
        super().__init__()
        self.records, self.reset = records, reset
