"""Deterministic synthetic FreeSurfer-like subjects: the demo cohort and bad-input test cases.

A subject is a brain-shaped ellipsoid on a FreeSurfer conformed grid (1 mm, LIA): a cortex shell cut
into Desikan sectors, white matter, ventricles, deep nuclei, cerebellum, brain stem, a few voxels of
corpus callosum / choroid plexus (``damt-v1`` ids only); a T1 ``brainmask`` with FreeSurfer contrast
(WM ~110, GM ~70, CSF ~30), noise and a smooth bias; ``stats/*.stats`` in FreeSurfer 6's exact layout
with values computed from the volumes. All randomness comes from ``np.random.default_rng(seed)``:
the same arguments write the same bytes (nibabel's gzip headers carry no time or name).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

DEFAULT_SHAPE = (160, 160, 160)
BAD_SHAPE = (64, 64, 64)  # small base subject for bad cases: fast, still crops/pads like a real one

BAD_CASES = ("truncated_nii", "truncated_mgz", "not_an_image", "missing_parcellation", "grid_mismatch",
             "affine_mismatch", "four_d", "singleton_4d", "nonfinite", "constant", "empty",
             "unknown_labels", "no_affine", "binary_mask")

# Desikan regions in id order (1001..1035 without 1004 'corpuscallosum', which FreeSurfer 6 never
# assigns); right hemisphere = left id + 1000.
DESIKAN = ("bankssts caudalanteriorcingulate caudalmiddlefrontal cuneus entorhinal fusiform "
           "inferiorparietal inferiortemporal isthmuscingulate lateraloccipital lateralorbitofrontal "
           "lingual medialorbitofrontal middletemporal parahippocampal paracentral parsopercularis "
           "parsorbitalis parstriangularis pericalcarine postcentral posteriorcingulate precentral "
           "precuneus rostralanteriorcingulate rostralmiddlefrontal superiorfrontal superiorparietal "
           "superiortemporal supramarginal frontalpole temporalpole transversetemporal insula").split()
DESIKAN_IDS = tuple(i for i in range(1001, 1036) if i != 1004)

# Rows of FreeSurfer 6's aseg.stats (ASegStatsLUT order, `--empty` keeps zero rows), as in bert.
ASEG_ROWS = tuple((int(a), b) for a, b in (r.split(":") for r in (
    "4:Left-Lateral-Ventricle 5:Left-Inf-Lat-Vent 7:Left-Cerebellum-White-Matter "
    "8:Left-Cerebellum-Cortex 10:Left-Thalamus-Proper 11:Left-Caudate 12:Left-Putamen 13:Left-Pallidum "
    "14:3rd-Ventricle 15:4th-Ventricle 16:Brain-Stem 17:Left-Hippocampus 18:Left-Amygdala 24:CSF "
    "26:Left-Accumbens-area 28:Left-VentralDC 30:Left-vessel 31:Left-choroid-plexus "
    "43:Right-Lateral-Ventricle 44:Right-Inf-Lat-Vent 46:Right-Cerebellum-White-Matter "
    "47:Right-Cerebellum-Cortex 49:Right-Thalamus-Proper 50:Right-Caudate 51:Right-Putamen "
    "52:Right-Pallidum 53:Right-Hippocampus 54:Right-Amygdala 58:Right-Accumbens-area "
    "60:Right-VentralDC 62:Right-vessel 63:Right-choroid-plexus 72:5th-Ventricle 77:WM-hypointensities "
    "78:Left-WM-hypointensities 79:Right-WM-hypointensities 80:non-WM-hypointensities "
    "81:Left-non-WM-hypointensities 82:Right-non-WM-hypointensities 85:Optic-Chiasm 251:CC_Posterior "
    "252:CC_Mid_Posterior 253:CC_Central 254:CC_Mid_Anterior 255:CC_Anterior").split()))

# Paired deep structures: (left id, right id, |x|, y, z centre, x, y, z radii) in mm for a reference
# brain with semi-axes REF_AXES (RAS, relative to the brain centre); scaled per axis to each subject.
# Painted in this order, so later rows win where they overlap (pallidum inside putamen).
REF_AXES = (64.0, 69.0, 57.6)
PAIRED = ((4, 43, 10, 2, 12, 5, 26, 8), (5, 44, 30, -12, -14, 2, 6, 2), (10, 49, 10, -10, 2, 9, 14, 9),
          (11, 50, 14, 14, 10, 5, 15, 7), (12, 51, 25, 4, 1, 5, 15, 10), (13, 52, 19, 1, 0, 3.5, 9, 7),
          (26, 58, 10, 19, -6, 4, 5, 4), (28, 60, 12, -14, -11, 5, 7, 5), (17, 53, 27, -20, -16, 6, 17, 6),
          (18, 54, 24, 1, -18, 6, 7, 6))
CEREBELLUM = (24.0, -46.0, -36.0, 25.0, 21.0, 18.0)  # |x|, y, z, radii (cortex 8/47; WM 7/46 inside)
# Tissue groups of the T1 intensity table (_intensity); 16 (brain stem) is not SubCortGray.
_CSF_IDS = (4, 5, 14, 15, 24, 43, 44, 72)
_SUBCORT_IDS = (10, 11, 12, 13, 16, 26, 28, 49, 50, 51, 52, 58, 60)


def conformed_affine(shape=DEFAULT_SHAPE, c_ras=(0.0, 0.0, 0.0)) -> np.ndarray:
    """FreeSurfer conformed vox->RAS affine (float64, [4, 4]) for a 1 mm LIA grid of ``shape``.

    Voxel axes point Left, Inferior, Anterior; voxel ``shape/2`` sits at ``c_ras`` (mm), as
    ``mri_convert --conform`` writes it (bert: 256^3 with c_ras (5.4, 18, 0)).
    """
    m = np.array([[-1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]])
    aff = np.eye(4)
    aff[:3, :3] = m
    aff[:3, 3] = np.asarray(c_ras, float) - m @ (np.asarray(shape[:3], float) / 2)
    return aff


def bad_subject_id(kind: str) -> str:
    """Subject id of a bad case: ``bad-<kind>`` with '_' -> '-' (the cache id allowlist has no '_')."""
    return "bad-" + kind.replace("_", "-")


def _box(coords, centre, radii):
    """Ellipsoid (centre, radii in mm) as (slices of its bounding box, bool mask over that box).

    ``coords``: the three 1-D float32 axis coordinates (mm). Only the box is evaluated, which keeps
    small structures cheap on a 160^3 grid.
    """
    sl = []
    for c, m, r in zip(coords, centre, radii):
        idx = np.flatnonzero(np.abs(c - m) <= r)
        sl.append(slice(idx[0], idx[-1] + 1) if idx.size else slice(0, 0))
    terms = np.ix_(*(((c[s] - m) / r) ** 2 for c, s, m, r in zip(coords, sl, centre, radii)))
    return tuple(sl), (terms[0] + terms[1] + terms[2]) <= 1.0


def _paint(lab, coords, centre, radii, value, only=None):
    """Set ``lab`` (int32, RAS frame) to ``value`` inside an ellipsoid; ``only``: ids it may overwrite."""
    sl, m = _box(coords, centre, radii)
    if only is not None:
        m &= np.isin(lab[sl], only)
    lab[sl][m] = value


def _anatomy(rng: np.random.Generator, shape):
    """Labels (int32) and brain support (bool) on the RAS-frame grid (x=R, y=A, z=S), shape (X, Z, Y)
    permuted from the LIA ``shape``; plus the cortical thickness (mm) per hemisphere and region, [2, 34].
    """
    n = (shape[0], shape[2], shape[1])
    axes = np.array([0.40, 0.43, 0.36]) * n * (1 + rng.uniform(-0.05, 0.05, 3))  # semi-axes (mm)
    centre = rng.uniform(-2.0, 2.0, 3)
    thick = rng.uniform(1.8, 3.4, (2, 34))
    scale = axes / np.array(REF_AXES)
    coords = [(np.arange(k, dtype=np.float32) - (k - 1) / 2 - c).astype(np.float32) for k, c in zip(n, centre)]
    x, y, z = np.ix_(*coords)

    # Cerebrum: normalised radius r (1 on the surface); depth below the surface along the ray from
    # the centre ~ (1 - r) * |p| / r, so a shell depth < t is a cortex of thickness ~t mm.
    r = np.sqrt((x / axes[0]) ** 2 + (y / axes[1]) ** 2 + (z / axes[2]) ** 2)
    cerebrum = r <= 1.0
    depth = (1.0 - r) * np.sqrt(x * x + y * y + z * z) / np.maximum(r, 1e-6)
    lab = np.where(cerebrum, np.where(x >= 0, 41, 2), 0).astype(np.int32)
    shell = np.nonzero(cerebrum & (depth < thick.max()))
    px, py, pz = x.ravel()[shell[0]] / axes[0], y.ravel()[shell[1]] / axes[1], z.ravel()[shell[2]] / axes[2]
    norm = np.sqrt(px * px + py * py + pz * pz) + 1e-6
    # Sector = 5 equal-area elevation bands x 7 azimuth bins (posterior -> lateral -> anterior).
    band = np.clip(((pz / norm + 1) / 2 * 5).astype(int), 0, 4)
    az = np.clip(((np.arctan2(py, np.abs(px)) / np.pi + 0.5) * 7).astype(int), 0, 6)
    region = np.minimum(band * 7 + az, 33)
    hemi = (px >= 0).astype(int)
    ctx = depth[shell] < thick[hemi, region]
    ids = np.asarray(DESIKAN_IDS)[region] + 1000 * hemi
    lab[tuple(s[ctx] for s in shell)] = ids[ctx]

    def sc(v):  # reference-brain mm -> this subject's mm
        return tuple(np.asarray(v, float) * scale)

    for left, right, ax_, ay, az_, rx, ry, rz in PAIRED:
        for sign, fs_id in ((-1, left), (1, right)):
            _paint(lab, coords, sc((sign * ax_, ay, az_)), sc((rx, ry, rz)), fs_id)
    _paint(lab, coords, sc((0, -6, 0)), sc((1.5, 11, 7)), 14)  # 3rd ventricle, on the midline
    for sign, vent, cp in ((-1, 4, 31), (1, 43, 63)):  # choroid plexus lies inside the ventricles
        _paint(lab, coords, sc((sign * 10, -12, 8)), sc((3, 6, 4)), cp, only=[vent])
    for k, fs_id in enumerate(range(251, 256)):  # CC: midline slab, posterior (251) -> anterior (255)
        _paint(lab, coords, sc((0, 11.2 * k - 22.4, 20)), sc((1.5, 5.6, 2.5)), fs_id, only=[2, 41])
    _paint(lab, coords, sc(rng.uniform(-4, 4, 3) + (-20, -15, 25)), (1.5, 1.5, 1.5), 77, only=[2, 41])
    cx, cy, cz, crx, cry, crz = CEREBELLUM
    for sign, gm, wm in ((-1, 8, 7), (1, 47, 46)):
        _paint(lab, coords, sc((sign * cx, cy, cz)), sc((crx, cry, crz)), gm)
        _paint(lab, coords, sc((sign * cx * 0.8, cy, cz)), sc((crx * 0.55, cry * 0.5, crz * 0.45)), wm)
    _paint(lab, coords, sc((0, -20, -30)), sc((9, 10, 26)), 16)  # brain stem
    _paint(lab, coords, sc((0, -31, -33)), sc((2, 3, 4)), 15)  # 4th ventricle

    # Brain support: labelled voxels plus a ~2.5 mm rim of extra-cerebral CSF around the cerebrum,
    # as a real brainmask has (nonzero voxels with label 0).
    sl, outer = _box(coords, (0.0, 0.0, 0.0), axes + 2.5)
    support = lab > 0
    support[sl] |= outer
    return lab, support, thick


def _intensity(rng: np.random.Generator, lab, support) -> np.ndarray:
    """T1 brainmask (uint8, same grid): tissue means, x bias field, + noise; 1..255 inside, 0 outside."""
    wm, gm, csf, sub = np.array([110.0, 70.0, 30.0, 85.0]) + rng.uniform(-1, 1, 4) * (4, 4, 3, 3)
    lut = np.full(2036, wm, np.float32)  # default WM: 2/41, 7/46 get adjusted below, CC 251-255, ...
    lut[1000:] = gm
    lut[list(_CSF_IDS)] = csf
    lut[list(_SUBCORT_IDS)] = sub
    lut[[8, 47]] = gm + 3
    lut[[7, 46]] = wm - 20
    lut[[13, 52]] = sub + 8  # pallidum is brighter than the other nuclei in T1
    lut[[17, 18, 53, 54]] = (gm + sub) / 2
    lut[[31, 63, 77]] = (50, 50, 80)
    lut[0] = csf  # label 0 inside the support = extra-cerebral CSF rim
    img = lut[lab]
    # Smooth low-frequency multiplicative bias: a quadratic per axis, summed by broadcasting.
    coef = rng.uniform(-0.06, 0.06, (3, 2)).astype(np.float32)
    u = np.ix_(*(np.linspace(-1, 1, k, dtype=np.float32) for k in lab.shape))
    img *= 1 + sum(a * v + b * (v * v - np.float32(1 / 3)) for (a, b), v in zip(coef, u))
    img += rng.standard_normal(lab.shape, dtype=np.float32) * np.float32(rng.uniform(3, 5))
    out = np.clip(np.rint(img), 1, 255).astype(np.uint8)
    out[~support] = 0
    return out


def _synth(seed: int, shape):
    """Arrays of one subject: (brainmask uint8 LIA, aparc+aseg int32 LIA, stats texts dict)."""
    if len(shape) != 3 or min(shape) < 32:
        raise ValueError(f"shape must be 3 sizes >= 32, got {shape}")
    rng = np.random.default_rng(seed)
    lab, support, thick = _anatomy(rng, tuple(int(s) for s in shape))
    t1 = _intensity(rng, lab, support)
    stats = _stats_texts(rng, lab, t1, thick)
    # RAS frame (x=R, y=A, z=S) -> LIA voxel order (L, I, A)
    return tuple(np.ascontiguousarray(a.transpose(0, 2, 1)[::-1, ::-1, :]) for a in (t1, lab)) + (stats,)


# ---- FreeSurfer 6 stats files -------------------------------------------------------------------
_HOST = "# sysname  Linux\n# hostname damt-synth\n# machine  x86_64\n# user     damt\n"
_SUBJECTS_DIR = "/synthetic/subjects"  # fixed, so the bytes do not depend on where they are written
_STAMP = "2000/01/01 00:00:00"
# (ColHeader, FieldName, Units) exactly as FreeSurfer 6 prints them, odd trailing spaces included.
_ASEG_COLS = [c.split("|") for c in (
    "Index |Index |    NA ;SegId |Segmentation Id|    NA;NVoxels |Number of Voxels|    unitless;"
    "Volume_mm3|Volume|    mm^3;StructName|Structure Name|    NA;normMean |Intensity normMean|    MR;"
    "normStdDev|Itensity normStdDev|    MR;normMin|Intensity normMin|    MR;normMax|Intensity normMax|    MR;"
    "normRange|Intensity normRange|    MR").split(";")]
_APARC_COLS = [c.split("|") for c in (
    "StructName|Structure Name|    NA;NumVert|Number of Vertices|    unitless;SurfArea|Surface Area|    mm^2;"
    "GrayVol|Gray Matter Volume|    mm^3;ThickAvg |Average Thickness|    mm;ThickStd|Thickness StdDev|    mm ;"
    "MeanCurv|Integrated Rectified Mean Curvature|    mm^-1;GausCurv |Integrated Rectified Gaussian "
    "Curvature|    mm^-2; FoldInd| Folding Index |     unitless ;CurvInd|Intrinsic Curvature Index|    unitless"
).split(";")]
# aseg.stats '# Measure' lines in FreeSurfer 6 order: name -> (key, name, description, unit).
_MEASURES = {ln.split(", ")[1]: tuple(ln.split(", ")) for ln in """\
BrainSeg, BrainSegVol, Brain Segmentation Volume, mm^3
BrainSegNotVent, BrainSegVolNotVent, Brain Segmentation Volume Without Ventricles, mm^3
BrainSegNotVentSurf, BrainSegVolNotVentSurf, Brain Segmentation Volume Without Ventricles from Surf, mm^3
VentricleChoroidVol, VentricleChoroidVol, Volume of ventricles and choroid plexus, mm^3
lhCortex, lhCortexVol, Left hemisphere cortical gray matter volume, mm^3
rhCortex, rhCortexVol, Right hemisphere cortical gray matter volume, mm^3
Cortex, CortexVol, Total cortical gray matter volume, mm^3
lhCerebralWhiteMatter, lhCerebralWhiteMatterVol, Left hemisphere cerebral white matter volume, mm^3
rhCerebralWhiteMatter, rhCerebralWhiteMatterVol, Right hemisphere cerebral white matter volume, mm^3
CerebralWhiteMatter, CerebralWhiteMatterVol, Total cerebral white matter volume, mm^3
SubCortGray, SubCortGrayVol, Subcortical gray matter volume, mm^3
TotalGray, TotalGrayVol, Total gray matter volume, mm^3
SupraTentorial, SupraTentorialVol, Supratentorial volume, mm^3
SupraTentorialNotVent, SupraTentorialVolNotVent, Supratentorial volume, mm^3
SupraTentorialNotVentVox, SupraTentorialVolNotVentVox, Supratentorial volume voxel count, mm^3
Mask, MaskVol, Mask Volume, mm^3
BrainSegVol-to-eTIV, BrainSegVol-to-eTIV, Ratio of BrainSegVol to eTIV, unitless
MaskVol-to-eTIV, MaskVol-to-eTIV, Ratio of MaskVol to eTIV, unitless
lhSurfaceHoles, lhSurfaceHoles, Number of defect holes in lh surfaces prior to fixing, unitless
rhSurfaceHoles, rhSurfaceHoles, Number of defect holes in rh surfaces prior to fixing, unitless
SurfaceHoles, SurfaceHoles, Total number of defect holes in surfaces prior to fixing, unitless
EstimatedTotalIntraCranialVol, eTIV, Estimated Total Intracranial Volume, mm^3""".splitlines()}
# The volume measures that FreeSurfer 6 repeats in ?h.aparc.stats, in its order.
_APARC_REPEATS = ("BrainSegVol", "BrainSegVolNotVent", "BrainSegVolNotVentSurf", "CortexVol",
                  "SupraTentorialVol", "SupraTentorialVolNotVent", "eTIV")


def _table_cols(cols) -> str:
    return "".join(f"# TableCol {i:2d} ColHeader {h}\n# TableCol {i:2d} FieldName {f}\n"
                   f"# TableCol {i:2d} Units {u}\n" for i, (h, f, u) in enumerate(cols, 1))


def _measure(key, name, desc, unit, value, comma=True) -> str:
    val = f"{value:d}" if isinstance(value, int) else f"{value:f}"
    return f"# Measure {key}, {name}{', ' if comma else ' '}{desc}, {val}, {unit}\n"


def _label_stats(lab, t1):
    """Per FreeSurfer id (0..2035): voxel count, mean, std, min, max of the T1 (float64, [2036])."""
    fg = lab.ravel() > 0
    ids, val = lab.ravel()[fg], t1.ravel()[fg].astype(np.float64)
    n = np.bincount(ids, minlength=2036).astype(np.float64)
    s, ss = np.bincount(ids, val, 2036), np.bincount(ids, val * val, 2036)
    mean = np.divide(s, n, out=np.zeros_like(s), where=n > 0)
    std = np.sqrt(np.maximum(np.divide(ss, n, out=np.zeros_like(s), where=n > 0) - mean ** 2, 0))
    order = np.argsort(ids, kind="stable")
    present, val = np.flatnonzero(n), val[order]
    starts = np.searchsorted(ids[order], present)  # first position of each present id, ids sorted
    lo, hi = np.zeros(2036), np.zeros(2036)
    lo[present], hi[present] = np.minimum.reduceat(val, starts), np.maximum.reduceat(val, starts)
    return n, mean, std, lo, hi


def _stats_texts(rng, lab, t1, thick) -> dict[str, str]:
    """aseg.stats / lh.aparc.stats / rh.aparc.stats bodies; '{sid}' is filled in with the subject id.

    Volumes are voxel counts (1 mm voxels); ThickAvg is the thickness the cortex was drawn with;
    the other surface measures are plausible draws from ``rng``.
    """
    n, mean, std, lo, hi = _label_stats(lab, t1)

    def cnt(*ids):
        return float(n[list(ids)].sum())

    vent = cnt(4, 5, 14, 15, 43, 44, 72, 31, 63)
    seg = cnt(*range(1, 2036))
    lh_ctx, rh_ctx = cnt(*DESIKAN_IDS), cnt(*(i + 1000 for i in DESIKAN_IDS))
    cc_wmh = cnt(251, 252, 253, 254, 255, 77) / 2  # FreeSurfer splits CC/hypointensities between sides
    lh_wm, rh_wm = cnt(2) + cc_wmh, cnt(41) + cc_wmh
    subcort = cnt(*_SUBCORT_IDS, 17, 18, 53, 54) - cnt(16)
    supra = seg - cnt(7, 8, 46, 47, 16, 15)
    mask = float(np.count_nonzero(t1))
    etiv = mask * rng.uniform(1.25, 1.4)
    holes = [int(h) for h in rng.integers(5, 60, 2)]
    values = dict(zip(_MEASURES, (
        seg, seg - vent, seg - vent, vent, lh_ctx, rh_ctx, lh_ctx + rh_ctx, lh_wm, rh_wm, lh_wm + rh_wm,
        subcort, lh_ctx + rh_ctx + subcort + cnt(8, 47), supra, supra - vent + cnt(15),
        supra - vent + cnt(15), mask, seg / etiv, mask / etiv, holes[0], holes[1], sum(holes), etiv)))
    rows = "".join(f"{k:3d} {i:3d} {int(n[i]):9d} {n[i]:10.1f}  {name:<30s} {mean[i]:10.4f} {std[i]:10.4f} "
                   f"{lo[i]:10.4f} {hi[i]:10.4f} {hi[i] - lo[i]:10.4f} \n"
                   for k, (i, name) in enumerate(ASEG_ROWS, 1))
    out = {"aseg.stats": (
        "# Title Segmentation Statistics \n# \n# generating_program mri_segstats\n"
        "# cvs_version $Id: mri_segstats.c,v 1.121 2016/05/31 17:27:11 greve Exp $\n"
        "# cmdline mri_segstats --seg mri/aseg.mgz --sum stats/aseg.stats --pv mri/norm.mgz --empty "
        "--brainmask mri/brainmask.mgz --brain-vol-from-seg --excludeid 0 --excl-ctxgmwm --supratent "
        "--subcortgray --in mri/norm.mgz --in-intensity-name norm --in-intensity-units MR --etiv "
        "--surf-wm-vol --surf-ctx-vol --totalgray --euler --ctab "
        "/usr/local/freesurfer/stable6_0_0/ASegStatsLUT.txt --subject {sid} \n"
        + _HOST + f"# anatomy_type volume\n# \n# SUBJECTS_DIR {_SUBJECTS_DIR}\n# subjectname {{sid}}\n"
        + "".join(_measure(*m, values[m[1]]) for m in _MEASURES.values())
        + f"# SegVolFile mri/aseg.mgz \n# SegVolFileTimeStamp  {_STAMP} \n"
        f"# ColorTable /usr/local/freesurfer/stable6_0_0/ASegStatsLUT.txt \n# ColorTableTimeStamp {_STAMP} \n"
        f"# InVolFile  mri/norm.mgz \n# InVolFileTimeStamp  {_STAMP} \n# InVolFrame 0 \n"
        f"# PVVolFile  mri/norm.mgz \n# PVVolFileTimeStamp  {_STAMP} \n"
        "# Excluding Cortical Gray and White Matter\n# ExcludeSegId 0 2 3 41 42 \n# VoxelVolume_mm3 1 \n"
        + _table_cols(_ASEG_COLS) + f"# NRows {len(ASEG_ROWS)} \n# NTableCols 10 \n"
        "# ColHeaders  Index SegId NVoxels Volume_mm3 StructName normMean normStdDev normMin normMax "
        "normRange  \n" + rows)}
    for h, hemi in enumerate(("lh", "rh")):
        vol, t = n[np.asarray(DESIKAN_IDS) + 1000 * h], thick[h]
        area = np.rint(vol / t)
        tstd, mcurv, gcurv = rng.uniform((0.4, 0.1, 0.012), (0.75, 0.16, 0.05), (34, 3)).T
        nvert = np.rint(area * rng.uniform(1.38, 1.5, 34))
        fold, cind = np.rint(area * mcurv / 9), area * gcurv / 20
        table = "".join(f"{DESIKAN[k]:<40s}{nvert[k]:5.0f}  {area[k]:5.0f}  {vol[k]:5.0f}  {t[k]:5.3f} "
                        f"{tstd[k]:5.3f}  {mcurv[k]:8.3f}  {gcurv[k]:8.3f}  {fold[k]:7.0f}  {cind[k]:6.1f}\n"
                        for k in range(34))
        # FreeSurfer 6 prints the CortexVol line here without the comma after the name
        repeats = "".join(_measure(*_MEASURES[m], values[m], comma=m != "CortexVol") for m in _APARC_REPEATS)
        out[f"{hemi}.aparc.stats"] = (
            "# Table of FreeSurfer cortical parcellation anatomical statistics \n# \n"
            f"# CreationTime {_STAMP.replace(' ', '-')}-GMT\n# generating_program mris_anatomical_stats\n"
            "# cvs_version $Id: mris_anatomical_stats.c,v 1.79 2016/03/14 15:15:34 greve Exp $\n"
            "# mrisurf.c-cvs_version $Id: mrisurf.c,v 1.781.2.6 2016/12/27 16:47:14 zkaufman Exp $\n"
            f"# cmdline mris_anatomical_stats -th3 -mgz -cortex ../label/{hemi}.cortex.label -f "
            f"../stats/{hemi}.aparc.stats -b -a ../label/{hemi}.aparc.annot -c ../label/aparc.annot.ctab "
            f"{{sid}} {hemi} white \n" + _HOST + f"# \n# SUBJECTS_DIR {_SUBJECTS_DIR}\n# anatomy_type surface\n"
            f"# subjectname {{sid}}\n# hemi {hemi}\n# AnnotationFile ../label/{hemi}.aparc.annot\n"
            f"# AnnotationFileTimeStamp {_STAMP}\n"
            f"# Measure Cortex, NumVert, Number of Vertices, {int(nvert.sum())}, unitless\n"
            f"# Measure Cortex, WhiteSurfArea, White Surface Total Area, {area.sum():g}, mm^2\n"
            "# Measure Cortex, MeanThickness, Mean Thickness, "
            f"{(t * area).sum() / max(area.sum(), 1):g}, mm\n" + repeats
            + "# NTableCols 10\n" + _table_cols(_APARC_COLS) + "# ColHeaders StructName NumVert SurfArea "
            "GrayVol ThickAvg ThickStd MeanCurv GausCurv FoldInd CurvInd\n" + table)
    return out


# ---- writing ------------------------------------------------------------------------------------
def _save(path: Path, data: np.ndarray, affine: np.ndarray, code: int = 1) -> None:
    """MGH or NIfTI by suffix (nibabel's gzip writer stores mtime 0 and no name: stable bytes).

    NIfTI gets qform = sform = ``affine``, both with ``code`` (1 = scanner, as mri_convert writes).
    """
    if not path.name.endswith((".nii.gz", ".nii")):
        return nib.save(nib.MGHImage(data, affine), str(path))
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=code)
    img.set_sform(affine, code=code)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, str(path))


def _write(root: Path, images: dict, stats: dict, ext: str = ".mgz", code: int = 1) -> Path:
    """Write ``mri/<stem><ext>`` for each ``stem: (data, affine)`` and ``stats/<name>``; returns ``root``."""
    for sub in ("mri", "stats"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for stem in ("brainmask", "aparc+aseg", "norm"):
        for e in (".mgz", ".nii.gz", ".nii"):  # a stale file of another format would shadow the new one
            (root / "mri" / f"{stem}{e}").unlink(missing_ok=True)
    for stem, (data, affine) in images.items():
        _save(root / "mri" / f"{stem}{ext if stem != 'norm' else '.mgz'}", data, affine, code)
    for name, text in stats.items():
        (root / "stats" / name).write_text(text.replace("{sid}", root.name))
    return root


def make_subject(subjects_dir: Path, subject_id: str, seed: int,
                 shape: tuple[int, int, int] = DEFAULT_SHAPE) -> Path:
    """Write one synthetic FreeSurfer subject; returns ``<subjects_dir>/<subject_id>``.

    Files: ``mri/brainmask.mgz`` (uint8, ``shape``, 0 outside the brain), ``mri/aparc+aseg.mgz`` (int32,
    damt-v1 ids only), ``stats/{aseg,lh.aparc,rh.aparc}.stats``; 1 mm conformed LIA grid
    (:func:`conformed_affine`). Same arguments -> byte-identical files.
    """
    t1, lab, stats = _synth(seed, shape)
    aff = conformed_affine(shape)
    return _write(Path(subjects_dir) / subject_id, {"brainmask": (t1, aff), "aparc+aseg": (lab, aff)}, stats)


def cohort_seeds(n_subjects: int, seed: int = 0) -> list[int]:
    """Distinct per-subject seeds (uint32 values) for a cohort, derived from ``seed``."""
    return [int(s) for s in np.random.SeedSequence([seed, n_subjects]).generate_state(n_subjects)]


def make_cohort(subjects_dir: Path, n_subjects: int = 6, seed: int = 0,
                shape: tuple[int, int, int] = DEFAULT_SHAPE) -> list[str]:
    """Write subjects ``synth-001`` .. ``synth-<n>`` (see :func:`make_subject`); returns their ids."""
    ids = [f"synth-{i:03d}" for i in range(1, n_subjects + 1)]
    for sid, s in zip(ids, cohort_seeds(n_subjects, seed)):
        make_subject(subjects_dir, sid, s, shape)
    return ids


def make_bad_case(subjects_dir: Path, kind: str, seed: int = 0,
                  shape: tuple[int, int, int] = BAD_SHAPE) -> str:
    """Write subject ``bad_subject_id(kind)`` whose inputs have exactly one defect; returns its id.

    Base: a valid synthetic subject of ``shape`` (stats included). ``singleton_4d`` is valid (a
    (X, Y, Z, 1) image). NIfTI kinds (``truncated_nii``, ``four_d``, ``singleton_4d``, ``nonfinite``,
    ``no_affine``) write ``mri/brainmask.nii.gz`` and ``mri/aparc+aseg.nii.gz``, no ``.mgz``.
    ``truncated_mgz`` fails already in ``nib.load`` (nibabel seeks to the MGH footer past the data).
    """
    if kind not in BAD_CASES:
        raise ValueError(f"unknown bad case {kind!r}; known: {', '.join(BAD_CASES)}")
    t1, lab, stats = _synth(seed, shape)
    aff = lab_aff = conformed_affine(shape)
    rng = np.random.default_rng([seed, BAD_CASES.index(kind)])
    brain = np.argwhere(lab > 0)
    pick = tuple(brain[rng.choice(len(brain), 6, replace=False)].T)  # a few voxels inside the brain
    extra = {}
    if kind == "four_d":
        t1 = np.stack([t1] * 3, axis=-1)
    elif kind == "singleton_4d":
        t1 = t1[..., None]
    elif kind == "nonfinite":
        t1 = t1.astype(np.float32)
        t1[pick] = [np.nan, np.nan, np.nan, np.inf, np.inf, -np.inf]
    elif kind in ("constant", "empty"):
        t1 = np.full_like(t1, 100 if kind == "constant" else 0)
    elif kind == "unknown_labels":
        lab = lab.copy()
        lab[pick] = 9999
    elif kind == "grid_mismatch":
        lab = np.pad(lab, ((0, 8), (0, 0), (0, 0)))  # same affine, 8 more slices
    elif kind == "affine_mismatch":
        lab_aff = aff + np.pad([[5.0], [0.0], [0.0]], ((0, 1), (3, 0)))  # +5 mm along x
    elif kind == "binary_mask":  # as mrtrix3_test/sub-01: brainmask is a 0/1 mask, the T1 is norm.mgz
        extra = {"norm": (t1, aff)}
        t1 = (t1 > 0).astype(np.uint8)
    images = {"brainmask": (t1, aff), "aparc+aseg": (lab, lab_aff), **extra}
    if kind == "missing_parcellation":
        del images["aparc+aseg"]
    ext = ".nii.gz" if kind in ("truncated_nii", "four_d", "singleton_4d", "nonfinite", "no_affine") else ".mgz"
    # no_affine: orientation unknown for the whole subject (both files, both codes 0), nothing else
    code = 0 if kind == "no_affine" else 1
    root = _write(Path(subjects_dir) / bad_subject_id(kind), images, stats, ext, code)
    path = root / "mri" / f"brainmask{ext}"
    if kind.startswith("truncated"):
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])  # the gzip stream ends early; the header still decodes
    elif kind == "not_an_image":
        text = rng.choice(np.frombuffer(b"abcdefghijklmnopqrstuvwxyz ABCDEFGHIJ0123456789.,\n", np.uint8), 4096)
        path.write_bytes(text.tobytes())
    return root.name
