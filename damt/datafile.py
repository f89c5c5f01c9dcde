"""Versioned data files (label table, morphometry schema, tissue table): a built-in name or a path."""

from __future__ import annotations

import hashlib
from pathlib import Path


def read_versioned(name_or_path: str, builtins: dict[str, Path], error: type[Exception],
                   what: str) -> tuple[str, str, str]:
    """(text, version, sha256 of the bytes) of a built-in file by name or of a file by path.

    The version is the built-in name, or the file's stem for a path. Raises ``error`` naming the
    built-in choices when neither exists.
    """
    path = builtins.get(name_or_path, Path(name_or_path))
    if not path.is_file():
        raise error(f"{what} {name_or_path!r}: no such built-in {what} or file "
                    f"(built-in: {', '.join(builtins)})")
    raw = path.read_bytes()
    version = name_or_path if name_or_path in builtins else path.stem
    return raw.decode(), version, hashlib.sha256(raw).hexdigest()
