"""The store under faults a user meets: a full disk, read-only media, a mistyped --home. Each is one line and a
non-zero exit, never a traceback; commands that only read keep working where they can."""

import contextlib
import os
import sqlite3
import subprocess
import uuid

import pytest
from typer.testing import CliRunner

from innerdpo_bench.cli.main import app
from innerdpo_bench.errors import UserError
from innerdpo_bench.store import STORE_FILE, Store
from innerdpo_bench.store.failures import describe_sqlite_error, sqlite_errors

from helpers.store import tmpfs

runner = CliRunner()
SPEC = {"name": "dpo", "train": {"method": "dpo", "seed": 0}, "eval": {"suite": "mini", "limit": 8}}


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for needle in needles:
        assert needle in result.output, (needle, result.output)


@pytest.mark.parametrize("message, cause", [
    ("database or disk is full", "disk is full"),
    ("disk I/O error", "disk I/O error"),
    ("attempt to write a readonly database", "read-only"),
    ("file is not a database", "not a valid SQLite database"),
    ("database disk image is malformed", "not a valid SQLite database"),
    ("unable to open database file", "cannot be opened"),
])
def test_every_cause_a_user_can_act_on_is_one_line_naming_the_store(tmp_path, message, cause):
    error_type = sqlite3.DatabaseError if "not a database" in message or "malformed" in message else sqlite3.OperationalError
    with pytest.raises(UserError) as caught, sqlite_errors(tmp_path / STORE_FILE, 30.0):
        raise error_type(message)
    text = str(caught.value)
    assert "\n" not in text and str(tmp_path / STORE_FILE) in text and cause in text and message in text


def test_a_bug_in_our_sql_is_not_dressed_up_as_a_user_error(tmp_path):
    assert describe_sqlite_error(sqlite3.OperationalError('near "SELEC": syntax error')) is None
    with pytest.raises(sqlite3.OperationalError), sqlite_errors(tmp_path / STORE_FILE, 30.0):
        raise sqlite3.OperationalError('near "SELEC": syntax error')


def test_a_store_that_cannot_grow_is_a_user_error_and_stays_readable(tmp_path):
    """SQLite's own SQLITE_FULL (max_page_count caps the file), the error a full disk gives."""
    with Store(tmp_path) as store:
        store.add_run(SPEC)
        pages = store._con.execute("PRAGMA page_count").fetchone()[0]
        store._con.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(UserError, match="disk is full"):
            for _ in range(500):
                store.add_run({**SPEC, "note": "x" * 2000})
    assert [run.id for run in Store(tmp_path, readonly=True).list_runs()][0] == 1


@pytest.mark.parametrize("command", [["runs"], ["queue", "ls"], ["queue", "cancel", "1"], ["tui"]])
def test_a_home_without_a_store_is_one_line_and_creates_nothing(tmp_path, command):
    typo = tmp_path / "typo"
    one_line_error(invoke(*command, "--home", typo), "no store at", str(typo / STORE_FILE))
    assert not typo.exists()


def test_readonly_open_never_writes(tmp_path):
    with Store(tmp_path) as store:
        store.add_run(SPEC)
    before = {path.name: path.stat().st_mtime_ns for path in tmp_path.iterdir()}
    with Store(tmp_path, readonly=True) as store:
        assert store.get_run(1).name == "dpo"
        with pytest.raises(UserError, match="read-only"):
            store.add_run(SPEC)
    assert (tmp_path / STORE_FILE).stat().st_mtime_ns == before[STORE_FILE]


# --------------------------------------------------------------------------- real filesystems (root, Linux)


def remount(path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True, capture_output=True)


def test_a_full_disk_is_one_line_and_reading_goes_on(tmp_path):
    with tmpfs(tmp_path / f"full-{uuid.uuid4().hex[:6]}", "512k") as disk:
        home = disk / "home"
        assert invoke("queue", "add-base", "tiny-random", "--home", home).exit_code == 0
        fd = os.open(disk / "ballast", os.O_WRONLY | os.O_CREAT)
        try:  # fill the disk to the last byte
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * 4096):
                    pass
        finally:
            os.close(fd)
        results = [invoke("queue", "add-base", "tiny-random", "--suite", "mini", "--home", home) for _ in range(20)]
        failed = [result for result in results if result.exit_code != 0]
        assert failed, "20 runs fitted on a full disk"
        one_line_error(failed[0], str(home / STORE_FILE))
        assert "disk is full" in failed[0].output or "disk I/O error" in failed[0].output
        listed = invoke("runs", "--home", home, "--format", "csv")
        assert listed.exit_code == 0, listed.output
        assert listed.output.count("\n") >= 2  # header + the first run


def test_a_read_only_medium_reads_and_refuses_writes_in_one_line(tmp_path):
    with tmpfs(tmp_path / f"ro-{uuid.uuid4().hex[:6]}", "4m") as disk:
        home = disk / "home"
        assert invoke("queue", "add-base", "tiny-random", "--home", home).exit_code == 0
        remount(disk, "ro")
        try:
            for command in (["runs", "--format", "csv"], ["queue", "ls", "--json"]):
                result = invoke(*command, "--home", home)
                assert result.exit_code == 0, (command, result.output)
                assert "queued" in result.output  # the run added before the medium turned read-only
            one_line_error(invoke("queue", "add-base", "tiny-random", "--home", home), str(home), "read-only")
        finally:
            remount(disk, "rw")


# --------------------------------------------------------------------------- an empty store (issue 33, point 1)

READERS = [["runs"], ["runs", "--format", "csv"], ["queue", "ls"], ["queue", "ls", "--json"], ["queue", "log", "1"],
           ["compare", "1", "2"], ["rescore", "1"], ["transfer", "1"], ["plot", "--out", "plot.png"],
           ["gate", ".", "--baseline", "1"], ["store", "show"]]
WRITERS = [["queue", "cancel", "1"], ["queue", "retry", "1"], ["queue", "rm", "1"],
           ["queue", "move", "1", "--to-front"]]


def emptied_workspace(home):
    """A workspace whose three finished runs' directories are intact and whose store.sqlite was cut to 0 bytes
    (the probe's truncation); what its directory holds, for comparing after."""
    with Store(home) as store:
        for run_id in store.add_runs([SPEC] * 3):
            (home / "runs" / f"{run_id}-dpo-s0").mkdir(parents=True)
    for path in home.glob(f"{STORE_FILE}-*"):   # the WAL's files: gone with the store's content
        path.unlink()
    (home / STORE_FILE).write_bytes(b"")
    return sorted(path.name for path in home.iterdir())


@pytest.mark.parametrize("command", READERS + WRITERS, ids=" ".join)
def test_an_empty_store_is_one_line_naming_the_fix_and_stays_empty(tmp_path, monkeypatch, command):
    """Before: readers said "schema version 0 ... a command that writes migrates it" (it would have made an empty
    store beside three finished runs), and queue cancel/retry/rm/move wrote that empty schema (24,576 bytes)."""
    home = tmp_path / "home"
    listing = emptied_workspace(home)
    monkeypatch.chdir(tmp_path)
    one_line_error(invoke(*command, "--home", home), f"store {home / STORE_FILE} is empty (0 bytes",
                   "3 run directories", f"innerdpo doctor --home {home} --repair")
    assert (home / STORE_FILE).stat().st_size == 0
    assert sorted(path.name for path in home.iterdir()) == listing and not (tmp_path / "plot.png").exists()


def test_an_sqlite_file_without_a_table_is_empty_too_for_readers_and_writers(tmp_path):
    home = tmp_path / "home"
    emptied_workspace(home)
    con = sqlite3.connect(home / STORE_FILE)      # a valid SQLite file with a header and no table
    con.execute("PRAGMA user_version = 0")
    con.execute("VACUUM")
    con.close()
    before = (home / STORE_FILE).read_bytes()
    for command in (["runs"], ["queue", "cancel", "1"]):
        one_line_error(invoke(*command, "--home", home), "is empty (an SQLite file without a table")
    assert (home / STORE_FILE).read_bytes() == before


def test_commands_that_create_a_store_refuse_an_empty_one_beside_run_directories(tmp_path):
    """A new store there would hide the runs the empty one lost; with no run directory beside it, a 0-byte file (a
    first open cut short) is simply made into a store."""
    home = tmp_path / "home"
    emptied_workspace(home)
    for command in (["queue", "add-base", "tiny-random"], ["worker", "--once", "--devices", "cpu"]):
        one_line_error(invoke(*command, "--home", home), "is empty (0 bytes", "innerdpo doctor")
        assert (home / STORE_FILE).stat().st_size == 0
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / STORE_FILE).write_bytes(b"")
    assert invoke("queue", "add-base", "tiny-random", "--home", fresh).exit_code == 0
    with Store(fresh, readonly=True) as store:
        assert [run.name for run in store.list_runs()] == ["none"]


@pytest.mark.parametrize("command", [["runs"], ["queue", "ls"], ["store", "show"], ["tui"]], ids=" ".join)
def test_readers_and_the_dashboard_never_migrate_an_older_store(tmp_path, store_url, monkeypatch, request, command):
    """Both backends: a store at schema version 2 stays at 2 (before, `innerdpo tui` migrated it on open)."""
    from innerdpo_bench.store import schema

    if store_url is not None:   # the workspace keeps no password: the commands read $PGPASSWORD
        monkeypatch.setenv("PGPASSWORD", request.getfixturevalue("pg_server").password)
    name = "MIGRATIONS" if store_url is None else "POSTGRES_MIGRATIONS"
    with monkeypatch.context() as version_2:
        version_2.setattr(schema, name, getattr(schema, name)[:2])
        version_2.setattr(schema, "SCHEMA_VERSION", 2)
        Store(tmp_path / "home", url=store_url).close()   # the workspace remembers a server's URL
    one_line_error(invoke(*command, "--home", tmp_path / "home"), "has schema version 2, older than")
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 2)
    with Store(tmp_path / "home", readonly=True) as store:
        assert store._db.read(store._db.dialect.version) == 2


@pytest.mark.parametrize("command", [["runs"], ["queue", "ls"], ["queue", "cancel", "1"], ["tui"]], ids=" ".join)
def test_readers_and_the_dashboard_never_make_a_store_in_an_empty_database(tmp_path, pg_server, pg_url, monkeypatch,
                                                                          command):
    from innerdpo_bench.store.location import parse_url, remember

    monkeypatch.setenv("PGPASSWORD", pg_server.password)
    home = tmp_path / "home"
    home.mkdir()
    remember(home, parse_url(pg_url))   # a workspace bound to a database that holds no store (yet)
    one_line_error(invoke(*command, "--home", home), "holds no innerdpo store yet")
    import psycopg

    with psycopg.connect(pg_url) as con:
        assert con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
                           ).fetchone() == (0,)
