"""Evaluation suites: which dataset each of the four preference shifts is scored on (spec §11).

A suite is named after the training split it belongs to and maps every shift to a dataset:

| suite                | in_domain          | difficulty_scaling  | moral_transfer | orthogonal         |
|----------------------|--------------------|---------------------|----------------|--------------------|
| `alpaca_easy`        | alpaca_easy        | alpaca_hard         | ethics justice | medical-dpo-V2#data|
| `math_easy`          | math_easy          | math_hard           | (none)         | medical-dpo-V2#data|
| `code_easy`          | code_easy          | code_hard           | ethics justice | medical-dpo-V2#data|
| `arc_easy`           | arc_easy           | arc_hard            | ethics justice | medical-dpo-V2#data|
| `alpaca_low_quality` | alpaca_low_quality | alpaca_high_quality | ethics justice | medical-dpo-V2#data|
| `genies:<easy>`      | genies:<easy>#test | genies:<hard>#test  | ethics:justice#test_hard | medical:reward#test |
| `mini`               | mini:in_domain     | mini:difficulty_... | mini:moral_... | mini:orthogonal    |

The default is `genies:alpaca_easy`, read from the package's own files, so `innerdpo eval RUN` needs no network.

Short names are configs of `wassname/genies_preferences` (split `test`); "ethics justice" is
`wassname/ethics_expression_preferences` config `justice` split `test`; `wassname/medical-dpo-V2` has
only the split `data`. The `genies:` suites are the same benchmark read offline from the original files the
package ships (`data.real`): `genies:alpaca_easy`, `genies:math_easy` (no moral column), `genies:code_easy`,
`genies:arc_easy`, `genies:alpaca_low_quality`, each with its hard (or high-quality) partner as in the table
above; their moral_transfer has chosen = the reasonable excuse, and `genies:<easy>@hub` flips it to the hub
dataset's orientation (chosen = the unreasonable excuse) to compare with the seed's numbers.
`mini` is the project's offline synthetic suite. A directory of
`<shift>.jsonl` files can stand in for a suite (`data_dir`). Rows are the first `rows` of each
dataset (500 by default, as the reference), validated by `pairs.normalize_row`; `sample="random"` takes
`rows` rows chosen by a seed instead (`sample_indices`), kept in dataset order.

`math_easy` has no moral_transfer dataset in the reference: asking for that shift is a UserError
naming the suite, and `innerdpo eval` scores the other three shifts and records the skip.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from innerdpo_bench.data import real
from innerdpo_bench.data.pairs import GENIES_HUB_ID, DatasetRef, load_pairs, parse_dataset, plain_prompt
from innerdpo_bench.errors import UserError, unknown_choice

# The four distribution shifts every adapter is scored on, in table order.
SHIFTS: tuple[str, ...] = ("in_domain", "difficulty_scaling", "moral_transfer", "orthogonal")

TASKS_PACKAGE = "innerdpo_bench.tasks"   # the top-level `tasks/` folder, installed under this name
DEFAULT_SUITE = "genies:alpaca_easy"   # shipped with the package: no network needed
DEFAULT_ROWS = 500
MINI_SUITE = "mini"
SAMPLES = ("first", "random")   # which `rows` rows of a dataset: the first ones, or a seeded random subset

# The rule behind every score: recorded in each shift's provenance, so an eval.json scored under an older rule is
# detectable (`doctor`). v2: the scored tokens are the completion's as training scores them (before v2 a chat
# template's newline after the generation prompt was scored too: n was the completion's tokens + 1).
SCORING_RULE = (
    "v2: correct if the mean per-token log-prob of chosen > rejected (strict), over the completion's own tokens "
    "as training scores them (lm-eval's whitespace moved back out, tasks/README.md); acc_sum: summed log-prob, "
    "strict >; a row longer than the model's context: prompt cut from the left, or skipped when a completion "
    "alone does not fit"
)

ETHICS_JUSTICE = DatasetRef("hub", "wassname/ethics_expression_preferences", config="justice", split="test")
MEDICAL = DatasetRef("hub", "wassname/medical-dpo-V2", config=None, split="data")


def tasks_dir() -> Path:
    """The lm-eval task folder (`--include_path`), found through importlib.resources so it is the
    same in an installed and an editable package."""
    from importlib.resources import files

    return Path(str(files(TASKS_PACKAGE)))


def _genies(config: str) -> DatasetRef:
    return DatasetRef("hub", GENIES_HUB_ID, config=config, split="test")


def _genies_suite(easy: str, hard: str, moral: DatasetRef | None = ETHICS_JUSTICE) -> dict[str, DatasetRef | None]:
    return {"in_domain": _genies(easy), "difficulty_scaling": _genies(hard), "moral_transfer": moral,
            "orthogonal": MEDICAL}


# The spec's suites: (training split, its hard or high-quality partner, has a moral_transfer column).
GENIES_PAIRS = (("alpaca_easy", "alpaca_hard", True), ("math_easy", "math_hard", False),
                ("code_easy", "code_hard", True), ("arc_easy", "arc_hard", True),
                ("alpaca_low_quality", "alpaca_high_quality", True))
REAL_PREFIX = "genies:"       # suites read from the shipped originals (or a GENIES folder)
HUB_ORIENTATION = "@hub"      # suffix: moral_transfer oriented as the hub dataset (chosen = unreasonable)


def _real_suite(easy: str, hard: str, moral: str | None) -> dict[str, DatasetRef | None]:
    return {"in_domain": parse_dataset(f"genies:{easy}#test"), "difficulty_scaling": parse_dataset(f"genies:{hard}#test"),
            "moral_transfer": parse_dataset(f"ethics:{moral}#test_hard") if moral else None,
            "orthogonal": parse_dataset("medical:reward#test")}


# suite name → shift → dataset (None: the suite has no dataset for that shift)
SUITES: dict[str, dict[str, DatasetRef | None]] = {
    **{easy: _genies_suite(easy, hard, ETHICS_JUSTICE if moral else None) for easy, hard, moral in GENIES_PAIRS},
    **{f"{REAL_PREFIX}{easy}": _real_suite(easy, hard, "justice" if moral else None)
       for easy, hard, moral in GENIES_PAIRS},
    **{f"{REAL_PREFIX}{easy}{HUB_ORIENTATION}": _real_suite(easy, hard, "justice@hub")
       for easy, hard, moral in GENIES_PAIRS if moral},
    MINI_SUITE: {shift: DatasetRef("mini", shift) for shift in SHIFTS},
}


def suite_refs(suite: str | None = None, data_dir: str | Path | None = None) -> dict[str, DatasetRef | None]:
    """Every shift's dataset for `suite` or `data_dir` (one of them; neither means the default suite).

    Unknown suites and a data directory missing a `<shift>.jsonl` are UserErrors, raised here so a
    caller can check before loading a model.
    """
    if data_dir is not None and suite is not None:
        raise UserError(f"give a suite ({suite!r}) or a data directory ({data_dir}), not both")
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise UserError(f"data directory {root} does not exist")
        refs = {}
        for shift in SHIFTS:
            path = root / f"{shift}.jsonl"
            if not path.is_file():
                raise UserError(f"data directory {root} has no {shift}.jsonl (expected one <shift>.jsonl per shift: "
                                f"{', '.join(SHIFTS)})")
            refs[shift] = DatasetRef("file", str(path))
        return refs
    name = DEFAULT_SUITE if suite is None else str(suite).strip()
    if name not in SUITES:
        raise unknown_choice("suite", name, SUITES)
    return dict(SUITES[name])


def suite_label(suite: str | None = None, data_dir: str | Path | None = None) -> str:
    """How eval.json names the data source: the suite name, or `data_dir`."""
    return "data_dir" if data_dir is not None else (suite or DEFAULT_SUITE)


def check_rows(rows) -> int:
    """The per-shift row cap as a positive int (metadata may bring it as a string)."""
    if rows is None:
        return DEFAULT_ROWS
    return _whole_number(rows, "rows", minimum=1)


def _whole_number(value, what: str, minimum: int) -> int:
    """`value` (an int, or a string as task metadata brings it) as an int ≥ `minimum`, written exactly so
    ("5", not "5.0" or "05"); UserError naming `what` otherwise."""
    kind = "a positive integer" if minimum == 1 else "a non-negative integer"
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise UserError(f"{what} must be {kind}, got {value!r}") from None
    if number < minimum or str(number) != str(value).strip():
        raise UserError(f"{what} must be {kind}, got {value!r}")
    return number


def check_sample(sample=None, sample_seed=None) -> tuple[str, int | None]:
    """(`first` | `random`, seed) from flags or task metadata (which may bring strings); the seed is None for
    `first` and defaults to 0 for `random`."""
    name = "first" if sample in (None, "") else str(sample).strip().lower()
    if name not in SAMPLES:
        raise unknown_choice("sample", name, SAMPLES)
    if name == "first":
        return name, None
    if sample_seed in (None, ""):
        return name, 0
    return name, _whole_number(sample_seed, "sample seed", minimum=0)


def sample_indices(total: int, rows: int, seed: int) -> list[int]:
    """`rows` of `total` row indices picked by `seed`, ascending: index i is ranked by sha256("seed:i") and the
    lowest `rows` ranks are kept. Deterministic on every platform and library version (no RNG), and nested:
    with the same seed, N rows are a subset of N + k rows. All rows when `rows` >= `total`."""
    if rows >= total:
        return list(range(total))
    ranked = sorted(range(total), key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).digest())
    return sorted(ranked[:rows])


def load_shift(shift: str, suite: str | None = None, data_dir: str | Path | None = None,
               rows=None, sample=None, sample_seed=None, genies_dir: str | None = None) -> list[dict[str, str]]:
    """`rows` `{prompt, chosen, rejected}` rows of one shift of a suite (or data directory): the first ones, or
    with `sample="random"` the ones `sample_indices` picks with `sample_seed`, in dataset order. `genies_dir`:
    the GENIES folder of the `genies:` suites (default $INNERDPO_GENIES_DIR, else the package's copy)."""
    if shift not in SHIFTS:
        raise unknown_choice("shift", shift, SHIFTS)
    ref = suite_refs(suite, data_dir)[shift]
    if ref is None:
        raise UserError(f"suite {suite_label(suite, data_dir)!r} has no {shift} dataset; score the other shifts "
                        f"(innerdpo eval skips it; with lm_eval, list the other innerdpo_* tasks)")
    cap = check_rows(rows)
    how, seed = check_sample(sample, sample_seed)
    if how == "first":
        return load_pairs(ref, limit=cap, genies_dir=genies_dir)
    every = load_pairs(ref, genies_dir=genies_dir)
    return [every[i] for i in sample_indices(len(every), cap, seed)]


def prompt_text(prompt: str, chat: bool) -> str:
    """A row's prompt as training renders it (`data/encode.py render`), for the lm-eval tasks: as given, as the
    user turn of a chat template; without one, with trailing whitespace removed (the continuation starts with
    the target delimiter " ")."""
    return prompt if chat else plain_prompt(prompt)


def provenance(ref: DatasetRef, rows: int, sample: str = "first", sample_seed: int | None = None) -> dict:
    """Where one shift's rows came from, how they were picked and how they were scored, for eval.json. A shipped
    source adds its file (`shipped:<name>` or a GENIES folder's path), the sha256 of the original file, the
    file's rows, the pairs they give, which completion is chosen (`orientation`) and the repository@commit."""
    if ref.kind == "mini":
        dataset, config, split = "innerdpo_bench.data.mini", None, ref.path
    elif ref.kind == "file":
        dataset, config, split = ref.path, None, None
    else:
        dataset, config, split = ref.path, ref.config, ref.split
    recorded = {"dataset": dataset, "config": config, "split": split, "rows": rows, "sample": sample,
                "sample_seed": sample_seed, "scoring_rule": SCORING_RULE}
    if ref.kind in real.KINDS:
        recorded.update(real.read(ref).provenance())
    return recorded


def data_identity(suite: str) -> dict:
    """What the whole-evaluation cache must know of a suite's data: its name and, for a suite read from files
    (the `genies:` suites), each shift's file and sha256, so scores of other data (another $INNERDPO_GENIES_DIR)
    are never served. Other suites and names that are not suites: just the name."""
    refs = SUITES.get(suite) or {}
    files = {shift: real.file_identity(ref) for shift, ref in refs.items() if ref is not None and ref.kind in real.KINDS}
    return {"suite": suite, **({"files": files} if files else {})}


def train_dataset(suite: str) -> str:
    """The `--dataset` a suite's adapters are trained on: the train split of its in_domain distribution."""
    ref = suite_refs(suite)["in_domain"]
    if ref.kind == "mini":
        return "mini:train"
    return DatasetRef(ref.kind, ref.path, ref.config, "train").describe()
