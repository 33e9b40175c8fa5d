"""Text statistics of sample generations (`textstats`): hand-written texts against values worked out by hand."""

from __future__ import annotations

import pytest

from innerdpo_bench.evaluation import textstats

ONE_WORD = " ".join(["the"] * 50)          # 47 four-grams, all equal; 49 bigrams, one distinct


def test_words_split_punctuation_and_cjk_characters():
    assert textstats.words("Hello, World! 2+2=4") == ["hello", ",", "world", "!", "2", "+", "2", "=", "4"]
    assert textstats.words("多喝水。Rest") == ["多", "喝", "水", "。", "rest"]
    assert textstats.words("   ") == []


def test_a_text_repeating_one_word():
    assert textstats.repetition(ONE_WORD) == pytest.approx(1 - 1 / 47)      # near 1
    assert textstats.distinct([ONE_WORD]) == pytest.approx(1 / 49)         # near 0
    assert textstats.repetition(ONE_WORD) > 0.97 and textstats.distinct([ONE_WORD]) < 0.03


def test_hand_values():
    # "a b c d a b c d": 4-grams abcd bcda cdab dabc abcd → 4 distinct of 5; bigrams ab bc cd da ab bc cd → 4 of 7
    text = "a b c d a b c d"
    assert textstats.repetition(text) == pytest.approx(1 - 4 / 5)
    assert textstats.distinct([text]) == pytest.approx(4 / 7)
    assert textstats.repetition("one two three four five") == 0.0
    assert textstats.repetition("too short") is None                    # no 4-gram: left out of the mean
    # distinct2 pools texts: the same answer to two prompts halves it
    assert textstats.distinct(["x y z", "x y z"]) == pytest.approx(2 / 4)


def test_text_stats_of_a_set():
    stats = textstats.text_stats(["a b c d a b c d", "", "one two three four five"], truncated=[True, False, False],
                                 nlls=[1.0, None, 3.0])
    assert stats.n == 3
    assert stats.rep == pytest.approx((0.2 + 0.0) / 2)                  # the empty text has no 4-gram
    assert stats.distinct2 == pytest.approx((4 + 4) / (7 + 4))
    assert stats.len == pytest.approx((8 + 0 + 5) / 3)
    assert stats.empty == pytest.approx(1 / 3) and stats.truncated == pytest.approx(1 / 3)
    assert stats.nll == pytest.approx(2.0)


def _record(shift: str, model_text: str, base_text: str, model_nll: float, base_nll: float) -> dict:
    return {"shift": shift, "prompt": "p",
            "model": {"greedy": {"text": model_text, "finished": False, "nll": model_nll}},
            "base": {"greedy": {"text": base_text, "finished": True, "nll": base_nll}}}


def test_run_columns_and_rules_from_records():
    records = [_record("in_domain", ONE_WORD, "one two three four five", 0.5, 2.0),
               _record("orthogonal", ONE_WORD, "six seven eight nine ten", 1.5, 2.0)]
    stats = textstats.sample_stats(records)
    assert list(stats) == ["in_domain", "orthogonal", "all"]
    assert stats["in_domain"]["model"].truncated == 1.0 and stats["in_domain"]["base"].truncated == 0.0
    columns = textstats.run_columns(records)
    assert columns["rep"] == pytest.approx(1 - 1 / 47)
    assert columns["distinct2"] == pytest.approx(1 / 98)                # the same bigram 98 times
    assert columns["len"] == 50.0 and columns["base_len"] == 5.0
    assert columns["gen_nll_ratio"] == pytest.approx(1.0 / 2.0)
    fired = textstats.flags(stats["all"]["model"], stats["all"]["base"])
    assert [line.split()[0] for line in fired] == ["rep", "distinct2"]  # each names its rule and threshold
    assert not any("coheren" in line for line in fired)
    assert textstats.flags(stats["all"]["base"], stats["all"]["base"]) == []
    assert textstats.run_columns([]) == {column: None for column in textstats.RUN_COLUMNS}
