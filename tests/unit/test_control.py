"""Messages between main and the sender: one encoding, decoded back exactly."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from ext import control

ids = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\n\r"),
              min_size=1, max_size=60).filter(lambda t: t.strip() == t and t != "")
messages = st.one_of(
    st.builds(control.Flush, ids),
    st.builds(control.FlushBacklog, ids),
    st.builds(control.FlushLate, ids),
    st.builds(control.Awaited, ids),
    st.builds(control.Hurried, ids),
    st.builds(control.Delivered, ids),
    st.builds(control.Failing, ids),
    st.builds(control.Running, ids),
    st.builds(control.Drain, st.integers(min_value=0, max_value=2**53), ids | st.just("")),
    st.just(control.Ready()),
    st.just(control.Restored()),
    st.just(control.Settle()),
)


@given(st.lists(messages, max_size=20), st.integers(min_value=1, max_value=50))
def test_messages_survive_the_pipe_in_any_chunking(sent: list[control.Message], cut: int) -> None:
    read_fd, write_fd = control.make_pipe()
    inbox = control.Inbox(read_fd)
    try:
        stream = b"".join(m.encode() for m in sent)
        got: list[control.Message] = []
        for start in range(0, len(stream), cut):  # partial lines across reads
            os.write(write_fd, stream[start:start + cut])
            got += inbox.read()
        assert got == sent
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_garbage_lines_are_ignored() -> None:
    for line in (b"", b"Z x", b"F", b"S notanumber r", b"C"):
        assert control.decode(line) is None


def test_send_reports_a_full_or_closed_pipe() -> None:
    read_fd, write_fd = control.make_pipe()
    try:
        while control.send(write_fd, control.Flush("r")):
            pass  # until the pipe is full
        assert not control.send(write_fd, control.Flush("r"))
    finally:
        os.close(read_fd)
    try:
        assert not control.send(write_fd, control.Flush("r"))  # reader gone
    finally:
        os.close(write_fd)
