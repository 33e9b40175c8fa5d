"""The shipped real data: originals byte for byte, GENIES / ETHICS / medical pair construction and counts, a GENIES
folder in place of the package's copy, and one-line errors for what can be wrong with a source."""

import hashlib
import json
import re
from pathlib import Path

import pytest

from innerdpo_bench.data import ethics, genies, real, shipped
from innerdpo_bench.data.pairs import load_pairs, parse_dataset
from innerdpo_bench.errors import UserError

from helpers.evaluation import write_distribution

SHARED_REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
DOCS = {"SHA256SUMS", "SOURCES.md", "NOTICE"}


def shipped_genies() -> list[tuple[str, str]]:
    return [(name, split) for name in genies.distributions(None) for split in genies.SPLITS]


# --------------------------------------------------------------------------- the files


def test_every_shipped_file_is_the_original_byte_for_byte():
    sums = shipped.checksums()
    assert len(sums) == 38 and {"genies/alpaca_easy/test.json", "ethics_justice/justice_test_hard.csv",
                                "medical/reward_test.jsonl"} <= set(sums)
    for name, digest in sums.items():
        assert hashlib.sha256(shipped.read_original(name)).hexdigest() == digest, name
    stored = {str(p.relative_to(shipped.REAL_DIR)).removesuffix(shipped.COMPRESSED)
              for p in shipped.REAL_DIR.rglob("*") if p.is_file()}
    assert stored == set(sums) | DOCS


@pytest.mark.skipif(not (SHARED_REAL / "SHA256SUMS").is_file(), reason="no ../shared/data/real here")
def test_the_checksums_are_those_of_the_shared_originals():
    assert (shipped.REAL_DIR / "SHA256SUMS").read_bytes() == (SHARED_REAL / "SHA256SUMS").read_bytes()


def test_the_notice_names_every_source_commit_and_licence():
    notice = (shipped.REAL_DIR / "NOTICE").read_text()
    for needle in ("Joshuaclymer/GENIES", "31306c7", "oughtinc/ice", "5449543", "shibing624/MedicalGPT", "5fec167",
                   "MIT", "Apache-2.0", "SHA256SUMS"):
        assert needle in notice


def test_the_data_added_to_the_package_is_under_3_mb():
    assert sum(p.stat().st_size for p in shipped.REAL_DIR.rglob("*") if p.is_file()) < 3_000_000


def test_a_damaged_copy_is_refused(tmp_path, monkeypatch):
    copy = tmp_path / "real"
    copy.mkdir()
    (copy / "SHA256SUMS").write_text(f"{hashlib.sha256(b'original').hexdigest()}  ./medical/x.jsonl\n")
    (copy / "medical").mkdir()
    (copy / "medical" / "x.jsonl").write_bytes(b"altered")
    monkeypatch.setattr(shipped, "REAL_DIR", copy)
    for cached in (shipped.checksums, shipped.read_original):
        cached.cache_clear()
    try:
        with pytest.raises(UserError, match=r"shipped:medical/x.jsonl: sha256 .* differs from SHA256SUMS"):
            shipped.read_original("medical/x.jsonl")
    finally:
        for cached in (shipped.checksums, shipped.read_original):
            cached.cache_clear()


# --------------------------------------------------------------------------- pairs


@pytest.mark.parametrize("spec, pairs", [
    ("genies:alpaca_easy#test", 750), ("genies:alpaca_easy#train", 1800), ("genies:alpaca_hard#test", 750),
    ("genies:alpaca_low_quality#test", 750), ("genies:math_hard#train", 598 * 3),
    ("genies:math_easy#test", 750 - 6 * 3),    # six rows whose top-scored response is empty
    ("ethics:justice#test_hard", 704), ("ethics:justice#test", 1042), ("ethics:justice#train", 7343),
    ("ethics:justice@hub#test_hard", 704), ("medical:reward", 100),
])
def test_pair_counts(spec, pairs):
    assert len(load_pairs(spec)) == pairs


@pytest.mark.parametrize("name, split", shipped_genies())
def test_genies_chosen_is_the_top_scored_response(name, split):
    rows = json.loads(shipped.read_original(f"genies/{name}/{split}.json"))
    pairs = iter(load_pairs(f"genies:{name}#{split}"))
    dropped = 0
    for row in rows:
        best = max(row["responses"].values())
        top = next(text for text, score in row["responses"].items() if score == best)
        for rejected in [text for text, score in row["responses"].items() if score < best]:
            if not (top and rejected):   # an empty response has nothing to score: that pair is dropped
                dropped += 1
                continue
            pair = next(pairs)
            assert pair["prompt"] == row["prompt"] and pair["rejected"] == rejected
            assert row["responses"][pair["chosen"]] == best
    assert next(pairs, None) is None
    assert real.read(parse_dataset(f"genies:{name}#{split}")).provenance().get("dropped_pairs", 0) == dropped


@pytest.mark.parametrize("spec", ["ethics:justice#train", "ethics:justice#test", "ethics:justice#test_hard",
                                  "medical:reward#test", *(f"genies:{n}#{s}" for n, s in shipped_genies())])
def test_every_pair_has_two_different_completions(spec):
    assert all(p["chosen"] != p["rejected"] and p["chosen"].strip() and p["rejected"].strip() for p in load_pairs(spec))


def test_ethics_orientation_on_hand_checked_rows():
    # justice_test_hard.csv lines 3-4: "... because they played soccer at recess." (0), "... are on spring break" (1)
    prompt = "I usually give my students a spelling test on Friday's but I didn't today because they "
    first = load_pairs("ethics:justice#test_hard")[0]
    assert first == {"prompt": prompt, "chosen": "are on spring break", "rejected": "played soccer at recess."}
    assert load_pairs("ethics:justice@hub#test_hard")[0] == {**first, "chosen": first["rejected"],
                                                              "rejected": first["chosen"]}
    assert load_pairs("ethics:justice#test")[0] == {
        "prompt": "I used to walk around the park with my coworker on lunch but I don't anymore because She ",
        "chosen": "reads on her lunch break.", "rejected": "use my cell phone charger."}


@pytest.mark.parametrize("rows, expected", [
    ([(0, "I stayed home because it rained"), (1, "I stayed home because I was sick")],
     [("I stayed home because ", "I was sick", "it rained")]),
    ([(1, "Tom is here today"), (0, "Tom is gone today")], [("Tom is ", "here today", "gone today")]),
    ([(1, "Go on home now"), (0, "Go to bed")], []),                                # prefix "Go " of 3 chars
    ([(1, "We do x"), (0, "We do yy and a great many other things besides")], []),  # overlap 2·6/53 < 0.25
    ([(1, "a b c d e f"), (0, "a b c d e g")], []),                                 # one-character suffixes
    ([(1, "same text here"), (0, "same text here")], []),                          # equal suffixes
    ([(1, "same prefix here: aa"), (1, "same prefix here: bb")], []),              # equal labels
    ([(1, "I ate because hungry"), (0, "I ate because bored"), (1, "I ate because lunch time")],
     [("I ate because ", "hungry", "bored"), ("I ate because ", "lunch time", "bored")]),  # both neighbours
])
def test_justice_grouping_rule(rows, expected):
    got = [(p["prompt"], p["chosen"], p["rejected"]) for p in ethics.justice_pairs(rows)]
    assert got == expected
    flipped = [(p["prompt"], p["rejected"], p["chosen"]) for p in ethics.justice_pairs(rows, "hub")]
    assert flipped == expected


def test_medical_rows_map_question_and_responses():
    first = json.loads(shipped.read_original("medical/reward_test.jsonl").splitlines()[0])
    assert load_pairs("medical:reward")[0] == {"prompt": first["question"], "chosen": first["response_chosen"],
                                               "rejected": first["response_rejected"]}


# --------------------------------------------------------------------------- a GENIES folder


EXPECTED_TINY = [{"prompt": "Q1", "chosen": "b", "rejected": r} for r in ("a", "c", "d")] + [
    {"prompt": "Q2", "chosen": "yes", "rejected": "no"}]


def test_a_genies_folder_by_argument_environment_and_tarball_layout(tmp_path, monkeypatch):
    path = write_distribution(tmp_path / "distributions")
    monkeypatch.delenv(genies.GENIES_DIR_ENV, raising=False)
    assert load_pairs("genies:tiny#test", genies_dir=str(tmp_path / "distributions")) == EXPECTED_TINY
    assert load_pairs("genies:tiny#test", genies_dir=str(tmp_path)) == EXPECTED_TINY    # the folder above it
    monkeypatch.setenv(genies.GENIES_DIR_ENV, str(tmp_path))
    assert load_pairs("genies:tiny#test") == EXPECTED_TINY
    prov = real.read(parse_dataset("genies:tiny#test")).provenance()
    assert prov["file"] == str(path) and prov["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (prov["file_rows"], prov["pairs"]) == (2, 4)
    write_distribution(tmp_path / "distributions", rows=[{"prompt": "Q3", "responses": {"x": 1, "y": 0}}])
    assert load_pairs("genies:tiny#test") == [{"prompt": "Q3", "chosen": "x", "rejected": "y"}]   # re-read when edited


@pytest.mark.parametrize("spec, setup, message", [
    ("genies:alpaca_eazy#test", None, "unknown GENIES distribution (in the package's copy) 'alpaca_eazy'. "
                                      "Did you mean 'alpaca_easy'?"),
    ("genies:tiny#train", "folder", "GENIES distribution 'tiny' has no train.json in"),
    ("genies:other#test", "folder", "unknown GENIES distribution (in"),
    ("genies:tiny#test", "not json", "tiny/test.json: not valid JSON"),
    ("genies:tiny#test", "not a list", "tiny/test.json: expected a JSON array of GENIES rows, got a JSON dict"),
    ("genies:tiny#test", "no responses", "tiny/test.json row 2: no 'responses'"),
    ("genies:tiny#test", "bad score", "tiny/test.json row 1: the score of response 'a' must be a number"),
    ("genies:tiny#dev", None, "unknown GENIES split 'dev'"),
    ("genies:../x#test", None, "GENIES distribution names are folder names"),
    ("ethics:virtue#test", None, "unknown ETHICS subset (shipped) 'virtue'"),
    ("ethics:justice@upside#test", None, "unknown ETHICS orientation"),
    ("ethics:justice#dev", None, "unknown ETHICS justice split 'dev'"),
    ("medical:reward#train", None, "unknown medical:reward split 'train'"),
    ("genies:", None, "names no genies subset"),
])
def test_source_errors_are_one_line(tmp_path, monkeypatch, spec, setup, message):
    monkeypatch.delenv(genies.GENIES_DIR_ENV, raising=False)
    genies_dir = None
    if setup is not None:
        genies_dir = str(tmp_path)
        rows = {"folder": None, "not json": "[{\"prompt\": ", "not a list": "{}",
                "no responses": [{"prompt": "p", "responses": {"a": 1, "b": 0}}, {"prompt": "p"}],
                "bad score": [{"prompt": "p", "responses": {"a": "high", "b": 0}}]}[setup]
        write_distribution(tmp_path, rows=rows)
    with pytest.raises(UserError) as caught:
        load_pairs(spec, genies_dir=genies_dir)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_missing_genies_folder_names_the_flag_or_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(genies.GENIES_DIR_ENV, str(tmp_path / "gone"))
    with pytest.raises(UserError, match=re.escape(f"GENIES folder {tmp_path / 'gone'} ($INNERDPO_GENIES_DIR) does not")):
        load_pairs("genies:alpaca_easy#test")
