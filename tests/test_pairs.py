"""Loading preference files: every malformed input is a UserError naming the file and the row, never a traceback."""

import json

import pytest

from innerdpo_bench.data.pairs import load_pairs
from innerdpo_bench.errors import UserError

ROW = {"prompt": "p", "chosen": "a", "rejected": "b"}


@pytest.mark.parametrize("content, message", [
    (b'{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "\xff\xfe", "chosen": "a", "rejected": "b"}\n',
     "bad.jsonl:2: not valid UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000 + b"\n", "bad.jsonl:1: JSON nested too deeply"),
    (b'{"prompt": "p", "chosen": "a"\n', "bad.jsonl:1: not valid JSON"),
    (b'{"prompt": null, "chosen": "a", "rejected": "b"}\n', "row 1: field 'prompt' is null"),
    (b'{"prompt": "p", "chosen": "a", "rejected": 3}\n', "row 1: field 'rejected' must be a string, got int"),
    (b'{"prompt": "p", "chosen": "a"}\n', "row 1: missing field 'rejected'"),
    (b'["not", "a", "row"]\n', "row 1: expected an object"),
])
def test_a_malformed_file_names_the_file_and_the_row(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(UserError) as caught:
        load_pairs(str(path))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_json_array_file_with_deep_nesting_is_named(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("[" + "[" * 100_000 + "]" * 100_000 + "]")
    with pytest.raises(UserError, match="bad.json: JSON nested too deeply"):
        load_pairs(str(path))


def test_a_good_file_loads_every_row(tmp_path):
    path = tmp_path / "good.jsonl"
    path.write_text("\n".join(json.dumps(ROW | {"prompt": f"p{i}"}) for i in range(3)) + "\n")
    assert [row["prompt"] for row in load_pairs(str(path))] == ["p0", "p1", "p2"]
