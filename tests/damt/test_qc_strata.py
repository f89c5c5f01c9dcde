"""Strata from a user's table (``damt qc --csv FILE --by COLUMN``): matching, bins, clear errors."""

from __future__ import annotations

import pandas as pd
import pytest

from damt.qc import StrataError, stratify
from damt.qc.strata import NO_ROW, NO_VALUE

MANIFEST = pd.DataFrame({"cohort": ["a", "a", "a", "b", "b"], "subject_id": ["007", "s2", "s3", "s4", "s5"]})


def test_categorical_column_matches_ids_as_text(tmp_path):
    path = tmp_path / "sites.csv"
    path.write_text("\ufeffsubject_id,site,scanner\n007,B,x\ns2, A ,x\ns3,,y\ns9,C,z\ns4,A,y\n")  # BOM, spaces
    strata = stratify(MANIFEST, path, "site")
    assert strata.labels == ["B", "A", NO_VALUE, "A", NO_ROW]  # '007' kept, not 7
    assert strata.levels == ["A", "B", NO_VALUE, NO_ROW]
    assert any("1 of 5 subjects have no row" in n for n in strata.notes)
    assert any("1 rows match no subject" in n for n in strata.notes)


def test_numeric_column_with_many_values_is_cut_into_ordered_groups(tmp_path):
    ids = [f"s{i}" for i in range(40)]
    man = pd.DataFrame({"cohort": ["c"] * 40, "subject_id": ids})
    path = tmp_path / "participants.tsv"  # BIDS: tab-separated, participant_id
    path.write_text("participant_id\tage\n" + "".join(f"{s}\t{20 + i * 1.5}\n" for i, s in enumerate(ids)))
    strata = stratify(man, path, "age")
    assert len(strata.levels) == 5 and strata.labels.count(strata.levels[0]) == 8
    lows = [float(level.split("–")[0]) for level in strata.levels]
    assert lows == sorted(lows) and strata.labels[0] == strata.levels[0] and strata.labels[-1] == strata.levels[-1]
    assert any("cut into 5 groups" in n for n in strata.notes)
    path.write_text("participant_id\tage\n" + "".join(f"{s}\t{20 + i % 3}\n" for i, s in enumerate(ids)))
    assert stratify(man, path, "age").levels == ["20", "21", "22"]  # few values: one group each


def test_a_cohort_column_matches_ids_that_repeat_across_cohorts(tmp_path):
    man = pd.DataFrame({"cohort": ["a", "b"], "subject_id": ["s1", "s1"]})
    path = tmp_path / "t.csv"
    path.write_text("subject_id,site\ns1,X\ns1,Y\n")
    with pytest.raises(StrataError, match="more than one row.*add a cohort column"):
        stratify(man, path, "site")
    path.write_text("cohort,subject_id,site\na,s1,X\nb,s1,Y\n")
    assert stratify(man, path, "site").labels == ["X", "Y"]


@pytest.mark.parametrize("text,by,match", [
    ("name,site\ns1,A\n", "site", "no subject id column"),
    ("subject_id,site\ns1,A\n", "scanner", "not a covariate column.*choose one of \\['site'\\]"),
    ("subject_id,site\ns1,A\n", "subject_id", "not a covariate column"),
    ("", "site", "not a readable CSV"),
])
def test_unusable_tables_are_typed_errors(tmp_path, text, by, match):
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(StrataError, match=match):
        stratify(MANIFEST, path, by)


def test_missing_table(tmp_path):
    with pytest.raises(StrataError, match="no such file"):
        stratify(MANIFEST, tmp_path / "nope.csv", "site")
