"""The trainer: data loading from the cache, the step, the loop, checkpoints, logging."""

from pathlib import Path

#: the small CPU configuration shipped with the project (tests, the demo, laptops, bench --tiny)
TINY_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
