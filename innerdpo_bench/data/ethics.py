"""ETHICS justice scenarios (CSV `label,scenario`) grouped into preference pairs: a shared prompt and two excuses.

In ETHICS justice (Hendrycks et al. 2021) label 1 marks a reasonable excuse or claim, label 0 an unreasonable
one, and consecutive rows usually share a scenario and differ in the excuse. The pairs are built as the hub
dataset `wassname/ethics_expression_preferences` (config `justice`) was built by its notebook (`group_by_root`
in open_pref_eval's `ds_create_ethics_ds.ipynb`), with one difference that is a switch: that notebook made the
**unreasonable** excuse `chosen`. Here `chosen` is the reasonable excuse (orientation `reasonable`, the default);
orientation `hub` (`ethics:justice@hub`) reproduces the hub dataset, so the seed's numbers can be compared.
"""

from __future__ import annotations

import csv
import functools
import io

from innerdpo_bench.data import shipped
from innerdpo_bench.data.textio import decode_utf8
from innerdpo_bench.errors import UserError, unknown_choice

SPLITS = ("train", "test", "test_hard")   # justice_<split>.csv; the hub's train / validation / test
SUBSETS = ("justice",)
SOURCE = "github.com/oughtinc/ice@5449543 (ethics/justice/, a copy of the ETHICS release)"
ORIENTATIONS = {
    "reasonable": "chosen = the reasonable excuse (ETHICS label 1)",
    "hub": "chosen = the unreasonable excuse (ETHICS label 0), as wassname/ethics_expression_preferences",
}
DEFAULT_ORIENTATION = "reasonable"
MIN_PREFIX = 4        # a shared prompt must be longer than this many characters
MIN_OVERLAP = 0.25    # ... and longer than this fraction of the two scenarios' mean length
MIN_SUFFIX = 2        # each excuse must have at least this many characters


def split_prefix(first: str, second: str) -> tuple[str, str, str]:
    """(prefix, rest of first, rest of second): the longest common prefix wound back to just after its last
    space, so neither rest starts mid-word (the prefix is empty when the common part has no space)."""
    end = 0
    while end < min(len(first), len(second)) and first[end] == second[end]:
        end += 1
    while end > 0 and first[end - 1] != " ":
        end -= 1
    return first[:end], first[end:], second[end:]


def justice_pairs(rows: list[tuple[int, str]], orientation: str = DEFAULT_ORIENTATION) -> list[dict[str, str]]:
    """Pairs from every two consecutive rows (i − 1, i), so a row can pair with both neighbours. With
    (p, a, b) = `split_prefix(s_{i−1}, s_i)`, the two rows give a pair when

        len(p) > 4,   2·len(p) / (len(s_{i−1}) + len(s_i)) > 0.25,   label_{i−1} ≠ label_i,
        a ≠ b,   len(a) ≥ 2 and len(b) ≥ 2;

    prompt = p, and the completions are a and b: the label-1 one is chosen for orientation `reasonable`, the
    label-0 one for `hub` (as the hub dataset). The shipped CSVs give 7,343 / 1,042 / 704 pairs for train /
    test / test_hard; the notebook printed 7,342 / 1,042 / 704 on the hub's copy of ETHICS (whose train split
    evidently differs from this copy in a row or two; the test splits agree)."""
    if orientation not in ORIENTATIONS:
        raise unknown_choice("ETHICS orientation", orientation, ORIENTATIONS)
    chosen_label = 1 if orientation == "reasonable" else 0
    pairs = []
    for (label_a, text_a), (label_b, text_b) in zip(rows, rows[1:]):
        prefix, rest_a, rest_b = split_prefix(text_a, text_b)
        if (len(prefix) <= MIN_PREFIX or 2 * len(prefix) / (len(text_a) + len(text_b)) <= MIN_OVERLAP
                or label_a == label_b or rest_a == rest_b or min(len(rest_a), len(rest_b)) < MIN_SUFFIX):
            continue
        chosen, rejected = (rest_a, rest_b) if label_a == chosen_label else (rest_b, rest_a)
        pairs.append({"prompt": prefix, "chosen": chosen, "rejected": rejected})
    return pairs


def read_labelled(text: str, where: str) -> list[tuple[int, str]]:
    """(label, scenario) rows of an ETHICS justice CSV; UserError naming the file and line otherwise."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header != ["label", "scenario"]:
        raise UserError(f"{where}:1: expected the header 'label,scenario' of an ETHICS justice CSV, got {header!r}")
    rows = []
    for record in reader:
        if not record:
            continue
        if len(record) != 2 or record[0] not in ("0", "1"):
            raise UserError(f"{where}:{reader.line_num}: expected 'label,scenario' with label 0 or 1, got {record!r}")
        rows.append((int(record[0]), record[1]))
    return rows


def check(subset: str, split: str, orientation: str) -> None:
    """UserError for a subset, split or orientation that is not shipped."""
    if subset not in SUBSETS:
        raise unknown_choice("ETHICS subset (shipped)", subset, SUBSETS)
    if split not in SPLITS:
        raise unknown_choice("ETHICS justice split", split, SPLITS)
    if orientation not in ORIENTATIONS:
        raise unknown_choice("ETHICS orientation (ethics:justice@ORIENTATION)", orientation, ORIENTATIONS)


def file_name(split: str) -> str:
    return f"ethics_justice/justice_{split}.csv"


@functools.lru_cache(maxsize=8)
def read_justice(split: str, orientation: str = DEFAULT_ORIENTATION) -> shipped.Pairs:
    """The pairs of the package's `justice_<split>.csv` in `orientation`."""
    check("justice", split, orientation)
    name = file_name(split)
    where = shipped.SHIPPED_PREFIX + name
    rows = read_labelled(decode_utf8(shipped.read_original(name), where), where)
    return shipped.Pairs(tuple(justice_pairs(rows, orientation)), where, shipped.checksums()[name], len(rows),
                         ORIENTATIONS[orientation], SOURCE, {"orientation_name": orientation})
