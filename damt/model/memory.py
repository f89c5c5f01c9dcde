"""Predict the peak memory of one training step without running it, and choose the gradient
checkpointing setting that fits a device.

The step's forward runs on fake tensors (``torch._subclasses.FakeTensorMode``: shapes, dtypes and
storages, no data, no allocation), under the configured autocast, with the real model's modules
and the configured checkpointing. Counted, in bytes:

* ``saved``: every tensor autograd saves for the backward pass (``saved_tensors_hooks``), once per
  storage (views of one tensor share it), plus the step's inputs, plus what non-reentrant
  checkpointing keeps itself: the inputs of each checkpointed half-block (MONAI's
  ``SwinTransformerBlock`` checkpoints ``forward_part1`` and ``forward_part2``; the checkpoint holds
  their inputs, which autograd's hooks never see);
* ``state``: parameters, their gradients and AdamW's two moments, 16 bytes per fp32 parameter;
* ``transient``: what the backward pass holds on top at its peak: the recomputed activations of
  the largest checkpointed block call (its saved bytes in an uncheckpointed pass) plus
  :data:`TRANSIENT_LARGEST` times the largest saved tensor (the gradient being produced and the
  one being consumed). The factor was set a priori and checked against measured CPU peaks: the
  prediction is 2-22 % above the live peak there (docs/training.md).

Autocast does not exist on the meta device, so the fake tensors are CPU tensors under CPU
autocast. ``target="cuda"`` applies what CUDA does differently (:class:`_CudaRules`): attention
as the memory-efficient kernel that CUDA runs for an attention bias with gradients (it keeps the
output and the log-sum-exp, not the score matrices), and the norms and softmaxes that CUDA
autocast runs in float32. ``target="cpu"`` keeps the CPU's own choices (the math attention path,
which keeps the score matrices).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

GIB = 2 ** 30
#: the fastest setting first: each later one recomputes more in the backward pass
ORDER = ("none", "layers3", "all")
#: headroom kept free of the prediction: the CUDA context, the caching allocator's fragmentation,
#: cuDNN/cuBLAS workspaces, and the prediction's error
MARGIN_GIB = 2.0
#: transient allowance in largest-saved-tensor units, checked on CPU peaks (docs/training.md)
TRANSIENT_LARGEST = 2.0
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class MemoryPrediction:
    """One step's predicted peak memory for one checkpointing setting (bytes)."""

    setting: str
    precision: str
    target: str
    parameters: int            # how many (not bytes)
    state_bytes: int
    saved_bytes: int
    transient_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.state_bytes + self.saved_bytes + self.transient_bytes

    @property
    def total_gib(self) -> float:
        return self.total_bytes / GIB

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: every part in GiB."""
        return {"setting": self.setting, "precision": self.precision, "target": self.target,
                "parameters": self.parameters, "predicted_gib": self.total_gib,
                "state_gib": self.state_bytes / GIB, "saved_gib": self.saved_bytes / GIB,
                "transient_gib": self.transient_bytes / GIB}


#: functions CUDA autocast runs in float32 that CPU autocast leaves in the input's dtype (the
#: normalisations and softmaxes of the model; the losses are float32 under both)
_CUDA_FP32 = {F.layer_norm, F.group_norm, F.softmax, F.log_softmax, F.normalize, torch.softmax,
              torch.log_softmax, torch.Tensor.softmax, torch.Tensor.log_softmax}


def _to_fp32(x: Any) -> Any:
    if isinstance(x, torch.Tensor) and x.dtype in (torch.bfloat16, torch.float16):
        return x.float()
    return x


class _CudaRules(TorchFunctionMode):
    """What CUDA does differently from the CPU, for fake CPU tensors: ``F.scaled_dot_product_attention``
    is evaluated as CUDA's memory-efficient kernel (what CUDA picks for a float bias that needs
    gradients), with the copy of the bias that CUDA pads to a multiple of 16 columns; under
    autocast, :data:`_CUDA_FP32` run in float32 as CUDA's autocast lists say. It changes what is
    kept, not the maths."""

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: Any = None):
        kwargs = kwargs or {}
        if func in _CUDA_FP32 and torch.is_autocast_enabled("cpu"):
            return func(*[_to_fp32(a) for a in args], **{k: _to_fp32(v) for k, v in kwargs.items()})
        if func is not F.scaled_dot_product_attention:
            return func(*args, **kwargs)
        q, k, v = args[:3]
        bias = kwargs.get("attn_mask", args[3] if len(args) > 3 else None)
        if bias is not None:
            n = bias.shape[-1]
            pad = -n % 16
            bias = F.pad(bias, (0, pad))[..., :n] if pad else bias
            bias = bias.expand(q.shape[0], q.shape[1], q.shape[2], n)
        out = torch.ops.aten._scaled_dot_product_efficient_attention(
            q, k, v, bias, True, kwargs.get("dropout_p", 0.0), False, scale=kwargs.get("scale"))
        return out[0]


class _Counter:
    """Bytes of distinct storages, keyed by the storage itself (kept alive while counting, so no
    address is reused); optionally attributed to the checkpointable block running."""

    def __init__(self) -> None:
        self.storages: dict[Any, tuple[Any, int]] = {}
        self.largest = 0
        self.block: str | None = None
        self.per_block: dict[str, int] = {}

    def add(self, t: torch.Tensor) -> None:
        st = t.untyped_storage()
        key = st._cdata
        if key in self.storages:
            return
        size = st.nbytes()
        self.storages[key] = (st, size)
        self.largest = max(self.largest, size)
        if self.block is not None:
            self.per_block[self.block] = self.per_block.get(self.block, 0) + size

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        self.add(t)
        return t

    @property
    def total(self) -> int:
        return sum(size for _, size in self.storages.values())


def _swin_blocks(model: nn.Module) -> Iterable[tuple[str, nn.Module]]:
    """MONAI SwinTransformerBlocks (the unit of checkpointing), by module name."""
    return ((name, m) for name, m in model.named_modules() if hasattr(m, "use_checkpoint")
            and hasattr(m, "forward_part1"))


def _fake_pass(model: nn.Module, views: Any, precision: str, target: str) -> _Counter:
    """One forward of ``model(views)`` on fake tensors, counting what is kept for the backward."""
    from torch._subclasses.fake_tensor import FakeTensorMode  # noqa: PLC0415 - private, kept local

    counter = _Counter()
    mode = FakeTensorMode(allow_non_fake_inputs=True)

    def fake(t: torch.Tensor) -> torch.Tensor:
        # real or meta -> a fake CPU tensor of the same shape, strides and dtype (nothing is
        # allocated, no data is read)
        with mode:
            return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="cpu")

    params = {k: nn.Parameter(fake(p.detach()), requires_grad=p.requires_grad)
              for k, p in model.named_parameters()}
    buffers = {k: fake(b) for k, b in model.named_buffers()}
    inputs = type(views)(**{f.name: fake(getattr(views, f.name)) for f in dataclasses.fields(views)})
    for f in dataclasses.fields(inputs):
        counter.add(getattr(inputs, f.name))
    hooks: list = []
    calls: dict[str, int] = {}
    for name, block in _swin_blocks(model):
        def enter(mod: nn.Module, args: tuple, name: str = name) -> None:
            # one key per call: a block runs once per encoder batch (global, local) and the
            # backward recomputes one call at a time
            calls[name] = calls.get(name, 0) + 1
            counter.block = f"{name}#{calls[name]}"
            if mod.use_checkpoint:  # the checkpoint holds part1's input and part2's (same size)
                x = args[0]
                counter.add(x)
                counter.storages[("part2", counter.block)] = (None, x.numel() * x.element_size())

        def leave(mod: nn.Module, args: tuple, out: Any) -> None:
            counter.block = None

        hooks += [block.register_forward_pre_hook(enter), block.register_forward_hook(leave)]
    autocast = torch.autocast("cpu", dtype=_AUTOCAST.get(precision, torch.float32),
                              enabled=precision in _AUTOCAST)
    cuda_rules = _CudaRules() if target == "cuda" else contextlib.nullcontext()
    try:
        with mode, cuda_rules, autocast, torch.autograd.graph.saved_tensors_hooks(counter.pack,
                                                                                  lambda t: t):
            torch.func.functional_call(model, {**params, **buffers}, (inputs,))
    finally:
        for h in hooks:
            h.remove()
    return counter


def predict_step_memory(model: nn.Module, views: Any, setting: str, precision: str = "fp32",
                        target: str = "cuda", recompute: dict[str, int] | None = None
                        ) -> tuple[MemoryPrediction, dict[str, int]]:
    """Predict one training step's peak memory of ``model`` (a MultiTaskObjective on the CPU or the meta
    device) on ``views`` (a :class:`damt.views.Views`, any device) with checkpointing ``setting``.

    ``precision``: fp32, bf16 or fp16 (autocast of the forward). ``recompute``: per-block saved
    bytes of an uncheckpointed pass (the second return value of the ``none`` prediction); needed for
    the recomputation allowance of the other settings, computed here when not given. The model's
    own checkpointing setting is restored afterwards.
    """
    if precision not in ("fp32", *_AUTOCAST):
        raise ValueError(f"precision must be fp32, bf16 or fp16, got {precision!r}")
    encoder = model.encoder
    before = encoder.checkpointing
    try:
        if setting != "none" and recompute is None:
            encoder.set_checkpointing("none")
            recompute = _fake_pass(model, views, precision, target).per_block
        encoder.set_checkpointing(setting)
        counter = _fake_pass(model, views, precision, target)
        checkpointed = [name for name, b in _swin_blocks(model) if b.use_checkpoint]
    finally:
        encoder.set_checkpointing(before)
    n_params = sum(p.numel() for p in model.parameters())
    state = sum(p.numel() * 4 * 4 for p in model.parameters())  # fp32 weight, grad, 2 moments
    redo = max((size for key, size in (recompute or {}).items()
                if key.rsplit("#", 1)[0] in checkpointed), default=0)
    transient = redo + math.ceil(TRANSIENT_LARGEST * counter.largest)
    pred = MemoryPrediction(setting=setting, precision=precision, target=target,
                            parameters=n_params, state_bytes=state, saved_bytes=counter.total,
                            transient_bytes=transient)
    return pred, (counter.per_block if setting == "none" else (recompute or {}))


def fits(predicted_gib: float, budget_gib: float, margin_gib: float = MARGIN_GIB) -> bool:
    """A prediction fits when it leaves ``margin_gib`` of the budget free."""
    return predicted_gib <= budget_gib - margin_gib


def choose_checkpointing(predict: Callable[[str], float], budget_gib: float | None,
                         margin_gib: float = MARGIN_GIB) -> tuple[str, bool, dict[str, float]]:
    """The fastest setting of :data:`ORDER` whose predicted GiB (``predict(setting)``, called
    lazily, fastest first) fits ``budget_gib`` with the margin.

    Returns (setting, fits, {setting: predicted GiB for those predicted}). Without a budget (a CPU
    without ``train.memory_budget_gib``) nothing is predicted and ``none`` is chosen; when nothing
    fits, ``all`` (the least memory) is chosen and ``fits`` is False.
    """
    if budget_gib is None:
        return "none", True, {}
    predicted: dict[str, float] = {}
    for setting in ORDER:
        predicted[setting] = predict(setting)
        if fits(predicted[setting], budget_gib, margin_gib):
            return setting, True, predicted
    return "all", False, predicted


def device_budget_gib(device: torch.device, override: float | None) -> float | None:
    """``train.memory_budget_gib`` if set, else a CUDA device's total memory, else None (CPU)."""
    if override is not None:
        return float(override)
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory / GIB
    return None
