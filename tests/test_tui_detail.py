"""The dashboard's run detail screen (Pilot): config diff, curves, results, live log, re-evaluation, samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("textual")

from innerdpo_bench.store import Store  # noqa: E402
from innerdpo_bench.tui.detail import RunDetailScreen  # noqa: E402
from innerdpo_bench.tui.modals import EvalModal  # noqa: E402

from helpers.tui import SIZE, fill_store, intents_done, make_app, pilot_test, started, wait_for  # noqa: E402


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """fill_store's workspace: runs 1-4 done with results, 5 running, 6-7 queued."""
    return fill_store(tmp_path / "home")


# --------------------------------------------------------------------------- detail


@pilot_test
async def test_detail_screen_config_diff_curves_results_log_and_keys(home):
    app = make_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("b")                         # baseline: run 1 (dpo, seed 1)
        await pilot.press("j", "j", "j", "j", "enter")  # run 5: hs-none-InnerDPO logodds, running
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen), what="the detail screen")
        screen = app.screen
        await wait_for(pilot, screen.log_loaded.is_set, what="the log")
        config = screen.query_one("#config-table")
        highlighted = [row.key.value for row in config.ordered_rows if config.get_cell(row.key, "key").plain[0] == "≠"]
        assert set(highlighted) == {"method", "align_method"}   # only what differs from run 1's config
        assert config.get_cell("method", "value").plain == "hs-none-InnerDPO"
        chart = screen.query_one("#detail-chart")
        assert chart.lines == [("loss", [10, 20, 30, 40], [0.66, 0.62, 0.58, 0.54])]   # metrics.jsonl's, with axes
        assert "(step 40)" in screen.curve_labels["loss"]
        log = screen.query_one("#log")
        assert log.lines[-1] == "step 40 loss=0.540"
        with open(home / "runs" / "5" / "train.log", "a") as train_log:   # the log is followed live
            train_log.write("step 50 loss=0.500\n")
        await wait_for(pilot, lambda: log.lines[-1] == "step 50 loss=0.500", what="the new log line")

        await pilot.press("o")
        assert app.clipboard == str(home / "runs" / "5")
        await pilot.press("l")                         # next log: eval.log (none yet)
        assert screen.log_name == "eval.log"
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.main_screen

        await pilot.press("k", "k", "k", "k", "enter")  # run 1 (done): results with ± stderr; evaluate again
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen), what="run 1's detail")
        results = app.screen.query_one("#results-table")
        assert results.get_cell("in_domain", "acc").plain == "0.812 ± 0.017"
        assert results.get_cell("in_domain", "shift").plain == "in_dom"
        assert results.get_cell("coherence", "acc").plain == "1.020"
        await pilot.press("v")                         # asks first: which suite and limit (the run's own)
        await wait_for(pilot, lambda: isinstance(app.screen, EvalModal), what="the eval form")
        await pilot.press("ctrl+s")
        await intents_done(app)
    with Store(home) as store:
        evaluation = store.list_runs()[-1]
    assert evaluation.kind == "eval" and evaluation.status == "queued"
    assert evaluation.spec.eval.checkpoint == str(home / "runs" / "1" / "checkpoint")
    assert evaluation.spec.source_run == 1 and evaluation.spec.train.method == "dpo"


def write_samples(checkpoint: Path) -> None:
    """A samples.jsonl as `innerdpo eval --samples 2` writes it: two prompts on in_domain, one on orthogonal."""
    def completion(text: str, finished: bool = True) -> dict:
        return {"greedy": {"text": text, "n_tokens": len(text.split()), "finished": finished, "nll": 1.5}}

    lines = [{"settings": {"prompts": 2, "max_new_tokens": 8}, "base_cache": {"hit": False, "key": "k"}}]
    for shift, index, prompt, base, adapter, ended in (
            ("in_domain", 0, "What is 2+2?", "2+2 is 4.", "four four four four four four four four", False),
            ("in_domain", 1, "Capital of France?", "Paris is the capital.", "Paris.", True),
            ("orthogonal", 0, "Is rest good for a cold?", "Yes, rest and fluids help.", "", True)):
        lines.append({"shift": shift, "index": index, "row_id": f"r{index}", "prompt": prompt,
                      "base": completion(base), "model": completion(adapter, finished=ended)})
    (checkpoint / "samples.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


@pilot_test
async def test_detail_screen_shows_base_and_adapter_samples_and_cycles_prompts_and_shifts(home):
    write_samples(home / "runs" / "1" / "checkpoint")
    app = make_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        app.open_detail(1)
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen), what="the detail screen")
        screen = app.screen

        def shown(widget_id: str) -> str:
            return str(screen.query_one(widget_id).render())

        await wait_for(pilot, lambda: bool(screen.samples), what="the samples")
        assert screen.query_one("#samples-pane").display
        assert "in_domain · prompt 1/2" in shown("#samples-title")
        assert "What is 2+2?" in shown("#samples-prompt")
        assert shown("#samples-base").startswith("base (adapter off)") and "2+2 is 4." in shown("#samples-base")
        assert shown("#samples-model").startswith("adapter") and "four four" in shown("#samples-model")
        assert "cut at 8 tokens" in shown("#samples-model")              # reached max_new_tokens
        # the shift's statistics: 8 x "four" has 5 four-grams, 1 distinct (rep 0.80; "Paris." has none); bigrams
        # 7 x "four four" + "paris ." → 2 distinct of 8
        assert "adapter rep 0.80 distinct2 0.25" in shown("#samples-title")
        await pilot.press("n")
        assert "prompt 2/2" in shown("#samples-title") and "Capital of France?" in shown("#samples-prompt")
        assert "Paris is the capital." in shown("#samples-base") and "Paris." in shown("#samples-model")
        await pilot.press("n")                                             # wraps around
        assert "prompt 1/2" in shown("#samples-title")
        await pilot.press("s")
        assert "orthogonal · prompt 1/1" in shown("#samples-title")
        assert "(empty)" in shown("#samples-model") and "fluids" in shown("#samples-base")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.main_screen, what="the runs view")
        app.open_detail(2)                                                 # no samples: no pane
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.screen.run.id == 2
                       and app.screen.query_one_optional("#samples-pane") is not None, what="run 2's detail")
        assert not app.screen.query_one("#samples-pane").display and not app.screen.samples
