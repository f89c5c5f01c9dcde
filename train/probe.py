"""``damt probe CHECKPOINT --target COLUMN``: a linear probe from embeddings to one target,
pretrained encoder against a randomly initialised encoder of the same sizes, in one run.

The target is a column of a user CSV keyed by subject id (age, sex, diagnosis), or a morphometry
or radiomics column of the cache (raw value from each subject store, e.g.
``aseg.Left-Hippocampus.Volume_mm3``). A column the encoder was pretrained to regress (a cache
target of an enabled morphometry/texture task, or a CSV column that is one) is refused unless
``allow_pretraining_target``: probing it measures what pretraining memorised, not what transfers.
Both encoders embed the same centred crops (train/embed.py); the probes share the folds
(damt/probe.py). The random-init encoder is built from the run's own ``train.seed``.
"""

from __future__ import annotations

import difflib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from damt.cache import KINDS, TARGETS_FILE, Cache, open_subject
from damt.durable import atomic_write_text
from damt.probe import TASKS, ProbeError, format_table, probe_compare
from train.embed import build_encoder, cache_mismatch, embed_subjects, embedding_meta
from train.export_cli import load_run_checkpoint

ROW_LABELS = {"pretrained": "pretrained", "random_init": "random init", "no_features": "no features"}


def _unknown(name: str, where: str, options: list[str]) -> ProbeError:
    close = difflib.get_close_matches(name, options, n=5, cutoff=0.5)
    hint = f"; close matches: {', '.join(close)}" if close else ""
    return ProbeError(f"target column {name!r} is not {where}{hint}")


def cache_target(cache: Path, column: str) -> tuple[pd.Series, dict[str, Any]]:
    """Raw values of a cache target column per ok subject (NaN where not present)."""
    names = Cache(cache).targets().names
    kind = next((k for k in KINDS if column in names.get(k, [])), None)
    if kind is None:
        raise _unknown(column, f"a column of {Path(cache) / TARGETS_FILE} (morphometry, radiomics)",
                       [n for k in KINDS for n in names.get(k, [])])
    j = names[kind].index(column)
    values = {}
    for sid, store in Cache(cache).ok_subjects()[["subject_id", "store"]].itertuples(index=False):
        group = open_subject(Path(cache) / store)
        present = bool(np.asarray(group[f"{kind}_present"][j]))
        value = float(np.asarray(group[kind][j]))
        values[str(sid)] = value if present and math.isfinite(value) else math.nan
    return pd.Series(values, dtype=float), {"source": f"cache:{kind}", "column": column}


def csv_target(csv: Path, column: str, id_column: str) -> tuple[pd.Series, dict[str, Any]]:
    """A user CSV column keyed by subject id (ids read as strings: ``007`` stays ``007``)."""
    try:
        frame = pd.read_csv(csv, dtype={id_column: str})
    except FileNotFoundError:
        raise ProbeError(f"{csv}: no such file (--csv)") from None
    except pd.errors.EmptyDataError:
        raise ProbeError(f"{csv} is empty: --csv needs a header row and one row per subject") from None
    except UnicodeDecodeError as err:
        raise ProbeError(f"{csv} is not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8 "
                         f"(e.g. iconv -f latin1 -t utf-8)") from None
    except (pd.errors.ParserError, OSError, ValueError) as err:
        raise ProbeError(f"{csv} is not a readable CSV ({err})") from None
    if id_column not in frame.columns:
        raise _unknown(id_column, f"a column of {csv} (pass --id-column)", list(frame.columns))
    if column not in frame.columns:
        raise _unknown(column, f"a column of {csv}", list(frame.columns))
    frame = frame.dropna(subset=[id_column])
    dup = frame[id_column][frame[id_column].duplicated()].unique().tolist()
    if dup:
        raise ProbeError(f"{csv}: subject ids appear more than once ({', '.join(dup[:5])}); "
                         f"keep one row per subject")
    return (frame.set_index(id_column)[column],
            {"source": "csv", "csv": str(Path(csv).resolve()), "column": column, "id_column": id_column})


#: target kind of the cache -> the pretext task that regresses it
PRETRAINING_TASKS = {"morphometry": "morphometry", "radiomics": "texture"}


def pretraining_target(cfg, cache: Path, column: str, csv: Path | None) -> str | None:
    """Why ``column`` is a target the checkpoint's encoder (config ``cfg``) was pretrained to
    regress, or None. A CSV column counts when its name, or ``<csv stem>.<name>`` (how the cache
    names imported CSV columns), is a target column of an enabled regression task."""
    names = Cache(cache).targets().names
    wanted = [column] if csv is None else [column, f"{Path(csv).stem}.{column}"]
    for kind, task in PRETRAINING_TASKS.items():
        if not getattr(cfg.tasks, task).enabled:
            continue
        hit = next((n for n in wanted if n in names.get(kind, [])), None)
        if hit is not None:
            return (f"{hit!r} is a {kind} target the encoder was pretrained to regress "
                    f"(tasks.{task}, {Path(cache) / TARGETS_FILE})")
    return None


def resolve_task(values: pd.Series, task: str) -> str:
    """``auto``: numeric with more than two distinct values is regression, else classification."""
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if task == "auto":
        return "regression" if numeric and values.nunique() > 2 else "classification"
    if task not in TASKS:
        raise ProbeError(f"--task must be auto, regression or classification, got {task!r}")
    if task == "regression" and not numeric:
        raise ProbeError(f"target {values.name!r} is not numeric: use --task classification")
    return task


def encode_classes(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Class indices and names (numbers sorted as numbers, anything else as strings)."""
    uniq = values.unique().tolist()
    try:
        order = sorted(uniq, key=float)
    except (TypeError, ValueError):
        order = sorted(uniq, key=str)
    index = {v: i for i, v in enumerate(order)}
    return values.map(index).to_numpy(np.int64), [str(v) for v in order]


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None  # JSON has no NaN
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def run_probe(checkpoint: Path | str, target: str, cache: Path | str | None = None,
              csv: Path | str | None = None, id_column: str = "subject_id", task: str = "auto",
              folds: int = 5, seed: int = 0, alpha: float | None = None, device: str = "auto",
              batch: int = 2, out: Path | str | None = None,
              allow_pretraining_target: bool = False) -> dict[str, Any]:
    """Embed the cache with the pretrained and a random-init encoder, probe ``target`` with both on
    the same subject folds, and return (and write to ``out``, JSON) the report.

    ProbeError, before anything is embedded, when ``target`` is a pretraining target (see
    :func:`pretraining_target`) and ``allow_pretraining_target`` is False."""
    ck = load_run_checkpoint(checkpoint)
    cache = Path(cache) if cache is not None else Path(ck.cfg.data.cache_dir)
    # a broken --csv is the first thing to report; the circularity check then needs the cache
    csv_values = csv_target(Path(csv), target, id_column) if csv is not None else None
    circular = pretraining_target(ck.cfg, cache, target, Path(csv) if csv is not None else None)
    if circular is not None and not allow_pretraining_target:
        raise ProbeError(f"{circular}: a probe on it measures memorisation, not transfer; probe a "
                         f"column the encoder never saw (age, sex, diagnosis from --csv), or pass "
                         f"--allow-pretraining-target")
    values, target_info = csv_values if csv_values is not None else cache_target(cache, target)
    init_seed = ck.cfg.train.seed
    encoders = {"pretrained": build_encoder(ck.cfg, ck.state["model"]),
                "random_init": build_encoder(ck.cfg, seed=init_seed)}
    subjects, emb = embed_subjects(encoders, cache, ck.cfg, device, batch)
    ids = subjects["subject_id"].astype(str).tolist()
    joined = values.reindex(ids)
    keep = joined.notna().to_numpy()
    unmatched = sorted(set(map(str, values.index)) - set(ids))
    if keep.sum() < 3:
        raise ProbeError(f"only {int(keep.sum())} subjects of {cache} have a value for {target!r}; "
                         f"a probe needs at least 3")
    task = resolve_task(joined[keep], task)
    if task == "regression":
        y, classes = joined[keep].to_numpy(np.float64), []
    else:
        y, classes = encode_classes(joined[keep])
    kept_ids = [i for i, k in zip(ids, keep) if k]
    body = probe_compare({name: emb[name][keep] for name in encoders}, y, kept_ids, task,
                         folds=folds, seed=seed, alpha=alpha, class_names=classes)
    report = {
        **body,
        "target": target_info | {
            "pretraining_target": circular is not None,
            "n_subjects": len(kept_ids), "subjects_without_value": int((~keep).sum()),
            "rows_not_in_cache": len(unmatched),
            **({"mean": float(y.mean()), "std": float(y.std())} if task == "regression" else
               {"counts": dict(zip(classes, np.bincount(y, minlength=len(classes)).tolist()))})},
        "encoders": {
            "pretrained": embedding_meta(ck, cache, "pretrained"),
            "random_init": embedding_meta(ck, cache, "random_init", seed=init_seed)
            | {"init": "MaskedSwinEncoder(cfg.model) after torch.manual_seed(train.seed)"}},
        "preprocess_mismatch": cache_mismatch(cache, ck.cfg),
        # rows of fold_of_row and of every predictions list, in this order
        "subjects": kept_ids,
        "target_values": (y.tolist() if task == "regression" else [classes[i] for i in y]),
    }
    report = _json_safe(report)
    if out is not None:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(report, indent=1) + "\n")
    return report


def summary(report: dict[str, Any]) -> str:
    """The console summary: what was probed, then one row per encoder."""
    t, cv = report["target"], report["cv"]
    kind = (f"{report['task']}, classes {', '.join(report['classes'])}" if report["classes"]
            else report["task"])
    head = (f"probe {t['column']} ({kind}; {report['model']['kind']}) on {t['n_subjects']} subjects, "
            f"{cv['folds']}-fold CV by subject (seed {cv['seed']}); pretrained = step "
            f"{report['encoders']['pretrained']['step']}")
    table = format_table({"results": {k: {"metrics": {m: (math.nan if v is None else v)
                                                      for m, v in r["metrics"].items()}}
                                      for k, r in report["results"].items()}}, ROW_LABELS)
    return f"{head}\n{table}"
