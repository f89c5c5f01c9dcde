"""``damt embed CHECKPOINT [--cache DIR] --out FILE``: pooled encoder embeddings per subject.

Deterministic: one centred crop of ``views.global_crop_vox`` per subject (the size the encoder
was trained on), no rotation, no mask, the encoder in eval mode, float32. The embedding is the
mean over space of the last (normalised) hidden state x4, the same pooled token the rotation,
location and contrastive heads see: ``embed_dim * 16`` values (768 for the seed model).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from damt.cache import Cache, open_subject
from damt.config import DamtConfig, config_hash, to_dict
from damt.config.scopes import keys_in_scope
from damt.durable import atomic_write
from damt.model import MaskedSwinEncoder
from train.export_cli import LoadedCheckpoint, load_run_checkpoint
from train.state import config_changes

EMBED_FORMAT = "damt-embeddings-v1"
ENCODER_KEY_PREFIX = "encoder."
#: the config keys that change what a subject store holds (damt/config/scopes.py)
STORE_KEYS = keys_in_scope(DamtConfig, "store")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def build_encoder(cfg: DamtConfig, model_state: Mapping[str, torch.Tensor] | None = None,
                  seed: int | None = None) -> MaskedSwinEncoder:
    """The masked Swin encoder of ``cfg.model`` in eval mode: with the ``encoder.*`` weights of a
    MultiTaskObjective state dict (strict: every key must match), or randomly initialised from ``seed``."""
    if model_state is None:
        # a private RNG stream: the caller's global torch RNG is left as it was
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed or 0))
            encoder = MaskedSwinEncoder(cfg.model)
    else:
        encoder = MaskedSwinEncoder(cfg.model)
        sub = {k[len(ENCODER_KEY_PREFIX):]: v for k, v in model_state.items()
               if k.startswith(ENCODER_KEY_PREFIX)}
        encoder.load_state_dict(sub, strict=True)
    return encoder.eval()


def centre_box(shape: tuple[int, ...], edge: int) -> tuple[slice, ...]:
    """The centred ``edge``³ box of a volume (the lower middle when the margin is odd)."""
    if min(shape) < edge:
        raise ValueError(f"volume shape {tuple(shape)} is smaller than the crop {edge}")
    return tuple(slice((s - edge) // 2, (s - edge) // 2 + edge) for s in shape)


def read_centre_crop(store: Path, edge: int) -> np.ndarray:
    """float32 [1, edge, edge, edge] centred crop of a subject store's image.

    Read through zarr-python, not the trainer's tensorstore reader: one crop per subject makes
    read speed irrelevant here, and tensorstore aborts a process that forks after using it, which
    would bite a user who embeds in a notebook and then starts workers.
    """
    image = open_subject(store)["image"]
    crop = np.asarray(image[centre_box(tuple(image.shape), edge)])
    return crop.astype(np.float32)[None]


def cache_mismatch(cache: Path, cfg: DamtConfig) -> list[str]:
    """Store keys (scope "store": what a subject store holds) on which the cache and the
    checkpoint's config differ (empty: none, or the cache does not record its config). Embeddings
    of a differently preprocessed cache are valid inputs but not what the encoder was trained on."""
    saved = Cache(cache).preprocess_config()
    if saved is None:
        return []
    return [k for k in config_changes(saved, to_dict(cfg)) if k in STORE_KEYS]


@torch.inference_mode()
def embed_subjects(encoders: Mapping[str, MaskedSwinEncoder], cache: Path, cfg: DamtConfig,
                   device: str | torch.device = "auto", batch: int = 2
                   ) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Embed every ok subject of ``cache`` with each encoder (each crop is read once).

    Returns (subjects: subject_id, cohort; {encoder name: float32 [n_subjects, dim]}).
    """
    dev = resolve_device(device)
    subjects = Cache(cache).ok_subjects()[["subject_id", "cohort", "store"]].reset_index(drop=True)
    if subjects.empty:
        raise ValueError(f"{cache}: no ok subjects in the manifest; run `damt preprocess` first")
    models = {name: enc.to(dev).eval() for name, enc in encoders.items()}
    out: dict[str, list[np.ndarray]] = {name: [] for name in models}
    edge = cfg.views.global_crop_vox
    for start in range(0, len(subjects), max(1, int(batch))):
        rows = subjects.iloc[start:start + max(1, int(batch))]
        x = torch.from_numpy(np.stack([read_centre_crop(Path(cache) / s, edge) for s in rows["store"]]))
        x = x.to(dev)
        for name, enc in models.items():
            x4 = enc(x)[-1].float()  # [B, embed*16, g/32, g/32, g/32], no mask
            out[name].append(x4.mean(dim=(2, 3, 4)).cpu().numpy().astype(np.float32))
    return subjects[["subject_id", "cohort"]], {k: np.concatenate(v) for k, v in out.items()}


def embeddings_frame(subjects: pd.DataFrame, emb: np.ndarray) -> pd.DataFrame:
    """subject_id, cohort, emb_0000 ... emb_<dim-1> (one row per subject)."""
    cols = pd.DataFrame(emb, columns=[f"emb_{i:04d}" for i in range(emb.shape[1])])
    ids = subjects.reset_index(drop=True).astype({"subject_id": str, "cohort": str})
    return pd.concat([ids, cols], axis=1)


def write_embeddings(frame: pd.DataFrame, path: Path, meta: Mapping[str, Any]) -> Path:
    """Parquet with ``meta`` as JSON under the schema key ``damt``; written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           b"damt": json.dumps(dict(meta)).encode()})
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))
    return path


def read_embeddings(path: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """An embeddings parquet and its ``damt`` metadata."""
    table = pq.read_table(path)
    meta = json.loads((table.schema.metadata or {}).get(b"damt", b"{}"))
    return table.to_pandas(), meta


def embedding_meta(ck: LoadedCheckpoint, cache: Path, encoder: str, seed: int | None = None) -> dict:
    cfg = ck.cfg
    return {"format": EMBED_FORMAT, "encoder": encoder, "checkpoint": str(ck.folder.resolve()),
            "step": ck.step, "config_hash": config_hash(cfg), "cache": str(Path(cache).resolve()),
            "crop": {"edge_vox": cfg.views.global_crop_vox, "position": "centre"},
            "pooling": "mean of x4", "embedding_dim": cfg.model.embed_dim * 16,
            **({"random_init_seed": seed} if seed is not None else {})}


def embed(checkpoint: Path | str, out: Path | str, cache: Path | str | None = None,
          device: str = "auto", batch: int = 2) -> tuple[Path, pd.DataFrame]:
    """``damt embed``: write ``out`` (parquet) with one row per ok subject of the cache."""
    ck = load_run_checkpoint(checkpoint)
    cache = Path(cache) if cache is not None else Path(ck.cfg.data.cache_dir)
    differ = cache_mismatch(cache, ck.cfg)
    if differ:
        print(f"damt embed: warning: {cache} was preprocessed with other settings than the "
              f"checkpoint's ({', '.join(differ)})", file=sys.stderr)
    subjects, emb = embed_subjects({"pretrained": build_encoder(ck.cfg, ck.state["model"])},
                                   cache, ck.cfg, device, batch)
    frame = embeddings_frame(subjects, emb["pretrained"])
    meta = embedding_meta(ck, cache, "pretrained") | {"preprocess_mismatch": differ}
    return write_embeddings(frame, Path(out), meta), frame
