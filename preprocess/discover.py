"""Find subjects under cohort roots laid out like a FreeSurfer SUBJECTS_DIR.

A subject is a folder ``<root>/<id>/`` holding an ``mri/`` folder. Ids are checked against the
allowlist before any path is formed from them; ids taken by an earlier cohort (in the cache or
earlier in ``--input``) become ``duplicate_subject_id`` failures instead of overwriting.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path

from damt.cache import is_valid_id
from damt.config import ConfigError, DataConfig
from damt.errors import BadSubjectIdError, DuplicateSubjectError, SubjectError


@dataclass(frozen=True)
class Cohort:
    """One cohort root. ``name`` passes the id allowlist."""

    name: str
    root: Path


@dataclass(frozen=True)
class SubjectInput:
    """A discovered subject: where its files are (None when absent) and any discovery error."""

    subject_id: str
    cohort: str
    folder: Path
    image: Path | None = None
    parcellation: Path | None = None
    fallback_image: Path | None = None
    stats_dir: Path | None = None
    error: SubjectError | None = field(default=None, compare=False)

    def input_files(self) -> dict[str, Path]:
        """Role -> path of every input file that exists (the input hash covers exactly these)."""
        roles = {"image": self.image, "parcellation": self.parcellation, "fallback_image": self.fallback_image}
        files = {k: v for k, v in roles.items() if v is not None}
        if self.stats_dir is not None:
            for p in sorted(self.stats_dir.glob("*.stats")):
                files[f"stats/{p.name}"] = p
        return files


def parse_cohorts(inputs: list[str]) -> list[Cohort]:
    """``NAME=PATH`` or ``PATH`` (name = folder name) -> cohorts. Raises ConfigError on a bad name,
    a missing folder or a name used twice."""
    cohorts: list[Cohort] = []
    for item in inputs:
        # NAME=PATH splits at the first '=' (a name never holds one); a folder that exists as given
        # is a PATH even when it holds '=' itself
        name, _, path = item.partition("=") if "=" in item and not Path(item).expanduser().is_dir() \
            else ("", "", item)
        root = Path(path).expanduser()
        name = name or root.resolve().name
        if not is_valid_id(name):
            raise ConfigError("data.inputs", f"cohort name {name!r} is not allowed; give NAME=PATH")
        if not root.is_dir():
            raise ConfigError("data.inputs", f"cohort root {root} is not a folder")
        if any(c.name == name for c in cohorts):
            raise ConfigError("data.inputs", f"cohort name {name!r} given twice; give NAME=PATH")
        cohorts.append(Cohort(name, root))
    return cohorts


def _first_existing(folder: Path, stems: list[str], extensions: list[str]) -> Path | None:
    """The first ``<stem><ext>`` present in ``folder``. Present means any entry, also a FIFO or a
    broken link: its task then fails with ``not_a_file`` naming it, instead of silently taking the
    next name or calling the image missing."""
    for stem in stems:
        for ext in extensions:
            p = folder / f"{stem}{ext}"
            if os.path.lexists(p):
                return p
    return None


def _is_dir(entry: os.DirEntry) -> bool:
    """``entry.is_dir()``, False for a symlink loop or an unreadable entry (discovery never stops)."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _subject(cohort: Cohort, name: str, cfg: DataConfig) -> SubjectInput:
    folder = cohort.root / name
    mri = folder / "mri"
    stats = folder / "stats"
    return SubjectInput(
        subject_id=name, cohort=cohort.name, folder=folder,
        image=_first_existing(mri, cfg.image_names, cfg.extensions),
        parcellation=_first_existing(mri, [cfg.parcellation_name], cfg.extensions),
        fallback_image=_first_existing(mri, [cfg.fallback_image_name], cfg.extensions),
        stats_dir=stats if stats.is_dir() else None)


def discover(cohorts: list[Cohort], cfg: DataConfig, taken: dict[str, str] | None = None) -> list[SubjectInput]:
    """All subjects of ``cohorts``, sorted by (cohort order, id).

    taken: subject id -> cohort already owning it (from the cache's manifest). A subject whose id
    is owned by another cohort, or seen earlier in this call, gets a DuplicateSubjectError; one
    whose folder name fails the allowlist gets a BadSubjectIdError (and no path from it is used).
    """
    owner = dict(taken or {})
    found: list[SubjectInput] = []
    for cohort in cohorts:
        names = sorted(e.name for e in os.scandir(cohort.root)
                       if _is_dir(e) and not e.name.startswith(".")
                       and not any(fnmatch.fnmatch(e.name, pat) for pat in cfg.exclude))
        for name in names:
            if not is_valid_id(name):
                found.append(SubjectInput(name, cohort.name, cohort.root, error=BadSubjectIdError(
                    f"folder {name!r} in {cohort.root}: subject ids may use letters, digits and . _ + - "
                    f"only (no '..', no leading dot); rename the folder")))
                continue
            if not (cohort.root / name / "mri").is_dir():
                continue  # not a subject folder (e.g. a scripts or QA folder beside the subjects)
            if owner.setdefault(name, cohort.name) != cohort.name:
                found.append(SubjectInput(name, cohort.name, cohort.root / name, error=DuplicateSubjectError(
                    f"subject id {name!r} in cohort {cohort.name!r} is already used by cohort "
                    f"{owner[name]!r}; subject ids must be unique across cohorts (rename one)")))
                continue
            found.append(_subject(cohort, name, cfg))
    return found


def _looks_like_subject(folder: Path) -> bool:
    return (folder / "mri").is_dir()


def require_subjects(cohorts: list[Cohort], cfg: DataConfig) -> None:
    """ConfigError for a cohort root holding no subject folder (``<root>/<id>/mri/``), naming the
    expected layout and what the root holds instead: one subject's own folder, a folder of cohort
    roots, or something else. Reads folder listings only; call it before anything is written."""
    for cohort in cohorts:
        root = cohort.root
        try:
            entries = sorted(os.scandir(root), key=lambda e: e.name)
        except OSError as err:
            raise ConfigError("data.inputs", f"cohort root {root} cannot be listed: {err.strerror}") from None
        dirs = [e for e in entries if _is_dir(e) and not e.name.startswith(".")]
        excluded = [e.name for e in dirs if any(fnmatch.fnmatch(e.name, pat) for pat in cfg.exclude)]
        if any(_looks_like_subject(Path(e.path)) for e in dirs if e.name not in excluded):
            continue
        expected = (f"expected {root}/<subject>/mri/{cfg.image_names[0]}{cfg.extensions[0]} and "
                    f"<subject>/mri/{cfg.parcellation_name}{cfg.extensions[0]} (a FreeSurfer SUBJECTS_DIR)")
        nested = [Path(e.path) for e in dirs
                  if any(_looks_like_subject(Path(c.path)) for c in _subdirs(Path(e.path)))]
        if _looks_like_subject(root):
            found = f"{root} is one subject's folder (it has mri/): pass its parent, --input {root.parent}"
        elif nested:
            hint = " ".join(f"--input {p}" for p in nested[:3]) + (" ..." if len(nested) > 3 else "")
            found = f"{root} holds cohort roots, not subjects: pass each one, e.g. {hint}"
        elif not entries:
            found = f"{root} is empty"
        else:
            names = [e.name + ("/" if _is_dir(e) else "") for e in entries[:8]]
            found = (f"{root} holds {', '.join(names)}{', ...' if len(entries) > 8 else ''}, "
                     f"and no <subject>/mri/ folder")
            if excluded:
                found += f" ({', '.join(excluded[:3])} skipped by data.exclude)"
        raise ConfigError("data.inputs", f"cohort {cohort.name!r} has no subjects: {expected}; but {found}")


def _subdirs(folder: Path) -> list[os.DirEntry]:
    try:
        return [e for e in os.scandir(folder) if _is_dir(e) and not e.name.startswith(".")]
    except OSError:
        return []
