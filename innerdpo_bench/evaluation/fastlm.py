"""A faster model for the same harness: lm-eval's HFLM with a cheaper loglikelihood and a score cache (spec §13).

Stock HFLM runs every request as its own sequence and a log-softmax over the full vocabulary at every
position. This subclass
  * packs the requests that share a context (a pair's chosen and rejected, or any multiple choice) into
    one sequence: the context once, then each continuation, with a block attention mask (a
    continuation sees the context and itself, never a sibling) and position ids that restart after the
    context, so each continuation is computed exactly as if it ran alone; and
  * runs the longest token prefix that every packed context of a call shares (a chat template's system
    prompt and role header: on SmolLM2 about 30 of a mini row's 42 prompt tokens) once, and hands its
    keys and values to every batch as a cache, instead of recomputing it for every row; and
  * asks the model for its final hidden states only, applies the LM head at continuation positions,
    and computes the log-softmax there.
It returns the same `(summed log-prob, is_greedy)` as HFLM for every request (tested to 1e-4); a
request that HFLM would truncate from the left runs alone, by HFLM's rule (keep the continuation, cut the context
from the left), and one whose continuation alone is longer than the model's window is refused as HFLM refuses it
(the innerdpo tasks never send one: they skip the row, `tasks/utils.py`).

`ScoreCache` remembers those answers per model identity (base weights, adapter checksum, dtype,
max length), keyed by the exact (context, continuation) strings. `innerdpo eval` uses it so the base
model's rows (adapter disabled) are computed once per base model and suite and reused by every
adapter, and so re-scoring an unchanged checkpoint is only the harness's own overhead. It is an
append-only JSON-lines file per identity under the model cache; concurrent writers append whole lines.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from lm_eval.models.huggingface import HFLM

from innerdpo_bench.models import cache_dir
from innerdpo_bench.models.forward import model_parts, no_head_positions, packed_attention_mask, unwrap_causal_lm
from innerdpo_bench.rundir import adapter_sha256

HEAD_CHUNK = 2048
MIN_SHARED_PREFIX = 4  # tokens; below this a shared prefix saves less than its bookkeeping costs


def _file_fingerprint(path: Path) -> str:
    """Cheap identity of a model file: name, size and modification time (hashing GBs would cost more than it saves)."""
    stat = path.stat()
    return f"{path.name}:{stat.st_size}:{int(stat.st_mtime)}"


def model_identity(base_model_path: str, adapter_dir: str | None, dtype: str, max_length: int) -> dict:
    """What a cached score depends on: base weights, adapter weights, precision, context window."""
    base = Path(base_model_path)
    weights = sorted(base.glob("*.safetensors")) + sorted(base.glob("*.bin")) if base.is_dir() else []
    identity = {"base": str(base_model_path), "base_files": [_file_fingerprint(p) for p in weights],
                "dtype": dtype, "max_length": max_length, "adapter": None}
    if adapter_dir is not None:
        identity["adapter"] = adapter_sha256(adapter_dir) or str(adapter_dir)
    return identity


class ScoreCache:
    """(context, continuation) → (log-prob, is_greedy) for one model identity, persisted as JSON lines."""

    def __init__(self, identity: dict, root: Path | None = None):
        key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]
        self.path = (root or cache_dir() / "scores") / f"{key}.jsonl"
        self.entries: dict[str, tuple[float, bool]] = {}
        self.hits = 0
        self.misses = 0
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a crash: ignore it
                    continue
                self.entries[record["k"]] = (record["ll"], record["greedy"])

    @staticmethod
    def key(context: str, continuation: str) -> str:
        return hashlib.sha256(f"{context}\x00{continuation}".encode()).hexdigest()

    def get(self, context: str, continuation: str) -> tuple[float, bool] | None:
        return self.entries.get(self.key(context, continuation))

    def put_many(self, items: list[tuple[tuple[str, str], tuple[float, bool]]]) -> None:
        if not items:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        for (context, continuation), (ll, greedy) in items:
            key = self.key(context, continuation)
            self.entries[key] = (ll, greedy)
            lines.append(json.dumps({"k": key, "ll": ll, "greedy": greedy}))
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


class FastHFLM(HFLM):
    """HFLM whose loglikelihood applies the LM head only at continuation tokens; optional `score_cache`."""

    def __init__(self, *args, score_cache: ScoreCache | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.score_cache = score_cache
        self.on_scored: Callable[[int, int], None] | None = None   # (requests answered, of all) after each batch

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs: int | None = None):
        if self.backend != "causal":
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
        answers: list[tuple[float, bool] | None] = [None] * len(requests)
        todo = []
        for index, (strings, _, _) in enumerate(requests):
            cached = self.score_cache.get(*strings) if self.score_cache is not None else None
            if cached is None:
                todo.append(index)
            else:
                answers[index] = cached
        if self.score_cache is not None:
            self.score_cache.hits += len(requests) - len(todo)
            self.score_cache.misses += len(todo)

        # Requests that share a context (a pair's chosen and rejected) become one packed sequence:
        # the context once, then each continuation, attending only to the context and itself. A request
        # HFLM would truncate from the left runs alone, by HFLM's rule.
        groups: dict[tuple[int, ...], list[int]] = {}
        alone = []
        for index in todo:
            _, context_enc, continuation_enc = requests[index]
            if len(continuation_enc) > self.max_length:
                raise ValueError(f"a continuation of {len(continuation_enc)} tokens does not fit the model's "
                                 f"{self.max_length} positions (lm-eval's HF model refuses it too)")
            if len(context_enc) + len(continuation_enc) > self.max_length + 1:
                alone.append([index])
            else:
                groups.setdefault(tuple(context_enc), []).append(index)
        packs = list(groups.values())
        prefix = self.shared_prefix([requests[g[0]][1] for g in packs])
        cache = self._prefix_cache(prefix) if prefix else None
        batch_size = self.batch_size if isinstance(self.batch_size, int) else (override_bs or 16)
        computed = []
        for selected, skip in ((packs, len(prefix)), (alone, None)):
            selected = sorted(selected, key=lambda g: -self._packed_length([requests[i] for i in g]))
            for start in range(0, len(selected), batch_size):
                chunk = selected[start:start + batch_size]
                scored = self._score_packs([[requests[i] for i in g] for g in chunk], skip, cache if skip else None)
                for indices, group_answers in zip(chunk, scored):
                    for index, answer in zip(indices, group_answers):
                        answers[index] = answer
                        computed.append((requests[index][0], answer))
                if self.on_scored is not None:
                    self.on_scored(len(requests) - len(todo) + len(computed), len(requests))
        if self.score_cache is not None:
            self.score_cache.put_many(computed)
        return answers

    @staticmethod
    def shared_prefix(contexts: list[list[int]]) -> list[int]:
        """The longest token prefix of every context, leaving each at least one token of its own (whose
        output predicts the first continuation token); empty when shorter than `MIN_SHARED_PREFIX` or
        when there are fewer than two contexts."""
        if len(contexts) < 2:
            return []
        first, limit = contexts[0], min(len(c) for c in contexts) - 1
        length = 0
        while length < limit and all(c[length] == first[length] for c in contexts):
            length += 1
        return list(first[:length]) if length >= MIN_SHARED_PREFIX else []

    @torch.no_grad()
    def _prefix_cache(self, prefix: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Keys and values of every layer for `prefix`, computed once by the model as it is now (adapter on
        or off), `[1, heads, len(prefix), head_dim]` each."""
        from transformers import DynamicCache

        causal_lm = unwrap_causal_lm(self.model)
        cache = DynamicCache(config=causal_lm.config)
        self.model(input_ids=torch.tensor([prefix], device=self.device), past_key_values=cache, use_cache=True,
                   logits_to_keep=no_head_positions(self.device))
        return [(layer.keys, layer.values) for layer in cache.layers]

    def _packed_length(self, group) -> int:
        _, context_enc, _ = group[0]
        if len(group) == 1:
            return len((context_enc + group[0][2])[-(self.max_length + 1):][:-1])
        return len(context_enc) + sum(len(cont) - 1 for _, _, cont in group)

    def _layout(self, group, skip: int | None):
        """Tokens, position ids, segment ids (0 = context, i = continuation i) and, per continuation, the
        row positions whose next-token predictions score it. `skip`: leading context tokens already in the
        cache (positions continue after them); None: a request that runs alone, truncated by HFLM's rule."""
        _, context_enc, first_cont = group[0]
        if skip is None:
            tokens = (context_enc + first_cont)[-(self.max_length + 1):][:-1]
            lo = len(tokens) - len(first_cont)
            return tokens, list(range(len(tokens))), [0] * len(tokens), [list(range(lo, len(tokens)))]
        tokens = list(context_enc[skip:])
        own = len(tokens)
        positions, segments, score_at = list(range(skip, len(context_enc))), [0] * own, []
        for segment, (_, _, cont) in enumerate(group, start=1):
            start = len(tokens)
            body = cont[:-1]  # the last continuation token is only ever a target
            tokens += body
            positions += range(len(context_enc), len(context_enc) + len(body))
            segments += [segment] * len(body)
            score_at.append([own - 1] + list(range(start, start + len(body))))
        return tokens, positions, segments, score_at

    @torch.no_grad()
    def _score_packs(self, packs, skip: int | None, prefix_cache=None) -> list[list[tuple[float, bool]]]:
        layouts = [self._layout(group, skip) for group in packs]
        width = max(len(tokens) for tokens, *_ in layouts)
        rows = len(layouts)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((rows, width), pad, dtype=torch.long, device=self.device)
        position_ids = torch.zeros((rows, width), dtype=torch.long, device=self.device)
        segment_ids = torch.full((rows, width), -1, dtype=torch.long, device=self.device)
        for row, (tokens, positions, segments, _) in enumerate(layouts):
            n = len(tokens)
            input_ids[row, :n] = torch.tensor(tokens)
            position_ids[row, :n] = torch.tensor(positions)
            segment_ids[row, :n] = torch.tensor(segments)
        mask = packed_attention_mask(segment_ids)  # a continuation sees the context and itself, never a sibling
        extra = {}
        if prefix_cache is not None:  # every row also sees the whole shared prefix, from the cache
            from transformers import DynamicCache

            shared = prefix_cache[0][0].shape[-2]
            mask = torch.cat([mask.new_ones(rows, 1, width, shared), mask], dim=-1)
            extra["past_key_values"] = DynamicCache(
                ddp_cache_data=[(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in prefix_cache])
        causal_lm = unwrap_causal_lm(self.model)
        decoder, _, _, head = model_parts(causal_lm)
        final = []
        handle = decoder.register_forward_hook(
            lambda _m, _i, out: final.append(out[0] if isinstance(out, tuple) else out.last_hidden_state))
        try:
            self.model(input_ids=input_ids, position_ids=position_ids, attention_mask=mask,
                       use_cache=prefix_cache is not None, logits_to_keep=no_head_positions(self.device),
                       **extra)
        finally:
            handle.remove()
        hidden_rows, targets = [], []
        for row, (group, (_, _, _, score_at)) in enumerate(zip(packs, layouts)):
            for (_, _, cont), at in zip(group, score_at):
                hidden_rows.append(final[0][row, at])
                targets.extend(cont)
        hidden = torch.cat(hidden_rows)  # [N, d]
        targets = torch.tensor(targets, dtype=torch.long, device=hidden.device)
        token_logp, greedy = [], []
        for start in range(0, hidden.shape[0], HEAD_CHUNK):
            logits = head(hidden[start:start + HEAD_CHUNK]).float()
            t = targets[start:start + HEAD_CHUNK]
            token_logp.append(logits.gather(-1, t[:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1))
            greedy.append(logits.argmax(-1) == t)
        token_logp, greedy = torch.cat(token_logp).tolist(), torch.cat(greedy).tolist()
        answers, offset = [], 0
        for group in packs:
            group_answers = []
            for _, _, cont in group:
                n = len(cont)
                group_answers.append((float(sum(token_logp[offset:offset + n])), all(greedy[offset:offset + n])))
                offset += n
            answers.append(group_answers)
        return answers
