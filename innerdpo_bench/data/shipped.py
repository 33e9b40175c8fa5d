"""The package's copies of the benchmark's original data files (`data/real/`), read back byte for byte and checked against their sha256.

`data/real/` mirrors `../shared/data/real/`: GENIES distributions, the ETHICS justice CSVs and the MedicalGPT
reward rows, with `SHA256SUMS` (of the original files), `SOURCES.md` and `NOTICE` (source, commit, licence).
Large files are stored xz-compressed as `NAME.xz`; `read_original(NAME)` returns the original bytes either way
and refuses bytes whose sha256 differs from SHA256SUMS, so an altered or truncated copy never scores silently.
"""

from __future__ import annotations

import functools
import hashlib
import lzma
from dataclasses import dataclass, field
from pathlib import Path

from innerdpo_bench.errors import UserError

REAL_DIR = Path(__file__).resolve().with_name("real")
SUMS_FILE = "SHA256SUMS"
COMPRESSED = ".xz"
SHIPPED_PREFIX = "shipped:"   # how provenance names a file of the package's copy


@dataclass(frozen=True)
class Pairs:
    """Preference pairs built from one original file, with what provenance records about that file."""

    rows: tuple[dict, ...]   # pairs, as `pairs.load_pairs` validates them (medical: its own column names)
    file: str              # `shipped:genies/alpaca_easy/test.json`, or an absolute path (a GENIES folder)
    sha256: str            # of the original file's bytes
    file_rows: int         # rows of the file (GENIES rows, CSV lines, JSONL records)
    orientation: str       # which completion is chosen, in words
    source: str | None = None          # repository@commit of the original, when known
    extra: dict = field(default_factory=dict)

    def provenance(self) -> dict:
        return {"file": self.file, "sha256": self.sha256, "file_rows": self.file_rows, "pairs": len(self.rows),
                "orientation": self.orientation, "source": self.source, **self.extra}


@functools.lru_cache(maxsize=1)
def checksums() -> dict[str, str]:
    """{name relative to data/real: sha256} of every original file, from SHA256SUMS (`sha256sum` output)."""
    sums = {}
    for line in (REAL_DIR / SUMS_FILE).read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.strip().removeprefix("./")] = digest
    return sums


def stored_path(name: str) -> Path:
    """Where original file `name` is stored: as itself, or compressed as `name.xz`."""
    plain = REAL_DIR / name
    return plain if plain.is_file() else plain.with_name(plain.name + COMPRESSED)


def is_shipped(name: str) -> bool:
    return name in checksums() and stored_path(name).is_file()


@functools.lru_cache(maxsize=8)
def read_original(name: str) -> bytes:
    """The original bytes of shipped file `name` (e.g. `genies/alpaca_easy/test.json`), decompressed when stored
    as .xz; UserError when it is missing or its sha256 differs from SHA256SUMS (a damaged installation)."""
    expected = checksums().get(name)
    path = stored_path(name)
    if expected is None or not path.is_file():
        raise UserError(f"{SHIPPED_PREFIX}{name} is not part of the package's data ({REAL_DIR})")
    data = path.read_bytes()
    if path.suffix == COMPRESSED:
        try:
            data = lzma.decompress(data)
        except lzma.LZMAError as err:
            raise UserError(f"{path}: damaged xz file ({err}); reinstall innerdpo-bench") from None
    got = hashlib.sha256(data).hexdigest()
    if got != expected:
        raise UserError(f"{SHIPPED_PREFIX}{name}: sha256 {got[:12]}… differs from SHA256SUMS ({expected[:12]}…); "
                        "the package's data is damaged, reinstall innerdpo-bench")
    return data


def sha256_file(path: Path) -> str:
    """sha256 of a data file (GENIES files are a few MB: read whole)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
