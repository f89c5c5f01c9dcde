"""The original on-the-fly MONAI chain (DESIGN.md), kept only as the benchmarks' baseline.

The research code ran this for every training sample: LoadImaged -> EnsureChannelFirstd ->
CropForegroundd -> Spacingd 1.25 -> SpatialPadd 128 -> ScaleIntensityRangePercentilesd -> label
remap -> crops. ``LoadImaged`` is given nibabel's reader explicitly because MONAI's automatic reader
choice does not accept ``.mgz``. It is reproduced faithfully, not fixed (it still scales over the
padded volume, for instance); DAMT's own pipeline is in ``preprocess.subject``. The CLI (app layer) hands
:func:`monai_chain` to both stages' benchmarks, which never import each other.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from damt.config import DamtConfig
from damt.labels import LabelTable


def monai_chain(cfg: DamtConfig, table: LabelTable, crops: bool = True):
    """The baseline transform chain over a dict with keys ``image`` and ``label`` (file paths).

    With ``crops`` it ends in one random global crop and one random local crop of each volume,
    as a training sample did; without, it stops after the label remap (the preprocessing part).
    """
    from monai.data import NibabelReader
    from monai.transforms import (
        Compose,
        CropForegroundd,
        EnsureChannelFirstd,
        Lambdad,
        LoadImaged,
        RandSpatialCropd,
        ScaleIntensityRangePercentilesd,
        Spacingd,
        SpatialPadd,
    )

    p, v = cfg.preprocess, cfg.views
    lut = table.lookup()
    keys = ["image", "label"]
    steps: list[Any] = [
        LoadImaged(keys=keys, reader=NibabelReader(), image_only=True),
        EnsureChannelFirstd(keys=keys),
        CropForegroundd(keys=keys, source_key="image", allow_smaller=True),
        Spacingd(keys=keys, pixdim=(p.spacing_mm,) * 3, mode=("bilinear", "nearest")),
        SpatialPadd(keys=keys, spatial_size=(p.min_shape_vox,) * 3),
        ScaleIntensityRangePercentilesd(keys="image", lower=p.percentile_low, upper=p.percentile_high,
                                        b_min=0.0, b_max=1.0, clip=True),
        Lambdad(keys="label", func=lambda x: lut[np.asarray(x, dtype=np.int64)]),
    ]
    if crops:
        steps += [RandSpatialCropd(keys=keys, roi_size=(v.global_crop_vox,) * 3, random_size=False),
                  RandSpatialCropd(keys=keys, roi_size=(v.local_crop_vox,) * 3, random_size=False)]
    return Compose(steps)
