"""GENIES distributions in their own format (`prompt`, `responses` = {text: score}) turned into preference pairs.

A GENIES row (Clymer et al. 2023) is `{"prompt": <the Alpaca template, filled in>, "responses": {text: score},
...}`; some distributions add `instruction`, `input`, `best_score`, `worse_score`, which pairing ignores. A
distribution is a folder `<name>/` with `train.json` and `test.json` (JSON arrays of rows). They are read from
a GENIES `distributions/` folder (`--genies-dir`, `$INNERDPO_GENIES_DIR`: e.g. the authors' data tarball
unpacked, all 69 distributions) or, when none is given, from the package's copy (`data/real/genies/`).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from pathlib import Path

from innerdpo_bench.data import shipped
from innerdpo_bench.data.textio import decode_utf8, parse_json
from innerdpo_bench.errors import UserError, unknown_choice

GENIES_DIR_ENV = "INNERDPO_GENIES_DIR"
SPLITS = ("train", "test")
SOURCE = "github.com/Joshuaclymer/GENIES@31306c7"
ORIENTATION = "chosen = the top-scored response, one pair per lower-scored response"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def genies_pairs(rows: list, where: str) -> tuple[list[dict[str, str]], int]:
    """(pairs, dropped): one pair per lower-scored response of each row, chosen = the top-scored response:

        {prompt, responses: {t_1: s_1, …, t_k: s_k}}  →  (prompt, t_best, t_j)  for every j with s_j < s_best,

    in the file's order, t_best the first response with the highest score (a response tied with it is not
    paired). A 4-response row gives 3 pairs, a 2-response row 1: `wassname/genies_preferences`' construction
    (GENIES' 600 / 250 rows → 1,800 / 750 pairs). A pair whose chosen or rejected text is empty is dropped and
    counted (`dropped`): some rows of math_easy and alpaca_*_quality have an empty response, and an empty
    continuation has no tokens to score. A malformed row is a UserError naming `where` and the row.
    """
    pairs, dropped = [], 0
    for index, row in enumerate(rows, start=1):  # rows count from 1, as lines do
        at = f"{where} row {index}"
        if not isinstance(row, dict):
            raise UserError(f"{at}: expected an object with prompt and responses, got {type(row).__name__}")
        if "responses" not in row:
            raise UserError(f"{at}: no 'responses' (a GENIES row has prompt and responses = {{text: score}}; "
                            f"has: {', '.join(map(str, row)) or 'nothing'})")
        prompt, responses = row.get("prompt"), row["responses"]
        if not isinstance(prompt, str):
            raise UserError(f"{at}: 'prompt' must be a string (the filled-in template), got {type(prompt).__name__}")
        if not isinstance(responses, dict) or len(responses) < 2:
            raise UserError(f"{at}: 'responses' must be an object of at least two {{text: score}} entries")
        for text, score in responses.items():
            if isinstance(score, bool) or not isinstance(score, (int, float)) or score != score:
                raise UserError(f"{at}: the score of response {text[:40]!r} must be a number, got {score!r}")
        best = max(responses, key=responses.__getitem__)
        for text, score in responses.items():
            if score < responses[best]:
                if best.strip() and text.strip():
                    pairs.append({"prompt": prompt, "chosen": best, "rejected": text})
                else:
                    dropped += 1
    return pairs, dropped


def genies_root(genies_dir: str | os.PathLike | None = None) -> Path | None:
    """The GENIES `distributions/` folder to read: `genies_dir`, else $INNERDPO_GENIES_DIR, else None (the
    package's copy). A folder holding `distributions/` (the unpacked tarball) stands for that subfolder."""
    given = genies_dir if genies_dir not in (None, "") else os.environ.get(GENIES_DIR_ENV) or None
    if given is None:
        return None
    root = Path(given).expanduser().resolve()
    if not root.is_dir():
        flag = "--genies-dir" if genies_dir not in (None, "") else f"${GENIES_DIR_ENV}"
        raise UserError(f"GENIES folder {root} ({flag}) does not exist")
    inner = root / "distributions"
    return inner if inner.is_dir() and not _has_splits(root) else root


def _has_splits(folder: Path) -> bool:
    return any((folder / f"{split}.json").is_file() for split in SPLITS)


def distributions(root: Path | None) -> list[str]:
    """The distribution names available in `root` (None: the package's copy)."""
    if root is None:
        return sorted({name.split("/")[1] for name in shipped.checksums() if name.startswith("genies/")
                       and name.endswith(tuple(f"/{split}.json" for split in SPLITS))})
    return sorted(p.name for p in root.iterdir() if p.is_dir() and _has_splits(p))


def check_name(name: str, split: str) -> None:
    """UserError for a name that cannot be a distribution folder or a split GENIES does not have."""
    if not NAME.fullmatch(name) or ".." in name:
        raise UserError(f"GENIES distribution names are folder names like alpaca_easy, not {name!r}")
    if split not in SPLITS:
        raise unknown_choice("GENIES split", split, SPLITS)


def locate(name: str, split: str, genies_dir: str | os.PathLike | None = None) -> Path | str:
    """The file of distribution `name`, split `split`: a Path in `genies_root(genies_dir)`, or the name of the
    package's copy (`genies/<name>/<split>.json`); UserError naming what is missing."""
    check_name(name, split)
    root = genies_root(genies_dir)
    located = root / name / f"{split}.json" if root is not None else f"genies/{name}/{split}.json"
    found = located.is_file() if root is not None else shipped.is_shipped(located)
    if not found:
        raise _missing(name, split, root)
    return located


def read_distribution(name: str, split: str, genies_dir: str | os.PathLike | None = None) -> shipped.Pairs:
    """The pairs of GENIES distribution `name`, split `split` (see `locate`); a file that is not JSON and a
    malformed row are each one UserError naming the file and row."""
    located = locate(name, split, genies_dir)
    if isinstance(located, str):
        return _shipped_pairs(located)
    stat = located.stat()
    return _folder_pairs(str(located), stat.st_size, stat.st_mtime_ns)


def file_identity(name: str, split: str, genies_dir: str | os.PathLike | None = None) -> dict:
    """{file, sha256} of the file `read_distribution` would read, without parsing it (for cache keys)."""
    located = locate(name, split, genies_dir)
    if isinstance(located, str):
        return {"file": shipped.SHIPPED_PREFIX + located, "sha256": shipped.checksums()[located]}
    return {"file": str(located), "sha256": shipped.sha256_file(located)}


def _missing(name: str, split: str, root: Path | None) -> UserError:
    where = "the package's copy" if root is None else str(root)
    names = distributions(root)
    if name in names:
        return UserError(f"GENIES distribution {name!r} has no {split}.json in {where}")
    hint = "" if root is not None else f"; give a GENIES distributions/ folder with --genies-dir or ${GENIES_DIR_ENV}"
    error = unknown_choice(f"GENIES distribution (in {where})", name, names)
    return UserError(f"{error}{hint}" if names else f"no GENIES distribution in {where}{hint}")


@functools.lru_cache(maxsize=16)
def _shipped_pairs(relative: str) -> shipped.Pairs:
    data = shipped.read_original(relative)
    return _pairs(data, shipped.SHIPPED_PREFIX + relative, shipped.checksums()[relative], SOURCE)


@functools.lru_cache(maxsize=16)
def _folder_pairs(path: str, size: int, mtime_ns: int) -> shipped.Pairs:
    """Cached by path, size and modification time, so an edited file is read again."""
    data = Path(path).read_bytes()
    return _pairs(data, path, hashlib.sha256(data).hexdigest(), None)


def _pairs(data: bytes, where: str, sha256: str, source: str | None) -> shipped.Pairs:
    rows = parse_json(decode_utf8(data, where), where)
    if not isinstance(rows, list):
        raise UserError(f"{where}: expected a JSON array of GENIES rows, got a JSON {type(rows).__name__}")
    pairs, dropped = genies_pairs(rows, where)
    if not pairs:
        raise UserError(f"{where}: no row has a lower-scored, non-empty response, so there is no preference pair")
    return shipped.Pairs(tuple(pairs), where, sha256, len(rows), ORIENTATION, source,
                         {"dropped_pairs": dropped, "dropped_because": "empty chosen or rejected text"} if dropped else {})
