"""The experiment trackers `--report-to` accepts (transformers' integration names), and the flag's parser: a config
value, so checking it needs no tracker and no torch (`train/trackers.py` does the tracking)."""

from __future__ import annotations

from innerdpo_bench.errors import UserError, did_you_mean

# transformers' integration name → (the module that must import, the pip extra that installs it, else None)
TRACKERS: dict[str, tuple[str, str | None]] = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
    "comet_ml": ("comet_ml", None),
    "neptune": ("neptune", None),
    "clearml": ("clearml", None),
    "dvclive": ("dvclive", None),
    "swanlab": ("swanlab", None),
    "trackio": ("trackio", None),
    "codecarbon": ("codecarbon", None),
    "azure_ml": ("azureml", None),
    "dagshub": ("dagshub", None),
    "flyte": ("flytekit", None),
    "kubeflow": ("kubeflow", None),
}


def parse_report_to(text: str | None) -> list[str]:
    """"none" → []; "tensorboard,wandb" → ["tensorboard", "wandb"]; UserError naming --report-to for an unknown name."""
    names = [part.strip() for part in (text or "none").split(",") if part.strip()]
    if names in ([], ["none"]):
        return []
    for name in names:
        if name not in TRACKERS:
            raise UserError(f"--report-to: unknown tracker {name!r}.{did_you_mean(name, TRACKERS)} "
                            f"Known: none, {', '.join(TRACKERS)}")
    return list(dict.fromkeys(names))
