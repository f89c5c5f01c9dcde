"""Checkpoints: atomic folders with a completion marker, the latest kept plus one every N epochs.

Layout: ``<run>/checkpoints/step_<000000123>/state.pt`` and ``COMPLETE.json``. A checkpoint is
written into a hidden temporary folder, fsynced, renamed to its final name, and only then given its
marker (itself written to a temporary name and renamed). Readers consider only folders with a
valid marker, so a run killed at any point leaves either the previous checkpoint or the new one,
never a partial file that looks whole. ``state.pt`` holds only tensors and plain Python types and is
read with ``torch.load(weights_only=True)``; the marker's sha256 is checked first.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_FORMAT = "damt-checkpoint-v1"
STATE_FILE, MARKER_FILE = "state.pt", "COMPLETE.json"
_NAME = re.compile(r"step_(\d{9})")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    """sha256 hex digest of a file (4 MiB blocks): checkpoint and export integrity."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def read_marker(folder: Path) -> dict | None:
    """The marker of a checkpoint folder, or None if it is missing or unreadable (incomplete)."""
    try:
        marker = json.loads((folder / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return marker if marker.get("format") == CHECKPOINT_FORMAT else None


def _write_marker(folder: Path, marker: dict) -> None:
    tmp = folder / f".{MARKER_FILE}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.write_text(json.dumps(marker, indent=1))
    _fsync(tmp)
    os.replace(tmp, folder / MARKER_FILE)
    _fsync(folder)


def complete_checkpoints(root: Path) -> list[tuple[int, Path, dict]]:
    """(step, folder, marker) of every complete checkpoint under ``root``, oldest first."""
    found = []
    if Path(root).is_dir():
        for folder in Path(root).iterdir():
            m = _NAME.fullmatch(folder.name)
            marker = read_marker(folder) if m and folder.is_dir() else None
            if marker is not None and (folder / STATE_FILE).is_file():
                found.append((int(m.group(1)), folder, marker))
    return sorted(found, key=lambda t: t[0])


def latest_checkpoint(root: Path) -> Path | None:
    """The complete checkpoint with the highest step (folders without a marker are ignored)."""
    found = complete_checkpoints(root)
    return found[-1][1] if found else None


def save_checkpoint(root: Path, state: dict[str, Any], step: int, epoch: int, keep: bool) -> Path:
    """Write ``state`` as checkpoint ``step`` atomically, then prune. Returns its folder.

    ``keep`` marks a periodic copy that pruning never removes. If a complete checkpoint of this
    step exists already (the same state: e.g. an epoch end that is also the --max-steps end) only
    its keep flag is updated.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:09d}"
    marker = read_marker(final)
    if marker is not None:
        if keep and not marker.get("keep"):
            _write_marker(final, marker | {"keep": True})
        return final
    if final.exists():  # debris of a write killed after its rename but before its marker
        shutil.rmtree(final)
    tmp = root / f".{final.name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()
    torch.save(state, tmp / STATE_FILE)
    _fsync(tmp / STATE_FILE)
    _fsync(tmp)
    os.rename(tmp, final)
    _fsync(root)
    _write_marker(final, {"format": CHECKPOINT_FORMAT, "step": step, "epoch": epoch, "keep": keep,
                          "sha256": sha256_file(final / STATE_FILE),
                          "bytes": (final / STATE_FILE).stat().st_size, "written_at": time.time()})
    prune(root)
    return final


def prune(root: Path) -> list[Path]:
    """Remove every complete checkpoint but the newest and the kept ones, and every incomplete
    folder (a killed write). Only the run's single writer calls this. Returns what it removed."""
    complete = complete_checkpoints(root)
    keep = {complete[-1][1]} if complete else set()
    keep |= {folder for _, folder, marker in complete if marker.get("keep")}
    removed = []
    for folder in Path(root).iterdir():
        if folder.is_dir() and folder not in keep and (_NAME.fullmatch(folder.name)
                                                      or folder.name.endswith(".tmp")):
            shutil.rmtree(folder)
            removed.append(folder)
    return removed


def load_checkpoint(folder: Path) -> dict[str, Any]:
    """Read a complete checkpoint (weights_only=True, onto the CPU) after checking its sha256."""
    folder = Path(folder)
    marker = read_marker(folder)
    if marker is None:
        raise FileNotFoundError(f"{folder} is not a complete checkpoint (no valid {MARKER_FILE})")
    if sha256_file(folder / STATE_FILE) != marker["sha256"]:
        raise ValueError(f"{folder / STATE_FILE} does not match the sha256 of its marker")
    return torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)


def capture_rng() -> dict[str, Any]:
    """Every global RNG state as tensors and plain types (loadable with weights_only=True)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss": py_gauss},
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))
