"""The ``damt`` command line: parse flags, load and validate the config once, call a stage.

Stages are imported inside their handlers so ``damt --help`` and ``damt config`` stay fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from damt import __version__
from damt.config import ConfigError, DamtConfig, dump_config, load_config


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
    from preprocess.run import run_preprocess  # noqa: PLC0415

    summary = run_preprocess(cfg, Path(cfg.data.cache_dir), workers=args.workers, scheduler=args.scheduler,
                             progress=not args.quiet)
    print(summary.table())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from preprocess.demo import run_demo  # noqa: PLC0415

    return run_demo(_load(args), out=Path(args.out), inputs=args.input, workers=args.workers)


def cmd_bench(args: argparse.Namespace) -> int:
    cfg = _load(args, _inputs_override(args.input))
    if args.what == "preprocess":
        from preprocess.bench import bench_preprocess  # noqa: PLC0415

        for result in bench_preprocess(cfg, limit=args.subjects, repeats=args.repeats,
                                       workers=[int(w) for w in args.workers.split(",")]):
            print(json.dumps(result), flush=True)
        return 0
    raise ConfigError("bench", f"unknown benchmark {args.what!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="damt", description="DAMT: multi-task self-supervised pretraining of a 3D Swin encoder on "
                                 "FreeSurfer-processed brain MRI. Docs: README.md and docs/.")
    parser.add_argument("--version", action="version", version=f"damt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("preprocess", help="FreeSurfer subjects -> validated zarr cache + manifest")
    _config_args(p)
    p.add_argument("--input", action="append", metavar="[NAME=]DIR",
                   help="cohort root in SUBJECTS_DIR layout (repeatable; replaces data.inputs)")
    p.add_argument("--cache", metavar="DIR", help="cache folder (data.cache_dir)")
    p.add_argument("--workers", type=int, default=None,
                   help="local dask worker processes (dask.workers; 0 = run in this process)")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="use a running dask.distributed scheduler instead of a local cluster")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_preprocess)

    p = sub.add_parser("demo", help="the pipeline on a small embedded synthetic cohort (CPU, minutes)")
    _config_args(p)
    p.add_argument("--input", action="append", metavar="[NAME=]DIR",
                   help="run on your own FreeSurfer subjects instead of the embedded cohort")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--workers", type=int, default=None, help="local dask workers")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("bench", help="benchmarks; prints one JSON line per result")
    p.add_argument("what", choices=["preprocess"], help="what to measure")
    _config_args(p)
    p.add_argument("--input", action="append", metavar="[NAME=]DIR", help="cohort roots to measure on")
    p.add_argument("--subjects", type=int, default=4, help="subjects measured (default 4)")
    p.add_argument("--repeats", type=int, default=1, help="timed repeats per subject (default 1)")
    p.add_argument("--workers", default="1", help="comma list of dask worker counts for scaling, e.g. 1,2")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("config", help="print the resolved, validated config (or its reference table)")
    _config_args(p)
    p.add_argument("--markdown", action="store_true", help="print the key reference as a Markdown table")
    p.set_defaults(func=cmd_config)
    return parser


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors that mean "fix your input or setup", printed without a traceback."""
    from damt.labels import LabelTableError  # noqa: PLC0415
    from damt.targets import FsStatsError, SchemaError, TissueTableError  # noqa: PLC0415
    from damt.targets.csv_import import CsvImportError  # noqa: PLC0415
    from preprocess.run import CacheBusyError  # noqa: PLC0415

    return (LabelTableError, SchemaError, TissueTableError, CsvImportError, FsStatsError, CacheBusyError)


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
