"""The real harness on the shipped GENIES suite: the plain `lm_eval` CLI and `innerdpo eval` on tiny-random over
`genies:alpaca_easy` agree, eval.json names each shift's file, sha256 and orientation, and `gate` and `queue`
take the suite."""

import json

import pytest
from typer.testing import CliRunner

from innerdpo_bench.cli.main import app
from innerdpo_bench.data import genies, shipped
from innerdpo_bench.evaluation import suites
from innerdpo_bench.evaluation.suites import SHIFTS

from helpers.evaluation import run_lm_eval_cli, write_distribution

runner = CliRunner()
LIMIT = 2   # medical row 2 is longer than tiny-random's 1,024 positions, which stock lm_eval refuses
SUITE = "genies:alpaca_easy"
FILES = {"in_domain": "genies/alpaca_easy/test.json", "difficulty_scaling": "genies/alpaca_hard/test.json",
         "moral_transfer": "ethics_justice/justice_test_hard.csv", "orthogonal": "medical/reward_test.jsonl"}


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def cli_results(tiny_model_path, tmp_path_factory):
    """The lm_eval CLI as a subprocess, base model only, the first LIMIT rows of each shift."""
    return run_lm_eval_cli(tmp_path_factory.mktemp("lm_eval_genies"), f"pretrained={tiny_model_path},dtype=float32",
                           {"suite": SUITE}, LIMIT, timeout=600)


@pytest.fixture(scope="module")
def eval_report(tiny_model_path, tmp_path_factory):
    output = tmp_path_factory.mktemp("genies_eval") / "eval.json"
    result = invoke("eval", "tiny-random", "--suite", SUITE, "--limit", LIMIT, "--batch-size", 4, "--device", "cpu",
                    "--output", output)
    assert result.exit_code == 0, result.output
    return json.loads(output.read_text()), output


@pytest.mark.slow
def test_lm_eval_cli_scores_the_shipped_rows(cli_results):
    results, samples = cli_results
    for shift in SHIFTS:
        assert results["results"][f"innerdpo_{shift}"]["sample_len"] == LIMIT
        docs = [s["doc"] for s in sorted(samples[shift], key=lambda s: s["doc_id"])]
        assert docs == suites.load_shift(shift, suite=SUITE, rows=LIMIT)
    assert "innerdpo_shifts" in results["groups"]


@pytest.mark.slow
def test_innerdpo_eval_matches_the_cli_and_records_provenance(cli_results, eval_report):
    results, _ = cli_results
    report, _ = eval_report
    assert report["suite"] == SUITE
    for shift in SHIFTS:
        ours, theirs = report["shifts"][shift], results["results"][f"innerdpo_{shift}"]
        assert ours["n"] == LIMIT and ours["acc"] == theirs["acc,none"], shift
        prov = report["provenance"][shift]
        assert prov["file"] == shipped.SHIPPED_PREFIX + FILES[shift]
        assert prov["sha256"] == shipped.checksums()[FILES[shift]] and prov["rows"] == LIMIT
        assert prov["orientation"] and prov["file_rows"] > 0
    assert "reasonable excuse" in report["provenance"]["moral_transfer"]["orientation"]


@pytest.mark.slow
def test_gate_takes_the_suite(eval_report):
    result = invoke("gate", "tiny-random", "--suite", SUITE, "--limit", LIMIT, "--min", "all=0", "--json",
                    "--output", eval_report[1])
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.output[result.output.index("{"):])
    assert verdict["passed"] is True


def test_queue_takes_the_real_suites(tmp_path):
    home = tmp_path / "home"
    assert invoke("queue", "add-base", "tiny-random", "--suite", SUITE, "--home", home).exit_code == 0
    added = invoke("queue", "add", "dpo", "--base-model", "tiny-random", "--dataset", "genies:alpaca_easy#train",
                   "--suite", f"{SUITE}@hub", "--home", home)
    assert added.exit_code == 0, added.output
    wrong = invoke("queue", "add-base", "tiny-random", "--suite", "genies:alpaca_eazy", "--home", home)
    assert wrong.exit_code == 2 and "Did you mean 'genies:alpaca_easy'?" in wrong.output


def test_the_genies_folder_flag_trains_on_it(tmp_path, tiny_model_path, monkeypatch):
    monkeypatch.setenv(genies.GENIES_DIR_ENV, "")   # the flag sets it for the process: undone after the test
    write_distribution(tmp_path / "distributions", split="train")
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "dpo", "--base-model", "tiny-random", "--dataset", "genies:tiny#train",
                                      "--genies-dir", str(tmp_path), "--max-steps", "1", "--batch-size", "2",
                                      "--effective-batch", "2", "--output-dir", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert "genies:tiny#train" in json.dumps(config)
    missing = runner.invoke(app, ["train", "dpo", "--dataset", "genies:tiny#train", "--genies-dir",
                                       str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_real_suites_map_shifts_to_shipped_files():
    described = {name: {s: None if r is None else r.describe() for s, r in suites.suite_refs(name).items()}
                 for name in suites.SUITES if name.startswith(suites.REAL_PREFIX)}
    assert described["genies:alpaca_easy"] == {
        "in_domain": "genies:alpaca_easy#test", "difficulty_scaling": "genies:alpaca_hard#test",
        "moral_transfer": "ethics:justice#test_hard", "orthogonal": "medical:reward#test"}
    assert described["genies:alpaca_easy@hub"]["moral_transfer"] == "ethics:justice@hub#test_hard"
    assert described["genies:math_easy"]["moral_transfer"] is None and "genies:math_easy@hub" not in described
    assert set(described) == {f"genies:{easy}{tail}" for easy, _, moral in suites.GENIES_PAIRS
                              for tail in ("", "@hub") if moral or not tail}
    assert suites.train_dataset("genies:arc_easy") == "genies:arc_easy#train"


def test_provenance_names_file_sha256_rows_and_orientation():
    refs = suites.suite_refs("genies:alpaca_easy@hub")
    prov = suites.provenance(refs["moral_transfer"], 500)
    assert {k: prov[k] for k in ("dataset", "config", "split", "rows", "file", "file_rows", "pairs")} == {
        "dataset": "ethics", "config": "justice@hub", "split": "test_hard", "rows": 500,
        "file": "shipped:ethics_justice/justice_test_hard.csv", "file_rows": 2052, "pairs": 704}
    assert prov["sha256"] == shipped.checksums()["ethics_justice/justice_test_hard.csv"]
    assert "unreasonable" in prov["orientation"]
    assert "top-scored" in suites.provenance(refs["in_domain"], 10)["orientation"]
    identity = suites.data_identity("genies:alpaca_easy")
    assert identity["files"]["in_domain"]["sha256"] == shipped.checksums()["genies/alpaca_easy/test.json"]
    assert suites.data_identity("mini") == {"suite": "mini"}


def test_the_cache_identity_follows_the_genies_folder(tmp_path, monkeypatch):
    """Another $INNERDPO_GENIES_DIR is other data: the whole-evaluation cache must not serve the shipped scores."""
    monkeypatch.setenv(genies.GENIES_DIR_ENV, "")
    shipped_identity = suites.data_identity(SUITE)
    for name in ("alpaca_easy", "alpaca_hard"):
        write_distribution(tmp_path, name=name)
    monkeypatch.setenv(genies.GENIES_DIR_ENV, str(tmp_path))
    folder_identity = suites.data_identity(SUITE)
    assert folder_identity["files"]["in_domain"]["file"] == str(tmp_path / "alpaca_easy" / "test.json")
    assert folder_identity["files"]["in_domain"] != shipped_identity["files"]["in_domain"]
    assert folder_identity["files"]["moral_transfer"] == shipped_identity["files"]["moral_transfer"]
