"""Run logging: metrics.jsonl, TensorBoard, optional W&B, and the skipped-step reports.

``metrics.jsonl`` holds one JSON object per logged step (every ``train.log_every_steps``):
``step``, ``epoch``, ``loss`` (the weighted total), ``loss_<task>`` for every enabled task, ``lr``,
``wd``, ``grad_norm``, ``skipped_steps`` (since the run began), ``samples_per_s``,
``data_wait_frac`` and, with uncertainty weighting, ``weight_<task>``; with fp16, ``loss_scale``.
Losses and the gradient norm are means over the applied steps of the interval, throughput and
data wait are measured over the interval's wall time. Values are strict JSON (a non-finite value
is written as null). Skipped steps go to ``events.jsonl`` with their task losses and subject ids.
When a run starts (fresh or resumed), lines after its starting step are dropped from both files
and TensorBoard purges its events after that step, so every logged step appears exactly once.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from damt.durable import atomic_write_text

METRICS_FILE, EVENTS_FILE = "metrics.jsonl", "events.jsonl"


def _clean(value: Any) -> Any:
    """Plain JSON: non-finite floats become None, nested containers are cleaned too."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _truncate(path: Path, last_step: int) -> None:
    """Drop the records of ``path`` whose step is after ``last_step`` (atomic rewrite)."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= last_step]
    atomic_write_text(path, "".join(line + "\n" for line in kept))


class Interval:
    """Accumulates the steps between two log lines."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.data_wait = 0.0
        self.samples = 0
        self.applied = 0
        self.sums: dict[str, float] = {}

    def add(self, losses: dict[str, float], loss: float, grad_norm: float, samples: int,
            data_wait: float, applied: bool) -> None:
        self.samples += samples
        self.data_wait += data_wait
        if applied:
            self.applied += 1
            for key, value in {"loss": loss, "grad_norm": grad_norm,
                               **{f"loss_{k}": v for k, v in losses.items()}}.items():
                self.sums[key] = self.sums.get(key, 0.0) + value

    def summary(self, tasks: list[str]) -> dict[str, float]:
        """Means over the applied steps (NaN, written as null, when every step was skipped)."""
        wall = max(time.perf_counter() - self.start, 1e-9)
        keys = ["loss", "grad_norm", *(f"loss_{t}" for t in tasks)]
        out = {k: self.sums[k] / self.applied if self.applied else math.nan for k in keys}
        return out | {"samples_per_s": self.samples / wall, "data_wait_frac": self.data_wait / wall}


class MetricsLogger:
    """Writes metrics.jsonl, events.jsonl, TensorBoard events and (if enabled) W&B."""

    def __init__(self, run_dir: Path, start_step: int, config: dict,
                 wandb: bool = False, wandb_project: str = "damt"):
        from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415  (slow import)

        self.run_dir = Path(run_dir)
        for name in (METRICS_FILE, EVENTS_FILE):
            _truncate(self.run_dir / name, start_step)
        self.metrics = open(self.run_dir / METRICS_FILE, "a")  # noqa: SIM115 (closed in close())
        self.events = open(self.run_dir / EVENTS_FILE, "a")  # noqa: SIM115
        self.tb = SummaryWriter(log_dir=str(self.run_dir), purge_step=start_step + 1)
        self.wandb = None
        if wandb:
            import wandb as wb  # noqa: PLC0415  (optional dependency, imported only when enabled)

            self.wandb = wb.init(project=wandb_project, dir=str(self.run_dir), config=config,
                                 resume="allow")

    def log(self, record: dict[str, Any]) -> None:
        """One metrics line; every numeric field also goes to TensorBoard (and W&B)."""
        record = _clean(record)
        self.metrics.write(json.dumps(record) + "\n")
        self.metrics.flush()
        step = record["step"]
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.tb.add_scalar(key.replace("loss_", "loss/", 1) if key.startswith("loss_")
                                   else key, value, step)
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in record.items() if v is not None}, step=step)

    def event(self, record: dict[str, Any]) -> None:
        """An event line (a skipped step, a stop); non-finite numbers are written as strings."""
        def keep(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return str(v)
            if isinstance(v, dict):
                return {k: keep(x) for k, x in v.items()}
            return v

        self.events.write(json.dumps(keep(record)) + "\n")
        self.events.flush()

    def close(self) -> None:
        self.tb.close()
        self.metrics.close()
        self.events.close()
        if self.wandb is not None:
            self.wandb.finish()


class NullLogger:
    """The logger of a rank other than 0 under DDP: rank 0 alone writes the run's records."""

    def log(self, record: dict[str, Any]) -> None:
        pass

    def event(self, record: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass
