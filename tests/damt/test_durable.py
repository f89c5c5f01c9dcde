"""damt.durable: the one way to write a file or publish a folder durably (issue 14, point 5)."""

from __future__ import annotations

import hashlib
import os

import pytest

from damt import durable
from damt.parallel import is_distributed


@pytest.fixture()
def synced(monkeypatch):
    """Record the path of every fsync (file and folder) made through damt.durable."""
    seen: list[str] = []
    real_fsync = os.fsync

    def fsync(fd):
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(durable.os, "fsync", fsync)
    return seen


def test_atomic_write_fsyncs_the_file_then_its_folder(tmp_path, synced):
    path = durable.atomic_write_text(tmp_path / "a.txt", "new")
    assert path.read_text() == "new"
    assert len(synced) == 2 and synced[0].endswith(".tmp") and synced[1] == str(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = durable.atomic_write_bytes(tmp_path / "a.bin", b"old")

    def half_then_fail(tmp):
        tmp.write_bytes(b"ha")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        durable.atomic_write(path, half_then_fail)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_publish_folder_fsyncs_contents_and_parent(tmp_path, synced):
    staging = tmp_path / ".x.tmp"
    (staging / "sub").mkdir(parents=True)
    (staging / "sub" / "f").write_bytes(b"1")
    final = durable.publish_folder(staging, tmp_path / "x")
    assert (final / "sub" / "f").read_bytes() == b"1" and not staging.exists()
    assert synced[-1] == str(tmp_path)                           # the rename is made durable last
    assert any(s.endswith("/sub/f") for s in synced[:-1])         # after every file inside


def test_sha256_file_is_hashlib_of_the_bytes(tmp_path):
    data = os.urandom((1 << 22) + 17)  # more than one read block
    (tmp_path / "b").write_bytes(data)
    assert durable.sha256_file(tmp_path / "b") == hashlib.sha256(data).hexdigest()


def test_not_distributed_outside_a_process_group():
    assert is_distributed() is False
