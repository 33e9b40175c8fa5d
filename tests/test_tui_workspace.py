"""Issue 32 on the sweep workspace (`sweep_workspace.build`): names and tags, curves of two runs, the ETA from a
step stream, compare, parameter vs score, named views, grouping that keeps different data apart, key routing, and
snapshots at 80×24 and 160×45. Every number the dashboard shows is checked against a second implementation (the
CLI, the files, or arithmetic written out here)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from sweep_workspace import T0, build
from typer.testing import CliRunner

from innerdpo_bench.cli.main import app as cli
from innerdpo_bench.results import views as viewprefs
from innerdpo_bench.store import Store
from innerdpo_bench.tui.app import InnerDPOApp
from innerdpo_bench.tui.charts import Chart, CurvesScreen, ParamScreen
from innerdpo_bench.tui.compare_view import CompareScreen
from innerdpo_bench.tui.data import progress_of
from innerdpo_bench.tui.modals import AddRunModal, EditRunModal, PickModal, ViewsModal
from innerdpo_bench.tui.runs_view import RunsTable

from helpers.tui import pilot_test, runs_table, wait_for

runner = CliRunner()
NOW = T0 + 9000.0


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Built once; tests that write copy it (`fresh`)."""
    return build(tmp_path_factory.mktemp("sweep") / "home")


@pytest.fixture
def fresh(workspace, tmp_path) -> Path:
    import shutil

    home = tmp_path / "home"
    shutil.copytree(workspace, home)
    return home


def make(home: Path) -> InnerDPOApp:
    return InnerDPOApp(home, poll_s=0.2, clock=lambda: NOW)


async def ready(pilot, rows: int = 17) -> InnerDPOApp:
    await wait_for(pilot, lambda: (table := pilot.app.main_screen.query_one_optional(RunsTable)) is not None
                   and table.row_count == rows and not table.filling, what="the runs")
    return pilot.app


def invoke(*args) -> str:
    result = runner.invoke(cli, [str(arg) for arg in args])
    assert result.exit_code == 0, result.output
    return result.output


async def goto(pilot, run_id: int) -> None:
    table = runs_table(pilot.app)
    table.move_cursor(row=table.get_row_index(str(run_id)))
    await pilot.pause()


async def mark(pilot, *run_ids: int) -> None:
    """Mark runs as a user does: move to each and press space."""
    for run_id in run_ids:
        await goto(pilot, run_id)
        await pilot.press("space")


# --------------------------------------------------------------------------- 1. names and tags


@pilot_test
async def test_names_are_a_default_column_and_n_renames_tags_and_notes_a_run(fresh, tmp_path, monkeypatch):
    app = make(fresh)
    async with app.run_test(size=(160, 45)) as pilot:
        await ready(pilot)
        table = runs_table(app)
        names = {key: table.get_cell(key, "name").plain for key in table.keys_in_order()}
        with Store(fresh) as store:
            assert names == {str(run.id): run.name for run in store.list_runs()}   # the store's names, in full
        assert names["2"] != names["4"] and "α=0.1" in names["2"] and "α=1" in names["4"]  # the α runs differ
        await goto(pilot, 4)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, EditRunModal), what="the edit form")
        app.screen.query_one("#edit-name").value = "alpha one"
        app.screen.query_one("#edit-tags").value = "best, keep"
        app.screen.query_one("#edit-note").value = "the one to beat"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: table.get_cell("4", "name").plain == "alpha one", what="the new name")
        assert table.get_cell("4", "tags").plain == "best,keep"
        app.runs_view.set_filter("tag:best")
        await wait_for(pilot, lambda: table.keys_in_order() == ["4"], what="the tag filter")
    with Store(fresh) as store:
        run = store.get_run(4)
    assert (run.name, run.tags, run.note) == ("alpha one", ("best", "keep"), "the one to beat")
    exported = list(csv.DictReader(io.StringIO(invoke("runs", "--home", fresh, "--filter", "tag:best",
                                                      "--columns", "id,name,tags,note", "--format", "csv"))))
    assert exported == [{"id": "4", "name": "alpha one", "tags": "best,keep", "note": "the one to beat"}]


def test_queue_add_name_tag_note_and_queue_edit(tmp_path):
    home = tmp_path / "home"
    out = invoke("queue", "add", "dpo", "--base-model", "tiny-random", "--dataset", "mini:in_domain",
                 "--grid", "beta=0.1,0.5", "--name", "beta sweep", "--tag", "a,b", "--note", "first try",
                 "--home", home)
    assert "queued run 1: beta sweep β=0.1 seed 0" in out and "queued run 2: beta sweep β=0.5 seed 0" in out
    invoke("queue", "edit", "2", "--untag", "a", "--tag", "c", "--home", home)
    with Store(home) as store:
        one, two = store.get_run(1), store.get_run(2)
    assert (one.tags, one.note, two.tags) == (("a", "b"), "first try", ("b", "c"))
    assert one.spec.name == "dpo β=0.1 data=mini:in_domain"   # the display name: data included
    bad = runner.invoke(cli, ["queue", "add", "dpo", "--base-model", "tiny-random", "--dataset", "mini:in_domain",
                              "--tag", "two words", "--home", str(home)])
    assert bad.exit_code == 2 and "a tag is one word" in bad.output


def test_display_names_include_the_data_and_leave_bookkeeping_out():
    from innerdpo_bench.config import TrainConfig
    from innerdpo_bench.config.naming import display_name

    assert display_name(TrainConfig(method="dpo", dataset="/data/custom.jsonl", report_to="tensorboard",
                                    save_steps=5)) == "dpo data=custom.jsonl"
    assert display_name(TrainConfig(method="dpo", dataset="alpaca_easy")) == "dpo"          # the default data
    assert display_name(TrainConfig(method="hs-none-InnerDPO", alpha=1.0, dataset="mini:train", max_rows=64)) == \
        "hs-none-InnerDPO α=1 data=mini:train rows=64"


# --------------------------------------------------------------------------- 2. curves


@pilot_test
async def test_space_marks_two_runs_and_l_overlays_their_curves(fresh):
    from innerdpo_bench.results.curves import read_series

    workspace = fresh
    app = make(workspace)
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        await mark(pilot, 2, 8)
        assert app.runs_view.state.marked == {2, 8}
        assert runs_table(app).get_cell("8", "mark").plain == "✓"
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, CurvesScreen) and app.screen.series is not None,
                       what="the curves")
        chart = app.screen.query_one(Chart)
        expected = {run_id: read_series(workspace / "runs" / str(run_id) / "checkpoint" / "metrics.jsonl")
                    for run_id in (2, 8)}
        assert [label.split()[0] for label, _, _ in chart.lines] == ["2", "8"]
        for (label, steps, values), run_id in zip(chart.lines, (2, 8)):
            assert (steps, values) == expected[run_id]["loss"] and steps == list(range(1, 21))
        await pilot.press("m")                                     # next metric: the output term
        assert app.screen.metric == "loss_output"
        assert chart.lines[1][2] == expected[8]["loss_output"][1]


def test_training_writes_a_record_and_a_heartbeat_every_step(tmp_path):
    """RunFilesCallback with a fake clock: a record per step, train.log lines at --logging-steps, and progress.json's
    step rate over the recent steps (steps of 2 s, then of 1 s: the rate follows)."""
    from innerdpo_bench import rundir
    from innerdpo_bench.train.callbacks import RATE_WINDOW, RunFilesCallback, curve_every

    assert (curve_every(20, 10), curve_every(5000, 10), curve_every(50_000, 10)) == (1, 5, 10)
    now = [0.0]
    callback = RunFilesCallback(tmp_path, clock=lambda: now[0], log_every=10)
    state = SimpleNamespace(is_world_process_zero=True, global_step=0, max_steps=40)
    callback.on_train_begin(None, state, None)
    beats = []
    for step in range(1, 41):
        now[0] += 2.0 if step <= 20 else 1.0
        state.global_step = step
        callback.on_step_end(None, state, None)
        callback.on_log(None, state, None, logs={"loss": 0.7 - step / 100, "learning_rate": 1e-4})
        beats.append(rundir.read_progress(tmp_path))
    assert [beat["step"] for beat in beats] == list(range(1, 41))
    assert beats[19]["step_s"] == 2.0 and beats[-1]["step_s"] == 1.0           # the last RATE_WINDOW steps
    assert beats[24]["step_s"] == pytest.approx((5 * 1.0 + (RATE_WINDOW - 5) * 2.0) / RATE_WINDOW)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records] == list(range(1, 41))


# --------------------------------------------------------------------------- 3. ETA


def test_eta_follows_the_recent_step_rate_of_a_step_stream(fresh):
    """A running run's heartbeats, written as training would: the ETA moves every step and is the steps left times
    the recent seconds per step, less the time since the beat (at most one step's)."""
    from innerdpo_bench import rundir

    with Store(fresh, clock=lambda: NOW) as store:
        run = store.claim_next("host-b:2:cpu")          # run 14, queued: now running
        store.set_run_dir(run.id, fresh / "runs" / str(run.id))
        run = store.get_run(run.id)
    checkpoint = fresh / "runs" / str(run.id) / "checkpoint"
    checkpoint.mkdir(parents=True)
    etas = []
    for step, step_s, since in ((1, None, 0.0), (2, 30.0, 5.0), (3, 30.0, 45.0), (10, 12.0, 0.0)):
        rundir.write_progress(checkpoint, {"step": step, "max_steps": 20, "time": NOW - since, "elapsed_s": 0.0,
                                           "step_s": step_s})
        progress = progress_of(run, NOW)
        assert (progress.step, progress.max_steps) == (step, 20)
        etas.append(progress.eta_s)
    assert etas == [None, 18 * 30.0 - 5.0, 17 * 30.0 - 30.0, 10 * 12.0]


# --------------------------------------------------------------------------- 4. compare


@pilot_test
async def test_c_compares_two_marked_runs_as_innerdpo_compare_does(fresh):
    workspace = fresh
    app = make(workspace)
    async with app.run_test(size=(160, 45)) as pilot:
        await ready(pilot)
        await mark(pilot, 2, 8)
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and (
            app.screen.results is not None or app.screen.error is not None), what="the comparison")
        assert app.screen.error is None
        screen = app.screen
        table = screen.query_one("#compare-table")
        shown = {row.key.value: [table.get_cell(row.key, column).plain for column in ("acc A", "acc B", "Δ B−A",
                                                                                       "p McNemar")]
                 for row in table.ordered_rows}
        diff = screen.query_one("#diff-table")
        keys = {row.key.value: (diff.get_cell(row.key, "a").plain, diff.get_cell(row.key, "b").plain)
                for row in diff.ordered_rows}
    reference = json.loads(invoke("compare", "2", "8", "--json", "--home", workspace))
    for entry in reference["shifts"]:
        assert shown[entry["shift"]] == [f"{entry['acc_a']:.3f}", f"{entry['acc_b']:.3f}", f"{entry['delta']:+.3f}",
                                         f"{entry['p']:.2e}" if entry["p"] < 1e-3 else f"{entry['p']:.4f}"]
    assert keys == {"align_method": ("para_signed", "logodds"), "alpha": ("0.1", "1")}   # no bookkeeping, two sides


# --------------------------------------------------------------------------- 5. parameter vs score


@pilot_test
async def test_x_plots_alpha_against_in_domain_mean_and_std_over_seeds(fresh):
    import statistics

    workspace = fresh
    app = make(workspace)
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ParamScreen), what="the parameter plot")
        screen = app.screen
        while screen.x_key != "alpha":
            await pilot.press("x")
        lines = {line.label: [(p.x, p.mean, p.std, p.n) for p in line.points] for line in screen.lines}
    with Store(workspace) as store:
        runs = {run.id: run for run in store.list_runs()}

    def point(ids):
        values = [runs[i].results["in_domain"]["acc"] for i in ids]
        return statistics.fmean(values), statistics.stdev(values), 2

    assert lines == {"hs-none-InnerDPO align=para_signed": [(0.1, *point((2, 3))), (1.0, *point((4, 5)))],
                     "hs-none-InnerDPO align=logodds": [(0.1, *point((6, 7))), (1.0, *point((8, 9)))]}


# --------------------------------------------------------------------------- 6. views and grouping


@pilot_test
async def test_a_view_saved_in_the_dashboard_is_what_runs_view_prints(fresh):
    app = make(fresh)
    async with app.run_test(size=(160, 45)) as pilot:
        await ready(pilot)
        app.runs_view.state.columns = ("name", "in_domain", "final_loss", "alpha")
        app.runs_view.set_filter("status:done method:hs-none-InnerDPO")
        app.runs_view.sort_by("in_domain")
        await pilot.pause()
        shown = [[runs_table(app).get_cell(key, column).plain for column in ("id", "final_loss")]
                 for key in runs_table(app).keys_in_order()]
        await pilot.press("V")
        await wait_for(pilot, lambda: isinstance(app.screen, ViewsModal), what="the views")
        app.screen.query_one("#view-name").value = "alpha"
        await pilot.press("enter")
        await wait_for(pilot, lambda: "alpha" in viewprefs.named_views(fresh), what="the saved view")
        app.runs_view.state.columns = None                    # back to the default view, then load it again
        app.runs_view.set_filter("")
        await pilot.press("V")
        await wait_for(pilot, lambda: isinstance(app.screen, ViewsModal), what="the views")
        app.screen.query_one("#view-list").focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.runs_view.columns == ("id", "name", "in_domain", "final_loss", "alpha"),
                       what="the loaded view")
    rows = list(csv.DictReader(io.StringIO(invoke("runs", "--view", "alpha", "--format", "csv", "--home", fresh))))
    assert list(rows[0]) == ["name", "in_domain", "final_loss", "alpha"]
    assert len(rows) == len(shown) == 8                        # same rows, same order, same values
    assert all(abs(float(row["final_loss"]) - float(cells[1])) <= 0.0005 + 1e-9 for row, cells in zip(rows, shown)), (rows, shown)
    assert len(rows) == 8 and [float(row["in_domain"]) for row in rows] == sorted(
        (float(row["in_domain"]) for row in rows), reverse=True)
    last = json.loads((fresh / "runs" / "2" / "checkpoint" / "metrics.jsonl").read_text().splitlines()[-2])
    assert any(float(row["final_loss"]) == last["loss"] for row in rows)          # the last logged loss
    plain = list(csv.DictReader(io.StringIO(invoke("runs", "--format", "csv", "--home", fresh))))
    assert "final_loss" not in plain[0] and "in_domain" in plain[0]      # --columns/--view never stick


@pilot_test
async def test_grouping_keeps_runs_on_different_data_apart(fresh):
    home = fresh
    with Store(home) as store:
        run_id = store.add_run({"name": "dpo data=custom.jsonl", "train": {"method": "dpo", "seed": 1,
                                "dataset": "/data/custom.jsonl", "base_model": "tiny-random", "max_steps": 20},
                                "eval": {"suite": "mini", "limit": 40}})
        store.claim_next("w")
        store.record_results(run_id, {"in_domain": {"acc": 0.9}})
        store.finish(run_id, "w", "done", 0)
    rows = list(csv.DictReader(io.StringIO(invoke("runs", "--group-by", "align_method,alpha", "--filter",
                                                  "method:dpo", "--format", "csv", "--home", home))))
    assert sorted((row["name"], row["n"], row["in_domain"]) for row in rows) == [
        ("dpo data=custom.jsonl", "1", "0.9"), ("dpo data=mini:in_domain", "2", "0.625")]
    app = make(home)                                     # the dashboard's g: the same two rows, told apart
    async with app.run_test(size=(160, 45)) as pilot:
        await ready(pilot, rows=18)
        app.runs_view.set_filter("method:dpo")
        app.runs_view.state.group_by = ("align_method", "alpha")
        app.runs_view.refresh_rows()
        await wait_for(pilot, lambda: runs_table(app).row_count == 2, what="two groups")
        table = runs_table(app)
        assert sorted(table.get_cell(key, "name").plain for key in table.keys_in_order()) == [
            "dpo data=custom.jsonl", "dpo data=mini:in_domain"]


# --------------------------------------------------------------------------- 7. layout and keys


@pilot_test
async def test_keys_go_to_the_view_shown_and_a_starts_from_the_highlighted_run(fresh):
    app = make(fresh)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("2", "1", "s")          # `s` right after `1`: the runs view's sort list, not the queue's
        await wait_for(pilot, lambda: isinstance(app.screen, PickModal), what="the sort list")
        await pilot.press("escape")
        await goto(pilot, 8)
        await pilot.press("a", "a")               # twice while the form loads: one form
        await wait_for(pilot, lambda: isinstance(app.screen, AddRunModal), timeout=30, what="the add form")
        await pilot.pause(0.2)
        assert sum(isinstance(screen, AddRunModal) for screen in app.screen_stack) == 1
        form = app.screen
        assert form.query_one("#align_method").value == "logodds" and form.query_one("#dataset").value == \
            "mini:in_domain"
        assert form.request().config.alpha == 1.0            # every setting of run 8, not only the form's
        hidden = app.runs_view.columns_off_screen()
        assert hidden and set(hidden) <= {"status", "seed", "tags", "nll_ratio", "mean"}
        assert "→ scrolls to" in str(app.runs_view.query_one("#runs-status").render())


def test_help_and_footer_name_enter_columns_eval_and_scrolling():
    from innerdpo_bench.tui.runs_view import RunsView

    shown = {binding.key for binding in RunsView.BINDINGS if binding.show}
    assert {"enter", "C", "v"} <= shown
    app = InnerDPOApp("/nonexistent")
    keys = {(where, key) for where, key, _ in app.key_help()}
    assert {("runs", "⏎"), ("runs", "C"), ("runs", "v"), ("runs", "space"), ("runs", "c"), ("runs", "l"),
            ("runs", "x"), ("runs", "V"), ("tables", "← →")} <= keys


# --------------------------------------------------------------------------- snapshots


@pytest.mark.parametrize("size", [(80, 24), (160, 45)], ids=["80x24", "160x45"])
def test_snapshot_sweep_workspace(workspace, hermetic, snap_compare, size):
    async def run_before(pilot):
        await wait_for(pilot, lambda: (table := pilot.app.main_screen.query_one_optional(RunsTable)) is not None
                       and table.row_count == 17, what="the runs")

    assert snap_compare(InnerDPOApp(workspace, poll_s=60.0, clock=lambda: NOW, theme="textual-dark"),
                        run_before=run_before, terminal_size=size)


# --------------------------------------------------------------------------- small items (issue 32, point 8)


def test_snake_case_flags_mean_their_kebab_case_flags_and_help_keeps_brackets():
    from innerdpo_bench.cli.main import normalise_flags

    assert normalise_flags(["queue", "add", "dpo", "--learning_rate", "1e-4", "--grid", "learning_rate=1e-4,2e-4",
                            "--max_steps=5", "--", "--not_a_flag"]) == [
        "queue", "add", "dpo", "--learning-rate", "1e-4", "--grid", "learning_rate=1e-4,2e-4", "--max-steps=5", "--",
        "--not_a_flag"]
    help_text = " ".join(invoke("train", "--help").split())
    assert "innerdpo-bench[tensorboard]" in help_text.replace("│ ", "").replace(" │", "")


def test_a_retried_runs_elapsed_time_counts_every_attempts_training(fresh):
    """Run 2 trained 300 s (metrics.jsonl elapsed_s) but its last claim lasted 316 s after a retry took 20 s: the
    elapsed time is the larger, training over both attempts, once it was claimed more than once."""
    import sqlite3

    with Store(fresh) as store:
        run = store.get_run(2)
    assert progress_of(run, NOW).elapsed_s == 316.0                      # one claim: its wall time
    con = sqlite3.connect(fresh / "store.sqlite")
    con.execute("UPDATE runs SET claims = 2, started_at = finished_at - 20 WHERE id = 2")
    con.commit()
    con.close()
    with Store(fresh) as store:
        run = store.get_run(2)
    assert progress_of(run, NOW).elapsed_s == 300.0                      # 20 steps x 15 s, over both attempts


def test_the_eval_stage_says_which_pass_and_how_far(tmp_path, monkeypatch, capfd):
    from innerdpo_bench.evaluation.evaluate import quiet_git_hash
    from innerdpo_bench.tui.data import Progress

    assert Progress("eval", scoring=("scoring with the base model", 30, 100)).eval_text == "scoring base 30%"
    assert Progress("eval", scoring=("generating samples with the adapter", 3, 12)).eval_text == "samples adapter 3/12"
    monkeypatch.chdir(tmp_path)                                           # no repository here: None, and silent
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert quiet_git_hash() is None and "fatal" not in capfd.readouterr().err


def test_plot_curves_and_x_write_the_same_data_as_png(workspace, tmp_path):
    """`innerdpo plot --curves` and `--x`: the dashboard's data (one line per run; one line per align method) as a
    PNG of the asked size; a metric no run logged and a key no run has are one line, exit 2."""
    import matplotlib.image

    out = invoke("plot", "--curves", "rewards_margin", "2", "8", "--out", tmp_path / "curves.png", "--home", workspace)
    assert "(2 curves)" in out
    assert matplotlib.image.imread(tmp_path / "curves.png").shape[:2] == (675, 1200)   # 4.5 x 8 in at 150 dpi
    out = invoke("plot", "--x", "alpha", "--out", tmp_path / "alpha.png", "--home", workspace)
    assert "(2 lines)" in out and (tmp_path / "alpha.png").stat().st_size > 10_000
    bad = runner.invoke(cli, ["plot", "--curves", "lossy", "2", "--out", str(tmp_path / "x.png"), "--home",
                              str(workspace)])
    assert bad.exit_code == 2 and "no run logged 'lossy'" in bad.output
    bad = runner.invoke(cli, ["plot", "--x", "alhpa", "--out", str(tmp_path / "x.png"), "--home", str(workspace)])
    assert bad.exit_code == 2 and "Did you mean 'alpha'" in bad.output
