"""The loaded results of one run (`RunRows`): a plain record that the results layer computes on; `locate.py` is
the one module that finds and reads the files behind it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from innerdpo_bench import rundir
from innerdpo_bench.errors import UserError
from innerdpo_bench.evaluation import scoring

if TYPE_CHECKING:
    from innerdpo_bench.results.rowsfile import ShiftRows
    from innerdpo_bench.store import Run


@dataclass(frozen=True)
class RunRows:
    """A run's eval.json (`report`), its rows per shift (in SHIFTS order), the store run if it came from
    the store, and its training config (the spec's, else the run directory's config.json: `config.spec`'s rule)."""

    eval_path: Path
    rows_path: Path
    report: dict[str, Any]
    shifts: dict[str, ShiftRows]
    run: Run | None = None
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def ident(self) -> str:
        """How messages name the run: `run 12`, else its directory or eval.json."""
        if self.run is not None:
            return f"run {self.run.id}"
        return str(self.eval_path.parent if self.eval_path.name == rundir.EVAL else self.eval_path)

    @property
    def name(self) -> str:
        """Display name: the store's name, else eval.json's display_name, method, or directory name."""
        if self.run is not None:
            return self.run.name
        return str(self.report.get("display_name") or self.report.get("method") or self.eval_path.parent.name)

    @property
    def seed(self) -> int | None:
        seed = self.config.get("seed", self.report.get("seed"))
        return seed if isinstance(seed, int) else None

    @property
    def base_model(self) -> str | None:
        return self.report.get("base_model")

    @property
    def has_adapter(self) -> bool:
        return bool(self.report.get("adapter"))

    @property
    def train_dataset(self) -> str | None:
        return self.config.get("dataset")

    def shift(self, name: str) -> ShiftRows:
        if name not in self.shifts:
            scored = ", ".join(self.shifts) or "none"
            raise UserError(f"{self.ident} has no {name} rows (scored: {scored})")
        return self.shifts[name]

    def check_metric(self, metric: str) -> None:
        """UserError when `metric` scores the implicit reward and this run is a base model."""
        if scoring.lookup(metric).needs_adapter and not self.has_adapter:
            raise UserError(f"{self.ident} is a base model (no adapter): --metric {metric} scores the implicit "
                            f"reward logp_adapter − logp_base, which needs an adapter; use "
                            f"{' or '.join(scoring.BASE_METRICS)}")
