"""The ``targets`` config section (owned by damt.targets): morphometry schema, radiomics (pyradiomics GLCM), CSV import,
normalisation. Mounted by the root config as ``targets``; pipeline.yaml shows these defaults.

Radiomics field names follow pyradiomics' own settings (in the docs, in parentheses), so a reader
who knows a pyradiomics parameter file can map one to the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, Optional

from damt.config.validate import ConfigError, section, setting

# The 24 non-deprecated pyradiomics GLCM features (pyradiomics 3.x; the deprecated Dissimilarity,
# Homogeneity1/2 and SumVariance duplicate other features and are never computed).
GLCM_FEATURES: tuple[str, ...] = (
    "Autocorrelation", "JointAverage", "ClusterProminence", "ClusterShade", "ClusterTendency",
    "Contrast", "Correlation", "DifferenceAverage", "DifferenceEntropy", "DifferenceVariance",
    "JointEnergy", "JointEntropy", "Imc1", "Imc2", "Idm", "MCC", "Idmn", "Id", "Idn",
    "InverseVariance", "MaximumProbability", "SumAverage", "SumEntropy", "SumSquares",
)


@dataclass(frozen=True)
class MorphometryConfig:
    """The FreeSurfer morphometry vector (stats files, parcellation fallback)."""

    SCOPE: ClassVar[str] = "store"  # the target plan is part of the preprocess hash

    enabled: bool = setting(True, "compute the morphometry vector from stats/ and the parcellation")
    schema: str = setting("damt-v1", "column schema: a built-in name (damt-v1: 334 columns from "
                          "aseg and Desikan stats; original-dkt: the original's 566 from the DKT "
                          "stats; original-desikan: the same recipe on Desikan stats, 620) or a path "
                          "to a schema TSV (see damt/targets/morphometry-*.tsv and docs/targets.md)")
    volume_source: Literal["stats", "parcellation"] = setting(
        "stats", "stats: a column's value comes from the stats file, and only where the file or "
                 "the key is missing from voxel counts of the 1 mm parcellation; parcellation: every "
                 "column that the parcellation can give uses voxel counts, even when stats exist "
                 "(consistent values across cohorts with and without stats files); the "
                 "original-* schemas have no such column")


@dataclass(frozen=True)
class RadiomicsConfig:
    """pyradiomics GLCM texture per tissue, on the preprocessed grid (no resampling inside)."""

    SCOPE: ClassVar[str] = "store"  # the target plan is part of the preprocess hash

    enabled: bool = setting(True, "compute the radiomics texture vector")
    tissue_table: str = setting("damt-v1", "class -> tissue table: a built-in name (damt-v1) or a "
                                "path to a TSV (see damt/targets/tissues-damt-v1.tsv)")
    features: list[str] = setting(list(GLCM_FEATURES), "GLCM features computed per tissue, in "
                                  "this order (pyradiomics feature names)", choices=GLCM_FEATURES)
    discretisation: Literal["bin_width", "bin_count"] = setting(
        "bin_width", "grey-level discretisation: fixed bin width (binWidth; same intensity bins "
                     "for every subject, since images are percentile-scaled to [0, 1]) or fixed "
                     "bin count per tissue (binCount; bins span each mask's own min..max)")
    bin_width: float = setting(0.03125, "bin width (binWidth) when discretisation = bin_width; "
                               "0.03125 = 32 bins over [0, 1]", unit="normalised intensity",
                               lo=1e-4, hi=1.0)
    bin_count: int = setting(32, "number of bins (binCount) when discretisation = bin_count",
                             unit="bins", lo=2, hi=1024)
    distances_vox: list[int] = setting([1], "neighbour distances of the co-occurrence matrix "
                                       "(distances); features average over all of them",
                                       unit="voxels", lo=1, hi=16)
    symmetrical_glcm: bool = setting(True, "count each pair in both directions (symmetricalGLCM)")
    force_2d: bool = setting(False, "in-plane GLCM only (force2D); false = all 13 3-D directions")
    force_2d_dimension: int = setting(0, "axis treated as out-of-plane when force_2d "
                                      "(force2Ddimension; 0 = first numpy axis given to "
                                      "pyradiomics, i.e. the last image axis)",
                                      unit="axis index", lo=0, hi=2)
    weighting_norm: Literal["none", "manhattan", "euclidean", "infinity"] = setting(
        "none", "merge the per-direction matrices weighted by distance (weightingNorm); "
                "none = features computed per direction, then averaged")
    label: int = setting(1, "value written into the binary tissue mask handed to pyradiomics "
                         "(label)", unit="mask value", lo=1, hi=255)
    min_mask_voxels: int = setting(100, "a tissue mask with fewer voxels gives present = false "
                                   "for its features (minimumROISize)", unit="voxels", lo=1)
    min_roi_dimensions: int = setting(2, "a mask must extend over more than one voxel along at "
                                      "least this many axes (minimumROIDimensions)", unit="axes",
                                      lo=1, hi=3)

    def _check(self, path: str) -> None:
        if not self.features:
            raise ConfigError(f"{path}.features", "needs at least one GLCM feature")
        dup = sorted({f for f in self.features if self.features.count(f) > 1})
        if dup:
            raise ConfigError(f"{path}.features", f"listed twice: {dup}")
        if not self.distances_vox or len(set(self.distances_vox)) != len(self.distances_vox):
            raise ConfigError(f"{path}.distances_vox", "needs one or more distinct distances")
        if self.force_2d and self.min_roi_dimensions > 2:
            raise ConfigError(f"{path}.min_roi_dimensions", "must be <= 2 when force_2d is true")


@dataclass(frozen=True)
class CsvFileConfig:
    """One precomputed cohort CSV: one row per subject, one numeric column per target."""

    path: str = setting("", "CSV file (comma-separated, header row)", unit="path")
    kind: Literal["morphometry", "texture"] = setting(
        "morphometry", "which target the columns feed: morphometry (like nfeats_global.csv, "
                       "nfeats_local.csv) or texture (like radiomics_texture.csv)")
    id_column: Optional[str] = setting(None, "subject-id column of this file; null = "
                                       "csv_import.id_column")

    def _check(self, path: str) -> None:
        if not self.path:
            raise ConfigError(f"{path}.path", "a CSV file path is required")


@dataclass(frozen=True)
class CsvImportConfig:
    """Precomputed targets from cohort CSVs. When any file of a kind is listed, that kind's vector is
    the concatenation of those files' numeric columns (in the order listed), instead of the
    computed one; subjects without a row get present = false."""

    SCOPE: ClassVar[str] = "store"  # the imported values are written into the stores

    files: list[CsvFileConfig] = setting([], "CSV files to import, e.g. [{path: nfeats_global.csv, "
                                         "kind: morphometry}, {path: radiomics_texture.csv, "
                                         "kind: texture}]")
    id_column: str = setting("subject_id", "default subject-id column (values compared with the "
                             "cache's subject ids after stripping spaces)")
    drop_columns: list[str] = setting([], "columns never used as targets (e.g. age, site); "
                                      "columns with no numeric cell and unnamed index columns "
                                      "are dropped anyway and reported")

    def _check(self, path: str) -> None:
        if not self.id_column:
            raise ConfigError(f"{path}.id_column", "may not be empty")
        seen = set()
        for i, f in enumerate(self.files):
            if f.path in seen:
                raise ConfigError(f"{path}.files[{i}].path", f"{f.path!r} is listed twice")
            seen.add(f.path)


@dataclass(frozen=True)
class NormaliseConfig:
    """Column-wise normalisation over the ok subjects (statistics saved in targets.json)."""

    # fitted into targets.json at the end of preprocess (no store changes), applied by training
    SCOPE: ClassVar[str] = "run"

    method: Literal["robust", "standard"] = setting(
        "robust", "robust: median and IQR/1.349 (then MAD*1.4826, std, 1.0 when zero); "
                  "standard: mean and std (then 1.0 when zero). Only present entries count")
    transform_morphometry: Literal["auto", "none", "asinh"] = setting(
        "none", "signed-log (asinh of the robust z) for morphometry columns: auto = per column "
                "when heavy-tailed (see tail_ratio), none, or always")
    transform_radiomics: Literal["auto", "none", "asinh"] = setting(
        "auto", "the same for radiomics and imported texture columns")
    tail_ratio: float = setting(10.0, "auto applies asinh when (q99 - q1) / (q75 - q25) of a column "
                                "exceeds this (a normal column gives 3.4, a log-normal with "
                                "sigma 1 about 7)", unit="ratio", lo=1.0)
    min_present_for_auto: int = setting(8, "auto never transforms a column with fewer present "
                                        "values than this (quantiles are meaningless)",
                                        unit="subjects", lo=2)
    clip: float = setting(10.0, "normalised values are clipped to +-clip", unit="robust SD",
                          lo=0.5, hi=1000.0)


@dataclass(frozen=True)
class TargetsConfig:
    """Regression targets (METHOD.md step 7): morphometry, radiomics texture, CSV import,
    normalisation."""

    morphometry: MorphometryConfig = section(MorphometryConfig)
    radiomics: RadiomicsConfig = section(RadiomicsConfig)
    csv_import: CsvImportConfig = section(CsvImportConfig)
    normalise: NormaliseConfig = section(NormaliseConfig)
