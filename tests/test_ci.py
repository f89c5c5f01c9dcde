"""`.ci/run` must call exactly the test command the README gives (the brief's CI rule)."""

from __future__ import annotations

import re


def test_ci_runs_the_readme_test_command(repo):
    readme = (repo / "README.md").read_text()
    blocks = re.findall(r"```\n(.*?)\n```", readme, re.S)
    command = next(b for b in blocks if "pytest" in b and b.startswith("bash scripts/setup.sh"))
    ci = (repo / ".ci" / "run").read_text().splitlines()
    assert ci[-1].endswith(command), (ci[-1], command)
