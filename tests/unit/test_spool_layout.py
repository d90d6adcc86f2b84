"""The spool directory's shared pieces: segment names, role locks and the wake-up byte."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pickle
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from ext.spool.layout import (
    RoleFiles,
    SpoolLocked,
    list_segments,
    notify,
    segment_name,
    segment_path,
    take_role_lock,
    unlink_quietly,
)


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe2(os.O_NONBLOCK)
    yield r, w
    for fd in (r, w):
        with contextlib.suppress(OSError):  # the test closed it already
            os.close(fd)


def open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


def test_segment_names_sort_as_their_base_seqs(tmp_path: Path) -> None:
    assert segment_name(42) == "seg-00000000000000000042.log"
    for base in (10, 9, 2**40):
        Path(segment_path(str(tmp_path), base)).touch()
    assert list_segments(str(tmp_path)) == [9, 10, 2**40]


def test_only_segment_files_are_listed(tmp_path: Path) -> None:
    Path(segment_path(str(tmp_path), 3)).touch()
    for other in (
        "seg-00000000000000000004.log.tmp",  # a segment not published yet
        "spare-0.tmp",
        "ack.state",
        "writer.lock",
        "xxx-00000000000000000005.log",  # the digits of a segment, another prefix
        "seg-00000000000000000006.bak",  # and another suffix
        "seg-0000000000000000000x.log",
    ):
        (tmp_path / other).touch()
    assert list_segments(str(tmp_path)) == [3]


def test_a_role_lock_is_held_until_its_fd_closes(tmp_path: Path) -> None:
    fd = take_role_lock(str(tmp_path), "writer.lock")
    assert stat.S_IMODE(os.stat(tmp_path / "writer.lock").st_mode) == 0o600
    assert os.get_inheritable(fd) is False  # a child process must not keep the role
    with pytest.raises(SpoolLocked) as caught:
        take_role_lock(str(tmp_path), "writer.lock")
    assert caught.value.path == str(tmp_path / "writer.lock")
    os.close(fd)
    os.close(take_role_lock(str(tmp_path), "writer.lock"))


def test_a_refused_lock_leaks_no_fd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    held = take_role_lock(str(tmp_path), "reader.lock")
    before = open_fds()
    with pytest.raises(SpoolLocked):
        take_role_lock(str(tmp_path), "reader.lock")
    assert open_fds() == before

    def flock_fails(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", flock_fails)
    with pytest.raises(OSError, match="No locks"):
        take_role_lock(str(tmp_path), "writer.lock")
    assert open_fds() == before
    os.close(held)


def test_spool_locked_crosses_a_process_boundary() -> None:
    # The listener process reports it to main through a pipe.
    err = pickle.loads(pickle.dumps(SpoolLocked("/tmp/spool/writer.lock")))
    assert isinstance(err, SpoolLocked)
    assert err.path == "/tmp/spool/writer.lock"
    assert "/tmp/spool/writer.lock" in str(err)


def test_unlink_quietly_says_whether_it_removed_the_file(tmp_path: Path) -> None:
    path = tmp_path / "seg"
    path.touch()
    assert unlink_quietly(str(path)) is True
    assert unlink_quietly(str(path)) is False


def test_notify_writes_one_byte_and_tolerates_a_full_or_closed_pipe(
    pipe: tuple[int, int],
) -> None:
    r, w = pipe
    notify(None)  # nobody to wake
    notify(w)
    assert os.read(r, 10) == b"\x01"
    while True:  # fill the pipe: a full pipe already means "wake up"
        try:
            os.write(w, b"\x00" * 65536)
        except BlockingIOError:
            break
    notify(w)
    os.close(r)
    notify(w)  # EPIPE: the reader is gone (Python ignores SIGPIPE)
    os.close(w)
    notify(w)  # EBADF


def test_notify_raises_any_other_write_error() -> None:
    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        with pytest.raises(OSError) as caught:
            notify(fd)
        assert caught.value.errno == errno.ENOSPC
    finally:
        os.close(fd)




def test_a_role_must_say_how_it_releases_its_files() -> None:
    class Forgetful(RoleFiles):
        """A role without close(): a with block would end without releasing anything."""

    with pytest.raises(TypeError, match="abstract"):
        Forgetful()  # type: ignore[abstract]
