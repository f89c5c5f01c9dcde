"""The targets config section: defaults and strict validation."""

from __future__ import annotations

import pytest

from damt.config.targets import GLCM_FEATURES, TargetsConfig
from damt.config.validate import ConfigError, build, describe, to_dict


def test_defaults_documented_and_roundtrip():
    cfg = TargetsConfig()
    assert cfg.radiomics.features == list(GLCM_FEATURES) and len(GLCM_FEATURES) == 24
    assert cfg.radiomics.force_2d is False and cfg.radiomics.discretisation == "bin_width"
    assert cfg.morphometry.schema == "damt-v1" and cfg.radiomics.tissue_table == "damt-v1"
    assert build(TargetsConfig, to_dict(cfg)) == cfg
    for key, _tp, _default, _unit, doc in describe(cfg):
        assert doc, f"{key} has no doc"


@pytest.mark.parametrize("data, where", [
    ({"radiomics": {"features": ["Contrast", "Contrast"]}}, "radiomics.features"),
    ({"radiomics": {"features": ["Dissimilarity"]}}, "radiomics.features[0]"),
    ({"radiomics": {"features": []}}, "radiomics.features"),
    ({"radiomics": {"bin_width": 0.0}}, "radiomics.bin_width"),
    ({"radiomics": {"bin_count": True}}, "radiomics.bin_count"),
    ({"radiomics": {"distances_vox": [1, 1]}}, "radiomics.distances_vox"),
    ({"radiomics": {"force_2d": True, "min_roi_dimensions": 3}}, "radiomics.min_roi_dimensions"),
    ({"radiomics": {"binWidth": 1}}, "radiomics.binWidth"),
    ({"csv_import": {"files": [{"kind": "texture"}]}}, "csv_import.files[0].path"),
    ({"csv_import": {"files": [{"path": "a.csv", "kind": "shape"}]}}, "csv_import.files[0].kind"),
    ({"csv_import": {"files": [{"path": "a.csv"}, {"path": "a.csv"}]}}, "csv_import.files[1].path"),
    ({"normalise": {"clip": 0.1}}, "normalise.clip"),
    ({"morphometry": {"volume_source": "both"}}, "morphometry.volume_source"),
])
def test_invalid_values_name_the_key(data: dict, where: str):
    with pytest.raises(ConfigError) as err:
        build(TargetsConfig, data, "targets")
    assert err.value.path == f"targets.{where}"
