"""Sample generations of a checkpoint and of its base model on fixed prompts of each shift, written as samples.jsonl.

What is generated. For every shift of the suite, its first `prompts` distinct prompts in dataset order (the same for
every run of a suite; GENIES splits hold several pairs per prompt, so the first rows alone would repeat one prompt,
and each prompt's `row_id` is that of its first row), rendered as training and evaluation render them
(`data/encode.py`): as given, as one user turn with the generation prompt when the model's chat template is used
(auto: when the tokenizer has one, as `innerdpo eval` and training do), else without trailing whitespace. One greedy completion
(`do_sample=False`) of at most `max_new_tokens` tokens, stopped at an end-of-sequence token; with `sampled`, also
one ancestral sample (temperature 1, no top-k/top-p) after `torch.manual_seed(seed * 1000003 + k)`, k counting the
prompts over the shifts in order, so one prompt's sample does not depend on how many came before. Each completion
records its text (special tokens dropped), its token count (without the end token), whether it ended (`finished`;
False = cut at max_new_tokens) and `nll`, the generating model's mean per-token NLL of those tokens (from the
logits it generated with: no second forward).

Base model. The base's completions (adapter disabled, `PeftModel.disable_adapter`) depend only on the base, the
prompts and the settings, so they are computed once and cached under `cache_dir()/samples/<key>.json`, like the
base rows of `evalcache`: the key hashes the base model (`evalcache.base_identity`), the prompts' texts, the
settings (prompts, max_new_tokens, sampled, seed, chat template, dtype), the installed versions and this file.
Device is not in the key (it changes logits only by float rounding; a near-tie could flip a greedy token). A base
checkpoint (kind "model") is its own base: one generation serves both columns.

The file (`samples_path_for`: RUN/samples.jsonl beside eval.json; elsewhere `<stem>_samples.jsonl`, or
`./samples-<name>.jsonl` for `innerdpo samples` on a non-run checkpoint), written atomically: a header line
`{"settings": ..., "checkpoint": ..., "base_cache": {"hit", "key"}, ...}`, then one line per prompt
`{"shift", "index", "row_id", "prompt", "model": {"greedy": C, "sampled": C}, "base": {...}}` with C =
`{"text", "n_tokens", "finished", "nll"}`. `row_id` is eval_rows.jsonl's. Statistics of these texts:
`textstats`; reading the file: `samplefile` (no torch, for the TUI and the worker).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from innerdpo_bench import files, rundir
from innerdpo_bench.errors import UserError
from innerdpo_bench.progress import ProgressLines
from innerdpo_bench.evaluation import suites
from innerdpo_bench.evaluation.samplefile import samples_path_for

SAMPLES_CACHE = "samples"            # under models.cache_dir()
DEFAULT_PROMPTS = 3
DEFAULT_MAX_NEW_TOKENS = 64
DECODINGS = ("greedy", "sampled")
SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class SampleSettings:
    """What a samples file was generated with (its header's `settings`)."""

    prompts: int = DEFAULT_PROMPTS
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    suite: str | None = None
    data_dir: str | None = None
    sampled: bool = False
    seed: int = 0
    apply_chat_template: bool | None = None     # None: auto (the model's chat template when it has one)
    dtype: str = "float32"

    def validate(self) -> SampleSettings:
        if self.prompts < 1:
            raise UserError(f"--prompts must be at least 1, got {self.prompts}")
        if self.max_new_tokens < 1:
            raise UserError(f"--max-new-tokens must be at least 1, got {self.max_new_tokens}")
        if self.seed < 0:
            raise UserError(f"--seed must be a non-negative integer, got {self.seed}")
        suites.suite_refs(self.suite, self.data_dir)
        return self


@dataclass
class SamplesResult:
    path: Path
    header: dict
    records: list[dict]


def prompts_of(settings: SampleSettings) -> list[dict]:
    """The prompt records (without completions): the first `prompts` distinct prompts of every shift the suite has."""
    from innerdpo_bench.evaluation.evaluate import row_id

    refs = suites.suite_refs(settings.suite, settings.data_dir)
    out = []
    for shift in suites.SHIFTS:
        if refs[shift] is None:
            continue
        seen: set[str] = set()
        for row in suites.load_shift(shift, suite=settings.suite, data_dir=settings.data_dir):
            if row["prompt"] in seen:
                continue
            seen.add(row["prompt"])
            out.append({"shift": shift, "index": len(seen) - 1, "row_id": row_id(row), "prompt": row["prompt"]})
            if len(seen) == settings.prompts:
                break
    return out

# --------------------------------------------------------------------------- the base cache


def base_cache_key(base_model_path: str, prompts: list[dict], settings: SampleSettings) -> tuple[str, dict]:
    """(key, identity) of the base model's completions (module docstring)."""
    from innerdpo_bench.evaluation.cache import KEYED_PACKAGES, base_identity
    from innerdpo_bench.runlog import installed_versions

    texts = hashlib.sha256(json.dumps([p["prompt"] for p in prompts]).encode()).hexdigest()
    code = files.sha256_file(Path(__file__))
    keyed = {k: v for k, v in asdict(settings).items() if k not in ("suite", "data_dir")}  # the prompts say it
    identity = {"base_model": base_identity(base_model_path), "prompts": texts, "settings": keyed,
                "versions": installed_versions(*KEYED_PACKAGES), "code": code}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24], identity


def _cache_path(key: str) -> Path:
    from innerdpo_bench.models import cache_dir

    return cache_dir() / SAMPLES_CACHE / f"{key}.json"


def _cached_base(key: str, prompts: list[dict]) -> tuple[list[dict], bool] | None:
    """(the base's completions per prompt, the chat-template setting they used), or None on a miss."""
    try:
        entry = json.loads(_cache_path(key).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    base = entry.get("base") if isinstance(entry, dict) else None
    if not isinstance(base, list) or len(base) != len(prompts):
        return None
    return base, bool(entry.get("apply_chat_template"))


def _store_base(key: str, identity: dict, base: list[dict], chat: bool, say: Callable[[str], None]) -> None:
    path = _cache_path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        rundir.write_json(path, {"key": key, "identity": identity, "apply_chat_template": chat, "base": base})
    except OSError as err:  # a read-only cache costs the next run its shortcut, not this result
        say(f"could not store the base samples in the cache {path} ({err.strerror or err})")


# --------------------------------------------------------------------------- generation


def generate_samples(checkpoint: str, settings: SampleSettings | None = None, output: str | Path | None = None,
                     device: str | None = "auto", use_cache: bool = True,
                     progress: Callable[[str], None] | None = None) -> SamplesResult:
    """Generate the checkpoint's and its base's completions (module docstring) and write the samples file:
    `output`, else RUN/samples.jsonl for a run directory, else ./samples-<name>.jsonl."""
    from innerdpo_bench.evaluation.checkpoint import resolve_checkpoint

    say = progress or (lambda message: None)
    started = time.time()
    settings = (settings or SampleSettings()).validate()
    ckpt = resolve_checkpoint(checkpoint)
    path = Path(output).expanduser() if output else (
        samples_path_for(ckpt.default_eval_path()) if ckpt.run_dir else Path.cwd() / f"samples-{ckpt.name}.jsonl")
    prompts = prompts_of(settings)
    key, identity = base_cache_key(ckpt.base_model_path, prompts, settings)
    cached = _cached_base(key, prompts) if use_cache else None
    base, chat = cached if cached else (None, None)
    model_outputs = base if ckpt.adapter is None else None
    lines = ProgressLines(say)   # "generating samples with the base model 3/12 (25%)": the dashboard's eval stage

    def counter(who: str) -> Callable[[int, int], object]:
        return lambda done, total: lines.update(f"generating samples with the {who}", done, total)

    if base is None or model_outputs is None:
        model, tokenizer, device, chat = _load(ckpt, settings, device, say)
        if base is None:
            say(f"generating {len(prompts)} base completions ({settings.max_new_tokens} new tokens at most)")
            if ckpt.adapter is None:
                base = _complete_all(model, tokenizer, prompts, settings, chat, device, counter("base model"))
            else:
                with model.disable_adapter():
                    base = _complete_all(model, tokenizer, prompts, settings, chat, device, counter("base model"))
            _store_base(key, identity, base, chat, say)
        if ckpt.adapter is None:
            model_outputs = base
        elif model_outputs is None:
            say(f"generating {len(prompts)} completions with the {ckpt.kind}")
            model_outputs = _complete_all(model, tokenizer, prompts, settings, chat, device, counter(ckpt.kind))
    records = [{**prompt, "model": mine, "base": theirs} for prompt, mine, theirs in zip(prompts, model_outputs, base)]
    header = {"settings": {**asdict(settings), "apply_chat_template": chat,
                           "suite": suites.suite_label(settings.suite, settings.data_dir)},
              **ckpt.describe(), "base_cache": {"hit": cached is not None, "key": key},
              "timestamp": rundir.now_iso(), "seconds": round(time.time() - started, 2)}
    path.parent.mkdir(parents=True, exist_ok=True)
    files.atomic_write_text(path, "".join(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n"
                                           for line in [header, *records]))
    return SamplesResult(path, header, records)


def _load(ckpt, settings: SampleSettings, device: str | None, say: Callable[[str], None]):
    """(model, tokenizer, device, chat template used): loaded as `innerdpo eval` loads it."""
    import torch

    from innerdpo_bench.evaluation.evaluate import _load_model, _resolve_device  # the same loading and errors as eval

    device = _resolve_device(device)
    say(f"loading {ckpt.base_model}" + (f" + adapter {ckpt.adapter}" if ckpt.adapter else "") + f" on {device}")
    model, tokenizer = _load_model(ckpt, device, getattr(torch, settings.dtype), settings.apply_chat_template)
    chat = settings.apply_chat_template
    if chat is None:
        chat = bool(getattr(tokenizer, "chat_template", None))
    return model, tokenizer, device, chat


def prompt_ids(tokenizer, prompt: str, chat: bool) -> list[int]:
    """The prompt's token ids as training and evaluation condition on them (module docstring)."""
    from innerdpo_bench.data.encode import chat_prompt, encode_prompt
    from innerdpo_bench.data.pairs import plain_prompt

    return encode_prompt(tokenizer, chat_prompt(tokenizer, prompt) if chat else plain_prompt(prompt))


def _complete_all(model, tokenizer, prompts: list[dict], settings: SampleSettings, chat: bool, device: str,
                  counted: Callable[[int, int], object] = lambda done, total: None) -> list[dict]:
    """Every prompt's completions; `counted(done, total)` after each (the eval log's count lines)."""
    out = []
    counted(0, len(prompts))
    for k, prompt in enumerate(prompts):
        if k:
            counted(k, len(prompts))
        ids = prompt_ids(tokenizer, prompt["prompt"], chat)
        entry = {"greedy": complete(model, tokenizer, ids, settings.max_new_tokens, device)}
        if settings.sampled:
            entry["sampled"] = complete(model, tokenizer, ids, settings.max_new_tokens, device,
                                        seed=settings.seed * SEED_STRIDE + k)
        out.append(entry)
    counted(len(prompts), len(prompts))
    return out


def _end_tokens(model, tokenizer) -> set[int]:
    ends = model.generation_config.eos_token_id
    ends = set(ends if isinstance(ends, (list, tuple)) else [ends] if ends is not None else [])
    return ends | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set())


def complete(model, tokenizer, ids: list[int], max_new_tokens: int, device: str, seed: int | None = None) -> dict:
    """One completion of the prompt `ids`: greedy, or with `seed` an ancestral sample; `{text, n_tokens, finished,
    nll}` (module docstring)."""
    import torch
    from transformers import GenerationConfig

    ends = _end_tokens(model, tokenizer)
    sampling = dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0) if seed is not None else dict(do_sample=False)
    config = GenerationConfig(max_new_tokens=max_new_tokens, eos_token_id=sorted(ends) or None,
                              pad_token_id=tokenizer.pad_token_id, output_logits=True, return_dict_in_generate=True,
                              **sampling)
    inputs = torch.tensor([ids], device=device)
    if seed is not None:
        torch.manual_seed(seed)
    with torch.no_grad():
        generated = model.generate(inputs, attention_mask=torch.ones_like(inputs), generation_config=config)
    new = generated.sequences[0, inputs.shape[1]:].tolist()
    end = next((i for i, token in enumerate(new) if token in ends), None)
    kept = new if end is None else new[:end]
    nll = None
    if kept:
        logps = torch.log_softmax(torch.stack(generated.logits[:len(kept)], dim=1)[0].float(), dim=-1)  # [steps, vocab]
        nll = float(-logps[torch.arange(len(kept)), torch.tensor(kept)].mean())
    return {"text": tokenizer.decode(kept, skip_special_tokens=True), "n_tokens": len(kept),
            "finished": end is not None, "nll": nll}
