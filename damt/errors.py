"""Typed per-subject errors. Each carries the ``reason`` code written to the manifest.

A subject error means "this subject's inputs are bad": it becomes a ``failed`` manifest row and
never stops the cohort. ``transient`` errors (I/O that may succeed on a retry) are the only ones
the scheduler retries; deterministic input errors are not retried.
"""

from __future__ import annotations


class SubjectError(Exception):
    """Base class: a subject cannot be preprocessed. ``reason`` is the manifest's typed code."""

    reason = "error"
    transient = False

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class CacheBusyError(RuntimeError):
    """Another preprocess run holds the cache's lock (not a subject error: the whole run stops)."""


class CacheWriteError(RuntimeError):
    """The cache cannot be written (full disk, read-only): the whole run stops, with what to do."""


class ManifestError(RuntimeError):
    """``manifest.parquet`` exists but cannot be read (truncated, damaged); says how to recover."""


class TargetsFileError(ValueError):
    """``<cache>/targets.json`` is missing or cannot be read; says how to get a good one."""


class TargetsFileMissingError(TargetsFileError, FileNotFoundError):
    """``<cache>/targets.json`` does not exist (a FileNotFoundError too, as it always was)."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (e.g. the disk is full); nothing partial was left behind."""


class CorruptCheckpointError(ValueError):
    """A complete checkpoint's ``state.pt`` does not match its marker or cannot be read."""


class NonFiniteStateError(RuntimeError):
    """The model's parameters are not finite: such a state is never saved as a checkpoint."""


def _make(name: str, reason: str, doc: str, transient: bool = False) -> type[SubjectError]:
    return type(name, (SubjectError,), {"reason": reason, "transient": transient, "__doc__": doc})


MissingImageError = _make("MissingImageError", "missing_image", "No T1 image file was found.")
MissingParcellationError = _make("MissingParcellationError", "missing_parcellation",
                                 "No parcellation (aparc+aseg) file was found.")
CorruptFileError = _make("CorruptFileError", "corrupt_file",
                         "The file is an image format but its data cannot be read (e.g. truncated).")
NotAnImageError = _make("NotAnImageError", "not_an_image", "The file is not a readable image at all.")
NotThreeDError = _make("NotThreeDError", "not_3d", "The volume is not 3-D (a singleton 4th axis is fine).")
GridMismatchError = _make("GridMismatchError", "grid_mismatch",
                          "Image and parcellation are not on the same voxel grid.")
NoAffineError = _make("NoAffineError", "no_affine", "The file has no usable voxel-to-world affine.")
NonFiniteError = _make("NonFiniteError", "nonfinite_voxels", "The image holds NaN or inf voxels.")
EmptyForegroundError = _make("EmptyForegroundError", "empty_foreground", "The image has no brain voxels.")
ConstantImageError = _make("ConstantImageError", "constant_image",
                           "The brain voxels all have one intensity.")
UnknownLabelsError = _make("UnknownLabelsError", "unknown_labels",
                           "The parcellation holds ids that are not in the label table.")
CorruptStatsError = _make("CorruptStatsError", "corrupt_stats",
                          "A FreeSurfer stats file is malformed (it cannot be parsed).")
BadLabelsError = _make("BadLabelsError", "bad_parcellation",
                       "The parcellation is not integer-valued.")
BinaryMaskError = _make("BinaryMaskError", "binary_mask_image",
                        "The T1 is a binary 0/1 mask and no fallback T1 may be used.")
DuplicateSubjectError = _make("DuplicateSubjectError", "duplicate_subject_id",
                              "The subject id is already taken by another cohort.")
BadSubjectIdError = _make("BadSubjectIdError", "bad_subject_id",
                          "The subject id is not allowed (it could escape the cache folder).")
TransientIOError = _make("TransientIOError", "transient_io",
                         "An I/O error that may succeed when retried.", transient=True)
TooLargeError = _make("TooLargeError", "too_large",
                      "The file's header declares more voxels than preprocess.max_voxels allows "
                      "(refused before its data is read).")
UnsupportedDtypeError = _make("UnsupportedDtypeError", "unsupported_dtype",
                              "The voxel type is not a real scalar (RGB, complex, 1-bit or unknown).")
NotRegularFileError = _make("NotRegularFileError", "not_a_file",
                            "An input is not a regular file (a FIFO, device, socket, or a dangling "
                            "or looping symbolic link); it is never opened.")
WorkerDiedError = _make("WorkerDiedError", "worker_died",
                        "The worker process died while preprocessing this subject, also when it "
                        "ran alone (most often out of memory: see dask.memory_limit_gb).")
DiskFullError = _make("DiskFullError", "disk_full",
                      "The cache's file system is full (ENOSPC/EDQUOT) while writing the store.")
ReadOnlyError = _make("ReadOnlyError", "read_only",
                      "The cache cannot be written (read-only file system or no permission).")

#: failed rows with these reasons are retried by the next run even when nothing changed: their
#: cause lies outside the subject's bytes and the preprocess config
RETRY_REASONS = frozenset({"internal_error", "transient_io", "disk_full", "read_only"})


def write_error(err: OSError, what: str) -> SubjectError | None:
    """The typed error of an OSError raised while writing to the cache, or None if it is not one
    the user can act on (ENOSPC/EDQUOT -> disk_full; EROFS/EACCES/EPERM -> read_only)."""
    import errno  # noqa: PLC0415 - keep this module's import light

    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(f"{what}: disk full ({err.strerror or err}); free space on the cache's "
                             f"file system and rerun (this subject is retried)")
    if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return ReadOnlyError(f"{what}: the cache cannot be written ({err.strerror or err}); make it "
                             f"writable or pass another --cache, then rerun (this subject is retried)")
    return None

#: every reason code the preprocess stage writes, for docs and QC.
REASONS = {cls.reason: cls.__doc__ for cls in (
    MissingImageError, MissingParcellationError, CorruptFileError, NotAnImageError, NotThreeDError,
    GridMismatchError, NoAffineError, NonFiniteError, EmptyForegroundError, ConstantImageError,
    UnknownLabelsError, BadLabelsError, CorruptStatsError, BinaryMaskError, DuplicateSubjectError, BadSubjectIdError,
    TransientIOError, TooLargeError, UnsupportedDtypeError, NotRegularFileError, WorkerDiedError,
    DiskFullError, ReadOnlyError)}
REASONS["internal_error"] = "An unexpected error in DAMT itself (please report it with the message)."
