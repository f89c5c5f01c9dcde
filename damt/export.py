"""Export a DAMT encoder for MONAI SwinUNETR: key layouts, the SwinUNETR arguments, the sidecar.

Pure functions (no file I/O): ``train/export_cli.py`` loads the checkpoint and writes the files.

Two layouts are written because downstream code loads pretrained Swin weights in two ways:

* **strict** (``swinvit.pt``): the plain state dict of ``SwinUNETR.swinViT``, for
  ``model.swinViT.load_state_dict(sd, strict=True)``. The encoder already holds its
  SwinTransformer as ``swinViT`` (MONAI's attribute name), so this is the ``encoder.swinViT.*``
  subset of the SSL state dict with that prefix removed.
* **legacy** (``swinvit_load_from.pt``): what ``SwinUNETR.load_from(weights)`` reads, the layout
  of the original MONAI self-supervised Swin checkpoints: ``{"state_dict": {"module.<key>": ...}}``
  with the MLP layers named ``mlp.fc1`` / ``mlp.fc2`` (MONAI's module calls them ``mlp.linear1`` /
  ``mlp.linear2``; ``SwinTransformerBlock.load_from`` maps them back).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor

EXPORT_FORMAT = "damt-export-v1"
ENCODER_PREFIX = "encoder.swinViT."
LEGACY_PREFIX = "module."
#: (MONAI module name, legacy checkpoint name) of the only keys whose names differ between layouts
LEGACY_RENAMES = ((".mlp.linear1.", ".mlp.fc1."), (".mlp.linear2.", ".mlp.fc2."))
#: file names inside an export folder
FILES = {"swinvit": "swinvit.pt", "load_from": "swinvit_load_from.pt",
         "ssl_model": "damt_ssl_model.pt", "config": "config.yaml", "sidecar": "damt_export.json"}


class ExportError(ValueError):
    """The state dict cannot be exported (no encoder keys, or keys outside the known layout)."""


def encoder_state_dict(model_state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The ``swinViT`` keys of a training (MultiTaskObjective) state dict, without the ``encoder.swinViT.`` prefix
    (the layout of ``SwinUNETR.swinViT.state_dict()``). Tensors are detached CPU copies."""
    out = {k[len(ENCODER_PREFIX):]: v.detach().cpu().clone()
           for k, v in model_state.items() if k.startswith(ENCODER_PREFIX)}
    if not out:
        raise ExportError(f"no '{ENCODER_PREFIX}*' keys in the state dict: not a DAMT model")
    return out


def to_legacy_key(key: str) -> str:
    """``layers1.0.blocks.0.mlp.linear1.weight`` -> ``module.layers1.0.blocks.0.mlp.fc1.weight``."""
    for new, old in LEGACY_RENAMES:
        key = key.replace(new, old)
    return LEGACY_PREFIX + key


def from_legacy_key(key: str) -> str:
    """Inverse of :func:`to_legacy_key`."""
    if not key.startswith(LEGACY_PREFIX):
        raise ExportError(f"legacy key {key!r} lacks the '{LEGACY_PREFIX}' prefix")
    key = key[len(LEGACY_PREFIX):]
    for new, old in LEGACY_RENAMES:
        key = key.replace(old, new)
    return key


def to_load_from_layout(swin_state: Mapping[str, Tensor]) -> dict[str, dict[str, Tensor]]:
    """The dict ``SwinUNETR.load_from`` reads: ``{"state_dict": {"module.*": tensor}}``."""
    return {"state_dict": {to_legacy_key(k): v for k, v in swin_state.items()}}


def from_load_from_layout(weights: Mapping[str, Any]) -> dict[str, Tensor]:
    """A ``load_from`` dict back to the strict ``swinViT`` layout (also converts the original MONAI
    self-supervised checkpoints; keys outside the Swin backbone, e.g. their heads, are skipped)."""
    sd = weights["state_dict"]
    return {from_legacy_key(k): v for k, v in sd.items()
            if k.startswith(LEGACY_PREFIX + "patch_embed.") or k.startswith(LEGACY_PREFIX + "layers")}


def swinunetr_kwargs(model_cfg: Any) -> dict[str, Any]:
    """Keyword arguments of ``monai.networks.nets.SwinUNETR`` whose ``swinViT`` matches the
    encoder (add ``out_channels``; MONAI < 1.5 also wants ``img_size``)."""
    m = model_cfg
    return {"in_channels": 1, "feature_size": int(m.embed_dim), "patch_size": int(m.patch_size_vox),
            "depths": [int(d) for d in m.depths], "num_heads": [int(h) for h in m.num_heads],
            "window_size": int(m.window_size_vox), "mlp_ratio": float(m.mlp_ratio),
            "qkv_bias": True, "spatial_dims": 3, "downsample": "merging", "use_v2": False,
            "normalize": True}


def encoder_sizes(model_cfg: Any) -> dict[str, Any]:
    """Widths a downstream user needs: hidden states x0..x4, the pooled embedding, the stride."""
    m = model_cfg
    hidden = [m.embed_dim * 2 ** i for i in range(len(m.depths))] + [m.embed_dim * 2 ** len(m.depths)]
    stride = m.patch_size_vox * 2 ** len(m.depths)
    return {"hidden_channels": hidden, "embedding_dim": hidden[-1],
            "x4_stride_vox": stride,
            # SwinUNETR's decoder needs every input edge divisible by patch_size ** 5 (32)
            "swinunetr_input_multiple_vox": m.patch_size_vox ** 5}


def preprocessing_spec(cfg: Any) -> dict[str, Any]:
    """How to preprocess new data exactly as the pretraining cache was (docs/preprocessing.md)."""
    p, d = cfg.preprocess, cfg.data
    return {
        "inputs": {"image": list(d.image_names), "fallback_image_if_binary_mask": d.fallback_image_name
                   if p.binary_mask_fallback else None, "parcellation": d.parcellation_name},
        "orientation": p.orientation,
        "order": ["reorient", "crop_foreground", "resample", "scale_intensity", "pad"],
        "crop_foreground": {"threshold": p.foreground_threshold, "margin_vox": p.crop_margin_vox},
        "spacing_mm": [p.spacing_mm] * 3,
        "resample": {"image_spline_order": p.image_interp_order, "parcellation": "nearest",
                     "grid": "keeps each axis' extent to half an output voxel and the centre"},
        "intensity": {"percentile_low": p.percentile_low, "percentile_high": p.percentile_high,
                      "over": "brain voxels (input image > crop_foreground.threshold, mask "
                              "resampled nearest) on the resampled grid, before padding",
                      "maps_to": [0.0, 1.0], "clip": True, "outside_brain": 0.0,
                      "stored_dtype": "float16"},
        "pad": {"min_shape_vox": p.min_shape_vox, "mode": "zeros, centred"},
        "unknown_labels": p.unknown_labels,
    }


def build_sidecar(cfg: Any, *, config: dict, config_hash: str, checkpoint: dict, files: dict,
                  labels: dict, heads: dict, training_cache: dict | None, software: dict,
                  verified: dict) -> dict[str, Any]:
    """The JSON sidecar of an export (see docs/downstream.md for every field)."""
    v = cfg.views
    return {
        "format": EXPORT_FORMAT,
        "checkpoint": checkpoint,
        "config_hash": config_hash,
        "files": files,
        "swinunetr": {"kwargs": swinunetr_kwargs(cfg.model), **encoder_sizes(cfg.model)},
        "preprocessing": preprocessing_spec(cfg),
        "views": {"global_crop_vox": v.global_crop_vox, "local_crop_vox": v.local_crop_vox,
                  "local_size_vox": v.local_size_vox,
                  "embedding": "mean over space of the last hidden state x4 (normalised) of a "
                               "centred global crop, no rotation, no mask"},
        "labels": labels,
        "ssl_heads": heads,
        "training_cache": training_cache,
        "software": software,
        "verified": verified,
        "config": config,
    }


def compare_state(expected: Mapping[str, Tensor], got: Mapping[str, Tensor]) -> dict[str, list[str]]:
    """Keys missing from ``got``, unexpected in it, and present in both with other values."""
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    differ = sorted(k for k in set(expected) & set(got)
                    if expected[k].shape != got[k].shape or not torch.equal(expected[k].cpu(), got[k].cpu()))
    return {"missing": missing, "unexpected": unexpected, "differ": differ}


class _Recording(dict):
    """A dict that remembers which keys were read (to prove ``load_from`` read every key)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)


def verify_swinunetr(swin_state: Mapping[str, Tensor], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Load both layouts into fresh ``SwinUNETR(**kwargs)`` models and compare every tensor.

    Returns ``{"strict": {...}, "load_from": {...}, "ok": bool}``; each part lists missing,
    unexpected and differing keys (``load_from``'s unexpected keys are those it never read).
    """
    from monai.networks.nets import SwinUNETR  # noqa: PLC0415 - builds a whole network: only here

    out: dict[str, Any] = {}
    model = SwinUNETR(out_channels=1, **kwargs)
    result = model.swinViT.load_state_dict(dict(swin_state), strict=False)
    cmp = compare_state(swin_state, model.swinViT.state_dict())
    out["strict"] = cmp | {"missing": sorted(result.missing_keys),
                           "unexpected": sorted(result.unexpected_keys)}
    model = SwinUNETR(out_channels=1, **kwargs)
    legacy = to_load_from_layout(swin_state)
    recording = _Recording(legacy["state_dict"])
    try:
        model.load_from({"state_dict": recording})
        out["load_from"] = compare_state(swin_state, model.swinViT.state_dict()) | {
            "unexpected": sorted(set(recording) - recording.read)}
    except KeyError as err:  # load_from stops at the first key it needs and does not find
        out["load_from"] = {"missing": [from_legacy_key(str(err.args[0]))], "unexpected": [],
                            "differ": []}
    out["ok"] = all(not v for part in ("strict", "load_from") for v in out[part].values())
    return out
