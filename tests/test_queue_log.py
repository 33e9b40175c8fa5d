"""`innerdpo queue log ID [--stage train|eval|worker] [--follow]`: a run's logs, the training step lines included."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from innerdpo_bench.cli.main import app
from innerdpo_bench.rundir import RunPaths
from innerdpo_bench.store import Store

runner = CliRunner()


def running_run(home):
    """A claimed run with a run directory holding a worker log, the train subprocess's output and no
    training log yet."""
    with Store(home) as store:
        run_id = store.add_run({"name": "dpo", "train": {"method": "dpo", "seed": 0}})
        store.claim_next("w")
        store.set_run_dir(run_id, home / "runs" / "1")
        paths = RunPaths.of(store.get_run(run_id))
    paths.root.mkdir(parents=True)
    paths.worker_log.write_text("claimed by w\n")
    paths.train_log.write_text("loading the model\n")
    return run_id, paths


def test_log_shows_the_training_log_once_it_exists_and_each_stage_on_request(tmp_path):
    home = tmp_path / "home"
    run_id, paths = running_run(home)
    show = lambda *args: runner.invoke(app, ["queue", "log", str(run_id), *args, "--home", str(home)])
    assert show().output == "loading the model\n"          # before training writes its own log
    paths.checkpoint.root.mkdir()
    paths.checkpoint.train_log.write_text("step 1/3 loss=0.69\nstep 2/3 loss=0.68\n")
    assert show("--stage", "train").output == "step 1/3 loss=0.69\nstep 2/3 loss=0.68\n"
    assert show("--stage", "worker").output == "claimed by w\n"
    paths.eval_log.write_text("scoring in_domain\n")
    assert show().output == "scoring in_domain\n"           # the default follows the run into eval
    bad = show("--stage", "trian")
    assert bad.exit_code == 2 and "unknown --stage 'trian'. Did you mean 'train'" in bad.output


def test_follow_prints_new_step_lines_until_the_run_finishes(tmp_path):
    home = tmp_path / "home"
    run_id, paths = running_run(home)
    paths.checkpoint.root.mkdir()
    paths.checkpoint.train_log.write_text("step 1/3\n")
    follower = subprocess.Popen([sys.executable, "-m", "innerdpo_bench", "queue", "log", str(run_id), "--follow",
                                 "--poll", "0.05", "--home", str(home)], stdout=subprocess.PIPE, text=True)
    try:
        assert follower.stdout.readline() == "step 1/3\n"
        with paths.checkpoint.train_log.open("a") as log:
            log.write("step 2/3\n")
        assert follower.stdout.readline() == "step 2/3\n"    # a line appended while it follows
        with Store(home) as store:
            store.finish(run_id, "w", "done")
        assert follower.wait(timeout=60) == 0                # it stops by itself once the run is finished
    finally:
        if follower.poll() is None:
            follower.kill()
