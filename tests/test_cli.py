"""The thin CLI: help lists the commands, config errors name the key path, preprocess runs."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from damt.cli import main


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
