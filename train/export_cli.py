"""``damt export CHECKPOINT|RUN_DIR OUT_DIR``: encoder weights for MONAI SwinUNETR, the full SSL
state dict and a JSON sidecar (docs/downstream.md).

Also the checkpoint resolution every downstream command shares: a checkpoint folder, its
``state.pt``, a run directory (its latest complete checkpoint) or a ``checkpoints/`` folder.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from damt import __version__
from damt.cache import KINDS, Cache
from damt.config import DamtConfig, config_hash, dump_config, to_dict
from damt.config.validate import build
from damt.durable import atomic_write, atomic_write_text, sha256_file
from damt.export import (
    FILES,
    ExportError,
    build_sidecar,
    encoder_state_dict,
    swinunetr_kwargs,
    to_load_from_layout,
    verify_swinunetr,
)
from damt.labels import LabelTableError, load_label_table
from train.checkpoint import MARKER_FILE, STATE_FILE, latest_checkpoint, load_checkpoint, read_marker


class CheckpointNotFound(FileNotFoundError):
    """The path is neither a complete checkpoint nor a run directory holding one."""


@dataclass
class LoadedCheckpoint:
    folder: Path
    state: dict[str, Any]
    cfg: DamtConfig
    marker: dict[str, Any]

    @property
    def step(self) -> int:
        return int(self.state.get("step", self.marker.get("step", -1)))


def resolve_checkpoint(path: Path | str) -> Path:
    """The checkpoint folder ``path`` means (DESIGN.md): a checkpoint folder or its state file as
    given, a run directory or a ``checkpoints/`` folder -> its latest complete checkpoint."""
    p = Path(path)
    if p.is_file() and p.name == STATE_FILE:
        p = p.parent
    if not p.exists():
        raise CheckpointNotFound(f"{p} does not exist")
    if (p / STATE_FILE).is_file() or (p / MARKER_FILE).exists():
        if read_marker(p) is None:
            raise CheckpointNotFound(f"{p} is an incomplete checkpoint (no valid {MARKER_FILE}: "
                                     f"its write was interrupted); use the run directory to pick "
                                     f"the latest complete one")
        return p
    for root in (p / "checkpoints", p):
        found = latest_checkpoint(root)
        if found is not None:
            return found
    raise CheckpointNotFound(f"{p} holds no complete checkpoint (expected a run directory with "
                             f"checkpoints/step_*/{MARKER_FILE}, or one such checkpoint folder)")


def load_run_checkpoint(path: Path | str) -> LoadedCheckpoint:
    """Resolve, verify (sha256) and read a checkpoint, and rebuild its resolved config."""
    folder = resolve_checkpoint(path)
    state = load_checkpoint(folder)  # torch.load(weights_only=True) after the sha256 check
    if "model" not in state or "config" not in state:
        raise CheckpointNotFound(f"{folder}: not a DAMT training checkpoint (no model or config)")
    # the checkpoint's own resolved config, never the current pipeline.yaml: the weights were
    # trained with these sizes and this preprocessing
    cfg = build(DamtConfig, legacy_config(state["config"]))
    return LoadedCheckpoint(folder=folder, state=state, cfg=cfg, marker=read_marker(folder) or {})


def legacy_config(config: dict) -> dict:
    """A checkpoint's config dict with the values of older versions in today's form: before
    issue 15 ``train.grad_checkpointing`` was a bool (true = every block, today's ``all``)."""
    train = config.get("train", {})
    if isinstance(train.get("grad_checkpointing"), bool):
        train = {**train, "grad_checkpointing": "all" if train["grad_checkpointing"] else "none"}
        config = {**config, "train": train}
    return config


def _atomic_save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _atomic_text(text: str, path: Path) -> None:
    atomic_write_text(path, text)


def _labels_info(cfg: DamtConfig, model_state: dict) -> dict[str, Any]:
    info: dict[str, Any] = {"table": cfg.labels.table}
    try:
        table = load_label_table(cfg.labels.table)
        info |= {"version": table.version, "sha256": table.sha256, "n_classes": table.n_classes}
    except (LabelTableError, OSError) as err:
        # a custom table file that is not on this machine: keep what the weights themselves say
        atlas = model_state.get("heads.atlas.out.conv.conv.weight")
        info |= {"version": None, "sha256": None, "note": f"table not readable here: {err}",
                 "n_classes": int(atlas.shape[0]) if atlas is not None else None}
    return info


def _heads_info(cfg: DamtConfig, model_state: dict) -> dict[str, Any]:
    """Enabled tasks and the head sizes needed to rebuild the MultiTaskObjective of the SSL state
    dict."""
    def rows(key: str) -> int:
        return int(model_state[key].shape[0]) if key in model_state else 0

    tasks = sorted({k.split(".")[1] for k in model_state if k.startswith("heads.")})
    return {"tasks": tasks, "n_morphometry": rows("heads.morphometry.fc.weight"),
            "n_radiomics": rows("heads.texture.fc.weight"),
            "weighting": cfg.tasks.weighting}


def _cache_info(cache: Path | None) -> dict[str, Any] | None:
    """What the training cache's targets.json says (the preprocess config hash the stores carry,
    and the target column names of the regression heads), if that cache is reachable."""
    if cache is None or not Cache(cache).has_targets():
        return None
    targets = Cache(cache).targets()
    return {"path": str(Path(cache).resolve()), "preprocess_config_hash": targets.info.get("config_hash"),
            "n_subjects": targets.info.get("n_subjects"),
            "target_names": {k: targets.names.get(k, []) for k in KINDS}}


@dataclass
class ExportResult:
    out_dir: Path
    files: dict[str, Path]
    sidecar: dict[str, Any]


def export(checkpoint: Path | str, out_dir: Path | str, cache: Path | str | None = None,
           verify: bool = True) -> ExportResult:
    """Write the exports of a checkpoint (or a run's latest complete one) into ``out_dir``:
    ``damt.export.FILES`` (strict and legacy encoder weights, SSL state dict, config, sidecar).

    ``cache``: the training cache, to record its preprocess hash and target names (default: the
    checkpoint config's ``data.cache_dir`` when it exists). ``verify`` loads both layouts into
    fresh MONAI SwinUNETR models and raises if any tensor is missing, unexpected or different.
    """
    import monai  # noqa: PLC0415 - only its version is recorded; damt.export builds the network

    out = Path(out_dir)
    if out.exists() and not out.is_dir():  # checked before the checkpoint is read (seconds)
        raise ExportError(f"{out} is a file: OUT_DIR must be a folder (new or existing); choose another path")
    ck = load_run_checkpoint(checkpoint)
    out.mkdir(parents=True, exist_ok=True)
    model_state = ck.state["model"]
    swin = encoder_state_dict(model_state)
    kwargs = swinunetr_kwargs(ck.cfg.model)
    verified: dict[str, Any] = {"skipped": True}
    if verify:
        report = verify_swinunetr(swin, kwargs)
        if not report["ok"]:
            raise RuntimeError(f"exported encoder does not load into SwinUNETR{kwargs}: {report}")
        verified = {"monai_version": monai.__version__, "strict_load_state_dict": "ok",
                    "load_from": "ok", "tensors": len(swin)}
    paths = {k: out / name for k, name in FILES.items()}
    _atomic_save(swin, paths["swinvit"])
    _atomic_save(to_load_from_layout(swin), paths["load_from"])
    _atomic_save({k: v.detach().cpu() for k, v in model_state.items()}, paths["ssl_model"])
    # the resolved config as YAML: `damt preprocess OUT_DIR/config.yaml --input NEW --cache DIR`
    # preprocesses new subjects exactly as the pretraining cache was
    _atomic_text(ck.state.get("config_yaml") or dump_config(ck.cfg), paths["config"])
    files = {
        "swinvit": {"file": FILES["swinvit"], "sha256": sha256_file(paths["swinvit"]), "tensors": len(swin),
                    "load": "model.swinViT.load_state_dict(torch.load(f, weights_only=True), strict=True)"},
        "load_from": {"file": FILES["load_from"], "sha256": sha256_file(paths["load_from"]),
                      "load": "model.load_from(torch.load(f, weights_only=True))"},
        "ssl_model": {"file": FILES["ssl_model"], "sha256": sha256_file(paths["ssl_model"]),
                      "tensors": len(model_state),
                      "load": "damt.tasks.MultiTaskObjective(cfg, n_morphometry, n_radiomics, n_classes)"
                              ".load_state_dict(torch.load(f, weights_only=True), strict=True)"},
        "config": {"file": FILES["config"], "use": "damt preprocess config.yaml --input DIR "
                   "--cache DIR (same preprocessing); damt.config.load_config for damt.tasks.MultiTaskObjective"},
    }
    cache_dir = Path(cache) if cache is not None else Path(ck.cfg.data.cache_dir)
    sidecar = build_sidecar(
        ck.cfg, config=to_dict(ck.cfg), config_hash=config_hash(ck.cfg),
        checkpoint={"path": str(ck.folder.resolve()), "step": ck.step,
                    "epoch": int(ck.state.get("epoch", -1)), "sha256": ck.marker.get("sha256"),
                    "trained_with": {"damt": ck.state.get("damt_version"),
                                     "torch": str(ck.state.get("torch_version"))}},
        files=files, labels=_labels_info(ck.cfg, model_state), heads=_heads_info(ck.cfg, model_state),
        training_cache=_cache_info(cache_dir),
        software={"damt": __version__, "torch": torch.__version__, "monai": monai.__version__,
                  "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        verified=verified)
    _atomic_text(json.dumps(sidecar, indent=1) + "\n", paths["sidecar"])
    return ExportResult(out_dir=out, files=paths, sidecar=sidecar)
