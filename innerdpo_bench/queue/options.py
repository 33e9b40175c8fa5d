"""How a worker runs: its options (`innerdpo worker`'s flags) and the --max-runs budget its device loops share."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from innerdpo_bench.config import flag_name
from innerdpo_bench.errors import UserError
from innerdpo_bench.store import Run, Store


@dataclass(frozen=True)
class WorkerOptions:
    poll_s: float = 2.0             # idle wait between claims
    stale_after_s: float = 60.0     # silence after which a running run is requeued (same for all workers)
    grace_s: float = 10.0           # SIGTERM → SIGKILL
    max_attempts: int = 3           # a cap on any run's failed claims, over the run's --retries (graceful stops do not)
    once: bool = False              # exit when nothing is queued or running instead of polling
    max_runs: int | None = None     # claims per worker process (all devices together)

    @property
    def heartbeat_s(self) -> float:
        """Several heartbeats fit in `stale_after_s`, and never more than 5 s apart."""
        return max(0.1, min(5.0, self.stale_after_s / 4))

    def validate(self) -> WorkerOptions:
        for name in ("poll_s", "stale_after_s", "grace_s"):  # the flags are --poll, --stale-after, --grace
            if not getattr(self, name) > 0:
                raise UserError(f"{flag_name(name[:-2])} must be positive, got {getattr(self, name)}")
        if self.max_runs is not None and self.max_runs < 1:
            raise UserError(f"--max-runs must be at least 1, got {self.max_runs}")
        if self.max_attempts < 1:
            raise UserError(f"--max-attempts must be at least 1, got {self.max_attempts}")
        return self


class Budget:
    """The --max-runs claims shared by one process's device loops."""

    def __init__(self, max_runs: int | None) -> None:
        self.left = max_runs
        self.lock = threading.Lock()

    @property
    def spent(self) -> bool:
        return self.left is not None and self.left <= 0

    def claim(self, store: Store, worker: str) -> Run | None:
        with self.lock:
            if self.spent:
                return None
            run = store.claim_next(worker)
            if run is not None and self.left is not None:
                self.left -= 1
            return run
