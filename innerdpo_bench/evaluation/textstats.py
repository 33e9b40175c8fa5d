"""Cheap statistics of generated text, per adapter and shift, from the records of a samples file (`samples.py`).

Pure functions over strings and numbers (no torch, no files): the worker records them in the store, `innerdpo
samples` prints them, the TUI shows them. What each one catches and misses: docs/statistics.md, "Reading the
adapters".

Words. Texts are split into words by `words`: runs of letters/digits, each punctuation mark, and each CJK
character on its own (the orthogonal shift's answers are Chinese, written without spaces).

    rep       = mean over texts of 1 − |distinct 4-grams| / |4-grams|     (seq-rep-4, Welleck et al. 2019, arXiv
                1908.04319); a text with fewer than 4 words has none and is left out of the mean
    distinct2 = |distinct bigrams| / |bigrams|, pooled over all the texts of a set (distinct-2, Li et al. 2016,
                arXiv 1510.03055): low when a model repeats itself within a text or says the same thing to
                every prompt
    len       = mean number of words per text
    empty     = share of texts with no word
    truncated = share of texts that reached max_new_tokens without an end-of-sequence token
    nll       = mean over texts of the generating model's per-token NLL of its own greedy text

`gen_nll_ratio` = nll(adapter on its greedy texts) / nll(base on its greedy texts). No statistic here is a
verdict: `flags` names each rule it applies, with its threshold, and never the word "coherent".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

REP_N = 4
DISTINCT_N = 2
_WORD = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]|[^\W_]+|[^\w\s]|_", re.UNICODE)

# The rules `flags` applies (named in its output, documented in docs/statistics.md).
REP_FLAG = 0.5            # rep above this: more than half of a text's 4-grams repeat an earlier one
DISTINCT2_DROP = 0.5      # adapter's distinct2 under half the base's
EMPTY_FLAG = 0.5          # more than half the texts empty
# The run-level columns (`run_columns`) the results table shows; the store keeps them under SAMPLES_GROUP.
SAMPLES_GROUP = "samples"
RUN_COLUMNS = ("rep", "distinct2", "len", "gen_nll_ratio")


def words(text: str) -> list[str]:
    """The words of `text`, lower-cased (see the module docstring)."""
    return _WORD.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def repetition(text: str, n: int = REP_N) -> float | None:
    """1 − distinct n-grams / n-grams of one text; None when it has no n-gram."""
    grams = ngrams(words(text), n)
    return 1.0 - len(set(grams)) / len(grams) if grams else None


def distinct(texts: Iterable[str], n: int = DISTINCT_N) -> float | None:
    """Distinct n-grams / n-grams, pooled over `texts`; None when they have no n-gram."""
    grams = [gram for text in texts for gram in ngrams(words(text), n)]
    return len(set(grams)) / len(grams) if grams else None


def _mean(values: Iterable[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return sum(present) / len(present) if present else None


@dataclass(frozen=True)
class TextStats:
    """The statistics of one set of texts (one model, one shift or all shifts); None where undefined."""

    n: int
    rep: float | None
    distinct2: float | None
    len: float | None
    empty: float | None
    truncated: float | None
    nll: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def text_stats(texts: Sequence[str], truncated: Sequence[bool] | None = None,
               nlls: Sequence[float | None] | None = None) -> TextStats:
    """TextStats of `texts`; `truncated` and `nlls` (one per text) are optional, None when not given."""
    n = len(texts)
    return TextStats(
        n=n,
        rep=_mean(repetition(text) for text in texts),
        distinct2=distinct(texts),
        len=sum(len(words(text)) for text in texts) / n if n else None,
        empty=sum(not words(text) for text in texts) / n if n else None,
        truncated=sum(bool(t) for t in truncated) / n if n and truncated is not None else None,
        nll=_mean(nlls) if nlls is not None else None,
    )


def output_stats(outputs: Sequence[Mapping]) -> TextStats:
    """TextStats of generation records `{"text", "finished", "nll"}` (a samples file's `greedy` entries)."""
    return text_stats([o.get("text") or "" for o in outputs], [not o.get("finished", True) for o in outputs],
                      [o.get("nll") for o in outputs])


def sample_stats(records: Sequence[Mapping], decoding: str = "greedy") -> dict[str, dict[str, TextStats]]:
    """{shift or "all": {"model": TextStats, "base": TextStats}} of a samples file's records (`samples.py`),
    for one decoding (greedy, or sampled where the file has it). Shifts in the records' order; "all" last."""
    shifts = list(dict.fromkeys(record["shift"] for record in records))
    out: dict[str, dict[str, TextStats]] = {}
    for shift in [*shifts, "all"]:
        chosen = [r for r in records if shift == "all" or r["shift"] == shift]
        out[shift] = {who: output_stats([r[who][decoding] for r in chosen if decoding in r.get(who, {})])
                      for who in ("model", "base")}
    return out


def nll_ratio(model: TextStats, base: TextStats) -> float | None:
    """The adapter's self-NLL over the base's (module docstring); None when either is missing or the base's is 0."""
    if model.nll is None or not base.nll:
        return None
    return model.nll / base.nll


def run_columns(records: Sequence[Mapping]) -> dict[str, float | None]:
    """The results table's columns for one run, over all its greedy samples: rep, distinct2, len (the adapter's)
    and gen_nll_ratio; plus the base's rep, distinct2 and len as base_rep, base_distinct2, base_len."""
    pooled = sample_stats(records)["all"] if records else None
    if pooled is None:
        return {column: None for column in RUN_COLUMNS}
    model, base = pooled["model"], pooled["base"]
    return {"rep": model.rep, "distinct2": model.distinct2, "len": model.len, "gen_nll_ratio": nll_ratio(model, base),
            "empty": model.empty, "truncated": model.truncated,
            "base_rep": base.rep, "base_distinct2": base.distinct2, "base_len": base.len}


def flags(model: TextStats, base: TextStats) -> list[str]:
    """The rules a set of adapter texts breaks, each named with its threshold (docs/statistics.md). An empty list
    means none of these rules fired, not that the texts are good."""
    out = []
    if model.rep is not None and model.rep > REP_FLAG:
        out.append(f"rep {model.rep:.2f} > {REP_FLAG} (most 4-grams repeat)")
    if model.distinct2 is not None and base.distinct2 and model.distinct2 < DISTINCT2_DROP * base.distinct2:
        out.append(f"distinct2 {model.distinct2:.2f} < {DISTINCT2_DROP} × base's {base.distinct2:.2f}")
    if model.empty is not None and model.empty > EMPTY_FLAG:
        out.append(f"empty {model.empty:.0%} > {EMPTY_FLAG:.0%} of outputs")
    return out
