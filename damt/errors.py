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

#: every reason code the preprocess stage writes, for docs and QC.
REASONS = {cls.reason: cls.__doc__ for cls in (
    MissingImageError, MissingParcellationError, CorruptFileError, NotAnImageError, NotThreeDError,
    GridMismatchError, NoAffineError, NonFiniteError, EmptyForegroundError, ConstantImageError,
    UnknownLabelsError, BadLabelsError, CorruptStatsError, BinaryMaskError, DuplicateSubjectError, BadSubjectIdError,
    TransientIOError)}
REASONS["internal_error"] = "An unexpected error in DAMT itself (please report it with the message)."
