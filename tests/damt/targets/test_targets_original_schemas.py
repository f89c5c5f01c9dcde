"""The original DAMT's morphometry recipe (schemas original-dkt and original-desikan).

The expected vectors come from tests/original_recipe.py, which re-derives the original's recipe
from the stats files' text. The real subjects carry Desikan tables only; DKT tables are written
from bert's Desikan ones (the 31 DKT regions in the same row order, every number changed so the
two cannot be confused).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from original_recipe import GLOBAL_COLS, MEASURES, dkt_from_desikan, recipe

from damt.targets.fsstats import FsStatsError, parse_stats_text, stats_file_of
from damt.targets.schema import SchemaError, load_schema, morphometry_from_values, morphometry_vector, parse_schema


@pytest.fixture(scope="module")
def bert_stats(fs_data: Path) -> Path:
    return fs_data / "fs_bert" / "bert" / "stats"


@pytest.fixture(scope="module")
def with_dkt(bert_stats: Path, tmp_path_factory) -> Path:
    """bert's stats folder plus synthetic lh/rh.aparc.DKTatlas.stats."""
    out = tmp_path_factory.mktemp("dkt") / "stats"
    shutil.copytree(bert_stats, out)
    for hemi in ("lh", "rh"):
        (out / f"{hemi}.aparc.DKTatlas.stats").write_text(
            dkt_from_desikan((bert_stats / f"{hemi}.aparc.stats").read_text()))
    return out


@pytest.mark.parametrize("name, n_global, n_local, n_regions, files", [
    ("original-dkt", 440, 126, 31, ("lh.aparc.DKTatlas.stats", "rh.aparc.DKTatlas.stats")),
    ("original-desikan", 482, 138, 34, ("lh.aparc.stats", "rh.aparc.stats")),
])
def test_layout(name, n_global, n_local, n_regions, files):
    s = load_schema(name)
    assert len(s) == n_global + n_local and s.version == name and s.stats_files == files
    assert s.group_mask("global").sum() == n_global == 2 * (3 + 7 * n_regions)
    assert s.group_mask("local").sum() == n_local == 2 * (1 + 2 * n_regions)
    assert not s.parcellation_derivable.any() and all(a == () for a in s.aliases)
    # every name says group, hemisphere, region or measure, and column; x20 exactly where it says so
    stem = files[0].removeprefix("lh.").removesuffix(".stats")
    for name_, source, scale in zip(s.names, s.sources, s.scales):
        group, hemi, region, col = name_.split(".")
        assert source == f"{hemi}.{stem}.{region}.{col.removesuffix('_x20')}"
        assert scale == (20.0 if col == "MeanCurv_x20" else 1.0)
        assert group in ("global", "local") and hemi in ("lh", "rh") and (scale == 1 or group == "local")
    assert sum(sc == 20 for sc in s.scales) == 2 * n_regions


def test_desikan_on_bert_equals_the_stats_cells(bert_stats: Path):
    s = load_schema("original-desikan")
    names, expected = recipe((bert_stats / "lh.aparc.stats").read_text(),
                             (bert_stats / "rh.aparc.stats").read_text())
    assert list(s.names) == names                    # column order = the recipe on the real file order
    values, present = morphometry_vector(bert_stats, None, 1.0, s)
    assert values.dtype == np.float32 and present.all()
    np.testing.assert_array_equal(values, expected.astype(np.float32))
    # the x20, spelt out on one cell: lh superiorfrontal MeanCurv is 0.116 in bert's file (FS 6)
    row = next(ln.split() for ln in (bert_stats / "lh.aparc.stats").read_text().splitlines()
               if ln.startswith("superiorfrontal "))
    assert values[s.names.index("local.lh.superiorfrontal.MeanCurv_x20")] == np.float32(float(row[6]) * 20)
    assert values[s.names.index("global.lh.superiorfrontal.MeanCurv")] == np.float32(row[6])
    assert values[s.names.index("local.rh.measure.MeanThickness")] == np.float32(2.65494) \
        == values[s.names.index("global.rh.measure.MeanThickness")]


def test_dkt_gives_the_seeds_566(with_dkt: Path):
    s = load_schema("original-dkt")
    names, expected = recipe((with_dkt / "lh.aparc.DKTatlas.stats").read_text(),
                             (with_dkt / "rh.aparc.DKTatlas.stats").read_text())
    assert len(names) == 566 and list(s.names) == names
    values, present = morphometry_vector(with_dkt, None, 1.0, s)
    assert present.all() and values.shape == (566,)
    np.testing.assert_array_equal(values, expected.astype(np.float32))
    # the Desikan schema in the same folder still reads the Desikan tables, not the DKT ones
    desikan, _ = morphometry_vector(with_dkt, None, 1.0, load_schema("original-desikan"))
    i = names.index("global.lh.superiorfrontal.ThickAvg")
    j = load_schema("original-desikan").names.index("global.lh.superiorfrontal.ThickAvg")
    assert values[i] == np.float32(f"{3.009 * 1.1 + 1:.4f}") and desikan[j] == np.float32(3.009)


def test_missing_tables_are_not_present_never_zero_filled(fs_data: Path, bert_stats: Path, tmp_path: Path):
    from damt.io import read_volume

    desikan, dkt = load_schema("original-desikan"), load_schema("original-dkt")
    sub = fs_data / "fs_training_data" / "sub-01"               # aseg.stats only
    parc = read_volume(sub / "mri" / "aparc+aseg.mgz")
    for prefer in (False, True):   # the parcellation stands in for nothing in these schemas
        values, present = morphometry_vector(sub / "stats", parc.data, 1.0, desikan, prefer)
        assert not present.any() and (values == 0).all()
    values, present = morphometry_vector(fs_data / "fs_training_data" / "sub-05" / "stats", None, 1.0, dkt)
    assert not present.any() and (values == 0).all()               # no stats folder at all
    values, present = morphometry_vector(bert_stats, None, 1.0, dkt)  # Desikan tables only
    assert not present.any()
    # one hemisphere's table missing: exactly that hemisphere's columns are not present
    shutil.copy(bert_stats / "lh.aparc.stats", tmp_path / "lh.aparc.stats")
    values, present = morphometry_vector(tmp_path, None, 1.0, desikan)
    lh = np.asarray([n.split(".")[1] == "lh" for n in desikan.names])
    assert present[lh].all() and not present[~lh].any() and (values[~lh] == 0).all()


def test_a_region_missing_from_a_table_is_not_present(bert_stats: Path, tmp_path: Path):
    for hemi in ("lh", "rh"):
        lines = (bert_stats / f"{hemi}.aparc.stats").read_text().splitlines(keepends=True)
        if hemi == "rh":
            lines = [ln for ln in lines if not ln.startswith("frontalpole ")]
        (tmp_path / f"{hemi}.aparc.stats").write_text("".join(lines))
    s = load_schema("original-desikan")
    values, present = morphometry_vector(tmp_path, None, 1.0, s)
    gone = [n for n in s.names if n.split(".")[1:3] == ["rh", "frontalpole"]]
    assert len(gone) == 9 and sorted(np.asarray(s.names)[~present]) == sorted(gone)


def test_only_the_schemas_files_are_read(bert_stats: Path, tmp_path: Path):
    shutil.copytree(bert_stats, tmp_path / "stats")
    (tmp_path / "stats" / "lh.aparc.DKTatlas.stats").write_text("# ColHeaders StructName NumVert\nx 1 2\n")
    for name in ("damt-v1", "original-desikan"):   # a broken DKT table fails no Desikan schema
        assert morphometry_vector(tmp_path / "stats", None, 1.0, load_schema(name))[1].all()
    with pytest.raises(FsStatsError, match="lh.aparc.DKTatlas.stats"):
        morphometry_vector(tmp_path / "stats", None, 1.0, load_schema("original-dkt"))
    (tmp_path / "stats" / "lh.aparc.DKTatlas.stats").write_text(
        (bert_stats / "rh.aparc.stats").read_text())                      # a renamed rh table
    with pytest.raises(FsStatsError, match="hemi rh' but is read as lh"):
        morphometry_vector(tmp_path / "stats", None, 1.0, load_schema("original-dkt"))


def test_stats_file_of_takes_the_longest_stem():
    assert stats_file_of("lh.aparc.DKTatlas.insula.ThickAvg") == "lh.aparc.DKTatlas.stats"
    assert stats_file_of("lh.aparc.insula.ThickAvg") == "lh.aparc.stats"
    assert stats_file_of("aseg.measure.eTIV") == "aseg.stats"
    assert stats_file_of("lh.aparcx.insula") is None and stats_file_of("global.lh.insula") is None


_HEAD = "name\tgroup\tunit\tparc_ids\taliases\tdescription\tsource\tscale\n"


@pytest.mark.parametrize("body, needle", [
    ("a\tlocal\tmm\t-\t-\td\tlh.aparc.insula.MeanCurv\tx\n", "scale 'x'"),
    ("a\tlocal\tmm\t-\t-\td\tlh.aparc.insula.MeanCurv\t0\n", "scale '0'"),
    ("a\tlocal\tmm\t-\t-\td\tlh.aprac.insula.MeanCurv\t1\n", "can never be present"),
    ("a\tlocal\tmm\t-\t-\td\n", "8 tab-separated"),
])
def test_extended_schema_errors(body: str, needle: str):
    with pytest.raises(SchemaError, match=needle):
        parse_schema(_HEAD + body, "t")


def test_extended_schema_source_scale_and_defaults():
    s = parse_schema(_HEAD + "a\tglobal\tmm^3\t17\t-\td\t-\t1\n"         # parcellation only, named freely
                     "b\tlocal\tmm\t-\t-\td\tlh.aparc.insula.ThickAvg\t1\n"
                     "c\tlocal\tmm^-1 x20\t-\t-\td\tlh.aparc.insula.MeanCurv\t20\n", "t")
    assert s.sources == ("a", "lh.aparc.insula.ThickAvg", "lh.aparc.insula.MeanCurv")
    assert s.stats_files == ("lh.aparc.stats",) and s.scales == (1.0, 1.0, 20.0)
    counts = np.zeros(18, np.int64)
    counts[17] = 5
    values, present = morphometry_from_values({"lh.aparc.insula.ThickAvg": 2.5,
                                               "lh.aparc.insula.MeanCurv": 0.116}, counts, 2.0, s)
    assert present.all() and values.tolist() == [10.0, 2.5, np.float32(0.116 * 20)]


_DESIKAN = load_schema("original-desikan")
_REGIONS = list(dict.fromkeys(n.split(".")[2] for n in _DESIKAN.names if ".measure." not in n))


@settings(max_examples=25, deadline=None)
@given(keep=st.lists(st.booleans(), min_size=34, max_size=34),
       cells=st.lists(st.floats(-1e4, 1e4, allow_nan=False).map(lambda v: round(v, 3)),
                      min_size=34 * 9 + 3, max_size=34 * 9 + 3))
def test_any_table_gives_its_cells_and_marks_the_rest_absent(keep, cells):
    """For any subset of regions and any numbers, a present column equals its cell (x20 for the
    local curvature) and exactly the absent regions' columns are not present."""
    measures = "".join(f"# Measure Cortex, {m}, {m} description, {v}, mm\n" for m, v in zip(MEASURES, cells))
    rows = [(r, cells[3 + 9 * i: 3 + 9 * (i + 1)]) for i, r in enumerate(_REGIONS) if keep[i]]
    table = "".join(f"{r} " + " ".join(map(str, c)) + "\n" for r, c in rows)
    text = measures + "# ColHeaders StructName " + " ".join(GLOBAL_COLS) + " FoldInd CurvInd\n" + table
    stats = parse_stats_text(text, "lh.aparc", "t").values
    values, present = morphometry_from_values(stats, None, 1.0, _DESIKAN)
    kept = {r for r, _ in rows}
    for i, name in enumerate(_DESIKAN.names):
        group, hemi, region, col = name.split(".")
        assert present[i] == (hemi == "lh" and (region == "measure" or region in kept)), name
        if present[i]:
            cell = cells[MEASURES.index(col)] if region == "measure" else \
                dict(rows)[region][GLOBAL_COLS.index(col.removesuffix("_x20"))]
            assert values[i] == np.float32(cell * (20 if col.endswith("_x20") else 1))
