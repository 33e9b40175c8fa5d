"""The package's shape: imports run one way, the science and the dashboard stay free of what they must not
import, no module outgrows a reader, and the commands that read results start without torch."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.runs import pattern, write_run

ROOT = Path(__file__).resolve().parent.parent
# Installed package name → source folder (pyproject's package-dir).
SOURCES = {"innerdpo_bench": ROOT / "innerdpo_bench", "innerdpo_bench.tui": ROOT / "tui",
           "innerdpo_bench.tasks": ROOT / "tasks"}
MAX_LINES = 450
LONG_BY_DESIGN = {"innerdpo_bench.data.mini"}   # the synthetic data tables

# The layers, lowest first: each is a set of module-name prefixes under innerdpo_bench.
LAYERS = {
    "base": ("errors", "typecheck", "files", "hub"),
    "methods": ("methods",),
    "data": ("data",),
    "config": ("config",),
    "store": ("store",),
    "rundir": ("rundir", "runstate", "runlog", "progress"),
    "models": ("models",),
    "train": ("train",),
    "evaluation": ("evaluation",),
    "results": ("results",),
    "queue": ("queue",),
    "app": ("demo", "doctor"),
    "tasks": ("tasks",),
    "tui": ("tui",),
    "cli": ("cli", "__main__"),
}
# The allowed arrows: layer -> the layers it may import (its own always). Anything else fails the test, a
# type-checking-only import included.
MAY_IMPORT = {
    "base": set(),
    "methods": {"base"},
    "data": {"base"},
    "config": {"base", "methods"},
    "store": {"base", "config"},
    "rundir": {"base", "config", "store"},
    "models": {"base", "rundir"},
    "train": {"base", "methods", "data", "config", "rundir", "models"},
    "evaluation": {"base", "data", "config", "rundir", "models"},
    "results": {"base", "data", "config", "store", "rundir", "evaluation"},
    "queue": {"base", "data", "config", "store", "rundir", "models", "train", "evaluation"},
    "app": {"base", "data", "config", "store", "rundir", "models", "evaluation", "results", "queue"},
    "tasks": {"base", "evaluation"},
    "tui": {"base", "methods", "config", "store", "rundir", "evaluation", "results", "queue"},
    "cli": set(LAYERS) - {"cli"},
}
# Within an allowed layer, modules a layer must still not reach, directly or through another module.
MUST_NOT_REACH = {
    "tui": ("innerdpo_bench.train", "innerdpo_bench.models.forward", "innerdpo_bench.methods.align",
            "innerdpo_bench.methods.transforms", "innerdpo_bench.queue.worker", "innerdpo_bench.queue.process",
            "innerdpo_bench.queue.launch"),
}
# File I/O the science must not do: methods/ are pure tensor functions; the run directory saves their state.
IO_CALLS = ("open", "save_file", "load_file", "safe_open", "write_text", "read_text", "write_bytes", "read_bytes",
            "torch.save", "torch.load", "mkdir")


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            found[".".join((package, *parts))] = path
    return found


MODULES = _modules()


def _target(name: str) -> str | None:
    """The package module an imported name lives in (the longest known prefix), or None if outside."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None




def _imports(module: str) -> set[str]:
    """Every package module `module` imports, at module level, inside a function (a lazy import is still an arrow)
    or under `if TYPE_CHECKING:` (an annotation's arrow is an arrow too); a parent package it lives in does not
    count."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            target = _target(name)
            if target and target != module and not module.startswith(target + "."):
                out.add(target)
    return out


GRAPH = {module: _imports(module) for module in MODULES}


def _reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in GRAPH[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_the_walk_sees_the_package():
    assert {"innerdpo_bench.cli.app", "innerdpo_bench.tui.app", "innerdpo_bench.tasks.utils"} <= set(MODULES)
    assert "innerdpo_bench.cli.app" in GRAPH["innerdpo_bench.cli.queue"]


def test_no_import_cycle():
    cycles = sorted(module for module in GRAPH if module in _reachable(module))
    assert not cycles, f"modules on an import cycle: {cycles}"


def _layer(module: str) -> str:
    """The layer of a package module (the longest matching prefix); the package root is its own."""
    rest = module.removeprefix("innerdpo_bench").lstrip(".")
    best = max(((len(prefix), layer) for layer, prefixes in LAYERS.items() for prefix in prefixes
                if rest == prefix or rest.startswith(prefix + ".")), default=None)
    assert best is not None or not rest, f"{module} is in no layer: add it to LAYERS"
    return best[1] if best else "root"


def test_every_module_has_a_layer_and_the_table_is_one_way():
    for module in MODULES:
        _layer(module)
    for layer, allowed in MAY_IMPORT.items():
        for other in allowed:
            assert layer not in MAY_IMPORT[other], f"{layer} and {other} may import each other"


def test_imports_follow_the_layer_table():
    bad = [f"{module} -> {target}" for module, targets in GRAPH.items() for target in sorted(targets)
           if module != "innerdpo_bench" and _layer(target) not in {_layer(module), "root"} | MAY_IMPORT[_layer(module)]]
    assert not bad, "imports outside the layer table:\n" + "\n".join(bad)


def test_forbidden_modules_are_out_of_reach():
    for layer, forbidden in MUST_NOT_REACH.items():
        for module in (m for m in MODULES if _layer(m) == layer):
            reached = sorted(t for t in _reachable(module) if t.startswith(forbidden))
            assert not reached, f"{module} reaches {reached} (directly or through another module)"


def test_methods_do_no_file_io():
    found = []
    for module in (m for m in MODULES if _layer(m) == "methods"):
        for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                name = ast.unparse(node.func)
                if name in IO_CALLS or name.rpartition(".")[2] in IO_CALLS:
                    found.append(f"{module}:{node.lineno} {name}(...)")
    assert not found, "file I/O in methods/ (the run directory saves their state):\n" + "\n".join(found)


SPEC_KEYS = ("train", "eval", "sweep", "source_run")


def _spec_reads_by_key(source: str) -> list[int]:
    """Lines of `source` that read a stored spec's part by string key: `x["train"]`, `x.get("eval", ...)`."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            key = node.slice.value
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
              and node.args and isinstance(node.args[0], ast.Constant)):
            key = node.args[0].value
        else:
            continue
        if key in SPEC_KEYS:
            lines.append(node.lineno)
    return lines


def test_only_the_spec_module_reads_a_spec_by_key():
    """A queued run's spec is typed (`config.spec.RunSpec`): only its (de)serialisation reads the JSON by key, so one
    rule says what a run's config is. (`data.mini` draws its random streams by split name, not from a spec.)"""
    allowed = {"innerdpo_bench.config.spec", "innerdpo_bench.data.mini", "innerdpo_bench.store.copy"}
    found = [f"{module}:{line}" for module, path in MODULES.items() if module not in allowed
             for line in _spec_reads_by_key(path.read_text(encoding="utf-8"))]
    assert not found, "read run.spec's typed fields instead:\n" + "\n".join(found)
    assert _spec_reads_by_key('a = spec["train"]\nb = spec.get("eval", {})\nc = row["name"]\n') == [1, 2]


def test_every_package_folder_goes_into_the_wheel():
    """setup.py's discovery lists every folder of the source tree that holds modules, so a new layer cannot be left
    out of the wheel."""
    sys.path.insert(0, str(ROOT))
    try:
        import setup
    finally:
        sys.path.remove(str(ROOT))
    found = set(setup.discover())
    folders = {package + "." + ".".join(path.parent.relative_to(folder).parts) if path.parent != folder else package
               for package, folder in SOURCES.items() for path in folder.rglob("*.py")
               if "__pycache__" not in path.parts}
    assert folders <= found, sorted(folders - found)


def test_no_module_is_too_long():
    long = {m: n for m, path in MODULES.items() if m not in LONG_BY_DESIGN
            and (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines: {long}"


def _test_module_imports(folder: Path) -> list[str]:
    """Every import of a test module (test_*.py in `folder`) by any module under `folder`, at module level or inside
    a function: `path:line imports name`."""
    test_modules = {path.stem for path in folder.glob("test_*.py")}
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found += [f"{path.relative_to(folder)}:{node.lineno} imports {name}" for name in names
                      if name.split(".")[0] in test_modules]
    return found


def test_no_test_file_imports_another(tmp_path):
    """Shared test code lives in tests/helpers/ (plain functions and constants) and tests/conftest.py (fixtures);
    importing a test file runs its module code and hides which tests its helpers serve."""
    found = _test_module_imports(ROOT / "tests")
    assert not found, "move what these import into tests/helpers/ or tests/conftest.py:\n" + "\n".join(found)
    # the scan sees both spellings, a lazy import, and an import from a helper module
    (tmp_path / "test_a.py").write_text("def f():\n    import test_b\n")
    (tmp_path / "test_b.py").write_text("import json\nfrom test_a import f\nfrom helpers import x\n")
    (tmp_path / "helpers.py").write_text("from test_a import f\n")
    assert _test_module_imports(tmp_path) == ["helpers.py:1 imports test_a", "test_a.py:2 imports test_b",
                                              "test_b.py:2 imports test_a"]


@pytest.mark.slow
def test_results_commands_start_without_torch(tmp_path):
    """`runs`, `queue ls`, `compare` and `tui --help` read files and the store: they must not import torch."""
    write_run(tmp_path / "a", {"in_domain": pattern(24, 12)})
    write_run(tmp_path / "b", {"in_domain": pattern(24, 14)}, method="ipo")
    home = str(tmp_path / "home")
    from innerdpo_bench.store import Store

    Store(home).close()
    commands = [["queue", "ls", "--home", home], ["runs", "--home", home],
                ["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--resamples", "100"], ["tui", "--help"]]
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom innerdpo_bench.cli.main import app\n"
            f"for args in {commands!r}:\n"
            "    result = CliRunner().invoke(app, args)\n"
            "    assert result.exit_code == 0, (args, result.output)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'textual', 'transformers')))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def test_the_evaluation_cache_keys_on_files_that_exist():
    """A moved module must move in the cache key's list too, or every evaluation fails to compute its key."""
    from innerdpo_bench.evaluation.cache import SCORING_CODE

    missing = [name for name in SCORING_CODE if not (ROOT / "innerdpo_bench" / name).is_file()]
    assert not missing, missing
