"""lm-eval glue for the innerdpo shift tasks: the data loader, the choices, and `PrefTask` (token-mean metrics).

Every doc is one preference pair `{prompt, chosen, rejected}`. lm-eval scores it as a two-way
multiple choice: two loglikelihood requests `(prompt, " " + chosen)` and `(prompt, " " + rejected)`,
each answered with the summed log-prob of the continuation tokens. The metrics compare chosen with
rejected per row (see `pair_metrics`); the per-token mean needs the number of continuation tokens,
which lm-eval never hands to `process_results`, so `PrefTask` counts them itself exactly as the
harness tokenised them (`ContinuationCounter`).
"""

from __future__ import annotations

import functools
import json

from lm_eval.api.task import ConfigurableTask

from innerdpo_bench.errors import UserError
from innerdpo_bench.evaluation import scoring, suites

# --------------------------------------------------------------------------- data


def load_shift(shift: str, suite: str | None = None, data_dir: str | None = None, rows=None, sample=None,
               sample_seed=None, genies_dir: str | None = None, **_metadata) -> dict:
    """`custom_dataset` for one shift: lm-eval calls it with the task metadata (`--metadata` JSON and,
    on the CLI, `--model_args`) plus `dataset_kwargs` (`shift`), and takes the `test` split.
    `sample: random` with `sample_seed` takes `rows` seeded random rows instead of the first ones;
    `genies_dir` is the GENIES `distributions/` folder of a `genies:` suite (default $INNERDPO_GENIES_DIR,
    else the package's copy)."""
    from datasets import Dataset

    return {"test": Dataset.from_list(suites.load_shift(shift, suite=suite, data_dir=data_dir, rows=rows,
                                                        sample=sample, sample_seed=sample_seed,
                                                        genies_dir=genies_dir))}


def doc_to_text(doc: dict) -> str:
    """The prompt without trailing whitespace: with the target delimiter " " the scored text is
    `prompt.rstrip() + " " + completion`. (open_pref_eval joins the same string but scores it inside one
    assistant turn of a chat template, its own if the model has none: not the same tokens; README.md,
    "Not open_pref_eval's scorer".)"""
    return doc["prompt"].rstrip()


def doc_to_choice(doc: dict) -> list[str]:
    """Choice 0 is chosen (the target), choice 1 rejected."""
    return [doc["chosen"], doc["rejected"]]


def process_results(doc, results):
    """Marker only. Setting `process_results` keeps lm-eval from looking our metric names up on the HF
    hub; `PrefTask.process_results` replaces it."""
    raise RuntimeError("innerdpo tasks must run as `class: !function utils.PrefTask`")


# --------------------------------------------------------------------------- scoring


def pair_metrics(logp_chosen: float, logp_rejected: float, n_chosen: int, n_rejected: int) -> dict[str, float]:
    """Per-row metrics from summed continuation log-probs and their token counts: each harness metric of
    `scoring.METRICS` under its eval.json key, and the mean-token log-ratio.

    acc      = [logp_c / n_c  >  logp_r / n_r]   (strict; the statistic of open_pref_eval's default score_ipo,
                                                  on differently rendered and masked tokens: README.md)
    acc_sum  = [logp_c  >  logp_r]                (strict; ties are wrong, unlike lm-eval's argmax acc)
    logratio = logp_c / n_c − logp_r / n_r        (mean-token log-ratio, nats per token)
    """
    pair = scoring.RowRecord(logp_chosen, logp_rejected, n_chosen, n_rejected)
    verdicts = {scoring.METRICS[name].harness_key: float(scoring.METRICS[name].score(pair))
                for name in scoring.HARNESS_METRICS}
    return {**verdicts, **{name: float(margin.value(pair)) for name, margin in scoring.MARGINS.items()}}


class ContinuationCounter:
    """Counts a request's continuation tokens exactly as lm-eval's HF model does (lm_eval 0.4.13,
    `TemplateLM.loglikelihood` / `_encode_pair` / `HFLM.tok_encode`):

    * empty context: the continuation is encoded without special tokens and conditioned on the prefix
      token (BOS, else EOS); if it already starts with that token, that token becomes the context;
    * otherwise trailing whitespace of the context moves to the continuation, then
      n = len(enc(context + continuation)) − len(enc(context)), where `enc` adds the tokenizer's
      special tokens (or `add_bos_token` when given) unless the text already starts with the prefix
      token's text. A BOS therefore cancels out of the difference.
    """

    def __init__(self, tokenizer, add_bos_token: bool | None = None, prefix_token_id: int | None = None):
        self.tokenizer = tokenizer
        self.add_bos_token = add_bos_token
        if prefix_token_id is None:
            prefix_token_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        self.prefix_token_id = prefix_token_id
        self.prefix_text = tokenizer.decode(prefix_token_id) if prefix_token_id is not None else None

    def encode(self, text: str) -> list[int]:
        kwargs = {} if self.add_bos_token is None else {"add_special_tokens": self.add_bos_token}
        if self.prefix_text is not None and text.startswith(self.prefix_text):
            kwargs["add_special_tokens"] = False
        return self.tokenizer.encode(text, **kwargs)

    def __call__(self, context: str, continuation: str) -> int:
        if context == "":
            ids = self.tokenizer.encode(continuation, add_special_tokens=False)
            return len(ids) - (1 if ids and ids[0] == self.prefix_token_id else 0)
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        return len(self.encode(context + continuation)) - len(self.encode(context))


def _as_bool(value):
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
    return value if value is None else bool(value)


@functools.lru_cache(maxsize=8)
def _load_tokenizer(source: str, add_bos_token, trust_remote_code, revision, use_fast, subfolder, gguf_file):
    from transformers import AutoTokenizer

    kwargs = {"trust_remote_code": bool(trust_remote_code), "use_fast": use_fast if use_fast is not None else True}
    for key, value in (("add_bos_token", add_bos_token), ("revision", revision), ("subfolder", subfolder),
                       ("gguf_file", gguf_file)):
        if value is not None:
            kwargs[key] = value
    return AutoTokenizer.from_pretrained(source, **kwargs)


def counter_from_metadata(metadata: dict) -> ContinuationCounter:
    """The tokenizer lm-eval's HF model uses, found from task metadata: `tokenizer`, else `pretrained`
    (the CLI merges `--model_args` into metadata), with `add_bos_token`, `prefix_token_id`,
    `trust_remote_code`, `revision`, `use_fast_tokenizer` honoured as HFLM honours them."""
    source = metadata.get("tokenizer") or metadata.get("pretrained")
    if source is None:
        raise UserError("innerdpo tasks need the model's tokenizer to count tokens: run lm_eval with "
                        "--model_args pretrained=... (or tokenizer=...), or put 'tokenizer' in the TaskManager metadata")
    add_bos = _as_bool(metadata.get("add_bos_token"))
    prefix = metadata.get("prefix_token_id")
    prefix = int(prefix) if prefix is not None else None
    if not isinstance(source, str):
        if hasattr(source, "encode"):  # a tokenizer object
            return ContinuationCounter(source, add_bos, prefix)
        source = getattr(source, "name_or_path", None) or str(source)  # a model object passed as pretrained
    tokenizer = _load_tokenizer(
        source, add_bos, _as_bool(metadata.get("trust_remote_code")), metadata.get("revision"),
        _as_bool(metadata.get("use_fast_tokenizer")), metadata.get("subfolder") or None,
        None if metadata.get("tokenizer") else metadata.get("gguf_file"),
    )
    return ContinuationCounter(tokenizer, add_bos, prefix)


def _doc_key(doc: dict) -> str:
    return json.dumps(doc, sort_keys=True, ensure_ascii=False, default=str)


class PrefTask(ConfigurableTask):
    """A multiple-choice task whose metrics use token counts (`acc`, `acc_sum`, `logratio`; see
    `pair_metrics`).

    `process_results(doc, results)` gets only the two `(sum_logprob, is_greedy)` answers, so it looks
    up the doc's two `(context, continuation)` requests in `self._instances` (rebuilt for every run;
    also filled from `--cache_requests`) and counts their continuation tokens with
    `ContinuationCounter`. Registered from YAML with `class: !function utils.PrefTask`.
    """

    def __init__(self, config: dict | None = None, **kwargs):
        config = {k: v for k, v in (config or {}).items() if k != "class"}  # TaskConfig has no `class` field
        super().__init__(config=config, **kwargs)
        self._requests_by_doc: dict[str, dict[int, tuple[str, str]]] = {}
        self._requests_built_from = None

    @functools.cached_property
    def token_counter(self) -> ContinuationCounter:
        return counter_from_metadata(self.config.metadata or {})

    def count_tokens(self, context: str, continuation: str) -> int:
        """Continuation tokens of one request, as the harness tokenised it."""
        return self.token_counter(context, continuation)

    def request_args(self, doc: dict) -> tuple[tuple[str, str], tuple[str, str]]:
        """The `(context, continuation)` pairs of this doc's chosen and rejected requests."""
        if self._requests_built_from is not self._instances:
            index: dict[str, dict[int, tuple[str, str]]] = {}
            for instance in self._instances or []:
                index.setdefault(_doc_key(instance.doc), {})[instance.idx] = tuple(instance.args[:2])
            self._requests_by_doc, self._requests_built_from = index, self._instances
        by_idx = self._requests_by_doc.get(_doc_key(doc))
        if by_idx is None or 0 not in by_idx or 1 not in by_idx:
            raise KeyError(f"{self.config.task}: no requests recorded for doc {doc!r}")
        return by_idx[0], by_idx[1]

    def row_scores(self, doc: dict, results) -> dict:
        """Summed log-probs and token counts of chosen and rejected for one doc."""
        (logp_chosen, _), (logp_rejected, _) = results[0], results[1]
        chosen_args, rejected_args = self.request_args(doc)
        return {
            "logp_chosen": float(logp_chosen),
            "logp_rejected": float(logp_rejected),
            "n_chosen": self.count_tokens(*chosen_args),
            "n_rejected": self.count_tokens(*rejected_args),
        }

    def process_results(self, doc: dict, results) -> dict[str, float]:
        return pair_metrics(**self.row_scores(doc, results))
