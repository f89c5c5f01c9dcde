"""CSV formula injection (issue 12, item 10): no text cell DAMT writes can start a spreadsheet formula."""

from __future__ import annotations

import io

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from damt.csvsafe import neutralise_cell, safe_csv_frame

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


@given(st.text())
def test_no_neutralised_text_starts_a_formula(text):
    out = neutralise_cell(text)
    if out != text:
        assert out == "'" + text
    else:  # left as it was: harmless, or a plain number
        try:
            float(text)
        except ValueError:
            assert not text.startswith(TRIGGERS)


def test_frame_text_and_headers_are_neutralised_numbers_are_not():
    frame = pd.DataFrame({"subject_id": ["sub-01", "=1+1"], "message": ["@SUM(A1)", "-2+3 bad"],
                          "z": [-1.5, 2.0], "=cmd": ["x", "+y"]})
    text = safe_csv_frame(frame).to_csv(index=False)
    back = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    cells = [*back.columns, *back.to_numpy().ravel()]
    assert [c for c in cells if c.startswith(TRIGGERS)] == ["-1.5"]  # a number stays a number
    assert back["z"].tolist() == ["-1.5", "2.0"]
    assert back["subject_id"].tolist() == ["sub-01", "'=1+1"]
