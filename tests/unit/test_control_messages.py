"""Message identity and the pipe's all-or-nothing writes: what main and the sender may rely on."""

from __future__ import annotations

import os

from ext import control


def test_a_message_equals_only_one_of_its_kind_with_the_same_fields() -> None:
    # Kinds "B" < "D" < "F" and ids "a" < "b": an ordering in place of equality would confuse them.
    for one, other in [(control.Flush("a"), control.FlushBacklog("a")),
                       (control.Flush("a"), control.FlushLate("a")),
                       (control.FlushLate("a"), control.FlushBacklog("a")),
                       (control.Delivered("a"), control.Flush("a")),
                       (control.Awaited("a"), control.Flush("a")),
                       (control.Awaited("a"), control.Hurried("a")),
                       (control.Flush("a"), control.Flush("b")),
                       (control.Drain(5, "a"), control.Drain(6, "a"))]:
        assert one != other
        assert other != one
    assert control.FlushBacklog("a") == control.FlushBacklog("a")


def test_only_the_known_kinds_decode() -> None:
    # "S" (a drain) sits between other letters: no neighbour may pass for it.
    for line in (b"T 5 r1", b"Q 5 r1", b"Z 5 r1", b"s 5 r1"):
        assert control.decode(line) is None, line
    assert control.decode(b"S 5 r1") == control.Drain(5, "r1")


def test_a_message_the_pipe_cannot_take_whole_is_not_sent() -> None:
    read_fd, write_fd = control.make_pipe()
    try:
        room = 4096
        filled = 0
        while True:  # fill the pipe to `room` bytes below its capacity
            try:
                filled += os.write(write_fd, b"x" * 4096)
            except BlockingIOError:
                break
        os.read(read_fd, room)
        # Longer than PIPE_BUF: the kernel may take part of it, which is not a message sent.
        assert not control.send(write_fd, control.Flush("r" * (2 * room)))
        assert filled > 0
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_main_s_restart_counts_go_as_one_line_and_only_whole_counts_decode() -> None:
    counts = control.Restarts(listener=2, sender=5, sender_hangs=1)
    assert counts.encode() == b"P 2 5 1\n"
    assert control.decode(counts.encode()[:-1]) == counts
    assert counts != control.Restarts(2, 5, 0)  # each count is a field of its own
    for line in (b"P", b"P 2 5", b"P 2 5 1 7", b"P 2 x 1", b"P -2 5 1", b"P 2  5 1",
                 b"0 2 5 1", b"Z 2 5 1"):  # the counts under a kind before or after P's
        assert control.decode(line) is None, line


def test_a_drain_whose_deadline_is_not_a_whole_number_decodes_to_nothing() -> None:
    # str.isdigit() takes superscripts and other digits int() refuses: such a line raised
    # ValueError out of the sender's read instead of being ignored as an unknown line.
    for line in ("S 1²3 r1", "S ² r1", "S x r1", "S  r1"):
        assert control.decode(line.encode()) is None, line
