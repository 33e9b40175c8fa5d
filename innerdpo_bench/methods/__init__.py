"""The science: preference losses, hidden-state geometry, align methods and transforms (pure tensors, no I/O)."""
