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
    import sys

    app(args=normalise_flags(sys.argv[1:]))


if __name__ == "__main__":
    main()
