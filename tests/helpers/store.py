"""Faults for the store's tests: a clock that moves when told, a commit whose connection is lost, a corrupt
SQLite page, a small tmpfs to fill."""

import contextlib
import subprocess
from pathlib import Path

import pytest

from innerdpo_bench.store import Store
from innerdpo_bench.store.postgres import ConnectionLost

PAGE = 4096   # SQLite's default page size, which the store keeps


class FakeClock:
    """Unix seconds that move only when a test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def lose_the_next_commit(store: Store, monkeypatch) -> list[str]:
    """Make the store's next write commit and then lose its connection before the caller hears back: what a server
    restart at the moment of COMMIT does. Injected at our own seam (the dialect's transaction), on a real database;
    the returned list records that it fired."""
    real = store._db.dialect.transaction
    fired: list[str] = []

    @contextlib.contextmanager
    def transaction(write: bool):
        with real(write) as con:
            yield con
        if write and not fired:
            fired.append("lost")
            raise ConnectionLost("connection lost after COMMIT (injected)", during_commit=True)

    monkeypatch.setattr(store._db.dialect, "transaction", transaction)
    return fired


def corrupt_page(store: Path, page: int = 2) -> None:
    """Overwrite one page (1-based; page 2 is the `runs` table's root) with bytes no b-tree page can hold."""
    with open(store, "r+b") as handle:
        handle.seek(PAGE * (page - 1))
        handle.write(b"\xa5" * PAGE)


@contextlib.contextmanager
def tmpfs(path, size: str):
    """A small tmpfs at `path` (root on Linux), unmounted afterwards; skips the test where it cannot mount."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
