"""docs/preprocessing.md lists every failure reason the preprocess stage writes (issue 12)."""

from __future__ import annotations

from damt.errors import REASONS, RETRY_REASONS


def test_every_reason_is_documented_with_what_to_do(repo):
    text = (repo / "docs" / "preprocessing.md").read_text()
    rows = {line.split("|")[1].strip().strip("`"): line for line in text.splitlines()
            if line.startswith("| `")}
    assert set(REASONS) <= set(rows), set(REASONS) - set(rows)
    for reason in RETRY_REASONS:
        assert "retried" in rows[reason], reason
    assert all(len([c for c in line.split("|") if c.strip()]) == 3 for r, line in rows.items() if r in REASONS)
