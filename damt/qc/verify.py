"""Check one subject store against the cache contract (docs/preprocessing.md, docs/qc.md).

Every array is read in full: a chunk overwritten or deleted after the build (zarr reads a missing
chunk as the fill value, silently) shows up only as a hash mismatch, so the hashes are the check
that matters; dtypes, shapes and ranges say *what* is wrong in terms a person can act on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from damt.cache import STORE_FORMAT, array_sha256
from damt.cache.targets import KINDS

#: the dtype every array of a store must have
DTYPES = {"image": np.dtype(np.float16), "atlas": np.dtype(np.uint8)} | {
    k: np.dtype(np.float32) for k in KINDS} | {f"{k}_present": np.dtype(bool) for k in KINDS}


@dataclass(frozen=True)
class Expected:
    """What one ok manifest row promises about its store."""

    subject_id: str
    config_hash: str
    shape: str               # the manifest's "XxYxZ"
    min_shape_vox: int
    n_classes: int
    target_sizes: dict | None  # kind -> number of columns in targets.json; None: not known, not checked


def _attrs(path: Path) -> tuple[dict | None, str]:
    """(attributes, problem): the group's attributes from zarr.json, or None with the reason."""
    if not path.is_dir():
        return None, "store folder is missing"
    try:
        meta = json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError) as err:
        return None, f"zarr.json unreadable ({type(err).__name__}: {err})"
    attrs = meta.get("attributes", {})
    if attrs.get("status") != "complete":
        return None, f"no completion marker (status = {attrs.get('status')!r}, expected 'complete')"
    return attrs, ""


def _check_attrs(attrs: dict, exp: Expected) -> list[str]:
    problems = []
    if attrs.get("store_format") != STORE_FORMAT:
        problems.append(f"store_format {attrs.get('store_format')!r}, expected {STORE_FORMAT!r}")
    if attrs.get("subject_id") != exp.subject_id:
        problems.append(f"attrs subject_id {attrs.get('subject_id')!r}, manifest says {exp.subject_id!r}")
    if attrs.get("config_hash") != exp.config_hash:
        problems.append(f"config_hash {attrs.get('config_hash')!r} differs from the manifest's "
                        f"{exp.config_hash!r}")
    if not isinstance(attrs.get("array_sha256"), dict):
        problems.append("attrs have no array_sha256 table")
    return problems


def _check_array(name: str, arr: np.ndarray, exp: Expected) -> list[str]:
    """Range checks of one array (the dtype and the hash are checked by the caller)."""
    problems = []
    if name == "image":
        finite = np.isfinite(arr)
        if not finite.all():
            problems.append(f"image has {int((~finite).sum())} NaN/inf voxels")
        vals = arr[finite]
        if vals.size and (vals.min() < 0 or vals.max() > 1):
            problems.append(f"image values span [{float(vals.min()):g}, {float(vals.max()):g}], "
                            f"outside [0, 1]")
    elif name == "atlas":
        if arr.size and int(arr.max()) >= exp.n_classes:
            problems.append(f"atlas holds class {int(arr.max())}; classes are 0..{exp.n_classes - 1}")
    elif name in KINDS:
        if not np.isfinite(arr).all():
            problems.append(f"{name} holds NaN/inf (a missing value must be 0 with present = false)")
    return problems


def verify_store(path: Path, exp: Expected) -> list[str]:
    """Problems of the store at ``path`` (empty list: it matches the contract).

    Checks: completion marker, store format, subject id and config hash against the manifest;
    every contract array present with its dtype; image and atlas on one 3-D grid equal to the
    manifest's shape with every axis >= ``min_shape_vox``; target lengths equal to targets.json
    and their presence masks; image in [0, 1] without NaN; atlas < ``n_classes``; targets finite
    and 0 where not present; each array's sha256 equal to the one recorded at build time.
    """
    attrs, why = _attrs(Path(path))
    if attrs is None:
        return [why]
    problems = _check_attrs(attrs, exp)
    hashes = attrs.get("array_sha256") if isinstance(attrs.get("array_sha256"), dict) else {}
    try:
        group = zarr.open_group(store=str(path), mode="r", zarr_format=3)
        present = set(group.array_keys())
    except Exception as err:  # noqa: BLE001 - a broken store is a finding, not a crash
        return problems + [f"cannot open as a zarr v3 group ({type(err).__name__}: {err})"]
    arrays: dict[str, np.ndarray] = {}
    for name, dtype in DTYPES.items():
        if name not in present:
            problems.append(f"array {name!r} is missing")
            continue
        za = group[name]
        if np.dtype(za.dtype) != dtype:
            problems.append(f"{name} dtype {np.dtype(za.dtype)}, expected {dtype}")
        try:
            arr = za[...]
        except Exception as err:  # noqa: BLE001 - e.g. a chunk file that no longer decodes
            problems.append(f"{name} cannot be read ({type(err).__name__}: {err})")
            continue
        arrays[name] = arr
        if name not in hashes:
            problems.append(f"no recorded sha256 for {name}")
        elif array_sha256(arr) != hashes[name]:
            problems.append(f"{name} sha256 differs from the one recorded at build time "
                            f"(the data changed after preprocessing)")
        problems += _check_array(name, arr, exp)
    extra = sorted(set(hashes) - set(DTYPES))
    if extra:
        problems.append(f"hashes recorded for arrays outside the contract: {extra}")
    problems += _check_shapes(arrays, exp)
    return problems


def _check_shapes(arrays: dict[str, np.ndarray], exp: Expected) -> list[str]:
    problems = []
    image, atlas = arrays.get("image"), arrays.get("atlas")
    if image is not None:
        if image.ndim != 3:
            problems.append(f"image is {image.ndim}-D, expected 3-D")
        elif min(image.shape) < exp.min_shape_vox:
            problems.append(f"image shape {image.shape} has an axis < min_shape_vox {exp.min_shape_vox}")
        if "x".join(map(str, image.shape)) != exp.shape:
            problems.append(f"image shape {'x'.join(map(str, image.shape))}, manifest says {exp.shape}")
        if atlas is not None and atlas.shape != image.shape:
            problems.append(f"atlas shape {atlas.shape} differs from image shape {image.shape}")
    for kind in KINDS:
        values, mask = arrays.get(kind), arrays.get(f"{kind}_present")
        for name, arr in ((kind, values), (f"{kind}_present", mask)):
            if arr is not None and arr.ndim != 1:
                problems.append(f"{name} is {arr.ndim}-D, expected 1-D")
            elif arr is not None and exp.target_sizes is not None and len(arr) != exp.target_sizes.get(kind, 0):
                problems.append(f"{name} shape {arr.shape}, targets.json names {exp.target_sizes.get(kind, 0)} columns")
        if values is not None and mask is not None and values.shape != mask.shape:
            problems.append(f"{kind} shape {values.shape} differs from {kind}_present shape {mask.shape}")
        if values is not None and mask is not None and values.shape == mask.shape:
            stray = int(np.count_nonzero(values[~mask]))
            if stray:
                problems.append(f"{kind} has {stray} nonzero values where present = false")
    return problems
