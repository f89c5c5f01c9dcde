"""Peak memory of a training step: ``damt bench memory``, the trainer's ``grad_checkpointing: auto``
choice, and measurements to check the prediction against.

The prediction itself is :mod:`damt.model.memory`; this module builds what it needs from a config
(the model on the meta device, one step's synthetic views with the seed's target sizes) and
measures real peaks: ``torch.cuda.max_memory_allocated`` on a GPU, the peak RSS of a fresh
subprocess (minus its RSS before the model is built) on a CPU.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any, Iterator

import torch

from damt.config import DamtConfig, dump_config
from damt.labels import load_label_table
from damt.model.memory import GIB, MARGIN_GIB, ORDER, choose_checkpointing, device_budget_gib, fits, predict_step_memory
from damt.tasks import MultiTaskObjective
from damt.testing import synthetic_views
from train.precision import resolve_precision

# target sizes of the seed (METHOD.md): as train.bench_step (not imported: that module imports this)
SEED_MORPHOMETRY, SEED_RADIOMICS = 566, 72


def predicted_precision(cfg: DamtConfig, device_type: str) -> str:
    """The autocast precision a step of ``cfg`` runs in on a device type (train.precision: auto is
    bf16 on a GPU, as on every GPU this project targets, and fp32 on a CPU)."""
    p = cfg.train.precision
    if p == "auto":
        return "bf16" if device_type == "cuda" else "fp32"
    return p


class ConfigPredictor:
    """Predictions for one config and batch, computed lazily per setting (GiB)."""

    def __init__(self, cfg: DamtConfig, batch: int, target: str = "cuda",
                 n_morphometry: int = SEED_MORPHOMETRY, n_radiomics: int = SEED_RADIOMICS,
                 precision: str | None = None):
        n_classes = load_label_table(cfg.labels.table).n_classes
        self.cfg, self.batch, self.target = cfg, batch, target
        self.precision = precision or predicted_precision(cfg, target)
        # built on the CPU (MONAI's initialisation reads values), then moved to the meta device
        self.model = MultiTaskObjective(cfg, n_morphometry, n_radiomics, n_classes, checkpointing="none") \
            .to("meta")
        self.views = synthetic_views(cfg, batch, n_morphometry, n_radiomics, n_classes, device="meta")
        self.results: dict[str, Any] = {}
        self._recompute: dict[str, int] | None = None

    def predict(self, setting: str):
        """The :class:`damt.model.memory.MemoryPrediction` of ``setting``."""
        if setting not in self.results:
            if setting != "none" and self._recompute is None:
                self.predict("none")
            pred, rec = predict_step_memory(self.model, self.views, setting, self.precision,
                                            self.target, self._recompute)
            self._recompute = self._recompute or rec
            self.results[setting] = pred
        return self.results[setting]

    def gib(self, setting: str) -> float:
        return self.predict(setting).total_gib


def resolve_checkpointing(cfg: DamtConfig, device: torch.device, n_morphometry: int,
                          n_radiomics: int) -> dict[str, Any]:
    """``train.grad_checkpointing`` for this run on ``device``: the config's setting, or for
    ``auto`` the fastest that fits the budget (:func:`damt.model.memory.choose_checkpointing`).

    Returns {"setting", "requested", "budget_gib", "fits", "predicted_gib": {setting: GiB},
    "message"}; the message is what the trainer prints and logs.
    """
    requested = cfg.train.grad_checkpointing
    budget = device_budget_gib(device, cfg.train.memory_budget_gib)
    batch = cfg.train.batch_per_device
    predictor = None
    if requested == "auto" and budget is not None:
        predictor = ConfigPredictor(cfg, batch, target=device.type, n_morphometry=n_morphometry,
                                    n_radiomics=n_radiomics)
        setting, ok, predicted = choose_checkpointing(predictor.gib, budget)
    else:
        setting, ok, predicted = ("none" if requested == "auto" else requested), True, {}
    out = {"setting": setting, "requested": requested, "budget_gib": budget, "fits": ok,
           "predicted_gib": predicted, "batch": batch}
    if requested != "auto":
        out["message"] = f"gradient checkpointing {setting} (train.grad_checkpointing)"
    elif budget is None:
        out["message"] = ("gradient checkpointing none (auto: a CPU has no device memory limit to "
                          "fit; set train.memory_budget_gib to choose by prediction)")
    else:
        pred = ", ".join(f"{k} {v:.1f}" for k, v in predicted.items())
        head = (f"gradient checkpointing {setting} (auto: predicted peak GiB at batch {batch}: "
                f"{pred}; budget {budget:.1f} GiB less a {MARGIN_GIB:g} GiB margin)")
        out["message"] = head if ok else (
            f"WARNING: {head}: no setting fits, so the run uses {setting}, the least memory, and "
            f"may run out of memory; lower train.batch_per_device or use a larger GPU")
    return out


def bench_memory(cfg: DamtConfig, batch: int = 2, names: tuple[str, ...] = ORDER,
                 target: str = "cuda", budgets_gib: tuple[float, ...] = (24, 40, 80, 141)
                 ) -> Iterator[dict[str, Any]]:
    """One JSON-able line per setting: the prediction for ``target`` and, per card size, whether
    it fits with the margin; with ``train.memory_budget_gib`` set, a last line with the setting
    that ``grad_checkpointing: auto`` picks for that budget."""
    bad = [n for n in names if n not in ORDER]
    if bad:
        raise ValueError(f"unknown checkpointing setting(s) {bad}; known: {', '.join(ORDER)}")
    start = time.perf_counter()
    predictor = ConfigPredictor(cfg, batch, target=target)
    for name in names:
        pred = predictor.predict(name)
        yield {"bench": "memory", "batch": batch, "global_crop_vox": cfg.views.global_crop_vox,
               "local_size_vox": cfg.views.local_size_vox, **pred.as_dict(),
               "fits_gib": {str(b): fits(pred.total_gib, b) for b in budgets_gib},
               "seconds": time.perf_counter() - start}
        start = time.perf_counter()
    budget = cfg.train.memory_budget_gib
    if budget is not None:  # what grad_checkpointing: auto would pick with this budget
        setting, ok, predicted = choose_checkpointing(predictor.gib, budget)
        yield {"bench": "memory", "auto": setting, "fits": ok, "budget_gib": budget,
               "margin_gib": MARGIN_GIB, "batch": batch, "predicted_gib": predicted[setting]}


def _rss_gib() -> float:
    """This process's peak RSS in GiB. Linux: VmHWM of /proc/self/status, the high-water mark of
    this address space alone. ``getrusage``'s ru_maxrss is not usable in a child: Linux carries the
    parent's peak across fork and exec, so a fresh process started by a large one (pytest, a
    notebook) would report the parent's peak and no growth at all."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2 ** 20  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB on Linux


def measure_step_peak(cfg: DamtConfig, setting: str, batch: int, steps: int = 2,
                      device: torch.device | None = None) -> dict[str, Any]:
    """Run ``steps`` real training steps (AdamW, so its state exists from the second) and return
    the measured peak in GiB: ``torch.cuda.max_memory_allocated`` on a GPU, or on a CPU the growth
    of this process's peak RSS from just before the model is built (meaningful only in a fresh
    process: see :func:`measure_cpu_peak_subprocess`)."""
    from train.optim import build_optimizer  # noqa: PLC0415
    from train.step import train_step  # noqa: PLC0415

    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    n_classes = load_label_table(cfg.labels.table).n_classes
    views = synthetic_views(cfg, batch, SEED_MORPHOMETRY, SEED_RADIOMICS, n_classes, device=device)
    precision = resolve_precision(cfg.train.precision, device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = _rss_gib()
    torch.manual_seed(0)
    model = MultiTaskObjective(cfg, SEED_MORPHOMETRY, SEED_RADIOMICS, n_classes, checkpointing=setting) \
        .to(device)
    optimizer = build_optimizer(model, cfg.optim)
    out: dict[str, Any] = {"setting": setting, "batch": batch, "precision": precision.name,
                           "device": torch.cuda.get_device_name(device) if device.type == "cuda"
                           else "cpu"}
    try:
        for _ in range(steps):
            train_step(model, views, optimizer, precision, cfg.optim.grad_clip_norm)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            out["measured_gib"] = (torch.cuda.max_memory_allocated(device) - base) / GIB
        else:
            out["measured_gib"] = _rss_gib() - base
            out["baseline_rss_gib"] = base
    except torch.cuda.OutOfMemoryError as err:
        out["error"] = f"out of memory: {str(err).splitlines()[0]}"
    finally:
        del model, optimizer
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return out


def measure_cpu_peak_subprocess(cfg: DamtConfig, setting: str, batch: int,
                                steps: int = 2) -> dict[str, Any]:
    """:func:`measure_step_peak` on the CPU in a fresh Python process (peak RSS is a process-wide
    high-water mark, so each measurement needs its own process)."""
    code = ("import json,sys; from damt.config import load_config; "
            "from train.memory import measure_step_peak; import torch; "
            "cfg=load_config(sys.argv[1], []); "
            "print(json.dumps(measure_step_peak(cfg, sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), "
            "torch.device('cpu'))))")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "config.yaml")
        with open(path, "w") as f:
            f.write(dump_config(dataclasses.replace(
                cfg, train=dataclasses.replace(cfg.train, precision="fp32"))))
        # glibc keeps freed blocks under its mmap threshold (up to 32 MiB) in the heap, so the
        # peak RSS of a default process adds fragmentation to the live tensors (+45 % measured on
        # a checkpointed run); a 64 KiB threshold returns each freed tensor to the OS, so the RSS
        # follows the live bytes, as max_memory_allocated does on a GPU
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=os.environ.get("MALLOC_MMAP_THRESHOLD_",
                                                                     "65536"))
        res = subprocess.run([sys.executable, "-c", code, path, setting, str(batch), str(steps)],
                             capture_output=True, text=True, check=True, env=env)
    return json.loads(res.stdout.strip().splitlines()[-1])


def calibrate(cfg: DamtConfig, batch: int = 2, names: tuple[str, ...] = ("none", "all"),
              device: torch.device | None = None) -> Iterator[dict[str, Any]]:
    """Predicted against measured peak, per setting: on a GPU in this process, on a CPU (fp32)
    in one fresh process per setting. One line per setting with the relative error."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cpu_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, precision="fp32")) \
        if device.type == "cpu" else cfg
    precision = resolve_precision(cpu_cfg.train.precision, device).name
    predictor = ConfigPredictor(cpu_cfg, batch, target=device.type, precision=precision)
    for name in names:
        pred = predictor.predict(name).total_gib
        measured = (measure_cpu_peak_subprocess(cpu_cfg, name, batch) if device.type == "cpu"
                    else measure_step_peak(cfg, name, batch, device=device))
        got = measured.get("measured_gib")
        yield {"bench": "memory_calibration", **measured, "predicted_gib": pred,
               "precision": predictor.precision,
               "error_pct": 100 * (pred - got) / got if got else None}


__all__ = ["ConfigPredictor", "bench_memory", "calibrate", "measure_step_peak",
           "resolve_checkpointing"]
