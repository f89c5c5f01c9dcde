"""``damt bench step``: one training step of the full model, the original setting against ours.

The settings run in one process on the same device, on the same synthetic batch (the loader has
its own benchmark, ``damt bench loader``), each from a freshly built model:

* ``original``: the seed's model and objective in the seed's setting. The same model as the
  default (the original's ConvDecoder, the seed's losses), with fp16 autocast and a GradScaler,
  gradient checkpointing of every Swin block, MONAI's attention path (a materialised float32
  score matrix per window) and NCDHW convolutions.
* ``default``: this project's defaults (the config as given). bf16 autocast where the GPU has it,
  window attention through ``scaled_dot_product_attention`` also in training,
  (``--compile`` adds torch.compile), gradient checkpointing as ``train.grad_checkpointing``
  (``auto``: chosen for the device as ``damt train`` chooses it).
* ``swinunetr_decoder`` (only when asked for with ``--settings``): the default setting with MONAI
  SwinUNETR's full atlas decoder and channels-last decoder activations, i.e. this project's
  default before the atlas decoder became the original's ConvDecoder: the "before" side of that
  change, measured in the same run.

One JSON line per setting (samples/s, seconds per step, peak memory, achieved TFLOP/s, MFU, skipped
steps) and one line with the ratios of the default to each other setting. FLOPs are counted with
``torch.utils.flop_counter`` over a whole step (forward and backward, without checkpointing's
recomputation: model FLOPs), once per distinct model, so MFU is comparable between the settings.
``--tiny`` runs the configs/tiny.yaml model so the script can run on a CPU; the numbers that
matter come from a GPU. ``damt bench flops`` counts the forward per component without running.
"""

from __future__ import annotations

import dataclasses
import resource
import time
from typing import Any, Iterator

import torch
from torch.utils.flop_counter import FlopCounterMode

from damt.config import DamtConfig
from damt.labels import load_label_table
from damt.tasks import MultiTaskObjective
from damt.testing import synthetic_views
from train.memory import resolve_checkpointing
from train.optim import Schedule, build_optimizer
from train.precision import Precision, resolve_precision
from train.step import train_step

# target sizes of the seed (METHOD.md): 440 + 126 morphometric columns, 24 GLCM features x 3 tissues
SEED_MORPHOMETRY, SEED_RADIOMICS = 566, 72

# dense bf16/fp16 tensor-core peaks (vendor datasheets), by a substring of the device name
PEAK_TFLOPS = (("H200", 989.4), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4),
               ("A100", 312.0), ("L40S", 362.1))


def peak_tflops(device: torch.device) -> float | None:
    """The device's dense 16-bit peak in TFLOP/s, or None when unknown (CPUs included)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_TFLOPS if key in name), None)


SETTINGS = ("default", "original", "swinunetr_decoder")
#: the setting every other one is compared with, and the speed-up each comparison is held to
RATIO_TARGETS = {"original": 2.0, "swinunetr_decoder": 1.5}


def settings(cfg: DamtConfig, compile_model: bool = False,
             names: tuple[str, ...] = ("default", "original")) -> dict[str, DamtConfig]:
    """The configurations compared, by name (see the module doc), in the order asked for.

    ``original`` keeps the config's model and objective (the method's) and changes only how the
    step runs: fp16 + GradScaler, gradient checkpointing, MONAI's attention, NCDHW.
    """
    bad = [n for n in names if n not in SETTINGS]
    if bad:
        raise ValueError(f"unknown bench setting(s) {bad}; known: {', '.join(SETTINGS)}")
    made = {
        "default": lambda: dataclasses.replace(
            cfg, train=dataclasses.replace(cfg.train, compile=compile_model)),
        "original": lambda: dataclasses.replace(
            cfg, model=dataclasses.replace(cfg.model, sdpa_attention=False, channels_last=False),
            train=dataclasses.replace(cfg.train, precision="fp16", grad_checkpointing="all",
                                      compile=False)),
        "swinunetr_decoder": lambda: dataclasses.replace(
            cfg, model=dataclasses.replace(cfg.model, atlas_decoder="swinunetr", channels_last=True),
            train=dataclasses.replace(cfg.train, compile=compile_model)),
    }
    return {n: made[n]() for n in names}


def _count_flops(model: torch.nn.Module, views: Any, precision: Precision) -> float:
    """FLOPs of one forward + backward (matmuls, convolutions, attention), under the setting's
    autocast so the count needs no more memory than a step."""
    with FlopCounterMode(display=False) as counter:
        with precision.autocast():
            total, _ = model(views)
        total.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def _measure(name: str, cfg: DamtConfig, batch: int, steps: int, warmup: int,
             device: torch.device, n_classes: int, flops: float | None) -> tuple[dict[str, Any], float]:
    """Time ``steps`` steps after ``warmup``; returns the result line and the FLOPs per step
    (``flops`` when given: the count of a setting with the same model)."""
    # train.grad_checkpointing: auto resolves as `damt train` would on this device
    ckpt = resolve_checkpointing(cfg, device, SEED_MORPHOMETRY, SEED_RADIOMICS)["setting"]
    torch.manual_seed(0)
    model = MultiTaskObjective(cfg, SEED_MORPHOMETRY, SEED_RADIOMICS, n_classes, checkpointing=ckpt).to(device)
    forward = torch.compile(model) if cfg.train.compile else model
    optimizer = build_optimizer(model, cfg.optim)
    schedule = Schedule.build(cfg.optim, steps_per_epoch=100, epochs=10, global_batch=batch)
    schedule.apply(optimizer, schedule.warmup_steps)  # a fixed, realistic peak learning rate
    precision = resolve_precision(cfg.train.precision, device)
    views = synthetic_views(cfg, batch, SEED_MORPHOMETRY, SEED_RADIOMICS, n_classes, device=device)
    if flops is None:
        flops = _count_flops(model, views, precision)
    losses, skipped = [], 0
    for _ in range(warmup):
        train_step(forward, views, optimizer, precision, cfg.optim.grad_clip_norm)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(steps):
        res = train_step(forward, views, optimizer, precision, cfg.optim.grad_clip_norm)
        skipped += not res.applied
        losses.append(res.loss)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    per_step = (time.perf_counter() - start) / steps
    # CPU seconds of this process (all its threads): on a CPU device, the step's work, which other
    # processes on a shared machine inflate far less than the wall time
    cpu_per_step = (time.process_time() - cpu_start) / steps
    peak = peak_tflops(device)
    achieved = flops / per_step / 1e12
    if device.type == "cuda":
        memory = {"peak_mem_gib": torch.cuda.max_memory_allocated(device) / 2 ** 30}
    else:  # the process's high-water mark so far (both settings run in one process)
        memory = {"peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}
    return {"bench": "step", "setting": name, "device": _device_name(device), "batch": batch,
            "precision": precision.name, "grad_checkpointing": ckpt,
            "atlas_decoder": cfg.model.atlas_decoder,
            "sdpa_attention": cfg.model.sdpa_attention, "channels_last": cfg.model.channels_last,
            "compile": cfg.train.compile, "steps": steps, "s_per_step": per_step,
            "cpu_s_per_step": cpu_per_step,
            "samples_per_s": batch / per_step, **memory, "model_tflop_per_step": flops / 1e12,
            "achieved_tflops": achieved, "mfu": achieved / peak if peak else None,
            "skipped_steps": skipped, "loss_first": losses[0], "loss_last": losses[-1]}, flops


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def bench_step(cfg: DamtConfig, steps: int = 10, warmup: int = 3, batch: int = 2,
               compile_model: bool = False, device: torch.device | None = None,
               names: tuple[str, ...] = ("default", "original")) -> Iterator[dict]:
    """Yield one result per setting (default first), then the ratios of the default to the others.

    Settings with the same model (same ``cfg.model`` apart from how attention and the layout are
    computed) share one FLOP count. A setting that runs out of GPU memory yields an ``error``
    line instead of numbers.
    """
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    n_classes = load_label_table(cfg.labels.table).n_classes
    names = ("default",) + tuple(n for n in names if n != "default")
    results: dict[str, dict] = {}
    flops: dict[str, float] = {}
    for name, scfg in settings(cfg, compile_model, names).items():
        arch = scfg.model.atlas_decoder  # the only model difference between the settings
        try:
            results[name], flops[arch] = _measure(name, scfg, batch, steps, warmup, device,
                                                  n_classes, flops.get(arch))
        except torch.cuda.OutOfMemoryError as err:
            results[name] = {"bench": "step", "setting": name, "device": _device_name(device),
                             "batch": batch, "error": f"out of memory: {str(err).splitlines()[0]}"}
        if device.type == "cuda":
            torch.cuda.empty_cache()
        yield results[name]
    line: dict[str, Any] = {"bench": "step"}
    d = results["default"].get("samples_per_s")
    for name in names[1:]:
        o = results[name].get("samples_per_s")
        ratio = d / o if d and o else None
        target = RATIO_TARGETS[name]
        line |= {f"ratio_default_over_{name}": ratio, f"target_over_{name}": target,
                 f"meets_target_over_{name}": ratio >= target if ratio is not None else None}
        if device.type == "cpu":  # the same ratio in CPU time (robust to other load on the machine)
            dc, oc = results["default"].get("cpu_s_per_step"), results[name].get("cpu_s_per_step")
            line[f"cpu_ratio_default_over_{name}"] = oc / dc if dc and oc else None
    line["skipped_steps"] = {k: r.get("skipped_steps") for k, r in results.items()}
    yield line
