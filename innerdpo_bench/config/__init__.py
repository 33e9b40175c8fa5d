"""A run's configuration: `TrainConfig` (`train.py`) and what its fields know (`fields.py`), the spec a queued run
stores (`spec.py`), display names (`naming.py`) and the trackers --report-to takes (`trackers.py`)."""

from innerdpo_bench.config.train import DEFAULT_BASE_MODEL, TrainConfig, auto_save_steps, flag_name

__all__ = ["DEFAULT_BASE_MODEL", "TrainConfig", "auto_save_steps", "flag_name"]
