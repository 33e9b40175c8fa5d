"""Shared fixtures: a per-session model cache with the tiny random Llama built once, offline settings."""

import os
import signal
import subprocess

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory):
    """Point INNERDPO_CACHE at a session directory (subprocesses inherit it), unless the caller set one."""
    if "INNERDPO_CACHE" not in os.environ:
        os.environ["INNERDPO_CACHE"] = str(tmp_path_factory.mktemp("innerdpo-cache"))
    return os.environ["INNERDPO_CACHE"]


@pytest.fixture(scope="session")
def tiny_model_path(model_cache):
    from innerdpo_bench.models import ensure_tiny_random

    return str(ensure_tiny_random())


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_path):
    from innerdpo_bench.models import load_tokenizer

    return load_tokenizer(tiny_model_path)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_model_path):
    """A short hs-ether-InnerDPO run on tiny-random, shared by eval tests."""
    from innerdpo_bench.config import TrainConfig
    from innerdpo_bench.train.trainer import train

    out = tmp_path_factory.mktemp("runs") / "ether"
    cfg = TrainConfig(method="hs-ether-InnerDPO", base_model="tiny-random", dataset="mini:train", max_steps=8,
                      batch_size=4, effective_batch=4, learning_rate=5e-3, logging_steps=2, output_dir=str(out),
                      max_rows=64)
    return train(cfg, progress=False)


@pytest.fixture
def clock():
    """A clock for the store that moves only when the test says so (`clock.advance(seconds)`)."""
    from helpers.store import FakeClock

    return FakeClock()


@pytest.fixture
def hermetic(monkeypatch):
    """Snapshots depend on NO_COLOR and the theme: pin both (App() pops NO_COLOR, monkeypatch restores it)."""
    monkeypatch.setenv("NO_COLOR", "1")


@pytest.fixture
def home(tmp_path):
    """A workspace folder that does not exist yet (the first store command makes it); test files that need a filled
    one (the dashboard's) define their own `home`."""
    return tmp_path / "home"


@pytest.fixture
def fake_stage(tmp_path, monkeypatch):
    """FAKE_STAGE's script (tests/helpers/worker.py) in place of the train and eval subprocesses: in this process
    (the worker's `stage_command` is swapped) and in worker processes started with DRIVER; the script's path."""
    from helpers.worker import FAKE_STAGE, fake_command
    from innerdpo_bench.queue import worker as queue_worker

    script = tmp_path / "fake_stage.py"
    script.write_text(FAKE_STAGE)
    monkeypatch.setattr(queue_worker, "stage_command", lambda run, stage, run_dir, resume_train=False:
                        fake_command(script, run, stage, run_dir))
    return script


# --------------------------------------------------------------------------- PostgreSQL (tests/pgserver.py)


@pytest.fixture(scope="session")
def pg_server():
    """A throw-away PostgreSQL server for the whole session, started when a test first asks for one and stopped at
    the end, pass or fail. Skips (with the reason) only where PostgreSQL or psycopg is missing or cannot start."""
    import atexit
    import subprocess

    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'innerdpo-bench[postgres]'")
    from pgserver import PostgresServer

    try:
        server = PostgresServer()
    except (RuntimeError, OSError, subprocess.SubprocessError) as err:
        pytest.skip(f"PostgreSQL cannot be set up here: {err}")
    atexit.register(server.destroy)   # also when the session is interrupted before the fixture's teardown
    try:
        server.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as err:
        server.destroy()
        pytest.skip(f"PostgreSQL cannot be started here: {err}")
    yield server
    server.destroy()


@pytest.fixture
def pg_url(pg_server) -> str:
    """The URL (password included) of a new, empty database on the session's server."""
    return pg_server.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request) -> str | None:
    """Each backend in turn, for the store's contract tests: None (the workspace's own store.sqlite) or a new
    PostgreSQL database's URL."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("pg_url")


@pytest.fixture(autouse=True)
def reap_processes():
    """Kill every process a test starts, pass or fail: each `subprocess.Popen` made while the test runs (by the test,
    or by the code under test: a worker's stages) that is still alive when it ends, with its process group when it
    leads one (`start_new_session`), so no worker outlives a failed assertion. Processes of module- or
    session-scoped fixtures are set up before this fixture and are theirs to stop."""
    started: list[tuple[subprocess.Popen, bool]] = []
    original = subprocess.Popen.__init__

    def tracked(self, *args, **kwargs):
        original(self, *args, **kwargs)
        started.append((self, bool(kwargs.get("start_new_session")) or kwargs.get("process_group") == 0))

    subprocess.Popen.__init__ = tracked
    try:
        yield
    finally:
        subprocess.Popen.__init__ = original
        for proc, leads_group in started:
            if leads_group:   # its group may outlive it (grandchildren): the group, even when the leader is gone
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
