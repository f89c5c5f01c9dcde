"""The wheel is the product (issue 14, point 7): built from the repository it holds the package
data the commands need (the tiny config, the label and schema tables), and ``damt demo`` works from
a non-editable install in a temporary venv, far from any checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: what a wheel needs to hold besides the code (importlib.resources reads them at run time)
PACKAGE_DATA = ("damt/configs/tiny.yaml", "damt/labels/damt-v1.tsv", "damt/labels/damt-v1.colours.tsv")


def test_the_user_facing_tiny_config_is_the_packaged_one():
    """configs/tiny.yaml is a copy of damt/configs/tiny.yaml (README, Layout): edit one, copy it."""
    assert (REPO / "configs" / "tiny.yaml").read_bytes() == (REPO / "damt" / "configs" / "tiny.yaml").read_bytes(), (
        "configs/tiny.yaml and damt/configs/tiny.yaml differ: copy the one you edited over the other")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built, without network or build isolation, from a copy of the repository's files
    (so no build/ or egg-info lands in the checkout)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("damt", "preprocess", "train", "configs"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", "-w", str(out), str(src)], check=True, capture_output=True, text=True)
    (found,) = out.glob("damt-*.whl")
    return found


@pytest.mark.slow
def test_the_wheel_holds_the_package_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in PACKAGE_DATA:
        assert required in names, f"{required} is not in {wheel.name}"
    assert any(n.startswith("damt/targets/") and n.endswith(".tsv") for n in names)
    assert {"damt/app/cli.py", "damt/cache/cache.py", "preprocess/run.py", "train/loop.py"} <= names
    entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "damt = damt.app.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


@pytest.mark.slow
def test_damt_demo_runs_from_a_non_editable_install(wheel, tmp_path, synth_cohort):
    """A venv whose only damt is the wheel (the dependencies come from this interpreter's
    site-packages through a .pth line, which does not run the editable install's finder there),
    then ``damt demo`` from an empty folder: the tiny config must come from the package."""
    import sysconfig

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps",
                    "--no-index", "-q", str(wheel)], check=True, capture_output=True, text=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = "import damt, train; print(damt.__file__, train.__file__)"
    where = subprocess.run([str(venv / "bin" / "python"), "-c", probe],
                           cwd=work, env=env, check=True, capture_output=True, text=True).stdout.split()
    assert all(Path(w).is_relative_to(site) for w in where), where  # the wheel's code, not the checkout's
    demo = subprocess.run([str(venv / "bin" / "damt"), "demo", "--input", f"synth={synth_cohort}", "--out", "out",
                           "--workers", "0", "--steps", "2"], cwd=work, env=env, capture_output=True, text=True,
                          timeout=900)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-4000:]
    assert "training 2 steps of the tiny model" in demo.stdout and "checkpoint:" in demo.stdout
    run_config = (work / "out" / "run" / "config.yaml").read_text()
    assert "embed_dim: 12" in run_config  # the tiny model, from the packaged configs/tiny.yaml
