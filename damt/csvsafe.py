"""CSV cells that a spreadsheet would run as a formula are neutralised before DAMT writes them.

A cell starting with ``=``, ``+``, ``-``, ``@`` (or a tab or carriage return, which some
spreadsheets strip before looking) is a formula to Excel, LibreOffice and Google Sheets; a subject
id, a cohort name, a file path or an error message quoted from user data may start so
(CSV/formula injection, OWASP). Such text cells get a leading ``'``, the spreadsheets' own "this is
text" marker; numbers (numeric columns, and text that parses as a plain number like ``-1.5``) are
left as they are, so the files stay machine-readable.
"""

from __future__ import annotations

import pandas as pd

_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def neutralise_cell(value: object) -> object:
    """``value`` with a leading ``'`` if it is text a spreadsheet would evaluate as a formula."""
    if isinstance(value, str) and value.startswith(_TRIGGERS) and not _is_number(value):
        return "'" + value
    return value


def safe_csv_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells (and column names) are neutralised for spreadsheets."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(neutralise_cell)
    out.columns = [neutralise_cell(str(c)) for c in out.columns]
    return out
