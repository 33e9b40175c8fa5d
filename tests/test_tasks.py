"""The lm-eval task folder and the suite table: task index, docs, the suite values, data errors, token counts."""

import json
import re

import pytest

from innerdpo_bench.data.mini import load_mini, write_mini_jsonl
from innerdpo_bench.errors import UserError
from innerdpo_bench.evaluation import suites
from innerdpo_bench.evaluation.suites import SHIFTS

TASKS = [f"innerdpo_{shift}" for shift in SHIFTS]


@pytest.fixture(scope="module")
def task_manager(tiny_model_path):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(suites.tasks_dir()), include_defaults=False,
                       metadata={"suite": "mini", "rows": 5, "tokenizer": tiny_model_path})


def test_task_folder_is_indexed(task_manager):
    assert set(task_manager.all_subtasks) == set(TASKS)
    assert task_manager.all_groups == ["innerdpo_shifts"]
    files = {p.name for p in suites.tasks_dir().iterdir()}
    assert {f"{t}.yaml" for t in TASKS} | {"innerdpo_shifts.yaml", "_innerdpo_template_yaml", "utils.py",
                                            "README.md"} <= files


def test_group_loads_every_shift_with_mini_docs(task_manager):
    loaded = task_manager.load(["innerdpo_shifts"])
    assert loaded["group_map"] == {"innerdpo_shifts": TASKS}
    for shift in SHIFTS:
        task = loaded["tasks"][f"innerdpo_{shift}"]
        assert type(task).__name__ == "PrefTask"
        assert task.config.output_type == "multiple_choice" and task.config.num_fewshot == 0
        docs = list(task.eval_docs)
        assert docs == load_mini(shift)[:5]
        for doc in docs:
            assert task.doc_to_text(doc) == doc["prompt"].rstrip()
            assert task.doc_to_choice(doc) == [doc["chosen"], doc["rejected"]]
            assert task.doc_to_target(doc) == 0


SUITE_VALUES = {  # shift → (hub id, config, split), from the reference's TRAINING_EXPERIMENTS (spec §11)
    "alpaca_easy": {
        "in_domain": ("wassname/genies_preferences", "alpaca_easy", "test"),
        "difficulty_scaling": ("wassname/genies_preferences", "alpaca_hard", "test"),
        "moral_transfer": ("wassname/ethics_expression_preferences", "justice", "test"),
        "orthogonal": ("wassname/medical-dpo-V2", None, "data"),
    },
    "math_easy": {
        "in_domain": ("wassname/genies_preferences", "math_easy", "test"),
        "difficulty_scaling": ("wassname/genies_preferences", "math_hard", "test"),
        "moral_transfer": None,
        "orthogonal": ("wassname/medical-dpo-V2", None, "data"),
    },
    "code_easy": {
        "in_domain": ("wassname/genies_preferences", "code_easy", "test"),
        "difficulty_scaling": ("wassname/genies_preferences", "code_hard", "test"),
        "moral_transfer": ("wassname/ethics_expression_preferences", "justice", "test"),
        "orthogonal": ("wassname/medical-dpo-V2", None, "data"),
    },
    "arc_easy": {
        "in_domain": ("wassname/genies_preferences", "arc_easy", "test"),
        "difficulty_scaling": ("wassname/genies_preferences", "arc_hard", "test"),
        "moral_transfer": ("wassname/ethics_expression_preferences", "justice", "test"),
        "orthogonal": ("wassname/medical-dpo-V2", None, "data"),
    },
    "alpaca_low_quality": {
        "in_domain": ("wassname/genies_preferences", "alpaca_low_quality", "test"),
        "difficulty_scaling": ("wassname/genies_preferences", "alpaca_high_quality", "test"),
        "moral_transfer": ("wassname/ethics_expression_preferences", "justice", "test"),
        "orthogonal": ("wassname/medical-dpo-V2", None, "data"),
    },
}


def test_suite_table_values():
    assert {n for n in suites.SUITES if not n.startswith(suites.REAL_PREFIX)} == set(SUITE_VALUES) | {"mini"}
    assert suites.DEFAULT_SUITE == "genies:alpaca_easy" and suites.DEFAULT_ROWS == 500   # shipped: no network
    for name, expected in SUITE_VALUES.items():
        refs = suites.suite_refs(name)
        got = {s: None if r is None else (r.path, r.config, r.split) for s, r in refs.items()}
        assert got == expected, name
        assert all(r is None or r.kind == "hub" for r in refs.values())
    assert {s: (r.kind, r.path) for s, r in suites.suite_refs("mini").items()} == {s: ("mini", s) for s in SHIFTS}
    assert suites.suite_refs() == suites.suite_refs("genies:alpaca_easy")
    assert all(ref.kind != "hub" for ref in suites.suite_refs().values())


def test_mini_suite_rows_default_cap_and_limit():
    assert len(suites.load_shift("orthogonal", suite="mini")) == 240  # fewer than the default cap of 500
    assert suites.load_shift("orthogonal", suite="mini", rows="7") == load_mini("orthogonal")[:7]


def test_data_dir_reads_shift_files(tmp_path):
    write_mini_jsonl(tmp_path)
    assert suites.load_shift("moral_transfer", data_dir=str(tmp_path), rows=3) == load_mini("moral_transfer")[:3]
    prov = suites.provenance(suites.suite_refs(data_dir=tmp_path)["in_domain"], 3)
    assert prov["dataset"] == str(tmp_path / "in_domain.jsonl") and prov["rows"] == 3


@pytest.mark.parametrize("kwargs, message", [
    ({"suite": "alpaca_eassy"}, "unknown suite 'alpaca_eassy'. Did you mean 'alpaca_easy'?"),
    ({"suite": "math_easy", "shift": "moral_transfer"}, "suite 'math_easy' has no moral_transfer dataset"),
    ({"suite": "mini", "rows": 0}, "rows must be a positive integer, got 0"),
    ({"suite": "mini", "rows": "lots"}, "rows must be a positive integer, got 'lots'"),
    ({"suite": "mini", "data_dir": "."}, "not both"),
])
def test_bad_suite_arguments(kwargs, message):
    shift = kwargs.pop("shift", "in_domain")
    with pytest.raises(UserError, match=re.escape(message)):
        suites.load_shift(shift, **kwargs)


def test_data_dir_missing_file_and_malformed_row(tmp_path):
    write_mini_jsonl(tmp_path)
    (tmp_path / "orthogonal.jsonl").unlink()
    with pytest.raises(UserError, match=re.escape(f"data directory {tmp_path} has no orthogonal.jsonl")):
        suites.load_shift("in_domain", data_dir=tmp_path)
    write_mini_jsonl(tmp_path)
    lines = (tmp_path / "orthogonal.jsonl").read_text().splitlines()
    lines[2] = json.dumps({"prompt": "p", "chosen": "c"})
    (tmp_path / "orthogonal.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"orthogonal.jsonl row 3: missing field 'rejected'"):
        suites.load_shift("orthogonal", data_dir=tmp_path)


def test_pair_metrics_value_table():
    from innerdpo_bench.tasks.utils import pair_metrics

    # chosen: -10 over 5 tokens (-2/token); rejected: -12 over 4 tokens (-3/token)
    assert pair_metrics(-10.0, -12.0, 5, 4) == {"acc": 1.0, "acc_sum": 1.0, "logratio": 1.0}
    # the sum prefers rejected, the token mean prefers chosen: -9 over 3 vs -8 over 2
    assert pair_metrics(-9.0, -8.0, 3, 2) == {"acc": 1.0, "acc_sum": 0.0, "logratio": 1.0}
    # ties are wrong for both (strict >), unlike lm-eval's argmax acc
    assert pair_metrics(-6.0, -6.0, 3, 3) == {"acc": 0.0, "acc_sum": 0.0, "logratio": 0.0}


CASES = [
    ("What is the capital of France?", " The capital of France is Paris."),
    ("Trailing spaces and a newline   \n", " moved into the continuation."),
    ("Unicode prompt: café, naïve", " Umlaut ü and an emoji 🙂 in the answer."),
    ("<s> starts with the BOS text", " so lm-eval adds no special tokens."),
    ("", " An empty context is scored after the prefix token."),
    ("", "<s>starts with BOS itself"),
]


@pytest.mark.parametrize("add_bos_token", [None, False])
def test_continuation_counter_matches_lm_eval_encoding(tiny_model_path, tiny_tokenizer, add_bos_token):
    """ContinuationCounter must count what HFLM feeds the model: `_encode_pair` for a context, and
    lm-eval's empty-context rule (prefix token as context) otherwise."""
    from lm_eval.models.huggingface import HFLM

    from innerdpo_bench.models import load_causal_lm
    from innerdpo_bench.tasks.utils import counter_from_metadata

    lm = HFLM(pretrained=load_causal_lm(tiny_model_path), tokenizer=tiny_tokenizer, add_bos_token=add_bos_token,
              batch_size=1)
    metadata = {"pretrained": tiny_model_path} | ({} if add_bos_token is None else {"add_bos_token": "False"})
    count = counter_from_metadata(metadata)
    for context, continuation in CASES:
        if context:
            expected = len(lm._encode_pair(context, continuation)[1])
        else:
            ids = lm.tok_encode(continuation, add_special_tokens=False)
            expected = len(ids) - (ids[0] == lm.prefix_token_id)
        assert count(context, continuation) == expected, (context, continuation)
    assert count("Prompt", " x") >= 1
