"""The store's schema: run statuses and kinds, and one migration per schema version, for each backend.

The version is SQLite's `PRAGMA user_version`, and on PostgreSQL the one row of `innerdpo_schema`; the same number
means the same tables and columns, in the same order, on both (tests/test_store.py compares them).

Version 1:

    runs        id INTEGER PRIMARY KEY AUTOINCREMENT   never reused: run dirs are named by id
                name, kind ('train_eval' | 'eval'), spec (JSON object of the run's flags)
                status ('queued' | 'running' | 'done' | 'failed' | 'cancelled')
                priority REAL                          lower runs first; starts as the id (FIFO)
                created_at, started_at, finished_at, heartbeat_at   unix seconds (time.time())
                worker, run_dir, attempts, exit_code, error, cancel_requested (0 | 1)
    results     (run_id → runs.id ON DELETE CASCADE, shift, metric) PRIMARY KEY, value REAL
                shift is in_domain | difficulty_scaling | moral_transfer | orthogonal | coherence;
                metric is acc, acc_stderr, acc_sum, logratio, n, nll_ratio, ...; NaN is stored as NULL
    provenance  (run_id → runs.id ON DELETE CASCADE, shift) PRIMARY KEY, data (JSON object: dataset,
                config, split, N, scoring rule, base model, adapter checksum, versions, ...)
Version 2:
    runs.claims INTEGER NOT NULL DEFAULT 0   every claim of the run, never reset (worker.log numbers attempts by
                it); `attempts` counts only the claims that went stale or crashed (a graceful stop gives its
                claim back) and `queue retry` resets it
Version 3:
    runs.tags TEXT NOT NULL DEFAULT '[]'     a JSON list of the user's labels (`queue add --tag`, `queue edit`)
    runs.note TEXT NOT NULL DEFAULT ''       the user's free text; neither is part of the spec (a seed group ignores them)
Version 4:
    runs.retries INTEGER NOT NULL DEFAULT 1  how many times the run is queued again by itself after a cluster-like
                failure of an attempt (a stage killed by a signal: out of memory, preemption; a worker gone silent),
                `queue add --retries`; a stage that exits with an error (a bad flag) is never retried
    requeues    (run_id → runs.id ON DELETE CASCADE, claim) PRIMARY KEY, worker, requeued_at, reason: each attempt
                that ended with the run back in the queue (retried, stale, its worker gone or shut down), why; the
                attempt that ended the run is the run's own row (status, error)
"""

from __future__ import annotations

STATUSES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = frozenset({"done", "failed", "cancelled"})
KINDS = ("train_eval", "eval")

# One tuple of statements per schema version; MIGRATIONS[v - 1] takes a store from v - 1 to v.
# Never edit a shipped migration: append a new one. Each runs in its own transaction, so the SQL is
# spelled out here rather than derived from STATUSES (which may change after this version shipped).
MIGRATIONS: list[tuple[str, ...]] = [
    (  # v1
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('train_eval', 'eval')),
            spec TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
            priority REAL NOT NULL,
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            worker TEXT,
            heartbeat_at REAL,
            run_dir TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            exit_code INTEGER,
            error TEXT,
            cancel_requested INTEGER NOT NULL DEFAULT 0
        )""",
        # claim_next reads the head of this index; the TUI filters by status.
        "CREATE INDEX runs_by_status_priority ON runs (status, priority, id)",
        # WITHOUT ROWID: rows are stored in primary-key order, so the key doubles as the by-run index.
        """CREATE TABLE results (
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            shift TEXT NOT NULL,
            metric TEXT NOT NULL,
            value REAL,
            PRIMARY KEY (run_id, shift, metric)
        ) WITHOUT ROWID""",
        """CREATE TABLE provenance (
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            shift TEXT NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (run_id, shift)
        ) WITHOUT ROWID""",
    ),
    (  # v2
        "ALTER TABLE runs ADD COLUMN claims INTEGER NOT NULL DEFAULT 0",
        "UPDATE runs SET claims = attempts",
    ),
    (  # v3
        "ALTER TABLE runs ADD COLUMN tags TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE runs ADD COLUMN note TEXT NOT NULL DEFAULT ''",
    ),
    (  # v4
        "ALTER TABLE runs ADD COLUMN retries INTEGER NOT NULL DEFAULT 1",
        """CREATE TABLE requeues (
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            claim INTEGER NOT NULL,
            worker TEXT,
            requeued_at REAL NOT NULL,
            reason TEXT NOT NULL,
            PRIMARY KEY (run_id, claim)
        ) WITHOUT ROWID""",
    ),
]
SCHEMA_VERSION = len(MIGRATIONS)

# The same versions on PostgreSQL: ids from an identity column (BY DEFAULT, so `store copy` can keep a run's id;
# a sequence never hands an id out twice, as AUTOINCREMENT), times and values as double precision. The spec stays
# TEXT, not jsonb, so that it reads back byte for byte as SQLite's does.
POSTGRES_MIGRATIONS: list[tuple[str, ...]] = [
    (  # v1
        """CREATE TABLE runs (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            name TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('train_eval', 'eval')),
            spec TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
            priority DOUBLE PRECISION NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            started_at DOUBLE PRECISION,
            finished_at DOUBLE PRECISION,
            worker TEXT,
            heartbeat_at DOUBLE PRECISION,
            run_dir TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            exit_code INTEGER,
            error TEXT,
            cancel_requested INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX runs_by_status_priority ON runs (status, priority, id)",
        """CREATE TABLE results (
            run_id BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            shift TEXT NOT NULL,
            metric TEXT NOT NULL,
            value DOUBLE PRECISION,
            PRIMARY KEY (run_id, shift, metric)
        )""",
        """CREATE TABLE provenance (
            run_id BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            shift TEXT NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (run_id, shift)
        )""",
    ),
    (  # v2
        "ALTER TABLE runs ADD COLUMN claims INTEGER NOT NULL DEFAULT 0",
        "UPDATE runs SET claims = attempts",
    ),
    (  # v3
        "ALTER TABLE runs ADD COLUMN tags TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE runs ADD COLUMN note TEXT NOT NULL DEFAULT ''",
    ),
    (  # v4
        "ALTER TABLE runs ADD COLUMN retries INTEGER NOT NULL DEFAULT 1",
        """CREATE TABLE requeues (
            run_id BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            claim INTEGER NOT NULL,
            worker TEXT,
            requeued_at DOUBLE PRECISION NOT NULL,
            reason TEXT NOT NULL,
            PRIMARY KEY (run_id, claim)
        )""",
    ),
]
assert len(POSTGRES_MIGRATIONS) == SCHEMA_VERSION, "every schema version needs its PostgreSQL migration too"


def foreign_problem(where: object, tables: list[str]) -> str | None:
    """Why a database with no store schema but with tables of its own is refused (not ours: migrating would mix our
    tables into someone else's database), or None when it is empty."""
    if not tables:
        return None
    shown = ", ".join(tables[:5]) + (f" and {len(tables) - 5} more" if len(tables) > 5 else "")
    return (f"store {where} is not an innerdpo store: it holds other tables ({shown}) and no innerdpo schema; "
            "name an empty database (or another --home); nothing was written")


def version_problem(path: object, version: int, migrate: bool) -> str | None:
    """Why a store at schema `version` cannot be opened (newer than this code; older, and opened by a command that
    does not migrate: one that only reads, or the dashboard), or None."""
    if version > SCHEMA_VERSION:
        return (f"store {path} has schema version {version}, newer than this innerdpo-bench knows "
                f"({SCHEMA_VERSION}); upgrade innerdpo-bench or use another --home; nothing was written")
    if not migrate and version < SCHEMA_VERSION:
        return (f"store {path} has schema version {version}, older than this innerdpo-bench's "
                f"({SCHEMA_VERSION}); a command that writes (innerdpo worker --once) migrates it")
    return None
