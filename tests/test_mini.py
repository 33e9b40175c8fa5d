"""The mini suite: deterministic, big enough, no train/shift leaks, no length or first-word shortcut."""

import json

import pytest

from innerdpo_bench.data.mini import SPLITS, build_mini, corpus_texts, load_mini, write_mini_jsonl
from innerdpo_bench.errors import UserError
from innerdpo_bench.evaluation.suites import SHIFTS

CHANCE_LOW, CHANCE_HIGH = 0.40, 0.60


@pytest.fixture(scope="module")
def suite():
    return build_mini(seed=0)


def triples(rows):
    return [(r["prompt"], r["chosen"], r["rejected"]) for r in rows]


def pairwise_accuracy(rows, prefers):
    """Accuracy of a scorer that sees only the two completions.

    `prefers(chosen, rejected)` is 1 when it picks chosen, -1 when it picks rejected and 0 for a
    tie, which counts as half right.
    """
    total = 0.0
    for r in rows:
        total += {1: 1.0, 0: 0.5, -1: 0.0}[prefers(r["chosen"], r["rejected"])]
    return total / len(rows)


def sign(x):
    return (x > 0) - (x < 0)


def prefer_longer(a, b):
    return sign(len(a) - len(b))


def by_first_word(key, smaller_wins=False):
    """A fixed rule on first words only: prefer the completion whose first word has the larger key."""
    def prefers(a, b):
        ka, kb = key(a.split()[0]), key(b.split()[0])
        s = (ka > kb) - (ka < kb)
        return -s if smaller_wins else s
    return prefers


FIRST_WORD_RULES = {
    "alphabetically_smaller": by_first_word(str.lower, smaller_wins=True),
    "alphabetically_larger": by_first_word(str.lower),
    "longer_first_word": by_first_word(len),
    "capitalised_first_word": by_first_word(lambda w: w[:1].isupper()),
}


def test_split_names():
    assert SPLITS == ("train", "in_domain", "difficulty_scaling", "moral_transfer", "orthogonal")
    assert SHIFTS == SPLITS[1:]


def test_build_is_deterministic(suite):
    assert build_mini(seed=0) == suite
    assert build_mini(seed=1) != suite  # the seed is really used


def test_jsonl_bytes_identical_across_writes(tmp_path, suite):
    first = write_mini_jsonl(tmp_path / "a", seed=0)
    second = write_mini_jsonl(tmp_path / "b", seed=0)
    assert set(first) == set(second) == set(SPLITS)
    for split in SPLITS:
        assert first[split].name == f"{split}.jsonl"
        data = first[split].read_bytes()
        assert data == second[split].read_bytes()
        rows = [json.loads(line) for line in data.decode("utf-8").splitlines()]
        assert rows == suite[split]


def test_counts(suite):
    assert len(suite["train"]) >= 1000
    for split in SHIFTS:
        assert len(suite[split]) >= 200, split


def test_no_train_row_in_any_shift(suite):
    train = set(triples(suite["train"]))
    for split in SHIFTS:
        assert not train & set(triples(suite[split])), split


def test_in_domain_prompts_are_held_out(suite):
    train_prompts = {r["prompt"] for r in suite["train"]}
    assert not train_prompts & {r["prompt"] for r in suite["in_domain"]}


@pytest.mark.parametrize("split", SPLITS)
def test_no_duplicate_rows(suite, split):
    rows = triples(suite[split])
    assert len(set(rows)) == len(rows)


@pytest.mark.parametrize("split", SPLITS)
def test_fields_are_nonempty_distinct_and_short(suite, split):
    for row in suite[split]:
        assert set(row) == {"prompt", "chosen", "rejected"}
        assert all(isinstance(v, str) and v.strip() for v in row.values()), row
        assert row["chosen"] != row["rejected"], row
        assert len(row["prompt"]) < 200, row
        assert len(row["chosen"]) < 160 and len(row["rejected"]) < 160, row


@pytest.mark.parametrize("split", SPLITS)
def test_length_scorer_is_near_chance(suite, split):
    acc = pairwise_accuracy(suite[split], prefer_longer)
    assert CHANCE_LOW <= acc <= CHANCE_HIGH, f"{split}: prefer-longer accuracy {acc:.3f}"


@pytest.mark.parametrize("rule", sorted(FIRST_WORD_RULES))
@pytest.mark.parametrize("split", SPLITS)
def test_first_word_scorer_is_near_chance(suite, split, rule):
    acc = pairwise_accuracy(suite[split], FIRST_WORD_RULES[rule])
    assert CHANCE_LOW <= acc <= CHANCE_HIGH, f"{split}: first-word rule {rule} accuracy {acc:.3f}"


def test_load_mini_matches_build_and_returns_fresh_rows(suite):
    rows = load_mini("moral_transfer")
    assert rows == suite["moral_transfer"]
    rows[0]["chosen"] = "tampered"
    assert load_mini("moral_transfer")[0]["chosen"] != "tampered"


def test_corpus_texts_cover_every_string_in_order(suite):
    texts = corpus_texts(seed=0)
    expected = [t for split in SPLITS for row in triples(suite[split]) for t in row]
    assert texts == expected


def test_unknown_split_is_a_user_error():
    with pytest.raises(UserError, match=r"unknown mini split 'trian'.*Did you mean 'train'\?.*orthogonal"):
        load_mini("trian")


def test_scorers_catch_a_planted_shortcut():
    """The scorers above would notice a shortcut: a rows-with-a-tell set scores 1.0, not chance."""
    rows = [{"prompt": "p", "chosen": "Always the longer one.", "rejected": "Never short."}] * 4
    assert pairwise_accuracy(rows, prefer_longer) == 1.0
    assert pairwise_accuracy(rows, FIRST_WORD_RULES["alphabetically_smaller"]) == 1.0
    assert pairwise_accuracy(rows, FIRST_WORD_RULES["alphabetically_larger"]) == 0.0


def test_tiny_random_tokenizer_corpus_is_the_mini_text():
    """tiny-random's tokenizer is trained on a shipped copy of the mini suite's text (models/ imports no data
    generator); the copy must still equal what the generator gives, or the tokenizer silently changes."""
    from innerdpo_bench.models import tiny_corpus

    assert tiny_corpus() == corpus_texts(seed=0)
