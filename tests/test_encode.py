"""Encoding a preference pair (spec §1, §2): the truncation rules and their counters, and which tokens are scored,
each on a hand-checked case with the tiny tokenizer (BOS `<s>` added, EOS `</s>`, no chat template)."""

import pytest

from innerdpo_bench.data.encode import (
    EncodeStats,
    completion_mask,
    encode_pair,
    encode_pairs,
    render,
)

PROMPT = "one two three four"        # <s> one ␣two ␣three ␣four: 5 tokens with BOS
CHOSEN = "the"                        # ␣the, then </s>: 2 tokens
REJECTED = "seven eight"              # ␣s ev en ␣e ight, then </s>: 6 tokens


def ids(tokenizer, text, special=True):
    return tokenizer(text, add_special_tokens=special)["input_ids"]


def test_no_chat_template_renders_the_lm_eval_text(tiny_tokenizer):
    """prompt without trailing whitespace, then " " + completion (lm-eval's delimiter), then EOS: the text the
    harness scores; a prompt's trailing newline does not reach the completion."""
    assert render(tiny_tokenizer, "Question:\n", "Tiger") == ("Question:", " Tiger")
    row = {"prompt": PROMPT + "\n", "chosen": CHOSEN, "rejected": REJECTED}
    encoded = encode_pair(tiny_tokenizer, row, 100, 200, EncodeStats())
    assert encoded["chosen_ids"] == ids(tiny_tokenizer, PROMPT) + ids(tiny_tokenizer, " the", False) + [
        tiny_tokenizer.eos_token_id]


def test_prompt_is_cut_from_the_left_and_counted(tiny_tokenizer):
    prompt = ids(tiny_tokenizer, PROMPT)
    stats = EncodeStats()
    encoded = encode_pair(tiny_tokenizer, {"prompt": PROMPT, "chosen": CHOSEN, "rejected": REJECTED}, 3, 200, stats)
    assert encoded["prompt_length"] == 3 and encoded["chosen_ids"][:3] == prompt[-3:]  # BOS and "one" cut, the end kept
    assert (stats.prompt_truncated, stats.completion_truncated, stats.dropped_empty, stats.rows) == (1, 0, 0, 1)


def test_the_total_cap_cuts_the_completion_on_the_right_and_counts_each(tiny_tokenizer):
    """max_length 8 with a 5-token prompt leaves 3 completion tokens: chosen (2) fits, rejected (6) keeps its first
    3 and loses its EOS; one row, one completion cut."""
    stats = EncodeStats()
    encoded = encode_pair(tiny_tokenizer, {"prompt": PROMPT, "chosen": CHOSEN, "rejected": REJECTED}, 7, 8, stats)
    rejected = ids(tiny_tokenizer, " " + REJECTED, False)
    assert encoded["rejected_ids"][5:] == rejected[:3] and len(encoded["rejected_ids"]) == 8
    assert encoded["rejected_mask"] == [0] * 5 + [1, 1, 1]
    assert encoded["chosen_mask"] == [0] * 5 + [1, 0]       # ␣the scored, </s> not
    assert (stats.prompt_truncated, stats.completion_truncated, stats.dropped_empty) == (0, 1, 0)


def test_a_row_whose_completion_is_empty_after_truncation_is_dropped_and_counted(tiny_tokenizer):
    """Total cap 5: the 5-token prompt leaves no room, chosen is cut to nothing and the row is dropped (one
    completion cut, one row dropped); the 2-token prompt "<s> one" leaves 3: chosen fits, rejected is cut (a second
    completion cut) and the row is kept."""
    rows = [{"prompt": PROMPT, "chosen": CHOSEN, "rejected": REJECTED},
            {"prompt": "one", "chosen": CHOSEN, "rejected": REJECTED}]
    encoded, stats = encode_pairs(tiny_tokenizer, rows, max_prompt_length=5, max_length=5)
    assert [e["prompt_length"] for e in encoded] == [2]
    assert (stats.rows, stats.dropped_empty, stats.completion_truncated, stats.prompt_truncated) == (1, 1, 2, 0)
    empty = [{"prompt": PROMPT, "chosen": " ", "rejected": REJECTED}]  # "  " is one token: scored, so kept
    assert encode_pairs(tiny_tokenizer, empty, 100, 200)[1].dropped_empty == 0


def test_only_the_completions_own_tokens_are_scored():
    """Spec §1 m_t: special tokens are never scored, nor anything a template writes after its end-of-turn (ChatML's
    newline after <|im_end|>): the scored tokens are the completion text's."""
    special = {2, 0}
    assert completion_mask([11, 12, 2, 198], special) == [1, 1, 0, 0]   # content, <|im_end|>, "\n"
    assert completion_mask([11, 2], special) == [1, 0]                   # content, EOS
    assert completion_mask([0, 11], special) == [0, 0]                   # a completion that starts with a special token


@pytest.mark.parametrize("template_tail", ["\n", ""])
def test_chat_template_scores_the_content_tokens_only(tiny_tokenizer, template_tail):
    """With a ChatML-like template the completion text is content + end-of-turn + the template's tail; the scored
    tokens are exactly the content's tokens, tokenised on their own."""
    from copy import deepcopy

    tokenizer = deepcopy(tiny_tokenizer)
    tokenizer.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>" + template_tail
                               + "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
    prompt_text, completion_text = render(tokenizer, PROMPT + "\n", CHOSEN)
    assert prompt_text.endswith("<|assistant|>\n") and completion_text == CHOSEN + "</s>" + template_tail
    assert PROMPT + "\n</s>" in prompt_text   # the prompt as given: its trailing newline stays in the user turn
    encoded = encode_pair(tokenizer, {"prompt": PROMPT + "\n", "chosen": CHOSEN, "rejected": REJECTED}, 400, 500,
                          EncodeStats())
    n_prompt = encoded["prompt_length"]
    scored = [t for t, m in zip(encoded["chosen_ids"][n_prompt:], encoded["chosen_mask"][n_prompt:]) if m]
    assert scored == ids(tokenizer, CHOSEN, False)
