"""Render and tokenise preference pairs, and collate them into one `[chosen; rejected]` batch (spec §2).

Batches come in two layouts with the same numbers (tested): `PairCollator`, one padded row per completion
(`[2B, T]`, chosen rows first), and `PackedPairCollator`, one row per pair holding the prompt once, then
the chosen, then the rejected completion, with segment ids from which the forward builds a block attention
mask (spec §13: no prompt is run twice; on the mini suite with SmolLM2's chat template that is 40% fewer
tokens per step).

Rendering (`render`; the lm-eval tasks render a row the same way, `tasks/utils.py`):
  * the prompt's tokens get the tokenizer's special tokens (BOS) unless its text starts with the BOS already,
    lm-eval's rule (`encode_prompt`);
  * with a chat template: the prompt, as given, is one user turn plus the generation prompt; the completion is
    the assistant turn as the template writes it (content, then the template's end-of-turn and whatever the
    template writes after it, e.g. ChatML's newline), taken as the full conversation minus the rendered prompt;
  * without one: the prompt without trailing whitespace (with the tokenizer's BOS if it adds one), then
    `" " + completion` (the space is lm-eval's default target delimiter), then EOS: the text lm-eval scores.
The completion mask (`completion_mask`) marks the completion's own tokens (spec §1): the tokens before its first
special token (the end-of-turn or EOS) that are not special. Padding, the prompt, the end-of-turn or EOS and what
a template writes after it (ChatML's newline after `<|im_end|>`) are never scored, so the scored tokens are the
tokens of the completion text, which are what evaluation scores too (`tasks/README.md`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from innerdpo_bench.data.pairs import PLAIN_DELIMITER, plain_prompt


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def chat_prompt(tokenizer, prompt: str) -> str:
    """The prompt as one user turn (its text as given) plus the generation prompt, through the chat template."""
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)


def render(tokenizer, prompt: str, completion: str) -> tuple[str, str]:
    """(prompt_text, completion_text) exactly as tokenised; see the module docstring."""
    if has_chat_template(tokenizer):
        prompt_text = chat_prompt(tokenizer, prompt)
        full = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}], tokenize=False
        )
        if not full.startswith(prompt_text):
            raise ValueError("the chat template does not render the prompt as a prefix of the conversation")
        return prompt_text, full[len(prompt_text):]
    return plain_prompt(prompt), PLAIN_DELIMITER + completion


def encode_prompt(tokenizer, prompt_text: str) -> list[int]:
    """The rendered prompt's token ids with the tokenizer's special tokens (its BOS, if it adds one), unless the text
    already starts with the BOS (a chat template that writes it): lm-eval's rule (`HFLM.tok_encode`), so training
    and evaluation condition on the same tokens and a BOS is never doubled or dropped."""
    prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    starts_with_prefix = prefix is not None and prompt_text.startswith(tokenizer.decode(prefix))
    return tokenizer(prompt_text, add_special_tokens=not starts_with_prefix)["input_ids"]


def completion_mask(completion_ids: list[int], special: set[int]) -> list[int]:
    """1 on the completion's own tokens: those before its first special token (end-of-turn, EOS) that are not
    special themselves; 0 from that token on (what a template writes after its end-of-turn is not the completion)."""
    mask, ended = [], False
    for token in completion_ids:
        ended = ended or token in special
        mask.append(0 if ended else 1)
    return mask


@dataclass
class EncodeStats:
    """Counts to log after encoding a dataset."""

    rows: int = 0
    prompt_truncated: int = 0
    completion_truncated: int = 0
    dropped_empty: int = 0
    chat_template: bool = False
    notes: list[str] = field(default_factory=list)


def encode_pair(tokenizer, row: dict, max_prompt_length: int, max_length: int, stats: EncodeStats) -> dict | None:
    """Token ids and completion masks of one pair, or None when a completion is empty after truncation.

    Prompt ≤ `max_prompt_length` tokens (truncated from the left); prompt + completion ≤ `max_length`
    (completion truncated on the right).
    """
    chat = has_chat_template(tokenizer)
    special = set(tokenizer.all_special_ids)
    out: dict = {}
    prompt_ids = None
    for side in ("chosen", "rejected"):
        prompt_text, completion_text = render(tokenizer, row["prompt"], row[side])
        if prompt_ids is None:
            prompt_ids = encode_prompt(tokenizer, prompt_text)
            if len(prompt_ids) > max_prompt_length:
                stats.prompt_truncated += 1
                prompt_ids = prompt_ids[-max_prompt_length:]
        completion_ids = tokenizer(completion_text, add_special_tokens=False)["input_ids"]
        if not chat and tokenizer.eos_token_id is not None:
            completion_ids = completion_ids + [tokenizer.eos_token_id]
        room = max_length - len(prompt_ids)
        if len(completion_ids) > room:
            stats.completion_truncated += 1
            completion_ids = completion_ids[: max(room, 0)]
        mask = [0] * len(prompt_ids) + completion_mask(completion_ids, special)
        if sum(mask) == 0:
            stats.dropped_empty += 1
            return None
        out[f"{side}_ids"] = prompt_ids + completion_ids
        out[f"{side}_mask"] = mask
    out["prompt_length"] = len(prompt_ids)
    # tokens of the pair when packed (prompt once); the length-grouped sampler sorts by it
    out["length"] = len(out["chosen_ids"]) + len(out["rejected_ids"]) - len(prompt_ids)
    stats.rows += 1
    return out


def encode_pairs(tokenizer, rows: list[dict], max_prompt_length: int = 450, max_length: int = 512):
    """Encode every row; returns (encoded rows, stats)."""
    stats = EncodeStats(chat_template=has_chat_template(tokenizer))
    encoded = [e for r in rows if (e := encode_pair(tokenizer, r, max_prompt_length, max_length, stats)) is not None]
    return encoded, stats


class PairCollator:
    """Pad a list of encoded pairs into one batch of 2B rows: chosen rows first, then rejected.

    Right padding to the batch's own maximum (never a global one). Returns `input_ids`,
    `attention_mask` and `completion_mask`, all `[2B, T]`.
    """

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        seqs = [f["chosen_ids"] for f in features] + [f["rejected_ids"] for f in features]
        masks = [f["chosen_mask"] for f in features] + [f["rejected_mask"] for f in features]
        width = max(len(s) for s in seqs)
        input_ids = torch.full((len(seqs), width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(seqs), width), dtype=torch.long)
        completion = torch.zeros((len(seqs), width), dtype=torch.bool)
        for i, (ids, mask) in enumerate(zip(seqs, masks)):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            attention[i, : len(ids)] = 1
            completion[i, : len(mask)] = torch.tensor(mask, dtype=torch.bool)
        return {"input_ids": input_ids, "attention_mask": attention, "completion_mask": completion}


class PackedPairCollator:
    """One row per pair: `prompt · chosen completion · rejected completion`, right-padded to the batch's
    longest pair.

    Returns
      * `input_ids`, `position_ids` (each completion's positions continue from the prompt's end, as if it
        followed the prompt alone) and `segment_ids` (0 prompt, 1 chosen, 2 rejected, -1 padding), all `[B, L]`;
      * per completion, in the usual `[chosen; rejected]` order (`[2B, C]`, C the longest completion):
        `completion_pos`, the packed position of each completion token; `completion_from`, the position whose
        output predicts it (the previous token of the same completion, or the prompt's last token for the
        first); `completion_mask`, the scored tokens (not special, spec §1).
    `forward.forward_pass` turns the segment ids into the attention mask: a token sees the prompt and the
    earlier tokens of its own completion, never the sibling completion.
    """

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        pairs = len(features)
        width = max(f["length"] for f in features)
        longest = max(max(len(f["chosen_ids"]), len(f["rejected_ids"])) - f["prompt_length"] for f in features)
        input_ids = torch.full((pairs, width), self.pad_token_id, dtype=torch.long)
        position_ids = torch.zeros((pairs, width), dtype=torch.long)
        segment_ids = torch.full((pairs, width), -1, dtype=torch.long)
        completion_pos = torch.zeros((2 * pairs, longest), dtype=torch.long)
        completion_from = torch.zeros((2 * pairs, longest), dtype=torch.long)
        completion_mask = torch.zeros((2 * pairs, longest), dtype=torch.bool)
        for row, f in enumerate(features):
            prompt = f["prompt_length"]
            input_ids[row, :prompt] = torch.tensor(f["chosen_ids"][:prompt], dtype=torch.long)
            position_ids[row, :prompt] = torch.arange(prompt)
            segment_ids[row, :prompt] = 0
            start = prompt
            for segment, side in ((1, "chosen"), (2, "rejected")):
                ids, mask = f[f"{side}_ids"][prompt:], f[f"{side}_mask"][prompt:]
                n, seq = len(ids), row + (segment - 1) * pairs
                input_ids[row, start:start + n] = torch.tensor(ids, dtype=torch.long)
                position_ids[row, start:start + n] = torch.arange(prompt, prompt + n)
                segment_ids[row, start:start + n] = segment
                completion_pos[seq, :n] = torch.arange(start, start + n)
                completion_from[seq, :n] = torch.tensor([prompt - 1] + list(range(start, start + n - 1)))
                completion_mask[seq, :n] = torch.tensor(mask, dtype=torch.bool)
                if prompt == 0:  # nothing before the first token predicts it (the unpacked layout skips it too)
                    completion_mask[seq, 0] = False
                start += n
        return {"input_ids": input_ids, "position_ids": position_ids, "segment_ids": segment_ids,
                "completion_pos": completion_pos, "completion_from": completion_from,
                "completion_mask": completion_mask}
