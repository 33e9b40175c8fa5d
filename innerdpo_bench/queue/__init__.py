"""The run queue: run specs, sweeps, the worker and how workers are launched."""
