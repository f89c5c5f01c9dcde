"""Reading FreeSurfer volumes (.mgz, .nii, .nii.gz) with nibabel, fully and with checks."""

from damt.io.volumes import Volume, file_sha256, read_volume

__all__ = ["Volume", "file_sha256", "read_volume"]
