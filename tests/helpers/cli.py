"""The CLI in this process (typer's CliRunner), and the one error line that every bad input must give."""

from typer.testing import CliRunner

from innerdpo_bench.cli.main import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(result, *fragments: str, code: int = 2) -> str:
    """The command's one error line (its last line; progress lines, ending in …, may precede it), which must hold
    every fragment; no traceback."""
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error:") and all(line.endswith("…") for line in lines[:-1]), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[-1], (fragment, lines[-1])
    return lines[-1]
