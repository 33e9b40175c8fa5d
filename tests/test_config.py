"""The run config as one typed value: what its fields know, the one parser, `cfg.loss`, the typed run spec and its
round trip through stores and train_spec.json files written by earlier versions."""

import dataclasses
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from innerdpo_bench.config import TrainConfig
from innerdpo_bench.config.fields import opt
from innerdpo_bench.config.spec import RunSpec
from innerdpo_bench.errors import UserError
from innerdpo_bench.methods.loss_config import LossConfig
from innerdpo_bench.queue import sweep as sweeps
from innerdpo_bench.store import STORE_FILE, Store

DATA = Path(__file__).parent / "data"
OLD_SPECS = json.loads((DATA / "store_specs_v0.1.json").read_text())   # written by the untyped specs' code


# --------------------------------------------------------------------------- fields and the loss


def test_every_field_knows_its_help_group_and_role():
    for name in TrainConfig.names():
        info = TrainConfig.info(name)
        assert info.help and info.group in ("Run", "Training", "Adapter", "Checkpoints", "Loss", "InnerDPO"), name
    assert set(TrainConfig.names(role="bookkeeping")) == {"output_dir", "report_to", "save_steps",
                                                          "save_total_limit", "ref_cache"}
    assert TrainConfig.info("alpha").label == "α"


def test_the_loss_is_the_configs_own_values_with_no_defaults_of_its_own():
    assert {f.name for f in dataclasses.fields(LossConfig) if f.default is dataclasses.MISSING} <= set(
        TrainConfig.names()), "every loss knob is a TrainConfig field (its default and help live there)"
    cfg = TrainConfig(method="hs-none-InnerDPO", alpha=0.5, beta=0.3, align_method="logodds", trust_region=2.0)
    loss = cfg.loss
    assert (loss.alpha, loss.beta, loss.align_method, loss.trust_region, loss.output_loss) == (
        0.5, 0.3, "logodds", 2.0, "dpo")
    assert TrainConfig(method="ipo", alpha=0.5).loss.alpha == 0.0          # no hidden term: α is off
    assert TrainConfig(method="ipo").loss.output_loss == "ipo"


@dataclass(frozen=True)
class ProbeLoss(LossConfig):
    probe: float = 0.0


@dataclass
class ProbeConfig(TrainConfig):
    """A config with one more loss knob, declared as a new knob would be, and nothing else changed."""

    LOSS_CONFIG: ClassVar[type] = ProbeLoss
    probe: float = opt(0.0, "A loss knob only this test has.", "Loss", label="probe")


def test_a_new_loss_field_reaches_the_loss_from_a_config_file(tmp_path):
    path = tmp_path / "train_spec.json"
    path.write_text(json.dumps({"method": "hs-none-InnerDPO", "probe": 2}))
    cfg = ProbeConfig.from_file(path)
    assert cfg.loss.probe == 2.0 and isinstance(cfg.loss.probe, float)   # an integer in a file is a float


def test_a_new_loss_field_reaches_the_loss_from_a_sweep_cell(tiny_model_path):
    plan = sweeps.Sweep(base={"method": "dpo", "base_model": "tiny-random", "dataset": "mini:train"},
                        grid=sweeps.parse_grid(["probe=0.1,1e-3"], ProbeConfig))
    specs = sweeps.sweep_specs(plan, "s", config=ProbeConfig)
    assert [spec.train.loss.probe for spec in specs] == [0.1, 1e-3]
    assert [spec.name for spec in specs] == ["dpo probe=0.1 data=mini:train", "dpo probe=0.001 data=mini:train"]


def test_a_new_loss_field_reaches_the_trainer(tmp_path, tiny_model_path):
    from innerdpo_bench.data.pairs import load_pairs
    from innerdpo_bench.train.trainer import build_trainer

    cfg = ProbeConfig.from_mapping({"method": "dpo", "base_model": "tiny-random", "dataset": "mini:train",
                                    "max_steps": 1, "probe": "0.25"}, "--grid", text=True).validate()
    prepared = build_trainer(cfg, tmp_path / "run", tiny_model_path, load_pairs("mini:train")[:8], "mini:train")
    assert prepared.trainer.loss_config.probe == 0.25


# --------------------------------------------------------------------------- the one parser


@pytest.mark.parametrize("data, text, expected", [
    ({"alpha": 1}, False, {"alpha": 1.0}),                          # an integer is a float
    ({"learning_rate": "1e-4"}, False, {"learning_rate": 1e-4}),    # YAML 1.1 reads 1e-4 as a string
    ({"max-steps": 3, "--align-method": "logodds"}, False, {"max_steps": 3, "align_method": "logodds"}),
    ({"max_steps": "3", "wpo": "yes", "max_rows": "none"}, True, {"max_steps": 3, "wpo": True, "max_rows": None}),
])
def test_from_mapping_has_one_coercion_rule(data, text, expected):
    cfg = TrainConfig.from_mapping(data, "here", text=text)
    assert {key: getattr(cfg, key) for key in expected} == expected
    assert all(type(getattr(cfg, key)) is type(value) for key, value in expected.items())


@pytest.mark.parametrize("data, text, message", [
    ({"max_steps": "3"}, False, "here: 'max_steps' must be an integer, not a string '3'"),
    ({"max_steps": True}, False, "here: 'max_steps' must be an integer, not a boolean True"),
    ({"alpha": "x"}, True, "here: 'alpha' must be a number, not a string 'x'"),
    ({"max_step": 3}, False, "here: unknown key 'max_step'. Did you mean 'max_steps'?"),
    ([1], False, "here must hold a JSON object of train options"),
])
def test_from_mapping_errors_name_where(data, text, message):
    with pytest.raises(UserError) as caught:
        TrainConfig.from_mapping(data, "here", text=text)
    assert message in str(caught.value)


def test_the_reference_cache_key_reads_what_the_fields_say_the_reference_depends_on(tiny_model_path):
    """Changing a field marked `reference` changes the reference cache's spec; changing any other field leaves it
    alone (so a sweep over α shares one cache)."""
    from innerdpo_bench.methods.transforms import build_transform
    from innerdpo_bench.train.refcache import cached_spec

    base = TrainConfig(method="hs-none-InnerDPO", max_prompt_length=64, max_length=128)
    changed = {"max_prompt_length": 32, "max_length": 96, "pack_prompt": False, "norm_before_pool": False,
               "filter_sinks": True, "alpha": 0.9, "align_method": "logodds", "learning_rate": 1.0, "seed": 3,
               "beta": 0.5}
    transform = build_transform("none", [1, 2], 64)
    spec_of = lambda cfg: cached_spec(cfg, transform, [1, 2], torch.float32)[0]  # noqa: E731
    for name, value in changed.items():
        moved = spec_of(dataclasses.replace(base, **{name: value})) != spec_of(base)
        assert moved == TrainConfig.info(name).reference, name


# --------------------------------------------------------------------------- the run spec


def test_every_spec_an_earlier_version_stored_reads_back_unchanged(tmp_path):
    """A store written before specs were typed: each row's JSON reads into a RunSpec and back to the same JSON, plus
    the options added since (each at its default, which keeps the old run's meaning)."""
    Store(tmp_path).close()
    with sqlite3.connect(tmp_path / STORE_FILE) as con:
        for spec in OLD_SPECS:
            kind = "train_eval" if "train" in spec and "checkpoint" not in spec["eval"] else "eval"
            con.execute("INSERT INTO runs (name, kind, spec, status, priority, created_at) VALUES "
                        "(?, ?, ?, 'queued', 0, 0)", (spec["name"], kind, json.dumps(spec, sort_keys=True)))
    with Store(tmp_path) as store:
        runs = store.list_runs()
    defaults = TrainConfig().to_dict()
    for run, spec in zip(runs, OLD_SPECS, strict=True):
        read = run.spec.to_json()
        if "train" in spec:
            added = set(read["train"]) - set(spec["train"])
            assert added == {"wpo_form"}   # the options this version added, each at its default
            assert {key: read["train"].pop(key) for key in added} == {key: defaults[key] for key in added}
        assert read == spec
    assert [run.spec.name for run in runs] == [spec["name"] for spec in OLD_SPECS]
    assert runs[0].spec.train.align_method == "logodds" and runs[3].spec.eval.checkpoint == "tiny-random"
    assert runs[-1].spec.source_run == 1 and runs[5].spec.sweep == "1207-134500-ab"


def test_a_spec_round_trips_and_keeps_what_it_does_not_know():
    current = RunSpec.from_json(OLD_SPECS[0]).to_json()
    spec = RunSpec.from_json({**current, "from_a_newer_version": {"x": 1}})
    assert spec.to_json() == {**current, "from_a_newer_version": {"x": 1}}
    assert RunSpec.from_json(spec.to_json()) == spec


@pytest.mark.slow
def test_a_train_spec_json_an_earlier_version_wrote_still_trains(tmp_path, tiny_model_path):
    """What a worker of the untyped specs wrote to RUN/train_spec.json, trained by `train --config` today."""
    import subprocess
    import sys

    old = dict(OLD_SPECS[2]["train"], max_steps=1, max_rows=8, batch_size=2, effective_batch=2)
    path = tmp_path / "train_spec.json"
    path.write_text(json.dumps(old))
    proc = subprocess.run([sys.executable, "-m", "innerdpo_bench", "train", "--config", str(path), "--output-dir",
                           str(tmp_path / "run"), "--quiet"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "status.json").read_text())["state"] == "complete"
