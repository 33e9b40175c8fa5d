"""innerdpo-bench: train DPO, IPO and InnerDPO LoRA adapters and score them on four preference shifts."""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("innerdpo-bench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
