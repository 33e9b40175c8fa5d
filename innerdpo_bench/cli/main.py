"""The `innerdpo` entry point: importing each command module registers its commands on `app`."""

from __future__ import annotations

# isort: off  (the order of these imports is the order of `innerdpo --help`)
import innerdpo_bench.cli.train  # noqa: F401  train, methods, demo
import innerdpo_bench.cli.eval  # noqa: F401  eval, tasks-path
import innerdpo_bench.cli.models  # noqa: F401  models path
import innerdpo_bench.cli.samples  # noqa: F401  samples
import innerdpo_bench.cli.queue  # noqa: F401  queue ...
import innerdpo_bench.cli.worker  # noqa: F401  worker
import innerdpo_bench.cli.store  # noqa: F401  store show, store copy
import innerdpo_bench.cli.runs  # noqa: F401  runs
import innerdpo_bench.cli.stats  # noqa: F401  rescore, compare, transfer
import innerdpo_bench.cli.plot  # noqa: F401  plot
import innerdpo_bench.cli.gate  # noqa: F401  gate
import innerdpo_bench.cli.tui  # noqa: F401  tui
import innerdpo_bench.cli.doctor  # noqa: F401  doctor
import innerdpo_bench.cli.cache  # noqa: F401  cache ls, cache clear
# isort: on
from rich.markup import escape

from innerdpo_bench.cli.app import app


def normalise_flags(argv: list[str]) -> list[str]:
    """`--learning_rate 1e-4` as `--learning-rate 1e-4`: an option's name in snake_case (as `--grid learning_rate=...`,
    a sweep file and a config file spell it) means its kebab-case flag. Values are left alone."""
    out = []
    for arg in argv:
        if arg == "--":
            out += argv[len(out):]
            break
        name, equals, value = arg.partition("=")
        out.append(name.replace("_", "-") + equals + value if arg.startswith("--") and "_" in name else arg)
    return out


def main() -> None:
    """Run the CLI. A usage error (an unknown option, a value of the wrong type, a missing argument) is one line on
    stderr naming the command, exit 2, like every other bad input; the rich box typer draws is left to `--help`."""
    import sys

    import typer

    from innerdpo_bench.cli.app import err_console

    try:
        code = app(args=normalise_flags(sys.argv[1:]), standalone_mode=False)
    except typer.Abort:
        err_console.print("[yellow]interrupted[/yellow]")
        sys.exit(130)
    except typer.TyperException as err:   # typer's click exceptions: UsageError, BadParameter, NoSuchOption...
        ctx = getattr(err, "ctx", None)
        where = f"{ctx.command_path}: " if ctx is not None else ""
        message = " ".join(err.format_message().split()) if hasattr(err, "format_message") else str(err)
        hint = f" ({ctx.command_path} -h for help)" if ctx is not None else ""
        err_console.print(f"[red]error:[/red] {escape(where + message + hint)}", soft_wrap=True)
        sys.exit(getattr(err, "exit_code", 2))
    sys.exit(code if isinstance(code, int) and not isinstance(code, bool) else 0)


if __name__ == "__main__":
    main()
