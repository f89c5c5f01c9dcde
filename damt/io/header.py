"""Read a volume's declared grid and voxel type from its header alone, before any data.

A 1 MB ``.mgz`` can decompress to a 1000³ volume, and a 200-byte ``.nii.gz`` header can declare
4000³ voxels: reading such a file costs many GB before anything can check it. :func:`check_header`
reads at most the first 540 decompressed bytes (NIfTI-2's header; NIfTI-1's is 348, MGH's 90),
through :func:`damt.io.files.open_regular`, and refuses a volume whose voxel count exceeds the
limit or whose voxel type is not a real scalar. nibabel's own loader is used only afterwards: for
``.mgz`` it decompresses the whole stream already at ``load`` (it seeks to the footer behind the
data), so the check must come first.

The format is taken from the file name, as nibabel takes it; a file whose bytes are of the other
format (a NIfTI renamed ``.mgz``) is refused with what it really is.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.freesurfer.mghformat import MGHError, MGHHeader
from nibabel.spatialimages import HeaderDataError

from damt.errors import CorruptFileError, NotAnImageError, TooLargeError, UnsupportedDtypeError
from damt.io.files import open_regular

_HEAD_BYTES = 540
_MGH_SUFFIXES = (".mgz", ".mgh")
_NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclass(frozen=True)
class Declared:
    """What a header declares: the data shape (all axes), the voxel dtype, and the format."""

    shape: tuple[int, ...]
    dtype: np.dtype
    kind: str  # "mgh" | "nifti1" | "nifti2"

    @property
    def voxels(self) -> int:
        return int(np.prod([int(n) for n in self.shape], dtype=object)) if self.shape else 0


def _head(path: Path) -> bytes:
    """The first bytes of the (decompressed, if gzip) file; never more than _HEAD_BYTES."""
    with open_regular(path) as f:
        raw = f.read(2)
        f.seek(0)
        if raw != b"\x1f\x8b":
            return f.read(_HEAD_BYTES)
        try:
            with gzip.GzipFile(fileobj=f) as gz:
                return gz.read(_HEAD_BYTES)
        except (OSError, EOFError, zlib.error) as err:
            raise CorruptFileError(f"{path}: the gzip stream cannot be decompressed ({err}); "
                                   f"re-export or re-copy the file") from err


def _nifti_kind(head: bytes) -> str | None:
    for order in "<>":
        if len(head) >= 4:
            size = struct.unpack(f"{order}i", head[:4])[0]
            if size == 348 and len(head) >= 348 and head[344:347] in (b"n+1", b"ni1"):
                return "nifti1"
            if size == 540 and len(head) >= 540 and head[4:7] in (b"n+2", b"ni2"):
                return "nifti2"
    return None


def _mgh_like(head: bytes) -> bool:
    return len(head) >= 90 and struct.unpack(">i", head[:4])[0] == 1


def _expected(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(_MGH_SUFFIXES):
        return "mgh"
    if name.endswith(_NIFTI_SUFFIXES):
        return "nifti"
    raise NotAnImageError(f"{path}: not a .mgz/.mgh/.nii/.nii.gz file")


def read_declared(path: str | Path) -> Declared:
    """The shape and dtype ``path``'s header declares, read without touching its data.

    Raises NotRegularFileError, NotAnImageError (not an image of the format its name says, e.g. a
    NIfTI named ``.mgz`` or random bytes), CorruptFileError (an undecodable gzip stream),
    UnsupportedDtypeError (a voxel type nibabel cannot read, like NIfTI's 1-bit DT_BINARY).
    """
    path = Path(path)
    want = _expected(path)
    head = _head(path)
    nifti = _nifti_kind(head)
    if want == "mgh":
        if not _mgh_like(head):
            what = ("its bytes are a NIfTI image: rename it .nii.gz (or .nii)" if nifti else
                    "its version field is not 1: check that the file is what its name says")
            raise NotAnImageError(f"{path}: not a readable MGH image ({what})")
        try:
            hdr = MGHHeader(head[:90], check=True)
            shape, dtype = tuple(int(n) for n in hdr.get_data_shape()), hdr.get_data_dtype()
        except KeyError as err:
            raise UnsupportedDtypeError(f"{path}: MGH voxel type code {err} is not one nibabel reads "
                                        f"(uchar, short, int, float)") from None
        except (MGHError, HeaderDataError, ValueError) as err:
            raise NotAnImageError(f"{path}: not a readable MGH header ({err})") from None
        return Declared(shape, np.dtype(dtype), "mgh")
    if nifti is None:
        what = ("its bytes are an MGH image: rename it .mgz" if _mgh_like(head) else
                "no NIfTI magic: check that the file is what its name says")
        raise NotAnImageError(f"{path}: not a readable NIfTI image ({what})")
    klass = nib.Nifti1Header if nifti == "nifti1" else nib.Nifti2Header
    try:
        hdr = klass(head[:klass.sizeof_hdr], check=False)
        shape = tuple(int(n) for n in hdr.get_data_shape())
        dtype = np.dtype(hdr.get_data_dtype())
    except (HeaderDataError, KeyError, ValueError) as err:
        raise UnsupportedDtypeError(f"{path}: the NIfTI header's data type is not readable ({err})") from None
    return Declared(shape, dtype, nifti)


def check_dtype(path: str | Path, dtype: np.dtype) -> None:
    """UnsupportedDtypeError unless ``dtype`` is a real scalar number type (int, uint, float, bool)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "biuf" and dtype.itemsize > 0:
        return
    what = {"c": "complex-valued", "V": "a structured or 1-bit type (e.g. RGB or DT_BINARY)"}.get(
        dtype.kind, f"of kind {dtype.kind!r}")
    raise UnsupportedDtypeError(f"{path}: voxel type {dtype} is {what}, not a real scalar; DAMT reads "
                                f"grayscale T1 images and integer label maps (convert the file, e.g. "
                                f"mri_convert -odt float, or take the magnitude of a complex image)")


def check_header(path: str | Path, max_voxels: int | None) -> Declared:
    """Read and check ``path``'s header before any of its data is read.

    Raises TooLargeError if the declared voxel count exceeds ``max_voxels`` (None: no limit),
    UnsupportedDtypeError for a voxel type that is not a real scalar, and the errors of
    :func:`read_declared`.
    """
    declared = read_declared(path)
    check_dtype(path, declared.dtype)
    if max_voxels is not None and declared.voxels > max_voxels:
        gib = declared.voxels * declared.dtype.itemsize / 2 ** 30
        raise TooLargeError(f"{path}: the header declares a {'x'.join(map(str, declared.shape))} grid of "
                            f"{declared.dtype} ({declared.voxels:,} voxels, {gib:.1f} GiB decompressed), "
                            f"more than preprocess.max_voxels = {max_voxels:,}; refused before reading. "
                            f"Raise preprocess.max_voxels if the volume is genuine")
    return declared
