"""Messages between main and the sender at their edges: odd ids, pipe ends, wake-ups."""

from __future__ import annotations

import fcntl
import os

import pytest

from ext import control


def test_a_request_id_with_line_breaks_stays_one_message() -> None:
    line = control.Flush("a\nb\rc").encode()
    assert line == b"F a b c\n"
    assert control.decode(line[:-1]) == control.Flush("a b c")
    assert control.Ready().encode() == b"R\n"
    assert control.Drain(12, "").encode() == b"S 12 \n"
    assert control.decode(b"S 12 ") == control.Drain(12, "")


def test_equal_messages_are_one_in_a_set_and_show_their_fields() -> None:
    assert len({control.Delivered("r1"), control.Delivered("r1"), control.Failing("r1")}) == 2
    assert control.Delivered("r1") != control.Failing("r1")
    assert control.Delivered("r1") != "C r1"
    assert repr(control.Drain(5, "r1")) == "Drain(5, 'r1')"


def test_a_drain_deadline_must_be_digits() -> None:
    assert control.decode(b"S 17 r1") == control.Drain(17, "r1")
    assert control.decode(b"S 17") == control.Drain(17, "")
    assert control.decode(b"S -1 r1") is None
    assert control.decode(b"S") is None


def test_an_inbox_sees_the_writer_hang_up() -> None:
    read_fd, write_fd = control.make_pipe()
    inbox = control.Inbox(read_fd)
    try:
        assert control.send(write_fd, control.Running("r1"))
        assert inbox.read() == [control.Running("r1")]
        assert not inbox.closed
        os.close(write_fd)
        assert inbox.read() == []
        assert inbox.closed
    finally:
        os.close(read_fd)


def test_a_wake_up_pipe_says_whether_it_held_anything(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    assert not control.drain_pipe(read_fd)
    os.write(write_fd, b"xx")
    assert control.drain_pipe(read_fd)
    assert not control.drain_pipe(read_fd)


def test_pipes_never_block_and_are_not_inherited_by_programs_run(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    for fd in (read_fd, write_fd):
        assert not os.get_blocking(fd)
        assert not os.get_inheritable(fd)


def test_a_long_message_is_sent_whole(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    inbox = control.Inbox(read_fd)
    assert control.send(write_fd, control.Flush("r" * 300))
    assert inbox.read() == [control.Flush("r" * 300)]


def test_an_inbox_reads_no_more_than_what_is_there(
    monkeypatch: pytest.MonkeyPatch, pipe: tuple[int, int]
) -> None:
    # Main reads its inbox at every invocation: a failed read costs an exception each time.
    read_fd, write_fd = pipe
    inbox = control.Inbox(read_fd)
    reads: list[int] = []
    real_read = os.read

    def counted(fd: int, size: int) -> bytes:
        reads.append(size)
        return real_read(fd, size)

    monkeypatch.setattr(os, "read", counted)
    assert inbox.read() == []
    assert reads == []  # nothing there: not even one read
    assert control.send(write_fd, control.Delivered("r1"))
    assert control.send(write_fd, control.Running("r2"))
    assert inbox.read() == [control.Delivered("r1"), control.Running("r2")]
    assert len(reads) == 1  # one short read emptied the pipe


def test_an_inbox_reads_a_pipe_filled_to_the_brim(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    inbox = control.Inbox(read_fd)
    sent = 0
    while control.send(write_fd, control.Delivered(f"{sent:013d}")):  # 16 bytes a line
        sent += 1
    assert sent * 16 == control.READ_BYTES  # a full read: there may be more behind it
    assert inbox.read() == [control.Delivered(f"{n:013d}") for n in range(sent)]
    assert inbox.read() == []


def test_an_inbox_reads_a_pipe_holding_more_than_one_read(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    inbox = control.Inbox(read_fd)
    fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, 4 * control.READ_BYTES)
    sent = 0
    while sent * 16 < 2 * control.READ_BYTES:
        assert control.send(write_fd, control.Delivered(f"{sent:013d}"))  # 16 bytes a line
        sent += 1
    assert inbox.read() == [control.Delivered(f"{n:013d}") for n in range(sent)]
