"""The per-subject pipeline: METHOD.md steps 1-6 as a pure function of (input bytes, config).

:func:`preprocess_volumes` is the pure array part. :func:`process_subject` is the task the dask
graph runs: it reads, checks, transforms and commits one subject inside an error boundary and
returns one manifest row. Deterministic input errors become a ``failed`` row; only transient I/O
errors escape, so the scheduler retries exactly those.
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import damt
from damt import geometry as geo
from damt.cache import manifest_row, read_store_attrs, write_subject_store
from damt.cache.store import discard_staging
from damt.config import DamtConfig, PreprocessConfig
from damt.errors import (
    RETRY_REASONS,
    BadLabelsError,
    BinaryMaskError,
    ConstantImageError,
    CorruptStatsError,
    EmptyForegroundError,
    GridMismatchError,
    MissingImageError,
    MissingParcellationError,
    NonFiniteError,
    SubjectError,
    UnknownLabelsError,
    write_error,
)
from damt.io import Volume, file_sha256, read_volume
from damt.io.files import file_stat
from damt.labels import LabelTable, remap
from damt.targets.fsstats import FsStatsError
from preprocess.discover import SubjectInput
from preprocess.targets import TargetPlan, subject_targets


@dataclass(frozen=True)
class Preprocessed:
    """One subject on the training grid. image float16 [X, Y, Z] in [0, 1]; atlas uint8 class ids,
    same shape; ``info`` JSON-serialisable facts (affines, crop box, pads, percentiles, counts)."""

    image: np.ndarray
    atlas: np.ndarray
    info: dict[str, Any]


def is_binary_mask(data: np.ndarray) -> bool:
    """True if the voxels are 0 and 1 only, both present (a brain mask, not a T1). An all-zero
    image is not a mask but an empty image, and fails later as such."""
    return bool(data.min() == 0 and data.max() == 1 and np.array_equal(data, data.astype(bool)))


def check_same_grid(a: Volume, b: Volume, atol_mm: float) -> None:
    """GridMismatchError unless ``a`` and ``b`` share shape and affine (within ``atol_mm``)."""
    if a.data.shape != b.data.shape:
        raise GridMismatchError(f"{b.path} has shape {b.data.shape} but {a.path} has {a.data.shape}; "
                                f"both must come from the same FreeSurfer run (same voxel grid)")
    if not np.allclose(a.affine, b.affine, atol=atol_mm, rtol=0):
        diff = float(np.abs(a.affine - b.affine).max())
        raise GridMismatchError(f"{b.path} and {a.path} have different affines (max difference {diff:.4g} "
                                f"mm); resample the parcellation onto the image grid or recheck the inputs")


_INT32 = np.iinfo(np.int32)


def label_ids(parc: Volume) -> Volume:
    """The parcellation as integer FreeSurfer ids (int32 unless stored narrower).

    A float parcellation holding whole numbers (``mri_convert -odt float``) is valid and is cast;
    one with fractions, NaN or inf, or ids beyond int32 (FreeSurfer's ids are int32, in practice
    below 16384) raises BadLabelsError.
    """
    ids = parc.data
    if ids.dtype.kind == "f":
        if not np.isfinite(ids).all() or not np.array_equal(ids, np.round(ids)):
            raise BadLabelsError(f"{parc.path}: parcellation values are not whole numbers; pass the "
                                 f"FreeSurfer aparc+aseg, not an interpolated copy")
    if ids.dtype.kind == "b":
        ids = ids.view(np.uint8)
    if ids.size and (ids.min() < _INT32.min or ids.max() > _INT32.max):
        raise BadLabelsError(f"{parc.path}: label ids between {ids.min():g} and {ids.max():g} lie beyond "
                             f"int32; FreeSurfer ids are int32 (below 16384): pass the aparc+aseg "
                             f"FreeSurfer wrote")
    if ids.dtype.kind == "f" or ids.dtype.itemsize > 4 or ids.dtype == np.uint32:
        ids = ids.astype(np.int32)
    return parc if ids is parc.data else Volume(ids, parc.affine, parc.path)


def preprocess_volumes(image: Volume, parc: Volume, cfg: PreprocessConfig, lut: np.ndarray) -> Preprocessed:
    """Steps 1-6 on two checked, co-registered volumes.

    Ordering invariants: labels are remapped before resampling (nearest-neighbour resampling
    commutes with a per-voxel relabelling, and uint8 classes are 4x cheaper to move than int32
    ids); percentiles are computed inside the brain on the resampled grid *before* padding, so
    the padding zeros never shift them.
    """
    check_same_grid(image, parc, cfg.grid_atol_mm)
    img = image.data
    if np.issubdtype(img.dtype, np.floating) and not np.isfinite(img).all():
        n_bad = int((~np.isfinite(img)).sum())
        raise NonFiniteError(f"{image.path}: {n_bad} NaN/inf voxels; fix or regenerate the image")
    ids = label_ids(parc).data
    classes, unknown = remap(ids, lut)
    if unknown and cfg.unknown_labels == "fail":
        listed = ", ".join(f"{k} ({v} voxels)" for k, v in sorted(unknown.items())[:10])
        raise UnknownLabelsError(f"{parc.path}: ids not in the label table: {listed}; extend the table "
                                 f"or set preprocess.unknown_labels: background")

    img, affine = geo.reorient(img, image.affine, cfg.orientation)
    classes, _ = geo.reorient(classes, image.affine, cfg.orientation)
    fg = img > cfg.foreground_threshold
    box = geo.foreground_box(fg, cfg.crop_margin_vox)
    if box is None:
        raise EmptyForegroundError(f"{image.path}: no voxel above {cfg.foreground_threshold}; the image "
                                   f"is empty (check that it is the skull-stripped T1)")
    img, crop_affine = geo.crop(img, affine, box)
    classes, _ = geo.crop(classes, affine, box)
    fg, _ = geo.crop(fg.view(np.uint8), affine, box)
    # On the input voxels, before resampling: trilinear interpolation blends a constant brain with
    # the zeros around it, so the resampled percentiles below would differ and never catch it.
    inside = img[fg.view(bool)]
    if inside.min() == inside.max():
        raise ConstantImageError(f"{image.path}: every brain voxel has the intensity {inside.min():g}; "
                                 f"not a T1 image (percentiles would all be equal)")

    t = cfg.spacing_mm
    img, rs_affine = geo.resample(img, crop_affine, t, cfg.image_interp_order)
    classes, _ = geo.resample(classes, crop_affine, t, 0, out_dtype=np.uint8)
    brain, _ = geo.resample(fg, crop_affine, t, 0, out_dtype=np.uint8)
    brain = brain.astype(bool)
    if not brain.any():
        raise EmptyForegroundError(f"{image.path}: the brain vanishes at {t} mm (too small)")
    lo, hi = geo.percentile_range(img, brain, cfg.percentile_low, cfg.percentile_high)
    if not hi > lo:
        raise ConstantImageError(f"{image.path}: brain intensities between the {cfg.percentile_low} and "
                                 f"{cfg.percentile_high} percentiles are all {lo:g}; not a T1 image")
    scaled = geo.scale_intensity(img, brain, lo, hi)
    resampled_shape = scaled.shape
    scaled, out_affine, pads = geo.pad_to_min(scaled, rs_affine, cfg.min_shape_vox)
    classes, _, _ = geo.pad_to_min(classes, rs_affine, cfg.min_shape_vox)
    info = {
        "affine": out_affine.tolist(), "original_affine": image.affine.tolist(),
        "original_axcodes": geo.axcodes(image.affine), "original_shape": list(image.data.shape),
        "original_spacing_mm": geo.voxel_sizes(image.affine).tolist(),
        "axcodes": geo.axcodes(out_affine), "crop_box_vox": [[s.start, s.stop] for s in box],
        "resampled_shape": list(resampled_shape), "pad_vox": [list(p) for p in pads],
        "percentile_values": [lo, hi], "brain_voxels": int(brain.sum()),
        "unknown_label_voxels": {str(k): v for k, v in sorted(unknown.items())},
    }
    return Preprocessed(image=scaled.astype(np.float16), atlas=classes, info=info)


def load_inputs(inp: SubjectInput, cfg: DamtConfig) -> tuple[Volume, Volume, str]:
    """Read and check a subject's T1 and parcellation; returns (image, parcellation, image_source).

    A binary 0/1 "brainmask" is replaced by ``data.fallback_image_name`` (e.g. norm.mgz) masked by
    it when ``preprocess.binary_mask_fallback`` allows, else BinaryMaskError.
    """
    if inp.image is None:
        raise MissingImageError(f"{inp.folder}/mri: none of {cfg.data.image_names} with endings "
                                f"{cfg.data.extensions}; is this a finished FreeSurfer subject?")
    if inp.parcellation is None:
        raise MissingParcellationError(f"{inp.folder}/mri: no {cfg.data.parcellation_name} file; run "
                                       f"FreeSurfer's recon-all to the end (or remove the subject)")
    limit = cfg.preprocess.max_voxels
    image = read_volume(inp.image, limit)
    parc = label_ids(read_volume(inp.parcellation, limit))
    source = inp.image.name
    if is_binary_mask(image.data):
        if not cfg.preprocess.binary_mask_fallback or inp.fallback_image is None:
            why = ("preprocess.binary_mask_fallback is false" if inp.fallback_image
                   else f"no {cfg.data.fallback_image_name} file beside it")
            raise BinaryMaskError(f"{inp.image} is a binary 0/1 brain mask, not a T1, and {why}")
        t1 = read_volume(inp.fallback_image, limit)
        check_same_grid(image, t1, cfg.preprocess.grid_atol_mm)
        image = Volume(np.where(image.data > 0, t1.data, 0).astype(t1.data.dtype), t1.affine, t1.path)
        source = f"{inp.fallback_image.name} masked by {inp.image.name}"
    return image, parc, source


def input_fingerprint(inp: SubjectInput, extra: str = "") -> tuple[str, str]:
    """(content hash, stat fingerprint) of a subject's input files plus ``extra`` (the digest of
    its imported CSV target rows).

    The stat fingerprint (size, mtime_ns per file) lets an unchanged subject be skipped without
    reading anything; the content hash decides when the stat changed but the bytes did not.
    """
    files = inp.input_files()
    content = {role: file_sha256(p) for role, p in sorted(files.items())} | {"extra": extra}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    return digest, stat_fingerprint(inp, extra)


def stat_fingerprint(inp: SubjectInput, extra: str = "") -> str:
    """The (size, mtime_ns) part of :func:`input_fingerprint` alone, without reading any file."""
    files = inp.input_files()
    # never raises: a FIFO or a dangling link gets a marker here and a typed failure in its task
    stat = {role: file_stat(p) for role, p in sorted(files.items())}
    return json.dumps(stat | {"extra": extra}, sort_keys=True)


def base_row(inp: SubjectInput, config_hash: str) -> dict[str, Any]:
    """The manifest row of a subject before the outcome is known (``failed``, no reason yet)."""
    return manifest_row(inp.subject_id, inp.cohort, status="failed", config_hash=config_hash)


def failed_row(inp: SubjectInput, config_hash: str, err: SubjectError) -> dict[str, Any]:
    """A ``failed`` manifest row for a typed subject error."""
    return base_row(inp, config_hash) | {"reason": err.reason, "message": err.message}


def process_subject(inp: SubjectInput, cfg: DamtConfig, table: LabelTable, plan: TargetPlan, cache: Path,
                    config_hash: str, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """The dask task: one subject in, one manifest row out (and, if ok, one committed store).

    previous: this subject's last manifest row, if any. When its input hash and config hash match
    and the store is still complete, nothing is rewritten (``status`` stays, ``seconds`` is the
    hashing time). Raises only TransientIOError (retried by the scheduler).
    """
    start = time.perf_counter()
    row = base_row(inp, config_hash)
    try:
        if inp.error is not None:
            raise inp.error
        digest = plan.subject_digest(inp.subject_id)
        # the stat first (it never raises): a subject whose files cannot be hashed (a FIFO, a
        # broken link) keeps it in its failed row, so the next run skips it while nothing changes
        row["input_stat"] = stat_fingerprint(inp, digest)
        row["input_hash"], row["input_stat"] = input_fingerprint(inp, digest)
        if is_unchanged(previous, row["input_hash"], config_hash, cache):
            return dict(previous) | {"input_stat": row["input_stat"]}
        image, parc, row["image_source"] = load_inputs(inp, cfg)
        out = preprocess_volumes(image, parc, cfg.preprocess, table.lookup())
        try:
            targets = subject_targets(plan, inp.subject_id, inp.stats_dir, parc.data,
                                      abs(float(np.linalg.det(parc.affine[:3, :3]))),
                                      out.image.astype(np.float32), out.atlas, cfg.preprocess.spacing_mm)
        except FsStatsError as err:
            raise CorruptStatsError(str(err)) from err
        attrs = out.info | {
            "subject_id": inp.subject_id, "cohort": inp.cohort, "spacing_mm": cfg.preprocess.spacing_mm,
            "source_paths": {k: str(v) for k, v in inp.input_files().items()},
            "image_source": row["image_source"], "input_hash": row["input_hash"], "config_hash": config_hash,
            "label_table": {"version": table.version, "sha256": table.sha256, "n_classes": table.n_classes},
            "software_version": damt.__version__}
        p = cfg.preprocess
        try:
            path = write_subject_store(cache, inp.subject_id, {"image": out.image, "atlas": out.atlas, **targets},
                                       attrs, p.chunk_vox, p.codec, p.clevel, slab_vox=p.slab_vox)
        except OSError as err:
            discard_staging(cache, inp.subject_id)  # no half-written store stays behind
            typed = write_error(err, f"writing the store of {inp.subject_id} under {cache}")
            if typed is None:
                raise
            raise typed from err
        row |= {"status": "ok", "shape": "x".join(map(str, out.image.shape)),
                "unknown_label_voxels": int(sum(out.info["unknown_label_voxels"].values())),
                "store": str(path.relative_to(cache))}
    except SubjectError as err:
        if err.transient:
            raise
        row |= {"status": "failed", "reason": err.reason, "message": err.message}
    except Exception as err:  # noqa: BLE001 - a bug must not stop the cohort either
        tb = traceback.format_exception_only(type(err), err)[-1].strip()
        row |= {"status": "failed", "reason": "internal_error", "message": f"{tb} (please report this)"}
    row["seconds"] = round(time.perf_counter() - start, 4)
    return row


def is_unchanged(previous: dict[str, Any] | None, input_hash: str, config_hash: str, cache: Path) -> bool:
    """True if ``previous`` was made from the same inputs and config and is still valid: a failed
    row (the same bytes fail the same way), or an ok row whose store is still complete."""
    if previous is None or previous.get("input_hash") != input_hash or previous.get("config_hash") != config_hash:
        return False
    if previous.get("status") == "failed":
        return previous.get("reason") not in RETRY_REASONS
    attrs = read_store_attrs(cache / previous["store"]) if previous.get("store") else None
    return attrs is not None and attrs.get("config_hash") == config_hash
