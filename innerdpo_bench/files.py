"""Files written so that a reader never sees half of one: atomic writes (text and safetensors), the modes a plain
`open()` would give, the temporary files a killed writer leaves behind, and the one sha256-of-a-file helper."""

from __future__ import annotations

import functools
import hashlib
import os
import re
import tempfile
from pathlib import Path

# mkstemp's temporary names: NAME.<pid>.<8 random>.tmp (`atomic_write_text`), or NAME.<8 random> before it
TEMP_NAME = re.compile(r"(?P<name>.+)\.(?P<pid>\d+)\.[a-z0-9_]{8}\.tmp")
LEGACY_TEMP_NAME = re.compile(r"(?P<name>.+\.(?:json|jsonl))\.[a-z0-9_]{8}")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_file_memo(path: Path) -> str | None:
    """`sha256_file`, remembered per process by path, size and modification time (a model's weights are hashed
    once however often a cache key asks); None when the file is missing."""
    try:
        info = Path(path).stat()
    except OSError:
        return None
    return _sha256_stamped(str(path), info.st_size, info.st_mtime_ns)


@functools.lru_cache(maxsize=1024)
def _sha256_stamped(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(Path(path))


def _file_mode() -> int:
    """The mode `open()` would give a new file under the process's umask (0644 under the usual 022): mkstemp's
    temporary files are 0600, which the rename would otherwise keep. Read from /proc where it can be, else by
    setting and restoring the umask (not thread-safe, so done once, at import)."""
    try:
        status = Path("/proc/self/status").read_text()
        umask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Umask:")), 8)
    except (OSError, StopIteration, ValueError, IndexError):
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()
DIR_MODE = FILE_MODE | ((FILE_MODE & 0o444) >> 2)  # x wherever r: 0755 under umask 022


def share_modes(path: Path) -> None:
    """Give `path` and everything under it the modes `open()` and `mkdir()` would under the umask: safetensors'
    `save_file` (so `save_pretrained`) writes 0600 and `mkdtemp` 0700, which a rename would keep."""
    for entry in [Path(path), *(Path(path).rglob("*") if Path(path).is_dir() else ())]:
        if not entry.is_symlink():
            os.chmod(entry, DIR_MODE if entry.is_dir() else FILE_MODE)


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file (`NAME.<pid>.<random>.tmp`) and rename, so readers never see half a file; the
    file gets the mode a plain `open()` would (`FILE_MODE`), not mkstemp's 0600. Temporary files of NAME that a
    killed writer left behind are removed after the rename (`remove_leftovers`)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    remove_leftovers(path.parent, {path.name})


def atomic_save_tensors(path: Path, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """A safetensors file written as `atomic_write_text` writes text: a temporary file, then a rename."""
    from safetensors.torch import save_file

    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    remove_leftovers(path.parent, {path.name})


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # someone else's process (alive), or not a pid at all
        return pid < 1 << 22
    return True


def leftover_temp(path: Path, names: set[str] | None = None) -> bool:
    """A temporary file of `atomic_write_text` whose writer is gone (its pid is not alive on this host), or one of
    the unmarked names earlier versions used; `names`: only temporaries of these files."""
    match = TEMP_NAME.fullmatch(path.name)
    if match:
        return (names is None or match["name"] in names) and not pid_alive(int(match["pid"]))
    match = LEGACY_TEMP_NAME.fullmatch(path.name)
    return match is not None and (names is None or match["name"] in names)


def remove_leftovers(directory: Path, names: set[str] | None = None) -> None:
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        if entry.is_file(follow_symlinks=False) and leftover_temp(Path(entry.path), names):
            Path(entry.path).unlink(missing_ok=True)
