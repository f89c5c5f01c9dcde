"""What a checkpoint holds and how a run is restored from one, including the resume policy.

A checkpoint is a dict of tensors and plain types (so ``torch.load(weights_only=True)`` reads it):
model, optimizer, scaler, schedule ("scheduler": the numbers that define the lr/wd schedule),
step, epoch, sampler position, every RNG state, skip counters and the resolved config.
"""

from __future__ import annotations

from typing import Any

import torch

from damt import __version__
from damt.config import ConfigError, DamtConfig, dump_config, to_dict
from train.checkpoint import capture_rng, restore_rng

#: config keys whose change on resume cannot change the numbers of the run: where inputs were
#: preprocessed from, how fast crops are read, where and how often things are written
RESUME_FREE_KEYS = ("data.", "dask.", "loader.num_workers", "loader.prefetch_factor",
                    "loader.pin_memory", "loader.reader", "train.out_dir", "train.log_every_steps",
                    "train.checkpoint_every_epochs", "train.keep_every_epochs",
                    "train.max_consecutive_skips", "train.wandb", "train.wandb_project",
                    # recomputation gives the same activations: a memory/speed choice per device
                    "train.grad_checkpointing", "train.memory_budget_gib")


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module under torch.compile / DDP wrappers (clean state-dict keys)."""
    while True:
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if inner is None:
            return model
        model = inner


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out |= _flatten(v, f"{prefix}{k}.")
        return out
    return {prefix[:-1]: d}


def config_changes(old: dict, new: dict) -> list[str]:
    """Dotted keys whose values differ between two resolved configs (as plain dicts)."""
    a, b = _flatten(old), _flatten(new)
    return sorted(k for k in a.keys() | b.keys() if a.get(k, "<absent>") != b.get(k, "<absent>"))


def check_resume_config(saved: dict, cfg: DamtConfig, allow_change: bool) -> list[str]:
    """Refuse a resume whose config changed in a key that affects the run, unless allowed.

    Returns the changed keys (free ones included) so the caller can report them.
    """
    changed = config_changes(saved, to_dict(cfg))
    binding = [k for k in changed if not k.startswith(RESUME_FREE_KEYS)]
    if binding and not allow_change:
        flat_old, flat_new = _flatten(saved), _flatten(to_dict(cfg))
        detail = "; ".join(f"{k}: {flat_old.get(k, '<absent>')!r} -> {flat_new.get(k, '<absent>')!r}"
                           for k in binding[:8])
        raise ConfigError(binding[0], f"differs from the checkpoint's config ({detail}); resuming "
                          f"would not continue the same run. Pass --allow-config-change to resume "
                          f"anyway, or train into a new --out")
    return changed


def make_state(*, model, optimizer, precision, schedule, sampler, step: int, epoch: int,
               skipped_total: int, skipped_consecutive: int, cfg: DamtConfig) -> dict[str, Any]:
    """The checkpoint dict of a run at ``step`` (everything a bitwise-exact resume needs)."""
    return {
        "format": "damt-train-state-v1",
        "damt_version": __version__,
        "torch_version": str(torch.__version__),  # TorchVersion is not weights_only-loadable
        "step": int(step),
        "epoch": int(epoch),
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": precision.scaler.state_dict() if precision.scaler is not None else {},
        "precision": precision.name,
        "scheduler": schedule.state_dict(),
        "sampler": sampler.state_dict(),
        "rng": capture_rng(),
        "skipped": {"total": int(skipped_total), "consecutive": int(skipped_consecutive)},
        "config": to_dict(cfg),
        "config_yaml": dump_config(cfg),
    }


def restore_state(state: dict[str, Any], *, model, optimizer, precision, schedule, sampler,
                  cfg: DamtConfig, allow_config_change: bool) -> list[str]:
    """Load a checkpoint dict into a freshly built run. Strict: every model key must match.

    Returns the changed config keys. Raises ConfigError when the config or the schedule differs
    (unless allowed) and ValueError when the precision's scaler state cannot be carried over.
    """
    changed = check_resume_config(state["config"], cfg, allow_config_change)
    if state["scheduler"] != schedule.state_dict() and not allow_config_change:
        raise ConfigError("train", f"the lr/wd schedule differs from the checkpoint's "
                          f"({state['scheduler']} -> {schedule.state_dict()}): the cache's subject "
                          f"count or the batch changed. Pass --allow-config-change to resume anyway")
    if state["precision"] != precision.name and not allow_config_change:
        raise ConfigError("train.precision", f"resolves to {precision.name} on this device but the "
                          f"checkpoint trained in {state['precision']}. Pass --allow-config-change "
                          f"to resume anyway")
    # strict=True: a key mismatch is an error, never a silently half-loaded model
    try:
        unwrap(model).load_state_dict(state["model"], strict=True)
    except RuntimeError as err:  # other shapes or keys: the config changed the model itself
        # torch lists missing keys, unexpected keys and shape mismatches on separate lines
        details = "; ".join(ln.strip() for ln in str(err).splitlines()[1:] if ln.strip()) or str(err)
        raise ConfigError("model", f"the checkpoint's weights do not fit the model this config builds "
                          f"({details}); --allow-config-change can resume with other settings, never with "
                          f"another model shape or task set: train into a new --out") from None
    optimizer.load_state_dict(state["optimizer"])
    if precision.scaler is not None:
        if not state["scaler"]:
            raise ValueError("this run uses fp16 but the checkpoint has no loss-scaler state")
        precision.scaler.load_state_dict(state["scaler"])
    sampler.load_state_dict(state["sampler"])
    restore_rng(state["rng"])
    return changed
