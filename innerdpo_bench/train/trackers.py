"""Experiment trackers (`--report-to`): transformers' integrations, passed through to the Trainer, with the run's
resolved config as the tracker's config, TensorBoard event files in the run directory, and evaluation results.

Names are transformers' (`INTEGRATION_TO_CALLBACK`); each tracker is an optional install (`pip install
'innerdpo-bench[tensorboard]'`, `[wandb]`, `[mlflow]`, or `[trackers]` for the three). Choices made here:
  * the run's display name is the tracker run's name (`TrainingArguments.run_name`); the resolved config
    (`config.json`) is added as the tracker's config for tensorboard (a text record `innerdpo/config`), wandb
    (`wandb.config`) and mlflow (params); other trackers get transformers' own record of the arguments;
  * TensorBoard writes to RUN/tensorboard; a resumed run purges the events after its checkpoint step, so a
    step appears once; wandb and mlflow start a new tracker run per attempt unless their own environment
    variables say to resume (WANDB_RUN_ID with WANDB_RESUME=allow, MLFLOW_RUN_ID);
  * `innerdpo eval --report-to` pushes eval.json's accuracies to TensorBoard (RUN/tensorboard, at the run's
    last step) and to wandb/mlflow where a run of theirs is active in the environment; elsewhere it says so.
This module imports no torch at import time (`TrainConfig.validate` checks the names).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from innerdpo_bench.config.trackers import TRACKERS
from innerdpo_bench.errors import UserError

log = logging.getLogger("innerdpo_bench")

TENSORBOARD_DIR = "tensorboard"


def require_installed(names: list[str]) -> None:
    """UserError naming the pip extra for a tracker whose package is not installed."""
    for name in names:
        module, extra = TRACKERS[name]
        if importlib.util.find_spec(module) is None:
            how = f"pip install 'innerdpo-bench[{extra}]'" if extra else f"pip install {module}"
            raise UserError(f"--report-to {name}: {module} is not installed; {how}")


def push_eval(names: list[str], report: dict, run_dir: Path | None, step: int | None) -> list[str]:
    """Send eval.json's per-shift metrics to the trackers; one line per tracker saying where they went."""
    scalars = {f"eval/{shift}/{metric}": value for shift, metrics in report.get("shifts", {}).items()
               for metric, value in metrics.items() if isinstance(value, (int, float)) and not isinstance(value, bool)}
    scalars.update({f"eval/aggregate/{metric}": value for metric, value in (report.get("aggregate") or {}).items()
                    if isinstance(value, (int, float)) and not isinstance(value, bool)})
    lines = []
    for name in names:
        if name == "tensorboard":
            if run_dir is None:
                lines.append("tensorboard: CHECKPOINT is not a run directory; nothing written")
                continue
            from torch.utils.tensorboard import SummaryWriter

            folder = Path(run_dir) / TENSORBOARD_DIR
            with SummaryWriter(log_dir=str(folder)) as writer:
                for key, value in scalars.items():
                    writer.add_scalar(key, value, step or 0)
            lines.append(f"tensorboard: {len(scalars)} scalars in {folder}")
        elif name == "wandb":
            import wandb

            if wandb.run is None:
                lines.append("wandb: no active run (set WANDB_RUN_ID and WANDB_RESUME=allow to add to the training run)")
                run = wandb.init(name=report.get("display_name") or None, job_type="eval")
            else:
                run = wandb.run
            run.log(scalars)
            lines.append(f"wandb: {len(scalars)} metrics logged to run {run.id}")
        elif name == "mlflow":
            import mlflow

            with mlflow.start_run(run_name=report.get("display_name") or None, nested=mlflow.active_run() is not None):
                mlflow.log_metrics({key.replace("/", "."): value for key, value in scalars.items()}, step=step or 0)
            lines.append(f"mlflow: {len(scalars)} metrics logged")
        else:
            lines.append(f"{name}: eval results are not pushed to this tracker")
    return lines
