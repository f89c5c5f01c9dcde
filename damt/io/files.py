"""Open input files only when they are regular files, and never block on one that is not.

A subject folder is user data: a ``stats/*.stats`` entry or an image may be a FIFO (opening it
blocks until a writer appears), a link to ``/dev/zero`` (reading it never ends), a socket, or a
dangling or looping symbolic link. Every input is therefore opened with ``O_NONBLOCK`` and checked
with ``fstat`` on the open descriptor (no race between the check and the read) before a byte is
read; :func:`file_stat` describes an entry without ever raising, for fingerprints taken by the
driver.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

from damt.errors import NotRegularFileError

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _link_note(path: Path) -> str:
    try:
        return f" (a symbolic link to {os.readlink(path)})" if path.is_symlink() else ""
    except OSError:
        return ""


def not_regular(path: Path, err: OSError | None = None, mode: int | None = None) -> NotRegularFileError:
    """The typed error for ``path``: what it is instead of a regular file, and what to do."""
    path = Path(path)
    if err is not None and err.errno == errno.ELOOP:
        what = "a symbolic link loop"
    elif err is not None and err.errno == errno.ENOENT and path.is_symlink():
        what = f"a dangling symbolic link (to {os.readlink(path)}, which does not exist)"
    elif err is not None:
        what = f"unreadable ({err.strerror or err})"
    else:
        what = _kind(mode or 0) + _link_note(path)
    return NotRegularFileError(f"{path} is {what}, not a regular file; it was not opened. Replace it "
                               f"with the real file or remove it")


def open_regular(path: str | Path) -> BinaryIO:
    """Open ``path`` for binary reading if (after following links) it is a regular file.

    Raises NotRegularFileError for a FIFO, device, socket, folder, dangling or looping link (a
    FIFO is opened non-blocking, so this never waits for a writer). Other OSErrors propagate.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOENT, errno.ENXIO, errno.EISDIR):
            raise not_regular(path, err) from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise not_regular(path, mode=mode)
        os.set_blocking(fd, True)  # a regular file: ordinary blocking reads from here on
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_regular(path: str | Path) -> None:
    """Raise NotRegularFileError unless ``path`` is a regular file (see :func:`open_regular`)."""
    open_regular(path).close()


def is_regular(path: str | Path) -> bool:
    """True if ``path`` is (or links to) a regular file. Never raises, never opens."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def file_stat(path: str | Path) -> list:
    """[size, mtime_ns] of a regular file; for anything else a marker like ``["fifo"]`` or
    ``["error", "ELOOP"]``. Never raises and never opens the file: the driver fingerprints
    subjects with it, and one odd entry must not stop the run."""
    try:
        st = os.stat(path)
    except OSError as err:
        return ["error", errno.errorcode.get(err.errno or 0, str(err.errno))]
    if not stat.S_ISREG(st.st_mode):
        return ["not-a-file", _kind(st.st_mode)]
    return [st.st_size, st.st_mtime_ns]
