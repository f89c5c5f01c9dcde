"""The library's tests test the library: nothing under tests/damt imports a stage (preprocess/ or
train/), so they pass or fail with ``damt`` alone, and a library change cannot hide behind a stage."""

from __future__ import annotations

import ast
from pathlib import Path

STAGES = ("preprocess", "train")


def _stage_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        found += [f"{path.name}:{node.lineno} {n}" for n in names if n.split(".")[0] in STAGES]
    return found


def test_library_tests_import_only_the_library():
    here = Path(__file__).parent
    bad = [hit for path in sorted(here.rglob("*.py")) for hit in _stage_imports(path)]
    assert not bad, f"tests/damt imports a stage (move the test to tests/<stage>/): {bad}"
