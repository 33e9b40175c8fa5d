"""lm-eval glue for the innerdpo shift tasks: the data loader, the choices, and `PrefTask` (token-mean metrics).

Every doc is one preference pair `{prompt, chosen, rejected}`. lm-eval scores it as a two-way multiple choice:
two loglikelihood requests `(context, delimiter + chosen)` and `(context, delimiter + rejected)`, each answered
with the summed log-prob of the continuation tokens, where the context is the prompt as training renders it
(`PrefTask.doc_to_text`: a chat template's user turn, or the prompt without trailing whitespace and the delimiter
" "). The metrics compare chosen with rejected per row (see `pair_metrics`) over the completion's own tokens, as
training scores them: lm-eval moves a context's trailing whitespace (a chat template's newline) into each
continuation, so `PrefTask` asks for that whitespace's log-prob as a third request and takes it back out, and it
counts the tokens itself exactly as the harness tokenised them (`ContinuationCounter`), since lm-eval never hands
token counts to `process_results`. Rows longer than the model follow lm-eval's rule (`PrefTask`).
"""

from __future__ import annotations

import functools
import json
import logging

from lm_eval.api.instance import Instance
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
    `prompt.rstrip() + " " + completion`, as training renders a row for a model without a chat template.
    (`PrefTask.doc_to_text` replaces this: with a chat template the user turn holds the prompt as given, as in
    training. open_pref_eval joins the same string but scores it inside one assistant turn of a chat template,
    its own if the model has none: not the same tokens; README.md, "Not open_pref_eval's scorer".)"""
    return suites.prompt_text(doc["prompt"], chat=False)


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
    """Encodes a request as lm-eval's HF model does (lm_eval 0.4.13, `TemplateLM.loglikelihood` / `_encode_pair` /
    `HFLM.tok_encode`) and gives its token counts:

    * empty context: the continuation is encoded without special tokens and conditioned on the prefix
      token (BOS, else EOS); if it already starts with that token, that token becomes the context;
    * otherwise trailing whitespace of the context moves to the continuation, then the continuation's tokens
      are enc(context + continuation) after its first len(enc(context)) tokens, where `enc` adds the tokenizer's
      special tokens (or `add_bos_token` when given) unless the text already starts with the prefix token's text.
      A BOS therefore cancels out of the difference.
    """

    def __init__(self, tokenizer, add_bos_token: bool | None = None, prefix_token_id: int | None = None):
        self.tokenizer = tokenizer
        self.add_bos_token = add_bos_token
        if prefix_token_id is None:
            prefix_token_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        self.prefix_token_id = prefix_token_id
        self.prefix_text = tokenizer.decode(prefix_token_id) if prefix_token_id is not None else None
        self._lengths: dict[tuple[str, str], tuple[int, int]] = {}

    def encode(self, text: str) -> list[int]:
        kwargs = {} if self.add_bos_token is None else {"add_special_tokens": self.add_bos_token}
        if self.prefix_text is not None and text.startswith(self.prefix_text):
            kwargs["add_special_tokens"] = False
        return self.tokenizer.encode(text, **kwargs)

    def lengths(self, context: str, continuation: str) -> tuple[int, int]:
        """(context tokens, continuation tokens) of one request as the model receives them (before any cut)."""
        key = (context, continuation)
        if key not in self._lengths:
            if context == "":
                ids = self.tokenizer.encode(continuation, add_special_tokens=False)
                starts_with_prefix = bool(ids) and ids[0] == self.prefix_token_id
                self._lengths[key] = (1, len(ids) - int(starts_with_prefix))
            else:
                n_spaces = len(context) - len(context.rstrip())
                if n_spaces:
                    context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
                n_context = len(self.encode(context))
                self._lengths[key] = (n_context, len(self.encode(context + continuation)) - n_context)
        return self._lengths[key]

    def __call__(self, context: str, continuation: str) -> int:
        return self.lengths(context, continuation)[1]


def moved_whitespace(context: str) -> str:
    """The trailing whitespace lm-eval moves from a context into each continuation it scores (a chat template's
    newline after the generation prompt): the completion does not include it, training never scores it."""
    return context[len(context.rstrip()):] if context.strip() else ""


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


def max_length_from_metadata(metadata: dict) -> int:
    """The context window lm-eval's HF model uses (`HFLM.max_length`): `max_length` from `--model_args`, else the
    model config's `n_positions` / `max_position_embeddings` / `n_ctx`, else the tokenizer's, else 2048."""
    from lm_eval.models.huggingface import HFLM
    from lm_eval.models.utils import resolve_max_length

    if metadata.get("max_length"):
        return int(metadata["max_length"])
    source = metadata.get("pretrained") or metadata.get("tokenizer")
    if source is not None and not isinstance(source, str):
        config = getattr(source, "config", None)
    else:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(source, trust_remote_code=bool(_as_bool(metadata.get("trust_remote_code"))),
                                            revision=metadata.get("revision") or "main")
    return resolve_max_length(config, counter_from_metadata(metadata).tokenizer, default=HFLM._DEFAULT_MAX_LENGTH)


def _doc_key(doc: dict) -> str:
    return json.dumps(doc, sort_keys=True, ensure_ascii=False, default=str)


CHOSEN, REJECTED, LEAD = 0, 1, 2   # request index within a doc: the two completions, then the moved whitespace


class PrefTask(ConfigurableTask):
    """A multiple-choice task whose metrics use token counts (`acc`, `acc_sum`, `logratio`; see `pair_metrics`),
    scoring the completion's own tokens as training does, and lm-eval's rule for rows longer than the model.

    Requests per doc: chosen and rejected, `(context, delimiter + completion)`; and, when the context ends in
    whitespace (a chat template's newline after the generation prompt), a third, `(context without it, the
    whitespace)`. lm-eval moves that whitespace into every continuation it scores, so each answer holds its
    log-prob too; the third request is exactly that term, and `row_scores` subtracts it (log-prob and tokens).
    `process_results(doc, results)` gets only the `(sum_logprob, is_greedy)` answers, so it looks up the doc's
    requests in `self._instances` (rebuilt for every run; also filled from `--cache_requests`) and counts their
    tokens with `ContinuationCounter`.

    Long rows (`length_report`, after `build_all_requests`): a request whose context and continuation exceed the
    model's `max_length` + 1 tokens has its context cut from the left by the model (lm-eval's rule), and its row
    counts as `truncated` (a per-row metric too); a row with a continuation longer than `max_length` cannot be
    scored at all (lm-eval's HF model refuses it), so its requests are never sent and the row is `skipped`: it has
    no metrics and is not in `n`. Registered from YAML with `class: !function utils.PrefTask`.
    """

    def __init__(self, config: dict | None = None, **kwargs):
        config = {k: v for k, v in (config or {}).items() if k != "class"}  # TaskConfig has no `class` field
        super().__init__(config=config, **kwargs)
        self._requests_by_doc: dict[str, dict[int, tuple[str, str]]] = {}
        self._requests_built_from = None
        self._chat = False                    # set by build_all_requests: whether the chat template renders the docs
        self._skipped: set[int] = set()       # doc ids whose completion alone does not fit the model
        self.length_report: dict[str, int] = {}

    @functools.cached_property
    def token_counter(self) -> ContinuationCounter:
        return counter_from_metadata(self.config.metadata or {})

    @functools.cached_property
    def max_length(self) -> int:
        """The model's context window, as lm-eval's HF model resolves it (`innerdpo eval` sets its model's)."""
        return max_length_from_metadata(self.config.metadata or {})

    def count_tokens(self, context: str, continuation: str) -> int:
        """Continuation tokens of one request, as the harness tokenised it."""
        return self.token_counter(context, continuation)

    def doc_to_text(self, doc, doc_to_text=None):
        """The prompt as training renders it (`suites.prompt_text`): as given in a chat template's user turn,
        without trailing whitespace otherwise."""
        if doc_to_text is not None:
            return super().doc_to_text(doc, doc_to_text)
        return suites.prompt_text(doc["prompt"], getattr(self, "_chat", False))  # the base __init__ calls it too

    def build_all_requests(self, **kwargs) -> None:
        self._chat = bool(kwargs.get("apply_chat_template"))
        self._skipped = set()
        super().build_all_requests(**kwargs)
        self._apply_length_rule()

    def construct_requests(self, doc: dict, ctx, **kwargs):
        requests = super().construct_requests(doc, ctx, **kwargs)
        lead = moved_whitespace(ctx) if isinstance(ctx, str) else ""
        if lead:
            extra = {k: v for k, v in kwargs.items() if k not in ("apply_chat_template", "chat_template")}
            requests.append(Instance(request_type="loglikelihood", doc=doc, arguments=(ctx[:-len(lead)], lead),
                                     idx=LEAD, **extra))
        return requests

    def doc_iterator(self, **kwargs):
        return ((doc_id, doc) for doc_id, doc in super().doc_iterator(**kwargs) if doc_id not in self._skipped)

    def _row_lengths(self, requests: list[tuple[str, str]]) -> tuple[bool, bool]:
        """(truncated, skipped) for one row's requests under lm-eval's rule (class docstring)."""
        lengths = [self.token_counter.lengths(*args) for args in requests]
        skipped = any(n_cont > self.max_length for _, n_cont in lengths)
        return not skipped and any(n_ctx + n_cont > self.max_length + 1 for n_ctx, n_cont in lengths), skipped

    def _apply_length_rule(self) -> None:
        """Drop the requests of rows that cannot be scored, count truncated and skipped rows, and say so."""
        by_doc: dict[int, list] = {}
        for instance in self._instances or []:
            by_doc.setdefault(instance.doc_id, []).append(instance)
        truncated = 0
        for doc_id, instances in by_doc.items():
            cut, skip = self._row_lengths([tuple(i.args[:2]) for i in instances])
            truncated += cut
            if skip:
                self._skipped.add(doc_id)
        if self._skipped:
            self._instances = [i for i in self._instances if i.doc_id not in self._skipped]
        self.length_report = {"rows": len(by_doc), "scored": len(by_doc) - len(self._skipped),
                              "truncated": truncated, "skipped": len(self._skipped), "max_length": self.max_length}
        if truncated or self._skipped:
            logging.getLogger("lm_eval.tasks.innerdpo").warning(
                f"{self.config.task}: of {len(by_doc)} rows, {truncated} had their prompt cut from the left to fit the "
                f"model's {self.max_length} positions, and {len(self._skipped)} were skipped (a completion alone "
                f"longer than {self.max_length} tokens; not scored, not in n)")
        if not self._instances:
            raise UserError(f"{self.config.task}: every row has a completion longer than the model's "
                            f"{self.max_length} positions; nothing can be scored")

    def request_args(self, doc: dict) -> dict[int, tuple[str, str]]:
        """The `(context, continuation)` pairs of this doc's requests by index (`CHOSEN`, `REJECTED`, `LEAD`)."""
        if self._requests_built_from is not self._instances:
            index: dict[str, dict[int, tuple[str, str]]] = {}
            for instance in self._instances or []:
                index.setdefault(_doc_key(instance.doc), {})[instance.idx] = tuple(instance.args[:2])
            self._requests_by_doc, self._requests_built_from = index, self._instances
        by_idx = self._requests_by_doc.get(_doc_key(doc))
        if by_idx is None or CHOSEN not in by_idx or REJECTED not in by_idx:
            raise KeyError(f"{self.config.task}: no requests recorded for doc {doc!r}")
        return by_idx

    def row_scores(self, doc: dict, results) -> dict:
        """Summed log-probs and token counts of chosen and rejected for one doc: the completion's own tokens (the
        moved whitespace's request subtracted, class docstring), and whether the model cut the row's prompt."""
        args = self.request_args(doc)
        lead_logp, lead_n = (float(results[LEAD][0]), self.count_tokens(*args[LEAD])) if LEAD in args else (0.0, 0)
        (logp_chosen, _), (logp_rejected, _) = results[CHOSEN], results[REJECTED]
        truncated, _ = self._row_lengths(list(args.values()))
        return {
            "logp_chosen": float(logp_chosen) - lead_logp,
            "logp_rejected": float(logp_rejected) - lead_logp,
            "n_chosen": self.count_tokens(*args[CHOSEN]) - lead_n,
            "n_rejected": self.count_tokens(*args[REJECTED]) - lead_n,
            "truncated": truncated,
        }

    def process_results(self, doc: dict, results) -> dict[str, float]:
        scores = self.row_scores(doc, results)
        truncated = scores.pop("truncated")
        return {**pair_metrics(**scores), "truncated": float(truncated)}
