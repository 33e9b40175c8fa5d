"""Sweeps: `queue add --grid/--seeds/--sweep/--dry-run`, every run checked against its base model and dataset
before anything is queued, and display names from what differs from the method's defaults."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from innerdpo_bench.cli.main import app
from innerdpo_bench.config import TrainConfig
from innerdpo_bench.config.naming import display_name
from innerdpo_bench.store import Store

runner = CliRunner()
TINY = ["--base-model", "tiny-random", "--dataset", "mini:in_domain", "--max-steps", "3"]


def invoke(*args):
    return runner.invoke(app, [str(arg) for arg in args])


def queued(home):
    if not (home / "store.sqlite").exists():
        return []
    with Store(home, create=False) as store:
        return store.list_runs()


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


def test_two_grid_axes_times_seeds_queue_the_product_with_one_sweep_id(home):
    result = invoke("queue", "add", "hs-none-InnerDPO", "--grid", "align_method=para_signed,logodds",
                    "--grid", "alpha=0.1,1", "--seeds", "1,2", *TINY, "--suite", "mini", "--limit", "16",
                    "--home", home)
    assert result.exit_code == 0, result.output
    runs = queued(home)
    cells = [(r.spec.train.align_method, r.spec.train.alpha, r.spec.train.seed) for r in runs]
    assert cells == [(align, alpha, seed) for align in ("para_signed", "logodds") for alpha in (0.1, 1.0)
                     for seed in (1, 2)]
    assert len({r.spec.sweep for r in runs}) == 1
    assert [r.name for r in runs[::2]] == [
        "hs-none-InnerDPO align=para_signed α=0.1 data=mini:in_domain",
        "hs-none-InnerDPO align=para_signed α=1 data=mini:in_domain",
        "hs-none-InnerDPO align=logodds α=0.1 data=mini:in_domain", "hs-none-InnerDPO align=logodds α=1 data=mini:in_domain"]
    assert all(r.spec.eval.to_json() == {"suite": "mini", "limit": 16} and r.spec.train.max_steps == 3 for r in runs)
    assert f"sweep {runs[0].spec.sweep}: 8 runs" in result.output


def test_a_method_axis_needs_no_method_argument(home):
    result = invoke("queue", "add", "--grid", "method=dpo,hs-ether-InnerDPO", *TINY, "--home", home)
    assert result.exit_code == 0, result.output
    assert [r.spec.train.method for r in queued(home)] == ["dpo", "hs-ether-InnerDPO"]


def test_dry_run_prints_the_runs_and_queues_nothing(home):
    result = invoke("queue", "add", "dpo", "--grid", "beta=0.1,0.5", "--seeds", "1,2,3", *TINY, "--dry-run",
                    "--home", home)
    assert result.exit_code == 0, result.output
    assert "would queue 6 run(s)" in result.output and "6. dpo β=0.5 data=mini:in_domain seed 3" in result.output
    assert not home.exists() and queued(home) == []


@pytest.mark.parametrize("args, message", [
    (["hs-ether-InnerDPO", "--grid", "ether_blocks=2,7", "--seeds", "1,2"],
     "run 3 of 4 (ether_blocks=7 seed 1): --ether-blocks 7 must divide the hidden size 64"),
    (["hs-none-InnerDPO", "--grid", "layers=1,9"], "run 2 of 2 (layers=9 seed 0): --layers '9': index 9 is outside"),
    (["dpo", "--grid", "alpha=0.1,x"], "--grid 'alpha=0.1,x': 'alpha' must be a number, not a string 'x'"),
    (["dpo", "--grid", "lr=1,2"], "unknown train option 'lr'"),
    (["dpo", "--grid", "seed=1,2"], "seed cannot be a grid axis (use --seeds)"),
    (["--grid", "method=dpo,dpx"], "run 2 of 2 (method=dpx seed 0): unknown method 'dpx'"),
    (["dpo", "--grid", "max_steps=5,0"], "run 2 of 2 (max_steps=0 seed 0): --max-steps must be in [1, 10000000], got 0"),
])
def test_a_bad_cell_is_rejected_naming_run_and_flag_and_nothing_is_queued(home, args, message):
    invoke("queue", "add-base", "tiny-random", "--home", home)  # a workspace with one run already
    result = invoke("queue", "add", *args, "--base-model", "tiny-random", "--dataset", "mini:train", "--home", home)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output
    assert len(queued(home)) == 1


@pytest.mark.parametrize("args, message", [
    (["hs-ether-InnerDPO", "--ether-blocks", "7"], "--ether-blocks 7 must divide the hidden size 64 of tiny-random"),
    (["dpo", "--dataset", "mini:nosuchsplit"], "unknown mini split 'nosuchsplit'"),
    (["hs-supr-InnerDPO", "--layers", "2"], "the supr transform needs at least 2 layers"),
    (["dpo", "--base-model", "./no/such/model"], "--base-model ./no/such/model does not exist"),
])
def test_what_depends_on_the_model_or_data_is_checked_at_add_time(home, args, message):
    result = invoke("queue", "add", *args, *(["--base-model", "tiny-random"] if "--base-model" not in args else []),
                    "--home", home)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert queued(home) == []


def test_a_local_model_is_checked_from_its_config_json_alone(home, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"hidden_size": 96, "num_hidden_layers": 6}))
    bad = invoke("queue", "add", "hs-ether-InnerDPO", "--base-model", model, "--ether-blocks", "5", "--home", home)
    assert bad.exit_code == 2 and "--ether-blocks 5 must divide the hidden size 96" in " ".join(bad.output.split())
    good = invoke("queue", "add", "hs-ether-InnerDPO", "--base-model", model, "--ether-blocks", "3", "--home", home)
    assert good.exit_code == 0, good.output


def test_a_sweep_file_gives_base_grid_seeds_and_eval_options_and_flags_override_it(home, tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("method: hs-none-InnerDPO\nbase:\n  base-model: tiny-random\n  dataset: mini:in_domain\n"
                     "  max_steps: 3\nlearning_rate: 1e-4\ngrid:\n  alpha: [0.1, 1]\n  align_method: logodds\n"
                     "seeds: [1, 2]\nsuite: mini\nlimit: 16\n")
    result = invoke("queue", "add", "--sweep", sweep, "--max-steps", "4", "--grid", "alpha=0,2", "--home", home)
    assert result.exit_code == 0, result.output
    runs = queued(home)
    assert [(r.spec.train.alpha, r.spec.train.seed) for r in runs] == [(0.0, 1), (0.0, 2), (2.0, 1),
                                                                                    (2.0, 2)]
    train = runs[0].spec.train
    assert (train.max_steps, train.learning_rate, train.align_method) == (4, 1e-4, "logodds")
    assert runs[0].spec.eval.to_json() == {"suite": "mini", "limit": 16}
    assert runs[0].name == "hs-none-InnerDPO align=logodds α=0 lr=0.0001 data=mini:in_domain"


@pytest.mark.parametrize("text, message", [
    ("method: dpo\ngrid:\n  beta: [0.1, fast]\n", "'beta' must be a number, not a string 'fast'"),
    ("method: dpo\ngird: {}\n", "unknown key 'gird'. Did you mean 'grid'?"),
    ("[1, 2]\n", "must hold a mapping"),
])
def test_a_bad_sweep_file_is_one_line_naming_it(home, tmp_path, text, message):
    sweep = tmp_path / "bad.yaml"
    sweep.write_text(text)
    result = invoke("queue", "add", "--sweep", sweep, "--home", home)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and str(sweep) in result.output.replace("\n", "")


def test_a_sweep_without_a_method_says_where_to_give_one(home, tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("grid:\n  alpha: [0.1]\n")
    result = invoke("queue", "add", "--sweep", sweep, "--home", home)
    assert result.exit_code == 2 and "give METHOD" in result.output and queued(home) == []


@pytest.mark.parametrize("train, name", [
    ({"method": "dpo"}, "dpo"),
    ({"method": "dpo", "alpha": 1.0, "max_steps": 3, "seed": 4, "base_model": "tiny-random"}, "dpo"),
    ({"method": "dpo", "report_to": "tensorboard", "save_steps": 3, "ref_cache": "off"}, "dpo"),   # bookkeeping
    ({"method": "dpo", "dataset": "/data/custom.jsonl", "max_rows": 64}, "dpo data=custom.jsonl rows=64"),
    ({"method": "hs-none-InnerDPO", "align_method": "logodds", "alpha": 1.0}, "hs-none-InnerDPO align=logodds α=1"),
    ({"method": "hs-ether-InnerDPO", "ether_blocks": 4, "supr_tau": 0.5}, "hs-ether-InnerDPO ether_blocks=4"),
    ({"method": "hs-supr-InnerDPO", "ether_blocks": 4, "supr_tau": 0.5}, "hs-supr-InnerDPO supr_tau=0.5"),
    ({"method": "hs-none-InnerDPO", "topk_dims": 8}, "hs-none-InnerDPO"),
    ({"method": "hs-none-InnerDPO", "align_method": "pars_rat_topk", "topk_dims": 8},
     "hs-none-InnerDPO align=pars_rat_topk topk=8"),
    ({"method": "simper", "beta": 0.5, "learning_rate": 3e-4}, "simper lr=0.0003"),
    ({"method": "ipo", "beta": 0.5, "wpo": True, "norm_before_pool": False}, "ipo β=0.5 wpo"),
    ({"method": "hs-none-InnerDPO", "norm_before_pool": False, "trust_region_form": "top"},
     "hs-none-InnerDPO no-norm_before_pool"),
])
def test_display_names_show_what_differs_from_the_methods_defaults(train, name):
    assert display_name(TrainConfig(**train)) == name


def test_a_swept_setup_key_shows_in_the_name():
    assert display_name(TrainConfig(method="dpo", max_steps=3), always=["max_steps"]) == "dpo max_steps=3"


def test_bookkeeping_never_shows_in_a_name():
    """Where a run logs or checkpoints does not make it another experiment (issue 32: report_to showed)."""
    assert display_name(TrainConfig(method="dpo", report_to="tensorboard", save_steps=5, ref_cache="off")) == "dpo"


@pytest.mark.parametrize("args, message", [
    (["add", "dpo", "--learning-rate", "inf"], "--learning-rate must be a finite number, got inf"),
    (["add", "hs-none-InnerDPO", "--grid", "alpha=0.1,nan"], "run 2 of 2 (alpha=nan seed 0): --alpha must be a finite "
                                                            "number, got nan"),
    (["add", "dpo", "--max-length", "5000"], "--max-length 5000 exceeds the 1024 positions of tiny-random"),
    (["add", "dpo", "--max-steps", "100000000000000000000"], "--max-steps must be in [1, 10000000], got 1"),
    (["add", "dpo", "--lora-r", "1000000"], "--lora-r must be in [1, 65536], got 1000000"),
    (["add", "dpo", "--lora-r", "128"], "--lora-r 128 exceeds the hidden size 64 of tiny-random"),
    (["add", "dpo", "--lora-dropout", "1.5"], "--lora-dropout must be in [0, 1), got 1.5"),
    (["add", "dpo", "--seed", "-1"], "--seed must be in [0, 4294967295], got -1"),
    (["add-base", "./no/such/model"], "BASE_MODEL ./no/such/model does not exist"),
])
def test_queue_add_refuses_what_can_only_fail_or_run_forever(home, args, message):
    """Issue 33 point 5: everything `queue add` can know is checked there: one line naming the flag, exit 2,
    nothing queued."""
    extra = ["--base-model", "tiny-random", "--dataset", "mini:train"] if args[0] == "add" else []
    result = invoke("queue", *args, *extra, "--home", home)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 and queued(home) == []


def test_an_unusual_value_is_queued_with_a_warning(home):
    result = invoke("queue", "add", "dpo", "--learning-rate", "1e10", "--base-model", "tiny-random", "--dataset",
                    "mini:train", "--home", home)
    assert result.exit_code == 0, result.output
    assert "warning: --learning-rate 1e+10 is unusual (usually 1e-07 to 0.1)" in " ".join(result.output.split())
    assert [run.spec.train.learning_rate for run in queued(home)] == [1e10]
