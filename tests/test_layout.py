"""The package's shape: imports run one way, the science and the dashboard stay free of what they must not
import, no module outgrows a reader, and the commands that read results start without torch."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from test_stats import pattern, write_run

ROOT = Path(__file__).resolve().parent.parent
# Installed package name → source folder (pyproject's package-dir).
SOURCES = {"innerdpo_bench": ROOT / "innerdpo_bench", "innerdpo_bench.tui": ROOT / "tui",
           "innerdpo_bench.tasks": ROOT / "tasks"}
MAX_LINES = 450
LONG_BY_DESIGN = {"innerdpo_bench.data.mini"}   # the synthetic data tables
TUI_MUST_NOT_IMPORT = ("innerdpo_bench.train", "innerdpo_bench.forward", "innerdpo_bench.methods.align",
                       "innerdpo_bench.methods.transforms")


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


def _runtime_nodes(tree: ast.AST):
    """Every node except those under `if TYPE_CHECKING:` (annotations only: never executed, so never a cycle)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def _imports(module: str) -> set[str]:
    """Every package module `module` imports at run time, at module level or inside a function (a lazy import is
    still an arrow); a parent package it lives in does not count, nor a type-checking-only import."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
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


def test_the_dashboard_never_reaches_training_code():
    for module in (m for m in MODULES if m.startswith("innerdpo_bench.tui")):
        bad = sorted(set(TUI_MUST_NOT_IMPORT) & _reachable(module))
        assert not bad, f"{module} imports {bad} (directly or through another module)"


def test_methods_import_only_methods_and_errors():
    for module in (m for m in MODULES if m.startswith("innerdpo_bench.methods")):
        outside = sorted(t for t in GRAPH[module]
                         if not t.startswith("innerdpo_bench.methods") and t != "innerdpo_bench.errors")
        assert not outside, f"{module} imports {outside}"


def test_the_library_never_imports_the_cli_or_the_dashboard():
    entry = ("innerdpo_bench.cli", "innerdpo_bench.tui", "innerdpo_bench.__main__")
    library = [m for m in MODULES if not m.startswith(entry)]
    for module in library:
        bad = sorted(t for t in GRAPH[module] if t.startswith(("innerdpo_bench.cli", "innerdpo_bench.tui")))
        assert not bad, f"{module} imports {bad}"


def test_no_module_is_too_long():
    long = {m: n for m, path in MODULES.items() if m not in LONG_BY_DESIGN
            and (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines: {long}"


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
