"""Where a workspace's store is (--store, $INNERDPO_STORE, HOME/store.url), what a user meets when the server is
wrong (down, a wrong password, a newer schema, a database that is not ours, no driver: each one line naming the URL
with its password masked, exit 2, nothing written), and `innerdpo store copy` from a laptop's SQLite to PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from innerdpo_bench.cli.main import app
from innerdpo_bench.errors import UserError
from innerdpo_bench.store import STORE_FILE, Store
from innerdpo_bench.store.location import STORE_ENV, URL_FILE, choose_url, parse_url

runner = CliRunner()
SPEC = {"name": "dpo", "train": {"method": "dpo", "seed": 0}, "eval": {"suite": "mini", "limit": 8}}


@pytest.fixture(autouse=True)
def no_store_env(monkeypatch):
    monkeypatch.delenv(STORE_ENV, raising=False)
    monkeypatch.delenv("PGPASSWORD", raising=False)


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, *needles, absent=()):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for needle in needles:
        assert needle in result.output, (needle, result.output)
    for secret in absent:
        assert secret not in result.output, result.output


# --------------------------------------------------------------------------- URLs and the workspace's binding


@pytest.mark.parametrize("text, backend, masked", [
    ("postgresql://me:s3cret@db.lab:5433/innerdpo", "postgresql", "postgresql://me:***@db.lab:5433/innerdpo"),
    ("postgres://me@db.lab/innerdpo", "postgresql", "postgres://me@db.lab/innerdpo"),
    ("postgresql://me@db.lab/innerdpo?password=s3cret&sslmode=require", "postgresql",
     "postgresql://me@db.lab/innerdpo?password=***&sslmode=require"),
    ("sqlite:////abs/store.sqlite", "sqlite", "sqlite:////abs/store.sqlite"),
])
def test_urls_parse_and_never_show_a_password(text, backend, masked):
    url = parse_url(text)
    assert (url.backend, url.masked) == (backend, masked)
    assert "s3cret" not in url.without_password and "***" not in url.without_password


def test_a_relative_sqlite_path_is_made_absolute_and_urls_compare_without_password_or_default_port(tmp_path):
    assert parse_url("sqlite:///rel/x.sqlite", base=tmp_path).path == tmp_path / "rel" / "x.sqlite"
    same = parse_url("postgresql://me:a@db:5432/x"), parse_url("postgresql://me@db/x")
    assert same[0].same_store(same[1])
    assert not same[0].same_store(parse_url("postgresql://me@db/y"))
    assert not same[0].same_store(parse_url("postgresql://other@db/x"))


@pytest.mark.parametrize("text, message", [
    ("mysql://me@db/x", "is not sqlite:///PATH or postgresql://"),
    ("postgresql://me:pw@db:5432", "names no database"),
    ("sqlite://", "names no file"),
    ("store.sqlite", "is not sqlite:///PATH"),
])
def test_a_malformed_url_is_one_line(tmp_path, text, message):
    one_line_error(invoke("queue", "add-base", "tiny-random", "--home", tmp_path / "h", "--store", text), message,
                   absent=("pw@",))
    assert not (tmp_path / "h").exists()


def test_a_workspace_remembers_its_store_and_refuses_another(tmp_path, pg_url, monkeypatch):
    home = tmp_path / "home"
    with Store(home, url=pg_url) as store:
        store.add_run(SPEC)
    remembered = (home / URL_FILE).read_text().strip()
    assert remembered == parse_url(pg_url).without_password and ":***@" not in remembered
    assert not (home / STORE_FILE).exists()
    monkeypatch.setenv("PGPASSWORD", pg_url.split(":")[2].split("@")[0])
    with Store(home, readonly=True) as store:     # --home alone finds it, on any node
        assert [run.name for run in store.list_runs()] == ["dpo"] and store.backend == "postgresql"
    with pytest.raises(UserError, match=re.escape(f"uses the store {parse_url(pg_url).without_password}, not sqlite:///")):
        choose_url(home, f"sqlite:///{tmp_path / 'other.sqlite'}")
    monkeypatch.setenv(STORE_ENV, f"sqlite:///{tmp_path / 'other.sqlite'}")
    one_line_error(invoke("runs", "--home", home), "$INNERDPO_STORE", "innerdpo store copy")
    sqlite_home = tmp_path / "laptop"
    monkeypatch.delenv(STORE_ENV)
    Store(sqlite_home).close()                     # a workspace with its store.sqlite is bound to it
    one_line_error(invoke("queue", "add-base", "tiny-random", "--home", sqlite_home, "--store", pg_url),
                   f"workspace {sqlite_home} uses the store sqlite:///", absent=(parse_url(pg_url).text,))


# --------------------------------------------------------------------------- a server that is wrong: one line, exit 2


def test_a_server_that_is_down_is_one_line_naming_the_url(tmp_path, pg_server):
    from pgserver import free_port

    url = f"postgresql://innerdpo:hunter2@127.0.0.1:{free_port()}/innerdpo"
    home = tmp_path / "home"
    one_line_error(invoke("queue", "add-base", "tiny-random", "--home", home, "--store", url),
                   "cannot reach the server", "postgresql://innerdpo:***@127.0.0.1:", absent=("hunter2",))
    assert not home.exists()
    one_line_error(invoke("worker", "--home", home, "--store", url, "--once", "--devices", "cpu"),
                   "cannot reach the server", absent=("hunter2",))
    assert not home.exists()


def test_a_wrong_password_is_one_line_and_never_printed(tmp_path, pg_server, pg_url):
    wrong = pg_url.replace(pg_server.password, "not-the-password")
    home = tmp_path / "home"
    one_line_error(invoke("queue", "add-base", "tiny-random", "--home", home, "--store", wrong),
                   "refused the login", "$PGPASSWORD", absent=("not-the-password", pg_server.password))
    assert not home.exists()
    no_password = pg_server.url(pg_url.rsplit("/", 1)[1], password=None)
    one_line_error(invoke("queue", "add-base", "tiny-random", "--home", home, "--store", no_password),
                   "refused the login", absent=(pg_server.password,))
    missing_db = pg_server.url("no_such_database")
    one_line_error(invoke("queue", "add-base", "tiny-random", "--home", home, "--store", missing_db),
                   "the database does not exist", absent=(pg_server.password,))
    assert not home.exists()


def test_a_database_of_a_newer_schema_is_refused_and_nothing_is_written(tmp_path, pg_server, pg_url):
    with Store(tmp_path / "first", url=pg_url) as store:
        store.add_run(SPEC)
    pg_server.admin("UPDATE innerdpo_schema SET version = 99", database=pg_url.rsplit("/", 1)[1])
    home = tmp_path / "home"
    one_line_error(invoke("queue", "add-base", "tiny-random", "--home", home, "--store", pg_url),
                   "schema version 99, newer than", "nothing was written", absent=(pg_server.password,))
    assert not home.exists()
    database = pg_url.rsplit("/", 1)[1]
    assert pg_server.admin("SELECT count(*) FROM runs", database=database) == [(1,)]


def test_a_database_that_is_not_ours_is_refused_and_nothing_is_written(tmp_path, pg_server, pg_url):
    database = pg_url.rsplit("/", 1)[1]
    pg_server.admin("CREATE TABLE patients (id INTEGER PRIMARY KEY, name TEXT)", database=database)
    home = tmp_path / "home"
    one_line_error(invoke("queue", "add-base", "tiny-random", "--home", home, "--store", pg_url),
                   "is not an innerdpo store", "patients", absent=(pg_server.password,))
    assert not home.exists()
    assert pg_server.admin("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
                           database=database) == [("patients",)]


def test_without_psycopg_a_postgresql_url_is_one_line(tmp_path):
    """The optional extra not installed: the driver's import fails (psycopg hidden from this process)."""
    script = ("import sys; sys.modules['psycopg'] = None\n"
              "from innerdpo_bench.cli.main import app\n"
              "app(sys.argv[1:], prog_name='innerdpo')")
    done = subprocess.run([sys.executable, "-c", script, "queue", "add-base", "tiny-random", "--home",
                           str(tmp_path / "home"), "--store", "postgresql://me:pw@127.0.0.1:1/x"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "pip install 'innerdpo-bench[postgres]'" in lines[0] and ":pw@" not in lines[0]
    assert not (tmp_path / "home").exists()


# --------------------------------------------------------------------------- store copy, store show, the dashboard


def laptop_workspace(home) -> None:
    """A SQLite workspace with done (results and provenance), failed, cancelled, queued and removed runs from a
    sweep and a base model."""
    with Store(home) as store:
        base = store.add_run({"name": "none", "eval": {"checkpoint": "tiny-random", "suite": "mini"}}, kind="eval")
        sweep = store.add_runs([{**SPEC, "name": f"dpo-{seed}", "sweep": "s-20261207", "train": {"seed": seed}}
                                for seed in range(4)])
        for run_id, acc in ((base, 0.5), (sweep[0], 0.625)):
            store.claim_next("laptop:1:cpu")
            store.set_run_dir(run_id, f"/laptop/runs/{run_id}")
            store.record_results(run_id, {shift: {"acc": acc + 0.01 * i, "n": 8.0, "acc_stderr": float("nan")}
                                          for i, shift in enumerate(("in_domain", "difficulty_scaling",
                                                                     "moral_transfer", "orthogonal"))},
                                 {"in_domain": {"dataset": "mini:in_domain", "N": 8}})
            store.finish(run_id, "laptop:1:cpu", "done", exit_code=0)
        store.claim_next("laptop:1:cpu")
        store.finish(sweep[1], "laptop:1:cpu", "failed", exit_code=1, error="loss became nan at step 3")
        store.cancel(sweep[2])
        extra = store.add_run(SPEC)
        store.remove(extra)   # its id is never handed out again, on either side of the copy


def test_store_copy_moves_a_laptop_workspace_to_postgresql_with_the_same_table(tmp_path, pg_server, pg_url,
                                                                              monkeypatch):
    home = tmp_path / "laptop"
    laptop_workspace(home)
    before = {fmt: invoke("runs", "--home", home, "--format", fmt) for fmt in ("csv", "json")}
    assert all(result.exit_code == 0 for result in before.values()), before
    queue_before = invoke("queue", "ls", "--home", home, "--json", "--all")

    copied = invoke("store", "copy", "--home", home, "--to", pg_url)
    assert copied.exit_code == 0, copied.output
    assert "copied 5 run(s), 24 result(s) and 2 provenance record(s)" in copied.output
    assert pg_server.password not in copied.output
    assert (home / URL_FILE).read_text().strip() == parse_url(pg_url).without_password

    monkeypatch.setenv("PGPASSWORD", pg_server.password)   # --home alone from now on, as on a cluster node
    for fmt, result in before.items():
        after = invoke("runs", "--home", home, "--format", fmt)
        assert after.exit_code == 0 and after.output == result.output, (fmt, after.output)
    assert invoke("queue", "ls", "--home", home, "--json", "--all").output == queue_before.output
    shown = json.loads(invoke("store", "show", "--home", home, "--json").output)
    assert shown["backend"] == "postgresql" and shown["runs"] == {"queued": 1, "running": 0, "done": 2, "failed": 1,
                                                                   "cancelled": 1}
    added = invoke("queue", "add-base", "tiny-random", "--home", home)
    assert "queued run 7:" in added.output, added.output   # 6 was removed on the laptop: never reused

    again = invoke("store", "copy", "--home", tmp_path / "second", "--to", pg_url)
    one_line_error(again, "no store at")
    other = tmp_path / "other"
    laptop_workspace(other)
    one_line_error(invoke("store", "copy", "--home", other, "--to", pg_url), "already holds 6 run(s)",
                   absent=(pg_server.password,))


def test_store_copy_refuses_while_a_run_is_running(tmp_path, pg_url, pg_server):
    home = tmp_path / "laptop"
    with Store(home) as store:
        store.add_run(SPEC)
        store.claim_next("laptop:1:cpu")
    one_line_error(invoke("store", "copy", "--home", home, "--to", pg_url), "1 run(s) are running",
                   "stop the workers first")
    assert not (home / URL_FILE).exists()
    assert pg_server.admin("SELECT count(*) FROM runs", database=pg_url.rsplit("/", 1)[1]) == [(0,)]


def test_the_dashboard_reads_on_through_a_server_restart(tmp_path, pg_server, pg_url, monkeypatch):
    """The dashboard reads the store at every poll: while the server is down a poll is one line naming the URL
    (shown in the dashboard), and the next poll after it is back reads again."""
    from innerdpo_bench.tui.data import load_snapshot

    home = tmp_path / "home"
    with Store(home, url=pg_url) as store:
        store.add_runs([SPEC, SPEC])
    monkeypatch.setenv("PGPASSWORD", pg_server.password)
    assert len(load_snapshot(home, clock=lambda: 0.0).runs) == 2
    start_again = pg_server.pause()
    try:
        with pytest.raises(UserError) as caught:
            load_snapshot(home, clock=lambda: 0.0)
    finally:
        start_again()
    assert "cannot reach the server" in str(caught.value) and "\n" not in str(caught.value)
    assert f"innerdpo@127.0.0.1:{pg_server.port}" in str(caught.value)
    assert len(load_snapshot(home, clock=lambda: 0.0).runs) == 2


def test_store_show_names_the_store_every_node_should_see(tmp_path):
    home = tmp_path / "home"
    Store(home).close()
    shown = invoke("store", "show", "--home", home)
    assert shown.exit_code == 0 and f"store sqlite:///{home / STORE_FILE} (sqlite, schema version" in shown.output
    assert os.path.basename(STORE_FILE) in shown.output
