"""Checkpoints: atomic folders with a completion marker, the latest kept plus one every N epochs.

Layout: ``<run>/checkpoints/step_<000000123>/state.pt`` and ``COMPLETE.json``. A checkpoint is
written into a hidden temporary folder, fsynced, renamed to its final name, and only then given its
marker (itself written to a temporary name and renamed). Readers consider only folders with a
valid marker, so a run killed at any point leaves either the previous checkpoint or the new one,
never a partial file that looks whole. ``state.pt`` holds only tensors and plain Python types and is
read with ``torch.load(weights_only=True)``; the marker's sha256 is checked first.

A state with a non-finite floating-point value (a NaN parameter) is never saved, and pruning always
keeps the newest checkpoint marked finite, so a run that went bad cannot replace its last good
weights. A write that fails (a full disk) removes what it wrote and says so; partial temporary
folders of a killed write are removed before the next save and when a run resumes.
"""

from __future__ import annotations

import errno
import json
import random
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch

from damt.durable import atomic_write_text, publish_folder, sha256_file
from damt.errors import CheckpointWriteError, CorruptCheckpointError, NonFiniteStateError

CHECKPOINT_FORMAT = "damt-checkpoint-v1"
STATE_FILE, MARKER_FILE = "state.pt", "COMPLETE.json"
_NAME = re.compile(r"step_(\d{9})")


def read_marker(folder: Path) -> dict | None:
    """The marker of a checkpoint folder, or None if it is missing or unreadable (incomplete)."""
    try:
        marker = json.loads((folder / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return marker if marker.get("format") == CHECKPOINT_FORMAT else None


def _write_marker(folder: Path, marker: dict) -> None:
    atomic_write_text(folder / MARKER_FILE, json.dumps(marker, indent=1))


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


def nonfinite_values(obj: Any) -> tuple[int, int]:
    """(non-finite, total) floating-point values in the tensors of a nested state or module."""
    if isinstance(obj, torch.nn.Module):
        obj = list(obj.parameters())
    bad = total = 0
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            if item.is_floating_point() or item.is_complex():
                bad += int((~torch.isfinite(item.detach())).sum())
                total += item.numel()
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return bad, total


def clean_partial(root: Path) -> list[Path]:
    """Remove temporary folders of checkpoint writes that never finished (``.step_*.tmp``: a
    killed process or a full disk). Only the run's single writer calls this."""
    removed = []
    if Path(root).is_dir():
        for folder in Path(root).iterdir():
            if folder.name.startswith(".step_") and folder.name.endswith(".tmp"):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
    return removed


def _write_error(err: OSError, path: Path, step: int) -> CheckpointWriteError:
    full = err.errno in (errno.ENOSPC, errno.EDQUOT)
    what = "disk full" if full else (err.strerror or str(err))
    return CheckpointWriteError(
        f"could not write checkpoint step {step} to {path} ({what}); nothing partial was left behind "
        f"and the previous checkpoint is intact. {'Free space, then r' if full else 'R'}esume the run "
        f"with --resume")


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
    bad, total = nonfinite_values(state)
    if bad:
        raise NonFiniteStateError(f"refusing to save checkpoint step {step}: {bad} of {total} values of its "
                                  f"state are NaN or inf; the last checkpoint with finite values is "
                                  f"{latest_checkpoint(root)}")
    clean_partial(root)  # a failed earlier write must not hold the space this one needs
    if final.exists():  # debris of a write killed after its rename but before its marker
        shutil.rmtree(final)
    tmp = root / f".{final.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        tmp.mkdir()
        torch.save(state, tmp / STATE_FILE)
        publish_folder(tmp, final)  # fsync state.pt and the folder, rename, fsync checkpoints/
        _write_marker(final, {"format": CHECKPOINT_FORMAT, "step": step, "epoch": epoch, "keep": keep,
                              "finite": True, "sha256": sha256_file(final / STATE_FILE),
                              "bytes": (final / STATE_FILE).stat().st_size, "written_at": time.time()})
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if read_marker(final) is None:  # renamed but never marked: not a checkpoint, remove it
            shutil.rmtree(final, ignore_errors=True)
        raise _write_error(err, final, step) from err
    prune(root)
    return final


def prune(root: Path) -> list[Path]:
    """Remove every complete checkpoint but the newest, the kept ones and the newest marked finite,
    and every incomplete folder (a killed write). Only the run's single writer calls this. Returns
    what it removed."""
    complete = complete_checkpoints(root)
    keep = {complete[-1][1]} if complete else set()
    keep |= {folder for _, folder, marker in complete if marker.get("keep")}
    # the newest checkpoint known to hold finite values survives whatever came after it
    finite = [folder for _, folder, marker in complete if marker.get("finite") is True]
    keep |= set(finite[-1:])
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
    hint = ("the file was damaged after it was written (e.g. truncated by a copy); remove this "
            "checkpoint folder to use the one before it")
    try:
        if sha256_file(folder / STATE_FILE) != marker["sha256"]:
            raise CorruptCheckpointError(f"{folder / STATE_FILE} does not match the sha256 of its marker: {hint}")
        return torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, KeyError) as err:
        raise CorruptCheckpointError(f"{folder / STATE_FILE} cannot be read ({type(err).__name__}: {err}): "
                                     f"{hint}") from err


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
