"""The `innerdpo` entry point: importing each command module registers its commands on `app`."""

from __future__ import annotations

# isort: off  (the order of these imports is the order of `innerdpo --help`)
import innerdpo_bench.cli.train  # noqa: F401  train, methods, demo
import innerdpo_bench.cli.eval  # noqa: F401  eval, tasks-path
import innerdpo_bench.cli.models  # noqa: F401  models path
import innerdpo_bench.cli.samples  # noqa: F401  samples
import innerdpo_bench.cli.queue  # noqa: F401  queue ..., worker
import innerdpo_bench.cli.runs  # noqa: F401  runs
import innerdpo_bench.cli.stats  # noqa: F401  rescore, compare, transfer
import innerdpo_bench.cli.plot  # noqa: F401  plot
import innerdpo_bench.cli.gate  # noqa: F401  gate
import innerdpo_bench.cli.tui  # noqa: F401  tui
import innerdpo_bench.cli.doctor  # noqa: F401  doctor
import innerdpo_bench.cli.cache  # noqa: F401  cache ls, cache clear
# isort: on
from innerdpo_bench.cli.app import app


def main() -> None:
    app()


if __name__ == "__main__":
    main()
