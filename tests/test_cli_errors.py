"""User and environment errors are one line on stderr and a non-zero exit, never a traceback
(issue 12, item 12). Each case builds its bad input from one small synthetic cache and a step-0
checkpoint of the tiny model (no training step is needed for these errors)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from damt.cli import main
from damt.config import load_config
from damt.synth import make_subject
from preprocess.run import cache_lock, run_preprocess

SMALL = ["--set", "tasks.atlas.enabled=false", "--set", "tasks.mim.enabled=false"]


@pytest.fixture(scope="module")
def world(tmp_path_factory, repo):
    base = tmp_path_factory.mktemp("cli_errors")
    root = base / "cohort"
    for i in range(2):
        make_subject(root, f"sub-{i}", seed=30 + i, shape=(48, 48, 48))
    tiny = repo / "configs" / "tiny.yaml"
    run_preprocess(load_config(tiny, [f"data.inputs=['{root}']"]), base / "cache", workers=0, progress=False)
    from train.loop import Trainer  # noqa: PLC0415

    cfg = load_config(tiny, ["tasks.atlas.enabled=false", "tasks.mim.enabled=false"])
    trainer = Trainer(cfg, base / "cache", base / "run", progress=False)
    trainer.save()
    trainer.logger.close()
    return {"base": base, "root": root, "cache": base / "cache", "run": base / "run", "tiny": str(tiny),
            "ckpt": next((base / "run" / "checkpoints").glob("step_*"))}


def _copy_cache(w, tmp_path) -> Path:
    dst = tmp_path / "cache"
    shutil.copytree(w["cache"], dst)
    return dst


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def case_probe_empty_csv(w, tmp):
    (tmp / "t.csv").write_text("")
    return ["probe", str(w["run"]), "--target", "age", "--csv", str(tmp / "t.csv"), "--out", str(tmp / "r.json")], \
        "is empty"


def case_probe_latin1_csv(w, tmp):
    (tmp / "t.csv").write_bytes("subject_id,age,site\nsub-0,70,Düsseldorf\n".encode("latin-1"))
    return ["probe", str(w["run"]), "--target", "age", "--csv", str(tmp / "t.csv"), "--out", str(tmp / "r.json")], \
        "not UTF-8"


def case_truncated_checkpoint(w, tmp):
    run = tmp / "run"
    shutil.copytree(w["run"], run)
    _truncate(next((run / "checkpoints").glob("step_*")) / "state.pt")
    return ["export", str(run), str(tmp / "export")], "remove this checkpoint folder"


def case_resume_other_model_shape(w, tmp):
    run = tmp / "run"
    shutil.copytree(w["run"], run)
    return ["train", w["tiny"], "--cache", str(w["cache"]), "--out", str(run), "--resume", "--quiet",
            "--allow-config-change", *SMALL, "--set", "model.embed_dim=24"], "do not fit the model"


def case_export_to_a_file(w, tmp):
    (tmp / "file").write_text("x")
    return ["export", str(w["run"]), str(tmp / "file")], "is a file"


def case_truncated_manifest_train(w, tmp):
    cache = _copy_cache(w, tmp)
    _truncate(cache / "manifest.parquet")
    return ["train", w["tiny"], "--cache", str(cache), "--out", str(tmp / "run"), "--quiet", *SMALL], "move it aside"


def case_truncated_manifest_preprocess(w, tmp):
    cache = _copy_cache(w, tmp)
    _truncate(cache / "manifest.parquet")
    return ["preprocess", "--input", str(w["root"]), "--cache", str(cache), "--workers", "0", "--quiet"], \
        "move it aside"


def case_truncated_manifest_qc(w, tmp):
    cache = _copy_cache(w, tmp)
    _truncate(cache / "manifest.parquet")
    return ["qc", "--cache", str(cache)], "move it aside"


def case_corrupt_targets_json(w, tmp):
    cache = _copy_cache(w, tmp)
    (cache / "targets.json").write_text('{"format": "damt-targets-v1", "morphometry": [1, 2')
    return ["train", w["tiny"], "--cache", str(cache), "--out", str(tmp / "run"), "--quiet", *SMALL], \
        "rerun `damt preprocess`"


def case_train_while_first_preprocess_runs(w, tmp):
    cache = _copy_cache(w, tmp)
    (cache / "targets.json").unlink()  # a first run writes it at its end
    return ["train", w["tiny"], "--cache", str(cache), "--out", str(tmp / "run"), "--quiet", *SMALL], \
        "a run still in progress writes it"


def case_negative_workers(w, tmp):
    return ["preprocess", "--input", str(w["root"]), "--cache", str(tmp / "c"), "--workers", "-1"], "must be 0"


def case_cache_is_a_file_preprocess(w, tmp):
    (tmp / "c").write_text("x")
    return ["preprocess", "--input", str(w["root"]), "--cache", str(tmp / "c"), "--workers", "0"], "is a file"


def case_cache_is_a_file_train(w, tmp):
    (tmp / "c").write_text("x")
    return ["train", w["tiny"], "--cache", str(tmp / "c"), "--out", str(tmp / "run"), "--quiet"], "holds no cache"


def case_seed_out_of_range(w, tmp):
    return ["train", w["tiny"], "--cache", str(w["cache"]), "--out", str(tmp / "run"), "--set",
            "train.seed=18446744073709551616"], "train.seed: must be <="


def case_empty_out_dir(w, tmp):
    return ["train", w["tiny"], "--cache", str(w["cache"]), "--set", "train.out_dir="], "empty path"


def case_empty_out_flag(w, tmp):
    return ["train", w["tiny"], "--cache", str(w["cache"]), "--out", ""], "empty path"


def case_empty_cache_dir(w, tmp):
    return ["preprocess", "--input", str(w["root"]), "--set", "data.cache_dir="], "empty path"


def case_nan_learning_rate(w, tmp):
    return ["train", w["tiny"], "--cache", str(w["cache"]), "--out", str(tmp / "run"), "--set",
            "optim.base_lr=.nan"], "optim.base_lr: expected a finite number"


def case_cohort_name_with_equals(w, tmp):
    shutil.copytree(w["root"] / "sub-0", tmp / "a=b" / "sub-0")
    return ["preprocess", "--input", str(tmp / "a=b"), "--cache", str(tmp / "c"), "--workers", "0"], \
        "give NAME=PATH"


def case_csv_without_a_target_column(w, tmp):
    (tmp / "t.csv").write_text("subject_id,site\nsub-0,A\n")
    return ["preprocess", "--input", str(w["root"]), "--cache", str(tmp / "c"), "--workers", "0", "--set",
            f"targets.csv_import.files=[{{path: '{tmp / 't.csv'}', kind: morphometry}}]"], "no usable target column"


CASES = {name[5:]: fn for name, fn in dict(globals()).items() if name.startswith("case_")}


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as stop:  # argparse's usage errors
        return stop.code


@pytest.mark.parametrize("name", sorted(CASES))
def test_user_error_is_one_line(world, tmp_path, capsys, name):
    argv, words = CASES[name](world, tmp_path)
    rc = _run(argv)
    err = capsys.readouterr().err
    assert rc not in (0, None), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert words in err, err


def test_training_while_a_preprocess_holds_the_cache(world, tmp_path, capsys):
    cache = _copy_cache(world, tmp_path)
    (cache / "targets.json").unlink()
    with cache_lock(cache):
        rc = main(["train", world["tiny"], "--cache", str(cache), "--out", str(tmp_path / "run"), "--quiet", *SMALL])
    err = capsys.readouterr().err
    assert rc == 2 and "a damt preprocess run holds it" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("how", ["parent", "named"])
def test_cohort_paths_with_equals_work(world, tmp_path, capsys, how):
    """'=' in a path: a folder that exists is a path; NAME=PATH splits at the first '='."""
    parent = tmp_path / "x=y"
    parent.mkdir()
    shutil.copytree(world["root"] / "sub-0", parent / "cohort" / "sub-0")
    arg = str(parent / "cohort") if how == "parent" else f"named={parent / 'cohort'}"
    rc = main(["preprocess", "--input", arg, "--cache", str(tmp_path / "c"), "--workers", "0", "--quiet"])
    assert rc == 0, capsys.readouterr().err
