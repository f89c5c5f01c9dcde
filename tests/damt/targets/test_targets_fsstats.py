"""FreeSurfer stats parsing, on the real bert / fs_training_data files and on broken copies."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from damt.targets.fsstats import FsStatsError, parse_aparc_stats, parse_aseg_stats, parse_stats_text, read_stats_dir


def _measure_from_text(text: str, key: str) -> float:
    """Independent reading of one Measure value straight from the file text."""
    m = re.search(rf"^# Measure [^,]+, {re.escape(key)}[ ,].*, ([-0-9.eE+]+), \S+\s*$", text, re.M)
    assert m, key
    return float(m.group(1))


def _row_from_text(text: str, struct: str) -> list[str]:
    rows = [ln.split() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    return next(r for r in rows if struct in r)


def test_bert_aseg_values_match_file_text(fs_data: Path):
    path = fs_data / "fs_bert/bert/stats/aseg.stats"
    text = path.read_text()
    parsed = parse_aseg_stats(path)
    assert parsed.values["aseg.measure.eTIV"] == _measure_from_text(text, "eTIV") == 1602572.131295
    row = _row_from_text(text, "Left-Hippocampus")  # Index SegId NVoxels Volume_mm3 StructName ...
    assert parsed.values["aseg.Left-Hippocampus.Volume_mm3"] == float(row[3]) == 4308.9
    assert parsed.values["aseg.Left-Hippocampus.NVoxels"] == float(row[2])
    assert parsed.seg_ids["Left-Hippocampus"] == 17
    n_measures = sum(k.startswith("aseg.measure.") for k in parsed.values)
    assert n_measures == text.count("# Measure ") == 22
    assert len(parsed.seg_ids) == 45
    # Index/SegId are bookkeeping and never become columns
    assert not any(k.endswith((".Index", ".SegId")) for k in parsed.values)


def test_bert_aparc_values_match_file_text(fs_data: Path):
    path = fs_data / "fs_bert/bert/stats/lh.aparc.stats"
    text = path.read_text()
    parsed = parse_aparc_stats(path, "lh")
    row = _row_from_text(text, "superiorfrontal")  # StructName NumVert SurfArea GrayVol ThickAvg ...
    assert parsed.values["lh.aparc.superiorfrontal.ThickAvg"] == float(row[4]) == 3.009
    assert parsed.values["lh.aparc.superiorfrontal.GrayVol"] == float(row[3])
    assert parsed.values["lh.aparc.measure.MeanThickness"] == _measure_from_text(text, "MeanThickness")
    # FreeSurfer 6 writes this Measure line with a comma missing after the key
    assert "CortexVol Total" in text
    assert parsed.values["lh.aparc.measure.CortexVol"] == 491582.219712
    regions = {k.split(".")[2] for k in parsed.values if not k.startswith("lh.aparc.measure.")}
    assert len(regions) == 34


def test_read_stats_dir_bert_and_aseg_only(fs_data: Path):
    values, seg_ids, found = read_stats_dir(fs_data / "fs_bert/bert/stats")
    assert found == ["aseg.stats", "lh.aparc.stats", "rh.aparc.stats"]
    assert values["rh.aparc.superiorfrontal.ThickAvg"] > 0
    for sub in sorted((fs_data / "fs_training_data").glob("sub-0*")):
        values, _, found = read_stats_dir(sub / "stats")
        if sub.name == "sub-05":   # no stats folder at all
            assert found == [] and values == {}
            continue
        assert found == ["aseg.stats"]
        assert values["aseg.measure.eTIV"] > 5e5
        assert not any(k.startswith(("lh.", "rh.")) for k in values)
    assert read_stats_dir(None) == ({}, {}, [])


_MINI = """# Measure BrainSeg, BrainSegVol, Brain Segmentation Volume, 1000.5, mm^3
# Measure EstimatedTotalIntraCranialVol, eTIV, Estimated Total Intracranial Volume, 1500, mm^3
# NRows 2
# ColHeaders  Index SegId NVoxels Volume_mm3 StructName
  1   4      10     11.5  Left-Lateral-Ventricle
  2  17      20     21.5  Left-Hippocampus
"""


def test_minimal_text_parses():
    parsed = parse_stats_text(_MINI, "aseg", "mini")
    assert parsed.values == {"aseg.measure.BrainSegVol": 1000.5, "aseg.measure.eTIV": 1500.0,
                             "aseg.Left-Lateral-Ventricle.NVoxels": 10.0,
                             "aseg.Left-Lateral-Ventricle.Volume_mm3": 11.5,
                             "aseg.Left-Hippocampus.NVoxels": 20.0,
                             "aseg.Left-Hippocampus.Volume_mm3": 21.5}


@pytest.mark.parametrize("text, needle", [
    ("", "empty"),
    (_MINI.rsplit("\n", 2)[0] + "\n", "NRows 2"),                       # last row lost
    (_MINI.replace("21.5  Left-Hippocampus", "21.5"), "line 6: expected 5 columns"),  # cut row
    (_MINI.replace("1500, mm^3", "abc, mm^3"), "line 2: Measure eTIV value 'abc'"),
    (_MINI.replace("1500, mm^3", "nan, mm^3"), "not a finite number"),
    (_MINI.replace("# ColHeaders  Index SegId NVoxels Volume_mm3 StructName\n", ""), "ColHeaders"),
    (_MINI.replace("# Measure BrainSeg, BrainSegVol, Brain Segmentation Volume, 1000.5, mm^3",
                   "# Measure BrainSegVol 1000.5"), "Measure line needs"),
    (_MINI.replace("Left-Lateral-Ventricle", "Left-Hippocampus"), "appears twice"),
])
def test_malformed_text_raises_actionable_error(text: str, needle: str):
    with pytest.raises(FsStatsError) as err:
        parse_stats_text(text, "aseg", "subj/stats/aseg.stats")
    msg = str(err.value)
    assert needle in msg and "subj/stats/aseg.stats" in msg and "regenerate" in msg
    assert isinstance(err.value, ValueError)


def test_truncated_real_file_and_wrong_hemi(fs_data: Path, tmp_path: Path):
    text = (fs_data / "fs_bert/bert/stats/aseg.stats").read_text()
    (tmp_path / "aseg.stats").write_text(text[: len(text) // 2 + 17])  # cut mid-file, mid-line
    with pytest.raises(FsStatsError, match="aseg.stats"):
        read_stats_dir(tmp_path)
    (tmp_path / "aseg.stats").unlink()
    (tmp_path / "lh.aparc.stats").write_text((fs_data / "fs_bert/bert/stats/rh.aparc.stats").read_text())
    with pytest.raises(FsStatsError, match="says '# hemi rh' but is read as lh"):
        read_stats_dir(tmp_path)
