"""The benchmark's real sources, offline: `genies:`, `ethics:` and `medical:` dataset names parsed, located and read as pairs.

| `--dataset` / suite entry                  | file                                             | pairs                                 |
|--------------------------------------------|--------------------------------------------------|---------------------------------------|
| `genies:NAME[#train\\|#test]`               | GENIES `NAME/<split>.json` (`data.genies`)       | one per lower-scored response         |
| `ethics:justice[@ORIENTATION][#SPLIT]`     | ETHICS `justice_<SPLIT>.csv`, SPLIT train, test, test_hard (`data.ethics`) | consecutive rows sharing a prompt |
| `medical:reward[#test]`                    | MedicalGPT `data/reward/test.json` (100 rows)    | `response_chosen` over `response_rejected` |

ORIENTATION is `reasonable` (default: chosen = the reasonable excuse, ETHICS label 1) or `hub` (chosen = the
unreasonable one, as the hub dataset `wassname/ethics_expression_preferences`). The split defaults to the
caller's (`train` for training); medical has only `test`. GENIES files come from `--genies-dir` /
$INNERDPO_GENIES_DIR when given, else from the package's copy, like the others (`data.shipped`).
"""

from __future__ import annotations

import functools

from innerdpo_bench.data import ethics, genies, shipped
from innerdpo_bench.data.textio import decode_utf8, parse_jsonl
from innerdpo_bench.errors import UserError, unknown_choice

KINDS = ("genies", "ethics", "medical")
MEDICAL_SUBSETS = ("reward",)
MEDICAL_SPLITS = ("test",)
MEDICAL_FILE = "medical/reward_test.jsonl"
MEDICAL_SOURCE = "github.com/shibing624/MedicalGPT@5fec167 (data/reward/test.json)"
MEDICAL_ORIENTATION = "chosen = response_chosen (MedicalGPT's preferred answer)"


def parse_spec(text: str, default_split: str = "train") -> tuple[str, str]:
    """(config, split) of `KIND:CONFIG[#SPLIT]`, checked for syntax and shipped names without reading a file;
    UserError naming the dataset otherwise."""
    kind, _, rest = text.strip().partition(":")
    config, _, split = rest.partition("#")
    config, split = config.strip(), split.strip()
    if kind not in KINDS:
        raise unknown_choice("real dataset kind", kind, KINDS)
    if not config:
        raise UserError(f"dataset {text!r} names no {kind} subset (e.g. {example(kind)})")
    if kind == "genies":
        split = split or default_split
        genies.check_name(config, split)
    elif kind == "ethics":
        split = split or default_split
        subset, _, orientation = config.partition("@")
        ethics.check(subset, split, orientation or ethics.DEFAULT_ORIENTATION)
        if orientation == ethics.DEFAULT_ORIENTATION:
            config = subset            # one spelling per dataset: `justice`, not `justice@reasonable`
    else:
        split = split or MEDICAL_SPLITS[0]
        if config not in MEDICAL_SUBSETS:
            raise unknown_choice("medical subset", config, MEDICAL_SUBSETS)
        if split not in MEDICAL_SPLITS:
            raise unknown_choice("medical:reward split", split, MEDICAL_SPLITS)
    return config, split


def example(kind: str) -> str:
    return {"genies": "genies:alpaca_easy#test", "ethics": "ethics:justice#test_hard",
            "medical": "medical:reward#test"}[kind]


def read(ref, genies_dir: str | None = None) -> shipped.Pairs:
    """The pairs of a `genies`/`ethics`/`medical` DatasetRef (fields kind, config, split) with their file's
    provenance; `genies_dir` overrides $INNERDPO_GENIES_DIR for GENIES."""
    if ref.kind == "genies":
        return genies.read_distribution(ref.config, ref.split, genies_dir)
    if ref.kind == "ethics":
        subset, _, orientation = ref.config.partition("@")
        ethics.check(subset, ref.split, orientation or ethics.DEFAULT_ORIENTATION)
        return ethics.read_justice(ref.split, orientation or ethics.DEFAULT_ORIENTATION)
    if ref.kind == "medical":
        return read_medical()
    raise UserError(f"dataset kind {ref.kind!r} is not one of the shipped sources ({', '.join(KINDS)})")


def file_identity(ref, genies_dir: str | None = None) -> dict:
    """{file, sha256} of the original file behind `ref`, without reading a shipped one (for cache keys)."""
    if ref.kind == "genies":
        return genies.file_identity(ref.config, ref.split, genies_dir)
    name = ethics.file_name(ref.split) if ref.kind == "ethics" else MEDICAL_FILE
    return {"file": shipped.SHIPPED_PREFIX + name, "sha256": shipped.checksums()[name]}


@functools.lru_cache(maxsize=1)
def read_medical() -> shipped.Pairs:
    """The 100 MedicalGPT rows `{question, response_chosen, response_rejected}` (mapped to prompt, chosen,
    rejected by `pairs.normalize_row`)."""
    where = shipped.SHIPPED_PREFIX + MEDICAL_FILE
    rows = parse_jsonl(decode_utf8(shipped.read_original(MEDICAL_FILE), where), where)
    return shipped.Pairs(tuple(rows), where, shipped.checksums()[MEDICAL_FILE], len(rows), MEDICAL_ORIENTATION,
                         MEDICAL_SOURCE)
