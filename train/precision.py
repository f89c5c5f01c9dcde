"""Numeric precision of the step: bf16 autocast, fp16 autocast with a GradScaler, or fp32.

``train.precision: auto`` means bf16 where the device computes it natively (CUDA GPUs that report
bf16 support) and fp32 everywhere else, including every CPU: bf16 autocast on a CPU without native
bf16 units is many times slower than fp32. fp16 is never chosen automatically; it needs a loss
scaler, and the original lost ~2 batches per epoch to its overflows.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ContextManager

import torch

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


@dataclass
class Precision:
    """The resolved setting: ``name`` is bf16, fp16 or fp32; ``scaler`` exists for fp16 only."""

    name: str
    device_type: str
    scaler: torch.amp.GradScaler | None

    @property
    def dtype(self) -> torch.dtype | None:
        return _DTYPES[self.name]

    def autocast(self) -> ContextManager:
        """The autocast context of the forward pass (a no-op for fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)


def resolve_precision(setting: str, device: torch.device) -> Precision:
    """Turn ``train.precision`` into a Precision for ``device``."""
    if setting not in ("auto", *_DTYPES):
        raise ValueError(f"unknown precision {setting!r}")
    name = setting
    if setting == "auto":
        # including_emulation=False: pre-Ampere GPUs "support" bf16 only by emulation, slowly
        bf16_ok = device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
        name = "bf16" if bf16_ok else "fp32"
    scaler = torch.amp.GradScaler(device.type) if name == "fp16" else None
    return Precision(name=name, device_type=device.type, scaler=scaler)
