"""Regression targets (METHOD.md step 7): FreeSurfer morphometry, radiomics texture, CSV import and
column-wise normalisation. Pure functions; the preprocess stage calls them per subject."""

from damt.config.targets import (
    GLCM_FEATURES,
    CsvFileConfig,
    CsvImportConfig,
    MorphometryConfig,
    NormaliseConfig,
    RadiomicsConfig,
    TargetsConfig,
)
from damt.targets.fsstats import FsStatsError, read_stats_dir
from damt.targets.schema import MorphometrySchema, SchemaError, load_schema, morphometry_vector
from damt.targets.tissues import TissueTable, TissueTableError, load_tissue_table

__all__ = [
    "GLCM_FEATURES", "CsvFileConfig", "CsvImportConfig", "FsStatsError", "MorphometryConfig",
    "MorphometrySchema", "NormaliseConfig", "RadiomicsConfig", "SchemaError", "TargetsConfig",
    "TissueTable", "TissueTableError", "load_schema", "load_tissue_table", "morphometry_vector",
    "read_stats_dir",
]
