"""Hostile subject folders (issue 12), built from a valid synthetic subject with one defect each.

Every case names the reason its subject must end with (``"ok"`` for inputs that are valid despite
looking odd). ``make_hostile_case(root, kind)`` writes ``<root>/hostile-<kind>``. Files are small
(the base subject is 48³) except the decompression bomb, which is ~1 MB on disk and declares a
1000³ grid; it is written as a multi-member gzip (each member a compressed run of zeros, which any
gzip reader concatenates) so that building it takes well under a second.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.freesurfer.mghformat import DATA_OFFSET, MGHHeader

from damt.synth import conformed_affine, make_subject

SHAPE = (48, 48, 48)

#: kind -> reason its subject must end with
HOSTILE = {
    "bomb": "too_large",                 # 1 MB .mgz that decompresses to 1000³
    "huge-header": "too_large",          # .nii.gz header declaring 4000³
    "fifo-image": "not_a_file",          # mri/brainmask.mgz is a FIFO (opening it would block)
    "zero-image": "not_a_file",          # mri/brainmask.mgz -> /dev/zero (reading it never ends)
    "fifo-stats": "not_a_file",          # stats/aseg.stats is a FIFO
    "zero-stats": "not_a_file",          # stats/lh.aparc.stats -> /dev/zero
    "dangling-stats": "not_a_file",      # stats/aseg.stats -> a file that does not exist
    "loop-stats": "not_a_file",          # stats/x.stats -> itself
    "random-gzip": "not_an_image",       # gzip of random bytes named .mgz
    "nifti-as-mgz": "not_an_image",      # a NIfTI file renamed .mgz
    "rgb": "unsupported_dtype",          # RGB24 NIfTI T1
    "complex": "unsupported_dtype",      # complex64 NIfTI T1
    "binary-parc": "unsupported_dtype",  # DT_BINARY (1-bit) NIfTI parcellation
    "huge-ids": "bad_parcellation",      # int64 parcellation holding ids beyond int32
    "constant-brain": "constant_image",  # every brain voxel 100, zeros around it
    "float-parc": "ok",                  # parcellation stored as float32 whole numbers (valid)
}


def hostile_id(kind: str) -> str:
    return f"hostile-{kind}"


def write_bomb(path: Path, shape=(1000, 1000, 1000)) -> Path:
    """A uint8 MGH volume of zeros of ``shape``, gzip-compressed to ~1 MB per 1000³ voxels."""
    hdr = MGHHeader()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(np.uint8)
    head = hdr.binaryblock
    n, chunk = int(np.prod(shape)), 1 << 24
    run = gzip.compress(bytes(chunk), 9, mtime=0)
    parts = [gzip.compress(head[:90] + bytes(DATA_OFFSET - 90), 9, mtime=0), *[run] * (n // chunk),
             gzip.compress(bytes(n % chunk) + head[90:], 9, mtime=0)]
    path.write_bytes(b"".join(parts))
    return path


def _nifti(path: Path, data: np.ndarray, affine: np.ndarray, dtype=None) -> None:
    img = nib.Nifti1Image(data, affine, dtype=dtype)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))


def _replace_mgz(mri: Path, stem: str) -> None:
    (mri / f"{stem}.mgz").unlink()


def make_hostile_case(root: Path, kind: str, seed: int = 0) -> str:
    """Write subject ``hostile-<kind>`` under ``root``; returns its id."""
    if kind not in HOSTILE:
        raise ValueError(f"unknown hostile case {kind!r}")
    sid = hostile_id(kind)
    folder = make_subject(root, sid, seed=seed, shape=SHAPE)
    mri, stats = folder / "mri", folder / "stats"
    t1 = np.asarray(nib.load(str(mri / "brainmask.mgz")).dataobj)
    lab = np.asarray(nib.load(str(mri / "aparc+aseg.mgz")).dataobj)
    aff = conformed_affine(SHAPE)
    if kind == "bomb":
        write_bomb(mri / "brainmask.mgz")
    elif kind == "huge-header":
        _replace_mgz(mri, "brainmask")
        hdr = nib.Nifti1Header()
        hdr.set_data_shape((4000, 4000, 4000))
        hdr.set_data_dtype(np.uint8)
        hdr.set_sform(aff, code=1)
        with gzip.open(mri / "brainmask.nii.gz", "wb") as f:  # a header and 1 kB of data
            f.write(hdr.binaryblock + bytes(4) + bytes(1024))
    elif kind in ("fifo-image", "zero-image"):
        _replace_mgz(mri, "brainmask")
        if kind == "fifo-image":
            os.mkfifo(mri / "brainmask.mgz")
        else:
            os.symlink("/dev/zero", mri / "brainmask.mgz")
    elif kind == "fifo-stats":
        (stats / "aseg.stats").unlink()
        os.mkfifo(stats / "aseg.stats")
    elif kind == "zero-stats":
        (stats / "lh.aparc.stats").unlink()
        os.symlink("/dev/zero", stats / "lh.aparc.stats")
    elif kind == "dangling-stats":
        (stats / "aseg.stats").unlink()
        os.symlink(stats / "gone.stats.bak", stats / "aseg.stats")
    elif kind == "loop-stats":
        os.symlink("x.stats", stats / "x.stats")
    elif kind == "random-gzip":
        (mri / "brainmask.mgz").write_bytes(gzip.compress(np.random.default_rng(seed).bytes(8192), mtime=0))
    elif kind == "nifti-as-mgz":
        _nifti(mri / "brainmask.nii.gz", t1, aff)
        os.replace(mri / "brainmask.nii.gz", mri / "brainmask.mgz")
    elif kind == "rgb":
        _replace_mgz(mri, "brainmask")
        rgb = np.zeros(SHAPE, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
        rgb["R"] = rgb["G"] = rgb["B"] = t1
        _nifti(mri / "brainmask.nii.gz", rgb, aff)
    elif kind == "complex":
        _replace_mgz(mri, "brainmask")
        _nifti(mri / "brainmask.nii.gz", t1.astype(np.complex64), aff)
    elif kind == "binary-parc":
        _replace_mgz(mri, "aparc+aseg")
        hdr = nib.Nifti1Header()
        hdr.set_data_shape(SHAPE)
        hdr.set_data_dtype(np.uint8)
        hdr.set_sform(aff, code=1)
        block = bytearray(hdr.binaryblock)
        struct.pack_into("<hh", block, 70, 1, 1)  # datatype DT_BINARY, bitpix 1
        with gzip.open(mri / "aparc+aseg.nii.gz", "wb") as f:
            f.write(bytes(block) + bytes(4) + bytes(int(np.prod(SHAPE)) // 8))
    elif kind == "huge-ids":
        _replace_mgz(mri, "aparc+aseg")
        ids = lab.astype(np.int64)
        ids[ids == 2] = 2 ** 40  # left cerebral white matter gets an id no FreeSurfer run writes
        _nifti(mri / "aparc+aseg.nii.gz", ids, aff, dtype=np.int64)
    elif kind == "constant-brain":
        nib.save(nib.MGHImage(np.where(t1 > 0, 100, 0).astype(np.uint8), aff), str(mri / "brainmask.mgz"))
    elif kind == "float-parc":
        nib.save(nib.MGHImage(lab.astype(np.float32), aff), str(mri / "aparc+aseg.mgz"))
    return sid


def make_hostile_cohort(root: Path, kinds=tuple(HOSTILE)) -> list[str]:
    """Every hostile case under ``root``; returns their ids."""
    return [make_hostile_case(root, kind) for kind in kinds]
