"""Sample generations (`samples.py`) on the tiny random model: deterministic greedy text, the base's completions
cached once per base + suite + settings, the CLI and `eval --samples`, and the columns a queued run gets."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from innerdpo_bench import rundir
from innerdpo_bench.cli.main import app
from innerdpo_bench.data.mini import write_mini_jsonl
from innerdpo_bench.evaluation.checkpoint import resolve_checkpoint
from innerdpo_bench.evaluation.samplefile import read_samples, samples_path_for
from innerdpo_bench.evaluation.samples import SampleSettings, base_cache_key, generate_samples, prompts_of
from innerdpo_bench.config.spec import RunSpec
from innerdpo_bench.queue.runspec import base_spec
from innerdpo_bench.queue.worker import stage_command
from innerdpo_bench.store import Run

CLI = [sys.executable, "-m", "innerdpo_bench"]
SHIFTS = ["in_domain", "difficulty_scaling", "moral_transfer", "orthogonal"]


def test_greedy_generation_is_deterministic_and_the_base_is_generated_once(trained_run, tmp_path):
    # max_new_tokens=9 appears in no other test, so the session cache starts without this base entry
    settings = SampleSettings(prompts=1, max_new_tokens=9, suite="mini")
    first = generate_samples(str(trained_run), settings, output=tmp_path / "a.jsonl")
    again = generate_samples(str(trained_run), settings, output=tmp_path / "b.jsonl")
    fresh = generate_samples(str(trained_run), settings, output=tmp_path / "c.jsonl", use_cache=False)

    assert first.header["base_cache"]["hit"] is False
    assert again.header["base_cache"] == {"hit": True, "key": first.header["base_cache"]["key"]}
    assert [r["shift"] for r in first.records] == SHIFTS
    for one, two, three in zip(first.records, again.records, fresh.records):
        assert one["model"]["greedy"]["text"] == two["model"]["greedy"]["text"] == three["model"]["greedy"]["text"]
        assert one["base"] == two["base"]                                   # from the cache, as generated
        assert one["base"]["greedy"]["text"] == three["base"]["greedy"]["text"]  # recomputed: the same text
        greedy = one["model"]["greedy"]
        assert greedy["n_tokens"] <= 9 and greedy["finished"] == (greedy["n_tokens"] < 9)
        assert greedy["nll"] is None or greedy["nll"] > 0

    # the key names the settings and the prompts: other settings or other prompts are another entry
    key = first.header["base_cache"]["key"]
    prompts = prompts_of(settings)
    base_path = resolve_checkpoint(str(trained_run)).base_model_path
    assert base_cache_key(base_path, prompts, settings)[0] == key
    assert base_cache_key(base_path, prompts, replace(settings, max_new_tokens=10))[0] != key
    assert base_cache_key(base_path, prompts[:1], settings)[0] != key
    # the same prompts every time: the first distinct prompts of each shift, with eval_rows.jsonl's row ids
    assert [p["row_id"] for p in prompts] == [r["row_id"] for r in first.records]
    header, records = read_samples(tmp_path / "a.jsonl")
    assert header["settings"]["max_new_tokens"] == 9 and header["settings"]["apply_chat_template"] is False
    assert header["kind"] == "run" and records == first.records


def test_the_prompts_are_the_first_distinct_ones_of_each_shift(tmp_path):
    # GENIES splits hold several pairs per prompt: the first rows alone would show one prompt three times
    write_mini_jsonl(tmp_path)
    path = tmp_path / "in_domain.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[1]["prompt"] = rows[2]["prompt"] = rows[0]["prompt"]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))

    prompts = [p for p in prompts_of(SampleSettings(prompts=3, data_dir=str(tmp_path))) if p["shift"] == "in_domain"]
    assert [p["prompt"] for p in prompts] == [rows[0]["prompt"], rows[3]["prompt"], rows[4]["prompt"]]
    assert [p["index"] for p in prompts] == [0, 1, 2]


def test_sampled_completions_follow_the_seed(tmp_path, tiny_model_path, tiny_tokenizer):
    from innerdpo_bench.evaluation.samples import complete, prompt_ids
    from innerdpo_bench.models import load_causal_lm

    model = load_causal_lm(tiny_model_path).eval()
    ids = prompt_ids(tiny_tokenizer, "What is a baby chicken called?  ", chat=False)
    assert ids == tiny_tokenizer("What is a baby chicken called?")["input_ids"]     # trailing space dropped, as eval

    def sampled(seed: int) -> str:
        return complete(model, tiny_tokenizer, ids, 12, "cpu", seed=seed)["text"]

    assert sampled(3) == sampled(3) != sampled(4)
    result = generate_samples("tiny-random", SampleSettings(prompts=1, max_new_tokens=4, suite="mini", sampled=True),
                              output=tmp_path / "a.jsonl")
    assert all(r["model"] == r["base"] and "sampled" in r["model"] for r in result.records)  # a base is its own base


def test_samples_command_and_its_bad_input(tmp_path, tiny_model_path):
    runner = CliRunner()
    out = tmp_path / "s.jsonl"
    result = runner.invoke(app, ["samples", "tiny-random", "--suite", "mini", "--prompts", "1", "--max-new-tokens",
                                 "4", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "greedy completions: adapter (base)" in result.output and str(out) in result.output.replace("\n", "")
    header, records = read_samples(out)
    assert [r["shift"] for r in records] == SHIFTS and header["settings"]["prompts"] == 1
    for args, flag in ((["--prompts", "0"], "--prompts"), (["--max-new-tokens", "0"], "--max-new-tokens"),
                       (["--suite", "nope"], "suite")):
        bad = runner.invoke(app, ["samples", "tiny-random", *args])
        assert bad.exit_code == 2 and flag in bad.output and "Traceback" not in bad.output, bad.output
    out.write_text("not json\n")
    with pytest.raises(Exception, match=r"s\.jsonl:1"):
        read_samples(out)


def test_eval_samples_writes_beside_eval_json(tmp_path, tiny_model_path):
    output = tmp_path / "eval.json"
    done = subprocess.run([*CLI, "eval", "tiny-random", "--suite", "mini", "--limit", "2", "--samples", "1",
                           "--output", str(output)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    header, records = read_samples(samples_path_for(output))
    assert samples_path_for(output) == tmp_path / "samples.jsonl"
    assert samples_path_for(tmp_path / "eval-x.json") == tmp_path / "eval-x_samples.jsonl"
    assert len(records) == 4 and header["settings"]["prompts"] == 1


def test_a_queue_entry_asks_eval_for_samples(tmp_path):
    asked = Run(1, "none", "eval", base_spec("tiny-random", "mini", 4, samples=2), "queued", 1.0, 0.0, None, None,
                None, None, None, 0, None, None, False)
    command = stage_command(asked, "eval", tmp_path)
    assert command[command.index("--samples") + 1] == "2"
    plain = base_spec("tiny-random", "mini", 4)
    assert "samples" not in plain.to_json()["eval"]      # entries queued without samples keep their old identity


@pytest.mark.slow
def test_queued_base_run_gets_sample_columns_in_runs(tmp_path, tiny_model_path):
    home = str(tmp_path / "home")
    subprocess.run([*CLI, "queue", "add-base", "tiny-random", "--suite", "mini", "--limit", "2", "--samples", "1",
                    "--home", home], check=True, capture_output=True, timeout=120)
    worker = subprocess.run([*CLI, "worker", "--home", home, "--devices", "cpu", "--once", "--poll", "0.2"],
                            capture_output=True, text=True, timeout=600)
    assert worker.returncode == 0, worker.stdout + worker.stderr
    listed = subprocess.run([*CLI, "runs", "--home", home, "--columns", "name,rep,distinct2,nll_ratio", "--format",
                             "csv"], capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0] == "name,rep,distinct2,nll_ratio"
    name, rep, distinct2, nll_ratio = lines[1].split(",")
    assert name == "none" and 0.0 <= float(rep) <= 1.0 and 0.0 < float(distinct2) <= 1.0 and float(nll_ratio) == 1.0
    records = json.loads(subprocess.run([*CLI, "runs", "--home", home, "--json"], capture_output=True, text=True,
                                        timeout=120).stdout)
    run_dir = Path(records[0]["run_dir"])
    assert (run_dir / "samples.jsonl").is_file() and (run_dir / rundir.EVAL).is_file()


def _store_run(run_id: int, name: str, samples: dict | None) -> Run:
    results = {"in_domain": {"acc": 0.5}, "coherence": {"nll_ratio": 1.0 + run_id / 10}}
    if samples is not None:
        results["samples"] = samples
    spec = RunSpec.from_json({"name": name, "train": {"method": name, "seed": 0}, "eval": {"suite": "mini"}})
    return Run(run_id, name, "train_eval", spec, "done", float(run_id), 0.0, None, None, None, None, None, 1, None,
               None, False, results)


def test_sample_columns_are_selectable_sortable_and_filterable(tmp_path):
    from typer.testing import CliRunner

    from innerdpo_bench.results import table
    from innerdpo_bench.store import Store

    runs = [_store_run(1, "dpo", {"rep": 0.9, "distinct2": 0.1, "len": 60.0, "gen_nll_ratio": 0.4}),
            _store_run(2, "ipo", {"rep": 0.1, "distinct2": 0.8, "len": 30.0, "gen_nll_ratio": 1.1}),
            _store_run(3, "simper", None)]                                 # evaluated without samples
    view = table.make_table(runs, sort="rep", columns_shown=["name", "rep", "distinct2", "nll_ratio"])
    assert view.columns == ("name", "rep", "distinct2", "nll_ratio")
    assert [[table.cell(row, c, view) for c in view.columns] for row in view.rows] == [
        ["ipo", "0.100", "0.800", "1.200"], ["dpo", "0.900", "0.100", "1.100"], ["simper", "-", "-", "1.300"]]
    assert [row.runs[0].id for row in table.make_table(runs, filter_expr="rep<0.5").rows] == [2]
    assert table.make_table(runs).columns == table.COLUMNS                 # the default table is unchanged
    with pytest.raises(Exception, match="unknown --columns column 'rpe'.*rep"):
        table.check_columns(["name", "rpe"], runs)

    with Store(tmp_path) as store:
        for run in runs:
            run_id = store.add_run(run.spec)
            store.record_results(run_id, run.results)
    result = CliRunner().invoke(app, ["runs", "--home", str(tmp_path), "--columns", "name,rep,distinct2,nll_ratio"])
    assert result.exit_code == 0, result.output
    assert "distinct2" in result.output and "0.900" in result.output and "0.800" in result.output
    bad = CliRunner().invoke(app, ["runs", "--home", str(tmp_path), "--columns", "name,bogus"])
    assert bad.exit_code == 2 and "--columns" in bad.output
