"""The thin CLI: help lists the commands, config errors name the key path, preprocess runs."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from damt.cli import main
from damt.config import load_config


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for cmd in ("preprocess", "demo", "bench", "config"):
        assert cmd in out


def test_config_error_is_reported_with_key_path(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("preprocess:\n  spacing_mm: 1.25\n  spacing_mm: 2.0\n")
    assert main(["config", str(bad)]) == 2
    assert "spacing_mm: duplicate key" in capsys.readouterr().err
    assert main(["config", "--set", "train.epochs=yes"]) == 2
    assert "train.epochs: expected an integer" in capsys.readouterr().err


def test_preprocess_without_inputs_is_a_config_error(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["preprocess", "--cache", str(tmp_path / "c")]) == 2
    assert "data.inputs" in capsys.readouterr().err


def test_preprocess_end_to_end(capsys, tmp_path, synth_cohort, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc = main(["preprocess", "--input", f"demo={synth_cohort}", "--cache", str(tmp_path / "cache"),
               "--workers", "0", "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "subjects found" in out and "ok" in out
    man = pd.read_parquet(tmp_path / "cache" / "manifest.parquet")
    assert (man["status"] == "ok").all() and set(man["cohort"]) == {"demo"}
    assert json.loads((tmp_path / "cache" / "targets.json").read_text())["n_subjects"] == len(man)


def test_resolved_config_printed(capsys):
    assert main(["config", "--set", "preprocess.spacing_mm=1.5"]) == 0
    assert "spacing_mm: 1.5" in capsys.readouterr().out


@pytest.mark.parametrize("where", ["parent", "subject"])
def test_input_at_the_wrong_folder_shows_the_layout_and_creates_no_cache(data_dir, tmp_path, capsys, where):
    """--input at the folder above the cohort roots, or at one subject's folder: exit 2 with one
    line naming the expected layout, what is there and the --input to use; no cache folder."""
    path = data_dir if where == "parent" else data_dir / "fs_bert" / "bert"
    cache = tmp_path / "cache"
    assert main(["preprocess", "--input", str(path), "--cache", str(cache), "--workers", "0", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "<subject>/mri/brainmask.mgz" in err and f"--input {data_dir / 'fs_bert'}" in err
    assert ("holds cohort roots" if where == "parent" else "one subject's folder") in err
    assert not cache.exists()


def test_train_on_a_cache_without_ok_subjects_is_one_line(tmp_path, capsys, repo):
    from preprocess.run import run_preprocess

    root = tmp_path / "cohort"
    for i in range(3):
        (root / f"m{i}" / "mri").mkdir(parents=True)   # no image: missing_image
    cache = tmp_path / "cache"
    run_preprocess(load_config(None, [f"data.inputs=['{root}']"]), cache, workers=0, progress=False)
    rc = main(["train", str(repo / "configs" / "tiny.yaml"), "--cache", str(cache), "--out", str(tmp_path / "run"),
               "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "all 3 failed" in err and "3 missing_image" in err and f"damt qc --cache {cache}" in err
    assert not (tmp_path / "run").exists()


def _readme_commands(repo) -> dict[str, set[str]]:
    """command -> the --flags its lines in README.md's "## Commands" block show."""
    text = (repo / "README.md").read_text()
    block = text.split("## Commands", 1)[1].split("```", 2)[1]
    out: dict[str, set[str]] = {}
    for line in block.splitlines():
        if line.startswith("damt "):
            cmd = line.split()[1]
            out.setdefault(cmd, set()).update(re.findall(r"--[a-z][a-z-]*", line))
    return out


def test_readme_command_list_matches_help(repo):
    """Every command of `damt --help` is in the README's list with exactly the flags of its own
    --help (bench's three lines together), and the README lists no other."""
    import argparse

    from damt.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    helped = {name: set(re.findall(r"--[a-z][a-z-]*", p.format_usage())) - {"--help"}
              for name, p in sub.choices.items()}
    assert _readme_commands(repo) == helped
