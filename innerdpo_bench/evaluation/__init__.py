"""Evaluation: score a checkpoint on the four shifts (lm-eval glue, fast scorer, eval cache, samples, audit)."""
