"""The class -> tissue table and the tissue label map."""

from __future__ import annotations

import numpy as np
import pytest

from damt.labels import load_label_table, parse_label_table
from damt.targets.tissues import (
    TissueTableError,
    check_against_labels,
    load_tissue_table,
    parse_tissue_table,
    tissue_fs_ids,
    tissue_labels,
)


@pytest.fixture(scope="module")
def labels():
    return load_label_table("damt-v1")


def test_table_matches_label_table(labels):
    table = load_tissue_table("damt-v1", labels)
    assert table.tissues == ("GM", "WM", "CSF")
    assert len(table.class_tissue) == labels.n_classes == 101
    assert table.class_tissue[0] == -1                      # background in no mask
    counts = {t: len(table.classes_of(t)) for t in table.tissues}
    assert counts == {"GM": 87, "WM": 6, "CSF": 7}


def test_structures_go_where_documented(labels):
    ids = tissue_fs_ids(load_tissue_table("damt-v1"), labels)
    assert {17, 53, 10, 49, 8, 47, 3, 42, 1028, 2035, 28, 60} <= set(ids["GM"])  # hippo, thal, ...
    assert {2, 41, 7, 46, 16, 77} <= set(ids["WM"])             # brain stem (16) is WM
    assert {4, 5, 43, 44, 14, 15, 24} <= set(ids["CSF"])
    every = ids["GM"] + ids["WM"] + ids["CSF"]
    assert len(every) == len(set(every))                        # no id in two tissues
    assert not {0, 251, 255, 31, 63, 72, 85, 1004} & set(every)  # left-out structures: none


def test_tissue_labels(labels):
    table = load_tissue_table("damt-v1")
    atlas = np.array([[[0, 1, 2, 5, 12, 15, 100, 31]]], dtype=np.uint8)
    out = tissue_labels(atlas, table)
    assert out.dtype == np.uint8 and out.shape == atlas.shape
    assert out.ravel().tolist() == [0, 2, 3, 1, 2, 3, 1, 2]
    assert tissue_labels(np.array([200], dtype=np.uint8), table).tolist() == [0]  # beyond table
    with pytest.raises(ValueError, match="uint8"):
        tissue_labels(atlas.astype(np.int16), table)


def test_bad_tables(labels):
    head = "class\tclass_name\ttissue\n"
    with pytest.raises(TissueTableError, match="tissue must be"):
        parse_tissue_table(head + "0\tbackground\tbone\n", "t")
    with pytest.raises(TissueTableError, match="in order"):
        parse_tissue_table(head + "1\tbackground\tnone\n", "t")
    small = parse_tissue_table(head + "0\tbackground\tnone\n1\tx\tGM\n", "t")
    with pytest.raises(TissueTableError, match="does not match label table"):
        check_against_labels(small, labels)
    other = parse_label_table("fs_id\tclass\tclass_name\tfs_name\n0\t0\tbackground\tUnknown\n"
                              "17\t1\ty\tLeft-Hippocampus\n", "other")
    with pytest.raises(TissueTableError, match="first differing class 1: 'x' vs 'y'"):
        check_against_labels(small, other)
    with pytest.raises(TissueTableError, match="no such built-in"):
        load_tissue_table("nope")
