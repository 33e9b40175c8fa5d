"""Training: the Trainer subclass and what a training run needs (callbacks, resume, reference cache, trackers, validation)."""
