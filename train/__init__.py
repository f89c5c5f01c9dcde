"""The trainer: data loading from the cache, the step, the loop, checkpoints, logging."""
