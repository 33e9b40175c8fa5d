"""The metric registry (scoring.py): its names and aliases, the harness's scalar rule against the vectorised one
on hand-computed rows, every command taking a public name and its old spelling alike, and the results table
importing nothing that reads files."""

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from innerdpo_bench.cli.main import app
from innerdpo_bench.errors import UserError
from innerdpo_bench.evaluation import scoring
from innerdpo_bench.evaluation.suites import SHIFTS
from innerdpo_bench.store import Store

from helpers.runs import pattern, store_run

PACKAGE = Path(scoring.__file__).resolve().parent.parent   # innerdpo_bench/
runner = CliRunner()

# public name → (harness key, needs an adapter, aliases)
REGISTRY = {
    "acc": ("acc", False, ("mean",)),
    "acc_sum": ("acc_sum", False, ("sum",)),
    "reward_acc": (None, True, ("reward_mean",)),
    "reward_acc_sum": (None, True, ("reward_sum",)),
}


def test_registry_value_table():
    assert list(scoring.METRICS) == list(REGISTRY)
    for name, (harness_key, needs_adapter, aliases) in REGISTRY.items():
        metric = scoring.METRICS[name]
        assert (metric.name, metric.harness_key, metric.needs_adapter, metric.aliases) == (
            name, harness_key, needs_adapter, aliases)
        assert metric.rule and metric.axis_label
        assert scoring.resolve_metric(name) == name
        for alias in aliases:
            assert scoring.resolve_metric(alias) == name and scoring.lookup(alias) is metric
    assert scoring.HARNESS_METRICS == scoring.BASE_METRICS == ("acc", "acc_sum")
    assert scoring.REWARD_METRICS == ("reward_acc", "reward_acc_sum")


@pytest.mark.parametrize("given, allowed, message", [
    ("accc", scoring.METRICS, "unknown --metric 'accc'. Did you mean 'acc'?"),
    ("reward_mena", scoring.METRICS, "Did you mean 'reward_acc'?"),          # close to an alias: its public name
    ("reward", scoring.METRICS, "Choose from: acc, acc_sum, reward_acc, reward_acc_sum."),
    ("reward_sum", scoring.BASE_METRICS, "unknown --metric 'reward_sum'."),  # known, but not allowed here
    ("reward_acc", scoring.BASE_METRICS, "Choose from: acc, acc_sum."),
])
def test_an_unknown_or_disallowed_name_is_a_user_error_with_a_suggestion(given, allowed, message):
    with pytest.raises(UserError) as caught:
        scoring.resolve_metric(given, allowed)
    assert message in str(caught.value)


def test_help_names_each_metric_and_the_deprecated_spellings():
    text = scoring.metric_help()
    assert all(f"{name} (" in text for name in REGISTRY)
    assert "Deprecated spellings, still accepted: mean = acc, sum = acc_sum, reward_mean = reward_acc, " \
           "reward_sum = reward_acc_sum." in text
    commands = {command.name: command for command in typer.main.get_command(app).commands.values()}
    for name in ("runs", "compare", "rescore", "transfer", "plot", "gate"):
        (option,) = [param for param in commands[name].params if "--metric" in param.opts]
        assert "Deprecated spellings, still accepted: mean = acc" in option.help, name


# --------------------------------------------------------------------------- scalar rule = vectorised rule

# (logp_c, logp_r, n_c, n_r, base_c, base_r) → acc, acc_sum, reward_acc, reward_acc_sum, worked by hand.
# Token counts are floored at 1; every comparison is strict, so ties are wrong.
HAND_ROWS = [
    # per token −2 > −3; −10 > −12; reward c 1, r −1: per token 0.2 > −0.25
    ((-10.0, -12.0, 5, 4, -11.0, -11.0), (1, 1, 1, 1)),
    # per token −3 > −4; −9 < −8; reward c −1, r 0: −1/3 < 0, −1 < 0
    ((-9.0, -8.0, 3, 2, -8.0, -8.0), (1, 0, 0, 0)),
    # a tie everywhere: −2 = −2, −6 = −6; rewards 0 = 0
    ((-6.0, -6.0, 3, 3, -6.0, -6.0), (0, 0, 0, 0)),
    # n_c = 0 floored to 1: −4 < −2 per token; −4 > −6 summed; reward c −1, r −3: −1 = −1 per token (a tie), −1 > −3
    ((-4.0, -6.0, 0, 3, -3.0, -3.0), (0, 1, 0, 1)),
    # both counts 0: −2 > −5 both ways; rewards c −2 − (−3) = 1, r 0: 1 > 0 both ways
    ((-2.0, -5.0, 0, 0, -3.0, -5.0), (1, 1, 1, 1)),
    # per-token tie −3 = −3 but summed −3 > −6; reward c 0, r +2: 0 < 1, 0 < 2
    ((-3.0, -6.0, 1, 2, -3.0, -8.0), (0, 1, 0, 0)),
    # empty everything: 0 = 0
    ((0.0, 0.0, 0, 0, 0.0, 0.0), (0, 0, 0, 0)),
]


class Arrays:
    """A ShiftRows-like bundle of the hand rows' columns."""

    def __init__(self, rows):
        columns = np.array([values for values, _ in rows], dtype=float).T
        self.logp_chosen, self.logp_rejected, n_chosen, n_rejected, self.base_logp_chosen, \
            self.base_logp_rejected = columns
        self.n_chosen, self.n_rejected = n_chosen.astype(np.int64), n_rejected.astype(np.int64)


def test_pair_metrics_and_the_vectorised_scorers_agree_on_hand_rows():
    from innerdpo_bench.tasks.utils import pair_metrics

    arrays = Arrays(HAND_ROWS)
    vectorised = {name: scoring.METRICS[name].score(arrays).astype(int).tolist() for name in REGISTRY}
    for i, ((lc, lr, nc, nr, _, _), expected) in enumerate(HAND_ROWS):
        assert tuple(vectorised[name][i] for name in REGISTRY) == expected, i
        harness = pair_metrics(lc, lr, int(nc), int(nr))
        assert (harness["acc"], harness["acc_sum"]) == expected[:2] == (vectorised["acc"][i],
                                                                         vectorised["acc_sum"][i]), i
        assert harness["logratio"] == lc / max(nc, 1) - lr / max(nr, 1)
    # the base model scored by the reference-free rules reads the base log-probs in the adapter's place
    base = scoring.METRICS["acc_sum"].score(scoring.base_model_pair(arrays))
    assert base.tolist() == (arrays.base_logp_chosen > arrays.base_logp_rejected).tolist()


# --------------------------------------------------------------------------- every command, both spellings


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def home(tmp_path):
    """A store with a base-model run and two adapter runs (seeds 0, 1), per-row records for each."""
    home = tmp_path / "home"
    with Store(home) as store:
        store_run(store, home, {s: pattern(12, 6) for s in SHIFTS}, kind="eval", method="none")
        store_run(store, home, {s: pattern(12, 9) for s in SHIFTS}, base_correct={s: pattern(12, 6) for s in SHIFTS})
        store_run(store, home, {s: pattern(12, 10) for s in SHIFTS}, seed=1)
    return home


@pytest.mark.parametrize("name, alias", [("acc", "mean"), ("acc_sum", "sum"), ("reward_acc", "reward_mean"),
                                         ("reward_acc_sum", "reward_sum")])
def test_compare_plot_and_runs_take_a_name_and_its_alias_alike(name, alias, home, tmp_path):
    assert invoke("compare", 2, 3, "--home", home, "--metric", name, "--json") == \
        invoke("compare", 2, 3, "--home", home, "--metric", alias, "--json")
    assert json.loads(invoke("compare", 2, 3, "--home", home, "--metric", alias, "--json"))["metric"] == name
    for spelling in (name, alias):
        invoke("plot", 2, 3, "--home", home, "--metric", spelling, "--out", tmp_path / f"{spelling}.png",
               "--resamples", 200)
    assert (tmp_path / f"{name}.png").read_bytes() == (tmp_path / f"{alias}.png").read_bytes()
    by_name = invoke("runs", "--home", home, "--metric", name, "--format", "markdown", "--baseline", 2)
    assert by_name == invoke("runs", "--home", home, "--metric", alias, "--format", "markdown", "--baseline", 2)
    assert by_name.startswith("| name | Δin_domain |")


@pytest.mark.parametrize("name, alias", [("acc", "mean"), ("acc_sum", "sum")])
def test_rescore_transfer_and_gate_take_a_name_and_its_alias_alike(name, alias, home, tmp_path):
    for command in (["rescore", 2, "--home", home], ["transfer", 2, "--home", home],
                    ["gate", home / "runs" / "1-none" / "eval.json", "--min", "all=0.5"]):
        by_name = invoke(*command, "--metric", name, "--json")
        assert by_name == invoke(*command, "--metric", alias, "--json")
        assert json.loads(by_name)["metric"] == name, command[0]


def test_compare_default_is_acc(home):
    assert invoke("compare", 2, 3, "--home", home, "--json") == invoke("compare", 2, 3, "--home", home,
                                                                       "--metric", "acc", "--json")


# --------------------------------------------------------------------------- the table reads no file

FILE_READERS = {"innerdpo_bench.results.locate", "innerdpo_bench.results.rowsfile", "innerdpo_bench.results.cells",
                "innerdpo_bench.results.provenance", "innerdpo_bench.queue.worker", "innerdpo_bench.rundir",
                "innerdpo_bench.evaluation.evaluate"}


def _runtime_nodes(tree: ast.AST):
    """Every node except those under `if TYPE_CHECKING:` (imports for annotations never run)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            continue
        yield node
        yield from _runtime_nodes(node)


def _module_path(module: str) -> Path | None:
    relative = PACKAGE.joinpath(*module.split(".")[1:])
    for path in (relative.with_suffix(".py"), relative / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imports(module: str) -> set[str]:
    """Package modules `module` imports when it runs (a lazy import inside a function counts)."""
    found = set()
    for node in _runtime_nodes(ast.parse(_module_path(module).read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("innerdpo_bench"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names
                         if _module_path(f"{node.module}.{alias.name}") is not None)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("innerdpo_bench"))
    return {name for name in found if _module_path(name) is not None}


def test_results_table_imports_nothing_that_reads_files():
    seen, todo = set(), ["innerdpo_bench.results.table"]
    while todo:   # every package module the table pulls in, directly or through another
        module = todo.pop()
        if module in seen or module == "innerdpo_bench":
            continue
        seen.add(module)
        todo.extend(_imports(module))
    assert "innerdpo_bench.results.seeds" in seen and "innerdpo_bench.evaluation.scoring" in seen
    assert not seen & FILE_READERS, sorted(seen & FILE_READERS)
