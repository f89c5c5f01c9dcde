"""Read one volume completely and check it, raising typed SubjectErrors.

nibabel opens a truncated ``.nii.gz``/``.mgz`` happily (only the header is read) and fails later
on data access, so :func:`read_volume` always forces the full read inside the caller's per-subject
error boundary. Before that, the header alone is checked (damt/io/header.py): the declared voxel
count against a limit and the voxel type, so a decompression bomb is refused without being read.
MONAI's LoadImage does not read ``.mgz``; nibabel reads both formats.
"""

from __future__ import annotations

import errno
import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.freesurfer.mghformat import MGHError
from nibabel.spatialimages import HeaderDataError

from damt.durable import sha256_stream
from damt.errors import (
    CorruptFileError,
    NoAffineError,
    NotAnImageError,
    NotThreeDError,
    TooLargeError,
    TransientIOError,
)
from damt.io.files import open_regular
from damt.io.header import check_dtype, check_header

# errno values of I/O failures that are worth retrying (network file systems, busy devices)
_TRANSIENT_ERRNO = {errno.EIO, errno.EAGAIN, errno.ETIMEDOUT, errno.ESTALE, errno.EBUSY,
                    errno.ECONNRESET, errno.EINTR}


@dataclass(frozen=True)
class Volume:
    """A fully read 3-D volume: ``data`` [X, Y, Z] in its stored dtype, ``affine`` float64 [4, 4]."""

    data: np.ndarray
    affine: np.ndarray
    path: str


def _io_error(path: Path, err: OSError, what: str) -> Exception:
    if isinstance(err, gzip.BadGzipFile):
        return CorruptFileError(f"{path}: {what}: the gzip stream is damaged ({err}); "
                                f"re-export or re-copy the file")
    if err.errno in _TRANSIENT_ERRNO:
        return TransientIOError(f"{path}: {what}: transient I/O error ({err}); it will be retried")
    return CorruptFileError(f"{path}: {what}: {err}")


def file_sha256(path: str | Path) -> str:
    """sha256 hex digest of a regular file's bytes (read in 1 MiB blocks). NotRegularFileError for
    a FIFO, device, dangling or looping link (never opened in a way that could block)."""
    try:
        with open_regular(path) as f:
            return sha256_stream(f, 1 << 20)
    except OSError as err:
        raise _io_error(Path(path), err, "reading for the input hash") from err


def read_volume(path: str | Path, max_voxels: int | None = None) -> Volume:
    """Read ``path`` completely; squeeze a singleton 4th axis.

    The header is checked first (:func:`damt.io.header.check_header`): TooLargeError when it
    declares more than ``max_voxels`` voxels (None: no limit), UnsupportedDtypeError for RGB,
    complex or 1-bit voxels, NotRegularFileError for a FIFO, device or broken link.
    Then raises NotAnImageError (not an image format), CorruptFileError (truncated or undecodable
    data), NotThreeDError (4-D with more than one volume, or fewer than 3 axes), NoAffineError
    (NIfTI with qform_code and sform_code both 0, or a non-invertible affine), TransientIOError.
    """
    path = Path(path)
    try:
        check_header(path, max_voxels)
    except OSError as err:
        raise _io_error(path, err, "reading the header") from err
    try:
        img = nib.load(str(path))
    except (EOFError, zlib.error) as err:
        # nibabel seeks to the MGH footer at load time, so a truncated .mgz fails here already
        raise CorruptFileError(f"{path}: the file ends early ({type(err).__name__}: {err}); it is "
                               f"probably truncated, re-export or re-copy it") from err
    except (ImageFileError, MGHError, HeaderDataError, KeyError, ValueError, TypeError) as err:
        raise NotAnImageError(f"{path}: not a readable NIfTI/MGH image ({err}); check that the file "
                              f"is what its name says") from err
    except OSError as err:
        if isinstance(err, gzip.BadGzipFile) or err.errno is None:
            raise NotAnImageError(f"{path}: not a readable NIfTI/MGH image ({err})") from err
        raise _io_error(path, err, "opening") from err
    try:
        data = np.asanyarray(img.dataobj)  # forces the full read and decompression
    except MemoryError as err:  # the header passed the limit, but this machine has less memory
        raise TooLargeError(f"{path}: not enough memory to read its {img.shape} voxels; lower "
                            f"preprocess.max_voxels or give the workers more memory") from err
    except (EOFError, zlib.error, ValueError) as err:
        raise CorruptFileError(f"{path}: the image data cannot be read completely ({type(err).__name__}: "
                               f"{err}); the file is probably truncated, re-export or re-copy it") from err
    except OSError as err:
        raise _io_error(path, err, "reading the image data") from err

    header = img.header
    if isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        if int(header["qform_code"]) == 0 and int(header["sform_code"]) == 0:
            raise NoAffineError(f"{path}: qform_code and sform_code are both 0, so the voxel-to-world "
                                f"geometry is unknown; fix the header (e.g. fslorient) and rerun")
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise NoAffineError(f"{path}: the affine is not finite or not invertible: {affine.tolist()}")

    check_dtype(path, data.dtype)  # the header said so already; a belt for formats that differ
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise NotThreeDError(f"{path}: expected a 3-D volume, got shape {tuple(data.shape)}; pass one "
                             f"volume (a singleton 4th axis is accepted)")
    if not data.dtype.isnative:  # MGH stores big-endian; native order makes every later pass cheaper
        data = data.astype(data.dtype.newbyteorder("="))
    return Volume(data=np.asarray(data), affine=affine, path=str(path))
