"""Load preference pairs from any source the CLI accepts, validated row by row.

Sources (`--dataset`):
  * `mini:SPLIT`: the project's own synthetic data (`innerdpo_bench.data.mini`), offline;
  * `genies:NAME[#train|#test]`, `ethics:justice[@hub][#train|#test|#test_hard]`, `medical:reward[#test]`: the
    benchmark's original files, offline (`innerdpo_bench.data.real`);
  * a local `.json` / `.jsonl` / `.parquet` file with `prompt`, `chosen`, `rejected` fields;
  * a GENIES short name (`alpaca_easy` = hub `wassname/genies_preferences`, config `alpaca_easy`);
  * `HUB_ID[:config][#split]` for any hub dataset (split `train` unless given).
Column names of the known source datasets are mapped to `prompt`/`chosen`/`rejected` in `normalize_row`,
the one place that knows about schema differences.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from innerdpo_bench import hub
from innerdpo_bench.data import real
from innerdpo_bench.data.textio import decode_utf8, parse_json, parse_jsonl
from innerdpo_bench.errors import UserError, unknown_choice

GENIES_HUB_ID = "wassname/genies_preferences"
LOCAL_SUFFIXES = (".json", ".jsonl", ".parquet")
FIELDS = ("prompt", "chosen", "rejected")
# Alternative column names seen in source datasets, lower-cased → our field.
COLUMN_ALIASES = {
    "prompt": ("prompt", "question", "instruction", "input", "context"),
    "chosen": ("chosen", "chosen_response", "response_chosen", "better"),
    "rejected": ("rejected", "rejected_response", "response_rejected", "worse"),
}


PLAIN_DELIMITER = " "   # between prompt and completion without a chat template: lm-eval's default target delimiter


def plain_prompt(prompt: str) -> str:
    """A prompt as rendered without a chat template (training, `data/encode.py`, and the lm-eval tasks alike):
    trailing whitespace removed, since lm-eval would move it into the scored continuation; `PLAIN_DELIMITER` and
    the completion follow."""
    return prompt.rstrip()


@dataclass(frozen=True)
class DatasetRef:
    """A resolved dataset: where it lives and how to describe it in provenance."""

    kind: str                  # mini | file | hub | genies | ethics | medical
    path: str                  # mini split, file path, hub id, or the real source's name (= kind)
    config: str | None = None
    split: str = "train"

    def describe(self) -> str:
        if self.kind == "mini":
            return f"mini:{self.path}"
        if self.kind == "file":
            return self.path
        config = f":{self.config}" if self.config else ""
        return f"{self.path}{config}#{self.split}"


def parse_dataset(spec: str, default_split: str = "train") -> DatasetRef:
    """Parse a `--dataset` value (see the module docstring) without loading anything."""
    text = spec.strip()
    if not text:
        raise UserError("--dataset is empty")
    if text.startswith("mini:"):
        from innerdpo_bench.data.mini import SPLITS

        split = text.split(":", 1)[1]
        if split not in SPLITS:  # refused here, at `queue add` time, not when a worker loads it
            raise unknown_choice("mini split", split, SPLITS)
        return DatasetRef("mini", split)
    kind = text.partition(":")[0]
    if kind in real.KINDS:
        return DatasetRef(kind, kind, *real.parse_spec(text, default_split))
    if text.lower().endswith(LOCAL_SUFFIXES) or Path(text).expanduser().exists():
        path = Path(text).expanduser()
        if not path.is_file():
            raise UserError(f"dataset file {text} does not exist")
        return DatasetRef("file", str(path))
    split = default_split
    if "#" in text:
        text, split = text.split("#", 1)
    if "/" not in text:
        return DatasetRef("hub", GENIES_HUB_ID, config=text, split=split)
    hub_id, _, config = text.partition(":")
    return DatasetRef("hub", hub_id, config=config or None, split=split)


def normalize_row(raw: dict, where: str) -> dict[str, str]:
    """Map a source row to `{prompt, chosen, rejected}`; a missing field or empty completion is a UserError
    naming `where` (file or dataset, and row)."""
    lowered = {str(k).lower(): v for k, v in raw.items()}
    row = {}
    for field in FIELDS:
        name = next((name for name in COLUMN_ALIASES[field] if name in lowered), None)
        if name is None:
            raise UserError(f"{where}: missing field {field!r} (has: {', '.join(map(str, raw)) or 'nothing'})")
        value = lowered[name]
        if value is None:
            raise UserError(f"{where}: field {field!r} is null; give a string")
        if not isinstance(value, str):
            raise UserError(f"{where}: field {field!r} must be a string, got {type(value).__name__}")
        row[field] = value
    for field in ("chosen", "rejected"):
        if not row[field].strip():
            raise UserError(f"{where}: field {field!r} is empty")
    return row


def _read_local(path: Path) -> list[dict]:
    """The rows of a local .parquet, .json or .jsonl file; UserError naming the file when it cannot be read as one."""
    try:
        if path.suffix == ".parquet":
            import pyarrow
            import pyarrow.parquet as pq

            try:
                return pq.read_table(path).to_pylist()
            except pyarrow.ArrowException as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise UserError(f"dataset file {path} is not a readable parquet file ({first})") from None
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"cannot read dataset file {path} ({err.strerror or err})") from None
    text = decode_utf8(data, str(path))
    if path.suffix == ".json" and text.lstrip().startswith("["):
        return parse_json(text, str(path))
    return parse_jsonl(text, str(path))


def _read_hub(ref: DatasetRef) -> list[dict]:
    offline = hub.offline_reason()   # no network: fail at once, not after five retries per file
    import datasets

    try:
        data = datasets.load_dataset(ref.path, ref.config, split=ref.split)
    except Exception as err:  # offline, missing config, missing split: all surface as one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        why = f" ({offline}; the genies:, ethics: and medical: datasets ship with the package)" if offline else ""
        raise UserError(f"cannot load dataset {ref.describe()}: {first}{why}") from err
    return list(data)


def load_pairs(ref: DatasetRef | str, limit: int | None = None, genies_dir: str | None = None) -> list[dict[str, str]]:
    """All rows of a dataset as validated `{prompt, chosen, rejected}` dicts (first `limit` rows if given).
    `genies_dir` is a GENIES `distributions/` folder for `genies:` datasets (default: $INNERDPO_GENIES_DIR, else
    the package's copy)."""
    if isinstance(ref, str):
        ref = parse_dataset(ref)
    if ref.kind == "mini":
        from innerdpo_bench.data.mini import load_mini

        raw = load_mini(ref.path)
    elif ref.kind in real.KINDS:
        raw = list(real.read(ref, genies_dir).rows)
    elif ref.kind == "file":
        raw = _read_local(Path(ref.path))
    else:
        raw = _read_hub(ref)
    if limit is not None:
        raw = raw[:limit]
    if not raw:
        raise UserError(f"dataset {ref.describe()} has no rows")
    return [normalize_row(r, f"{ref.describe()} row {i}") if isinstance(r, dict)
            else _not_a_row(ref, i) for i, r in enumerate(raw, start=1)]  # rows count from 1, as lines do


def duplicate_rows(rows: list[dict[str, str]]) -> int:
    """How many rows repeat an earlier row's (prompt, chosen, rejected) exactly."""
    return len(rows) - len({(row["prompt"], row["chosen"], row["rejected"]) for row in rows})


def _not_a_row(ref: DatasetRef, index: int):
    raise UserError(f"{ref.describe()} row {index}: expected an object with prompt, chosen, rejected")
