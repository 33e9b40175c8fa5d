"""The reference-pass cache: the frozen reference's outputs per encoded pair, computed once and reused by every
later epoch and every run with the same key (issue 20).

The reference (the base with the adapter disabled, under `no_grad`) gives the same numbers for a pair every time
it sees it, so a run's `--ref-cache auto` (the default) computes them in one batched no-grad pass before
training (batches `BUILD_BATCH_FACTOR`× the training batch, rows sorted by length so little is padding) and
training reads them instead of running the reference forward. Held per pair (chosen, rejected):
  * the summed completion log-prob and the completion token count (every method);
  * for InnerDPO with a parameter-free transform, the pooled reference states per output layer: `none` pools the
    raw states (spec §6), `supr` pools them after its mask (spec §5.3). `ether` trains its transform on the
    reference's token-level states, so its runs keep the live reference pass (`cached_spec` says why, the log
    says so); token-level caches (`--ref-cache tokens`) are not built: for Llama-3.2-3B on a GENIES split they
    would take about 2·N·T·L·d·2 bytes ≈ 120 GB (N 1,800 pairs, T ≈ 300 tokens, L 18 layers, d 3,072, bf16).

The key (`cache_key`) is sha256 over everything those numbers depend on: the base model (a directory: the sha256
of each of its files, so a copied or re-downloaded model still hits; a hub id: its id and the commit its config
was loaded from), the dtype, the layout (packed or padded), max prompt length and max length, the layers, the
pooling options and the transform with its options, the package versions and `FORMAT`, and the set of encoded
pairs (sha256 of each pair's token ids and masks, in sorted order: so two runs whose seeds order or split the same
rows differently share one cache). Train and held-out pairs are cached together. Device and batch size are not
in the key: they change the numbers only by float rounding, as they do between live reference passes.

Files: `cache_root()/<key>.safetensors`, fp32 tensors, with the key, its identity and a sha256 of the tensors in
the header. A file is used only when it loads, its key and identity match and its checksum verifies; otherwise
it is rebuilt with a log line naming why. Builders take `<key>.lock` (flock) and write to a temporary file that
is renamed into place, so two builders at once compute it once and leave one whole file (and where locks do not
work, the rename still leaves one whole file).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save_file
from torch import Tensor

from innerdpo_bench import files
from innerdpo_bench.models.forward import forward_pass
from innerdpo_bench.runlog import installed_versions

log = logging.getLogger("innerdpo_bench")

FORMAT = 1                       # bump when what is stored or how it is computed changes
SUBDIR = "refs"
SUFFIX = ".safetensors"
BUILD_BATCH_FACTOR = 4           # build batches hold this many training batches (no gradients to keep)
MODES = ("auto", "on", "off")
PAIR_FIELDS = ("chosen_ids", "chosen_mask", "rejected_ids", "rejected_mask", "prompt_length")
CACHED_TRANSFORMS = ("none", "supr")  # parameter-free: the reference's pooled states are fixed


def cache_root(home: str | os.PathLike | None = None) -> Path:
    """Where reference caches live: `HOME/cache/refs` for a workspace (`home`, else `$INNERDPO_HOME`: queue workers
    set it for their runs), else `models.cache_dir()/refs` (`$INNERDPO_CACHE`, else ~/.cache/innerdpo-bench)."""
    from innerdpo_bench.models import cache_dir

    home = home if home not in (None, "") else os.environ.get("INNERDPO_HOME")
    if home:
        return Path(home).expanduser().absolute() / "cache" / SUBDIR
    return cache_dir() / SUBDIR


def pair_digest(pair: dict) -> bytes:
    """16 bytes of sha256 over an encoded pair's token ids and masks (`data/encode.py`): its identity in a cache."""
    data = json.dumps([list(pair[name]) if name != "prompt_length" else int(pair[name]) for name in PAIR_FIELDS])
    return hashlib.sha256(data.encode()).digest()[:16]


def base_fingerprint(base_model_path: str, model_config=None) -> dict:
    """The base model as the key sees it: a directory by the sha256 of every file in it (weights included; memoised
    per process by path, size and mtime), a hub id by its id and the commit its config was loaded from."""
    root = Path(base_model_path)
    if root.is_dir():
        listing = {}
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            listing[str(path.relative_to(root))] = files.sha256_file_memo(path)
        return {"files": listing}
    return {"hub_id": base_model_path, "revision": getattr(model_config, "_commit_hash", None)}


@dataclass(frozen=True)
class RefSpec:
    """What the reference outputs depend on besides the base model and the pairs."""

    dtype: str
    packed: bool
    max_prompt_length: int
    max_length: int
    layers: tuple[int, ...] = ()          # collected hidden-state indices; () for output-only methods
    transform: str | None = None          # none | supr | None (no hidden term)
    transform_options: tuple = ()         # e.g. (("tau", 0.1),)
    output_layers: tuple[int, ...] = ()   # the layers the cached pooled states are for, in order
    norm_before_pool: bool = True
    filter_sinks: bool = False


def cached_spec(cfg, transform, layers: list[int], dtype: torch.dtype) -> tuple[RefSpec | None, str | None]:
    """(spec, None) when this run can train from a cache, else (None, why not) for the log."""
    if cfg.ref_cache == "off":
        return None, "reference cache off (--ref-cache off): the reference runs live each step"
    if transform is not None and transform.name not in CACHED_TRANSFORMS:
        return None, (f"reference cache not used for {cfg.canonical_method}: its trainable {transform.name} transform "
                      "needs the reference's token-level states, so the reference runs live each step")
    hidden = transform is not None
    return RefSpec(
        dtype=str(dtype).removeprefix("torch."), packed=cfg.pack_prompt, max_prompt_length=cfg.max_prompt_length,
        max_length=cfg.max_length, layers=tuple(layers) if hidden else (),
        transform=transform.name if hidden else None,
        transform_options=tuple(sorted(transform.options().items())) if hidden else (),
        output_layers=tuple(transform.output_layers) if hidden else (),
        norm_before_pool=cfg.norm_before_pool if hidden else True, filter_sinks=cfg.filter_sinks if hidden else False,
    ), None


def cache_key(base: dict, spec: RefSpec, digests: list[bytes]) -> tuple[str, dict]:
    """(key, identity): 24 hex digits of sha256 over the identity (module docstring)."""
    pairs = hashlib.sha256(b"".join(sorted(set(digests)))).hexdigest()
    identity = {"format": FORMAT, "base": base, "spec": {k: getattr(spec, k) for k in spec.__dataclass_fields__},
                "pairs": pairs, "n_pairs": len(set(digests)), "versions": installed_versions("torch", "transformers")}
    text = json.dumps(identity, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:24], json.loads(text)


def tensors_sha256(tensors: dict[str, Tensor]) -> str:
    """sha256 over the tensors' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        value = tensors[name].contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}\0".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


class ReferenceCache:
    """The cached reference outputs of a set of pairs, looked up by the pairs' `ref_index`.

    Tensors (pair i in sorted-digest order; [:, 0] chosen, [:, 1] rejected): `digest` uint8 `[N, 16]`,
    `logp_sum` float32 `[N, 2]`, `n_tokens` int64 `[N, 2]`, and for InnerDPO `pooled` float32 `[N, 2, L, hidden]`
    (L = the transform's output layers).
    """

    def __init__(self, key: str, tensors: dict[str, Tensor], path: Path, built_seconds: float | None = None):
        self.key, self.path, self.built_seconds = key, path, built_seconds
        self.tensors = tensors
        self.index = {bytes(row.tolist()): i for i, row in enumerate(tensors["digest"])}

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    def indices(self, pairs: list[dict]) -> Tensor | None:
        """`[B]` cache rows of these encoded pairs, or None if any is not cached."""
        found = [self.index.get(pair_digest(pair)) for pair in pairs]
        return None if any(i is None for i in found) else torch.tensor(found, dtype=torch.long)

    def lookup(self, ref_index: Tensor, device) -> tuple[Tensor, Tensor, Tensor | None]:
        """(logp_sum `[2B]`, n_tokens `[2B]`, pooled `[L, 2B, hidden]` or None) in the `[chosen; rejected]` row
        order of a collated batch, as the live reference pass returns them."""
        index = ref_index.cpu()

        def rows(name: str) -> Tensor:
            value = self.tensors[name][index]                       # [B, 2, ...]
            return torch.cat([value[:, 0], value[:, 1]]).to(device)  # [2B, ...]

        pooled = rows("pooled").transpose(0, 1) if "pooled" in self.tensors else None
        return rows("logp_sum"), rows("n_tokens"), pooled

    def collator(self, collate):
        """`collate` plus `ref_index` for batches whose pairs are all cached (any other batch goes live)."""
        def with_index(features: list[dict]) -> dict[str, Tensor]:
            batch = collate(features)
            index = self.indices(features)
            if index is not None:
                batch["ref_index"] = index
            return batch
        return with_index


# --------------------------------------------------------------------------- files


def read_header(path: Path) -> dict:
    """The metadata of a cache file (key, identity, checksum) without reading its tensors; {} if unreadable."""
    try:  # a safetensors file starts with the header's length (8 bytes, little-endian), then the header's JSON
        with open(path, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if not 0 < length < 1 << 27:
                return {}
            header = json.loads(handle.read(length))
    except (OSError, ValueError):
        return {}
    return header.get("__metadata__") or {} if isinstance(header, dict) else {}


def load(path: Path, key: str, identity: dict) -> tuple[ReferenceCache | None, str | None]:
    """(cache, None) if `path` is a whole cache file for `key`, else (None, why not); (None, None) if absent."""
    if not path.exists():
        return None, None
    try:  # read, not memory-mapped: a file truncated or replaced later cannot pull the tensors from under training
        tensors = load_tensors(path.read_bytes())
    except Exception as err:  # noqa: BLE001 (truncated or not a safetensors file)
        return None, f"unreadable ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
    meta = read_header(path)
    if meta.get("key") != key or json.loads(meta.get("identity", "null")) != identity:
        return None, "its key does not match this run's"
    if meta.get("sha256") != tensors_sha256(tensors):
        return None, "its checksum does not match its contents (corrupt)"
    return ReferenceCache(key, tensors, path), None


def write(path: Path, key: str, identity: dict, tensors: dict[str, Tensor]) -> None:
    """Write atomically: a temporary file in the same directory, then rename over `path`."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"key": key, "identity": json.dumps(identity, sort_keys=True),
                                          "sha256": tensors_sha256(tensors), "format": str(FORMAT)})
        os.chmod(tmp, files.FILE_MODE)  # after: save_file writes 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def build_lock(path: Path):
    """An exclusive flock on `path` while building (another builder waits, then finds the file); a filesystem
    without locks builds unlocked (the atomic rename still leaves one whole file)."""
    try:
        handle = open(path, "a+")
    except OSError:
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        handle.close()


# --------------------------------------------------------------------------- building


def _unique_pairs(pairs: list[dict]) -> list[tuple[bytes, dict]]:
    by_digest = {}
    for pair in pairs:
        by_digest.setdefault(pair_digest(pair), pair)
    return sorted(by_digest.items())


def compute(peft_model, pairs: list[dict], spec: RefSpec, transform, collate, batch_size: int,
            device) -> dict[str, Tensor]:
    """The cache's tensors for `pairs`, by no-grad reference passes (adapter disabled) over length-sorted batches."""
    from innerdpo_bench.methods.pooling import completion_pool

    unique = _unique_pairs(pairs)
    n = len(unique)
    tensors = {"digest": torch.tensor([list(d) for d, _ in unique], dtype=torch.uint8).reshape(n, 16),
               "logp_sum": torch.zeros(n, 2), "n_tokens": torch.zeros(n, 2, dtype=torch.long)}
    pooled = None
    in_hook = None
    if spec.transform == "none":
        in_hook = lambda h, mask: completion_pool(h, mask, spec.norm_before_pool, spec.filter_sinks)  # noqa: E731
    order = sorted(range(n), key=lambda i: unique[i][1]["length"])
    was_training = peft_model.training
    peft_model.eval()
    try:
        with torch.no_grad(), peft_model.disable_adapter():
            for start in range(0, n, batch_size):
                index = torch.tensor(order[start:start + batch_size])
                batch = {k: v.to(device) for k, v in collate([unique[i][1] for i in index.tolist()]).items()}
                result = forward_pass(peft_model, batch, list(spec.layers), pool=in_hook)
                half = len(index)
                tensors["logp_sum"][index] = torch.stack([result.logp_sum[:half], result.logp_sum[half:]], 1).float().cpu()
                tensors["n_tokens"][index] = torch.stack([result.n_tokens[:half], result.n_tokens[half:]], 1).cpu()
                if spec.transform is None:
                    continue
                states = result.hidden if in_hook is not None else transform.pool(
                    result.hidden, result.mask, result.last_index, spec.norm_before_pool, spec.filter_sinks)
                stacked = torch.stack([states[layer] for layer in spec.output_layers], 1).float().cpu()  # [2B, L, d]
                if pooled is None:
                    pooled = torch.zeros(n, 2, *stacked.shape[1:])
                pooled[index] = torch.stack([stacked[:half], stacked[half:]], 1)
    finally:
        peft_model.train(was_training)
    if pooled is not None:
        tensors["pooled"] = pooled
    return tensors


def size_bytes(pairs: int, layers: int, hidden: int) -> int:
    """Bytes of a cache file's tensors: per pair 16 (digest) + 2·4 (log-probs) + 2·8 (counts) + 2·L·d·4 (pooled)."""
    return pairs * (16 + 2 * 4 + 2 * 8 + 2 * layers * hidden * 4)


def reference_cache(peft_model, base_model_path: str, spec: RefSpec, transform, pairs: list[dict], collate,
                    batch_size: int, device, mode: str = "on", pairs_seen: int | None = None,
                    home: str | None = None) -> ReferenceCache | None:
    """The cache for `pairs` under `spec`: loaded if a valid one exists, else built (and stored when it can be),
    with a log line either way. With `mode` "auto" a missing cache is built only when the run will see at least
    as many pairs (`pairs_seen`, counting repeats) as there are to cache: a shorter run would pay more for the
    build than the reference passes it saves, so it runs the reference live (None, and a log line)."""
    from innerdpo_bench.models.forward import unwrap_causal_lm

    base = base_fingerprint(base_model_path, unwrap_causal_lm(peft_model).config)
    key, identity = cache_key(base, spec, [pair_digest(pair) for pair in pairs])
    root = cache_root(home)
    path = root / f"{key}{SUFFIX}"
    cache, problem = load(path, key, identity)
    n_pairs = identity["n_pairs"]
    if cache is None and mode == "auto" and pairs_seen is not None and pairs_seen < n_pairs:
        log.info("reference cache not built: this run sees %d pairs, fewer than the %d to cache, so building would "
                 "cost more than it saves; the reference runs live each step (--ref-cache on builds it anyway)",
                 pairs_seen, n_pairs)
        return None
    if cache is None:
        try:
            root.mkdir(parents=True, exist_ok=True)
            lock = build_lock(root / f"{key}.lock")
        except OSError:
            lock = contextlib.nullcontext()
        with lock:
            cache, again = load(path, key, identity)  # another builder may have finished while we waited
            if cache is None:
                problem = problem or again
                if problem:
                    log.warning("reference cache %s unusable: %s; rebuilding it", path, problem)
                started = time.perf_counter()
                tensors = compute(peft_model, pairs, spec, transform, collate, batch_size, device)
                seconds = time.perf_counter() - started
                try:
                    write(path, key, identity, tensors)
                except OSError as err:
                    log.warning("reference cache could not be stored at %s (%s); this run uses it from memory",
                                path, err.strerror or err)
                cache = ReferenceCache(key, tensors, path, built_seconds=seconds)
                log.info("reference cache built: %s, %d pairs, %.1f MB, %.1fs, at %s", key, len(tensors["digest"]),
                         cache.nbytes / 2**20, seconds, path)
                return cache
    log.info("reference cache hit: %s, %d pairs, %.1f MB, at %s (no reference forward while training)", key,
             len(cache.tensors["digest"]), cache.nbytes / 2**20, path)
    return cache


# --------------------------------------------------------------------------- listing and clearing


def entries(home: str | None = None) -> list[dict]:
    """Every cache file under `cache_root(home)`: path, bytes, key, pairs, base, transform, layers, modified."""
    root = cache_root(home)
    found = []
    for path in sorted(root.glob(f"*{SUFFIX}")) if root.is_dir() else []:
        meta = read_header(path)
        identity = json.loads(meta["identity"]) if "identity" in meta else {}
        spec = identity.get("spec", {})
        base = identity.get("base", {})
        found.append({"path": str(path), "bytes": path.stat().st_size, "key": meta.get("key", "?"),
                      "valid_header": bool(meta), "pairs": identity.get("n_pairs"),
                      "base": base.get("hub_id") or (f"{len(base['files'])} files" if "files" in base else "?"),
                      "dtype": spec.get("dtype"), "transform": spec.get("transform"),
                      "layers": spec.get("output_layers"), "modified": path.stat().st_mtime})
    return found


def clear(home: str | None = None) -> tuple[int, int]:
    """Delete every cache file (and leftover lock and temporary files) under `cache_root(home)`: (files, bytes)."""
    root = cache_root(home)
    files = freed = 0
    for path in list(root.iterdir()) if root.is_dir() else []:
        if path.is_file() and (path.suffix in (SUFFIX, ".lock", ".tmp")):
            size = path.stat().st_size
            path.unlink(missing_ok=True)
            if path.suffix == SUFFIX:
                files += 1
            freed += size
    return files, freed
