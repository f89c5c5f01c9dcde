"""The ``damt`` command line: parse flags, load and validate the config once, call a stage.

Part of the app layer (damt.app), the only library code that imports the stages. Stages are
imported inside their handlers so ``damt --help`` and ``damt config`` stay fast. ``damt.cli`` is
an alias of this module (``python -m damt.cli``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from damt import __version__
from damt.app.resources import tiny_config
from damt.config import ConfigError, DamtConfig, dump_config, load_config


def _path(value: str) -> str:
    """argparse type of a path flag: an empty path would mean the current folder, silently."""
    if not value.strip():
        raise argparse.ArgumentTypeError("may not be an empty path")
    return value


def _workers(value: str) -> int:
    """argparse type of --workers: a count of worker processes, 0 = in this process."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (in this process) or more, got {n}")
    return n


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", default=None,
                   help="pipeline config YAML (default: ./pipeline.yaml if present, else built-in defaults)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key with a type check, e.g. --set preprocess.spacing_mm=1.5")


def _load(args: argparse.Namespace, extra: list[str] = ()) -> DamtConfig:
    path = args.config
    if path is None and Path("pipeline.yaml").is_file():
        path = "pipeline.yaml"
    return load_config(path, [*extra, *args.overrides])


def _inputs_override(inputs: list[str] | None) -> list[str]:
    return [f"data.inputs={json.dumps(inputs)}"] if inputs else []


def cmd_config(args: argparse.Namespace) -> int:
    if args.markdown:
        from damt.config.render import to_markdown  # noqa: PLC0415
        print(to_markdown(_load(args)))
    else:
        print(dump_config(_load(args)), end="")
    return 0


def cmd_preprocess(args: argparse.Namespace) -> int:
    extra = _inputs_override(args.input)
    if args.cache:
        extra.append(f"data.cache_dir={json.dumps(args.cache)}")
    cfg = _load(args, extra)
    if not cfg.data.inputs:
        raise ConfigError("data.inputs", "no cohort root given: pass --input DIR or set data.inputs")
    from preprocess.interrupt import PreprocessInterrupted  # noqa: PLC0415
    from preprocess.run import run_preprocess  # noqa: PLC0415

    try:
        summary = run_preprocess(cfg, Path(cfg.data.cache_dir), workers=args.workers, scheduler=args.scheduler,
                                 progress=not args.quiet)
    except PreprocessInterrupted as err:  # one line: what was kept and how to go on
        print(f"damt preprocess: {err}", file=sys.stderr)
        return err.exit_code
    print(summary.table())
    if summary.unwritten:  # the cache's disk, not the inputs: the run did not finish its job
        print(f"damt preprocess: error: {summary.unwritten} subject(s) could not be written to the cache "
              f"(disk_full / read_only rows); fix the cache's file system and rerun", file=sys.stderr)
        return 1
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    extra = [f"data.cache_dir={json.dumps(args.cache)}"] if args.cache else []
    if args.out:
        extra.append(f"train.out_dir={json.dumps(args.out)}")
    cfg = _load(args, extra)
    from damt.errors import NonFiniteStateError  # noqa: PLC0415
    from train.data import NoOkSubjectsError  # noqa: PLC0415
    from train.loop import TooManySkips, train  # noqa: PLC0415

    try:
        result = train(cfg, resume=args.resume, max_steps=args.max_steps,
                       allow_config_change=args.allow_config_change, progress=not args.quiet)
    except (TooManySkips, NonFiniteStateError) as err:
        print(f"damt train: stopped: {err}", file=sys.stderr)
        return 3
    except NoOkSubjectsError as err:
        print(f"damt train: error: {err}", file=sys.stderr)
        return 2
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one summary (rank 0's) is enough
        print(f"damt train: {result.stopped_by} at step {result.step} (epoch {result.epoch} of {result.epochs}), "
              f"{result.skipped_steps} skipped steps; checkpoint {result.checkpoint}")
    # 128 + signal number, the shell's convention, so a scheduler sees a preempted run as such
    return {"SIGTERM": 143, "SIGINT": 130}.get(result.stopped_by, 0)


def cmd_qc(args: argparse.Namespace) -> int:
    extra = [f"data.cache_dir={json.dumps(args.cache)}"] if args.cache else []
    cfg = _load(args, extra)
    from preprocess.qc import run_qc  # noqa: PLC0415

    try:
        result = run_qc(cfg, Path(cfg.data.cache_dir), out=Path(args.out) if args.out else None,
                        verify=args.verify, table=Path(args.csv) if args.csv else None, by=args.by)
    except FileNotFoundError as err:
        print(f"damt: error: {err}", file=sys.stderr)
        return 2
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{result.n_subjects} subjects: {result.n_ok} ok, {result.n_failed} failed, "
          f"{len(result.flagged)} flagged as outliers\nreport: {result.html}\ntable:  {result.subjects_csv}")
    if result.problems is None:
        return 0
    for problem in result.problems:
        print(f"MISMATCH {problem}")
    print(f"verify: {len(result.problems)} problem(s)" if result.problems else "verify: every ok store matches "
          "the cache contract")
    return 1 if result.problems else 0


def cmd_cache(args: argparse.Namespace) -> int:
    extra = [f"data.cache_dir={json.dumps(args.cache)}"] if args.cache else []
    cfg = _load(args, extra)
    from preprocess.relayout import run_relayout  # noqa: PLC0415

    try:
        summary = run_relayout(cfg, Path(cfg.data.cache_dir), workers=args.workers, progress=not args.quiet)
    except FileNotFoundError as err:
        print(f"damt: error: {err}", file=sys.stderr)
        return 2
    print(summary.table())
    return 1 if summary.failed else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from damt.app.demo import run_demo  # noqa: PLC0415

    with tiny_config() as tiny:
        if args.config is None:  # the demo trains on a CPU: the packaged tiny config, not pipeline.yaml
            args.config = str(tiny)
        cfg = _load(args)
    return run_demo(cfg, out=Path(args.out), inputs=args.input, workers=args.workers, steps=args.steps)


def cmd_bench(args: argparse.Namespace) -> int:
    cfg = _load(args, _inputs_override(args.input))
    if args.what == "preprocess":
        from damt.app.baseline import monai_chain  # noqa: PLC0415
        from preprocess.bench import bench_preprocess  # noqa: PLC0415

        for result in bench_preprocess(cfg, limit=args.subjects, repeats=args.repeats,
                                       workers=[int(w) for w in args.workers.split(",")], chain=monai_chain):
            print(json.dumps(result), flush=True)
        return 0
    if args.what == "memory":
        from damt.model.memory import ORDER  # noqa: PLC0415

        if args.tiny:
            with tiny_config() as tiny:
                cfg = load_config(args.config or tiny, args.overrides)
        names = tuple(n.strip() for n in (args.settings or ",".join(ORDER)).split(",") if n.strip())
        bad = [n for n in names if n not in ORDER]
        if bad:
            raise ConfigError("--settings", f"unknown setting(s) {bad}; known: {', '.join(ORDER)}")
        if args.measure:
            from train.memory import calibrate  # noqa: PLC0415

            results = calibrate(cfg, batch=args.batch, names=names)
        else:
            from train.memory import bench_memory  # noqa: PLC0415

            results = bench_memory(cfg, batch=args.batch, names=names, target=args.target)
        for result in results:
            print(json.dumps(result), flush=True)
        return 0
    if args.what in ("step", "flops"):
        from train.bench_step import SETTINGS  # noqa: PLC0415

        if args.tiny:  # the tiny model (a CPU can run it) unless CONFIG is given, with the --set overrides
            with tiny_config() as tiny:
                cfg = load_config(args.config or tiny, args.overrides)
        names = tuple(n.strip() for n in (args.settings or "default,original").split(",") if n.strip())
        bad = [n for n in names if n not in SETTINGS]
        if bad:
            raise ConfigError("--settings", f"unknown setting(s) {bad}; known: {', '.join(SETTINGS)}")
        if args.what == "flops":
            from train.bench_flops import bench_flops  # noqa: PLC0415

            results = bench_flops(cfg, batch=args.batch, names=names)
        else:
            from train.bench_step import bench_step  # noqa: PLC0415

            results = bench_step(cfg, steps=args.steps, warmup=args.warmup, batch=args.batch,
                                 compile_model=args.compile, names=names)
        for result in results:
            print(json.dumps(result), flush=True)
        return 0
    if args.what == "loader":
        from damt.app.baseline import monai_chain  # noqa: PLC0415
        from train.bench_loader import bench_loader  # noqa: PLC0415

        caches = [Path(c) for c in (args.cache or [cfg.data.cache_dir])]
        for result in bench_loader(cfg, caches, limit=args.subjects, repeats=args.repeats,
                                   chain_repeats=args.repeats, chain=monai_chain):
            print(json.dumps(result), flush=True)
        return 0
    raise ConfigError("bench", f"unknown benchmark {args.what!r}")


def _downstream_errors() -> tuple[type[Exception], ...]:
    """Errors of export/embed/probe that mean "fix your input", printed without a traceback."""
    from damt.export import ExportError  # noqa: PLC0415
    from damt.probe import ProbeError  # noqa: PLC0415
    from train.export_cli import CheckpointNotFound  # noqa: PLC0415

    return (CheckpointNotFound, ExportError, ProbeError)


def cmd_export(args: argparse.Namespace) -> int:
    from train.export_cli import export  # noqa: PLC0415

    try:
        result = export(args.checkpoint, args.out_dir, cache=args.cache)
    except _downstream_errors() as err:
        print(f"damt export: error: {err}", file=sys.stderr)
        return 2
    ck = result.sidecar["checkpoint"]
    print(f"damt export: step {ck['step']} of {ck['path']} -> {result.out_dir}")
    for name, path in result.files.items():
        print(f"  {name:<10} {path}")
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    from train.embed import embed  # noqa: PLC0415

    try:
        path, frame = embed(args.checkpoint, args.out, cache=args.cache, device=args.device,
                            batch=args.batch)
    except _downstream_errors() as err:
        print(f"damt embed: error: {err}", file=sys.stderr)
        return 2
    print(f"damt embed: {len(frame)} subjects x {frame.shape[1] - 2} dims -> {path}")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from train.probe import run_probe, summary  # noqa: PLC0415

    try:
        report = run_probe(args.checkpoint, args.target, cache=args.cache, csv=args.csv,
                           id_column=args.id_column, task=args.task, folds=args.folds,
                           seed=args.seed, alpha=args.alpha, device=args.device,
                           batch=args.batch, out=args.out,
                           allow_pretraining_target=args.allow_pretraining_target)
    except _downstream_errors() as err:
        print(f"damt probe: error: {err}", file=sys.stderr)
        return 2
    print(summary(report))
    print(f"report: {args.out}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line (the usage is one --help away)."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="damt", description="DAMT: multi-task self-supervised pretraining of a 3D Swin encoder on "
                                 "FreeSurfer-processed brain MRI. Docs: README.md and docs/.")
    parser.add_argument("--version", action="version", version=f"damt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("preprocess", help="FreeSurfer subjects -> validated zarr cache + manifest")
    _config_args(p)
    p.add_argument("--input", action="append", metavar="[NAME=]DIR",
                   type=_path, help="cohort root in SUBJECTS_DIR layout (repeatable; replaces data.inputs)")
    p.add_argument("--cache", metavar="DIR", type=_path, help="cache folder (data.cache_dir)")
    p.add_argument("--workers", type=_workers, default=None,
                   help="local dask worker processes (dask.workers; 0 = run in this process)")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="use a running dask.distributed scheduler instead of a local cluster")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_preprocess)

    p = sub.add_parser("qc", help="dataset QC report (HTML + CSV) of a cache; --verify checks every store")
    _config_args(p)
    p.add_argument("--cache", metavar="DIR", type=_path, help="cache folder (data.cache_dir)")
    p.add_argument("--out", metavar="DIR", type=_path, help="report folder (qc.out_dir; default <cache>/qc)")
    p.add_argument("--verify", action="store_true",
                   help="re-read every ok store and check it against the cache contract; exit 1 on a mismatch")
    p.add_argument("--csv", metavar="FILE", help="your table of subjects (CSV, or TSV such as participants.tsv): "
                   "an id column and covariates such as site, scanner, age")
    p.add_argument("--by", metavar="COLUMN", help="stratify the report by this column of --csv (a numeric "
                   "column with many values is cut into 5 groups); --set qc.z_scope=by scores within each")
    p.set_defaults(func=cmd_qc)

    p = sub.add_parser("cache", help="cache maintenance: `relayout` rewrites every store into the configured "
                                     "layout (preprocess.chunk_vox/slab_vox/codec/clevel) from its own arrays")
    p.add_argument("action", choices=["relayout"], help="what to do")
    _config_args(p)
    p.add_argument("--cache", metavar="DIR", type=_path, help="cache folder (data.cache_dir)")
    p.add_argument("--workers", type=int, default=1, help="processes rewriting stores (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_cache)

    p = sub.add_parser("demo", help="the pipeline on a small embedded synthetic cohort (CPU, minutes)")
    _config_args(p)
    p.add_argument("--input", action="append", metavar="[NAME=]DIR",
                   help="run on your own FreeSurfer subjects instead of the embedded cohort")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--workers", type=_workers, default=None, help="local dask workers")
    p.add_argument("--steps", type=int, default=None,
                   help="training steps of the demo run (default: the demo's own, a few minutes)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="multi-task pretraining from a cache (resumable)")
    _config_args(p)
    p.add_argument("--cache", metavar="DIR", type=_path, help="cache folder (data.cache_dir)")
    p.add_argument("--out", metavar="DIR", type=_path, help="run directory (train.out_dir)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the run directory's latest complete checkpoint")
    p.add_argument("--max-steps", type=int, default=None, metavar="N",
                   help="stop (with a checkpoint) once the run's global step count reaches N")
    p.add_argument("--allow-config-change", action="store_true",
                   help="resume even if the config differs from the checkpoint's")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("bench", help="benchmarks; prints one JSON line per result")
    p.add_argument("what", choices=["preprocess", "loader", "step", "flops", "memory"],
                   help="what to measure (flops: forward FLOPs per component, counted on the meta "
                        "device without running; memory: predicted peak GiB of one training step "
                        "per gradient checkpointing setting, without a GPU)")
    _config_args(p)
    p.add_argument("--input", action="append", metavar="[NAME=]DIR", help="cohort roots to measure on")
    p.add_argument("--subjects", type=int, default=4, help="subjects measured (default 4)")
    p.add_argument("--repeats", type=int, default=1, help="timed repeats per subject (default 1)")
    p.add_argument("--workers", default="1", help="comma list of dask worker counts for scaling, e.g. 1,2")
    p.add_argument("--cache", action="append", metavar="DIR",
                   help="loader: cache to read (default data.cache_dir); repeat to compare store layouts")
    p.add_argument("--tiny", action="store_true",
                   help="step, flops, memory: the tiny model of configs/tiny.yaml (shipped with damt) "
                        "instead of CONFIG's (for a CPU)")
    p.add_argument("--steps", type=int, default=10, help="step: timed steps per setting (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="step: untimed steps first (default 3)")
    p.add_argument("--batch", type=int, default=2, help="step, flops, memory: samples per step (default 2)")
    p.add_argument("--settings", default=None, metavar="NAME,...",
                   help="step, flops: settings compared (default, original, swinunetr_decoder; "
                        "default: default,original); memory: checkpointing settings (default: "
                        "none,layers3,all)")
    p.add_argument("--target", choices=["cuda", "cpu"], default="cuda",
                   help="memory: the device predicted for (default cuda: bf16 with train.precision "
                        "auto, fused attention)")
    p.add_argument("--measure", action="store_true",
                   help="memory: also run two real steps per setting on this machine (GPU, or a "
                        "fresh fp32 CPU process each) and print measured against predicted")
    p.add_argument("--compile", action="store_true", help="step: torch.compile the default setting")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("export", help="encoder weights for MONAI SwinUNETR (+ SSL state dict, JSON sidecar)")
    p.add_argument("checkpoint", metavar="CHECKPOINT|RUN_DIR",
                   help="a checkpoint folder, or a run directory (its latest complete checkpoint)")
    p.add_argument("out_dir", metavar="OUT_DIR", type=_path, help="folder for the exported files")
    p.add_argument("--cache", metavar="DIR", default=None,
                   help="training cache, to record its preprocess hash and target names "
                        "(default: the checkpoint config's data.cache_dir, if it exists)")
    p.set_defaults(func=cmd_export)

    def downstream_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("checkpoint", metavar="CHECKPOINT|RUN_DIR",
                       help="a checkpoint folder, or a run directory (its latest complete checkpoint)")
        p.add_argument("--cache", metavar="DIR", default=None,
                       help="cache to embed (default: the checkpoint config's data.cache_dir)")
        p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
        p.add_argument("--batch", type=int, default=2, help="subjects per encoder pass (default 2)")

    p = sub.add_parser("embed", help="pooled encoder embeddings per subject (parquet), centre crops")
    downstream_args(p)
    p.add_argument("--out", required=True, metavar="FILE", type=_path, help="output parquet file")
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("probe", help="linear probe of a target from embeddings: pretrained vs random init")
    downstream_args(p)
    p.add_argument("--target", required=True, metavar="COLUMN",
                   help="a column of --csv (age, sex, diagnosis), or a morphometry/radiomics "
                        "column of the cache")
    p.add_argument("--allow-pretraining-target", action="store_true",
                   help="probe a column the encoder was pretrained to regress (refused otherwise: "
                        "it measures memorisation, not transfer)")
    p.add_argument("--csv", metavar="FILE", default=None, help="CSV with the target, one row per subject")
    p.add_argument("--id-column", default="subject_id",
                   help="subject id column of --csv (default subject_id)")
    p.add_argument("--task", default="auto", choices=["auto", "regression", "classification"],
                   help="auto: numeric with more than 2 values is regression, else classification")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds by subject (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fold assignment (default 0)")
    p.add_argument("--alpha", type=float, default=None,
                   help="L2 strength (default: ridge picks it by leave-one-out; logistic uses 1.0)")
    p.add_argument("--out", required=True, metavar="REPORT.json", type=_path, help="the JSON report")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("config", help="print the resolved, validated config (or its reference table)")
    _config_args(p)
    p.add_argument("--markdown", action="store_true", help="print the key reference as a Markdown table")
    p.set_defaults(func=cmd_config)
    return parser


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors that mean "fix your input or setup", printed without a traceback."""
    from damt.errors import (  # noqa: PLC0415
        CacheBusyError,
        CacheWriteError,
        CheckpointWriteError,
        CorruptCheckpointError,
        ManifestError,
        TargetsFileError,
    )
    from damt.labels import LabelTableError  # noqa: PLC0415
    from damt.qc.strata import StrataError  # noqa: PLC0415
    from damt.targets import FsStatsError, SchemaError, TissueTableError  # noqa: PLC0415
    from damt.targets.csv_import import CsvImportError  # noqa: PLC0415

    return (LabelTableError, SchemaError, TissueTableError, CsvImportError, FsStatsError, CacheBusyError,
            StrataError, CacheWriteError, ManifestError, CheckpointWriteError, CorruptCheckpointError,
            TargetsFileError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    user_errors = _user_errors()
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"damt: config error: {err}", file=sys.stderr)
        return 2
    except user_errors as err:
        print(f"damt: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("damt: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
