"""A kept-alive connection that turns out dropped when a request is sent on it (reset, or closed
before a byte of an answer) is replaced at once and the request sent again, within the same
post: the server, a load balancer or a SnapStart restore ended it while the environment was
frozen, and nothing told the client. Only then: a connection made for the request, a timeout,
or a post out of time is the failure it was."""

from __future__ import annotations

import socket
import threading

import pytest

from ext.sender import hec as hec_module
from ext.sender.hec import HecClient, HecOutcome, Verdict
from tests.integration.test_hec_client import (  # noqa: F401 - fixtures
    Script,
    config,
    server,
)
from tests.integration.test_hec_restore import (  # noqa: F401 - fixtures
    ANSWER,
    WAIT_S,
    listener,
    read_request,
)

pytestmark = pytest.mark.integration


def test_a_request_on_a_kept_alive_connection_found_dropped_is_sent_again_at_once(
    server: tuple[str, Script],  # noqa: F811 - fixture
) -> None:
    url, script = server
    client = HecClient(config(url))
    try:
        assert client.post(b"{}").verdict is Verdict.ACCEPTED  # the connection is kept
        script.drops = 1  # the next request on it: read, the connection closed, no answer
        again = client.post(b"{}")
    finally:
        client.close()
    assert again.verdict is Verdict.ACCEPTED  # unfixed: a RETRY, and a flush told Failing
    assert len(script.seen) == 3
    assert script.seen[0].peer == script.seen[1].peer != script.seen[2].peer


def test_a_request_on_a_connection_made_for_it_is_not_sent_again(
    server: tuple[str, Script],  # noqa: F811 - fixture
) -> None:
    url, script = server
    script.drops = 1
    client = HecClient(config(url))
    try:
        lost = client.post(b"{}")
    finally:
        client.close()
    assert (lost.verdict, lost.text) == (Verdict.RETRY, "ProtocolError")
    assert len(script.seen) == 1


def test_a_kept_alive_connection_reset_by_the_server_is_replaced(
    listener: socket.socket,  # noqa: F811 - fixture
) -> None:
    client = HecClient(config(f"http://127.0.0.1:{listener.getsockname()[1]}"))
    outcomes: list[HecOutcome] = []
    try:
        client.prepare()
        old, _ = listener.accept()
        poster = threading.Thread(target=lambda: outcomes.append(client.post(b"{}")))
        poster.start()
        read_request(old)
        old.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        old.close()  # a reset, as a load balancer that forgot the connection answers
        new, _ = listener.accept()
        with new:
            read_request(new)
            new.sendall(ANSWER)
            poster.join(WAIT_S)
    finally:
        client.close()
    assert [o.verdict for o in outcomes] == [Verdict.ACCEPTED]


def test_a_kept_alive_connection_that_does_not_answer_is_a_timeout_not_sent_again(
    listener: socket.socket,  # noqa: F811 - fixture
) -> None:
    # A HEC that hangs is not a dropped connection: one request, one timeout.
    client = HecClient(config(f"http://127.0.0.1:{listener.getsockname()[1]}",
                              request_timeout_ms=300))
    try:
        client.prepare()
        old, _ = listener.accept()
        with old:
            out = client.post(b"{}")
            listener.settimeout(0.2)
            with pytest.raises(TimeoutError):
                listener.accept()  # no second connection
    finally:
        client.close()
    assert (out.verdict, out.text) == (Verdict.RETRY, "ReadTimeoutError")


class Clock:
    """Stands in for the hec module's `time`: each look is `step` seconds after the last, from
    a monotonic clock's usual far-from-zero reading."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 1000.0, step

    def monotonic(self) -> float:
        self.now += self.step
        return self.now


@pytest.mark.parametrize(("took_s", "requests"), [(0.6, 2), (0.5, 2), (0.4, 3)])
def test_no_second_request_once_the_first_used_up_the_time_allowed(
    server: tuple[str, Script], monkeypatch: pytest.MonkeyPatch,  # noqa: F811 - fixture
    took_s: float, requests: int,
) -> None:
    url, script = server
    client = HecClient(config(url))
    try:
        assert client.post(b"{}").verdict is Verdict.ACCEPTED
        script.drops = 1
        monkeypatch.setattr(hec_module, "time", Clock(took_s))  # the dropped request took it
        out = client.post(b"{}", within_s=0.5)  # an inline attempt: at most 0.5 s in all
    finally:
        client.close()
    if requests == 2:  # 0.5: no time left at all, and no connection tried in none
        assert (out.verdict, out.text) == (Verdict.RETRY, "ProtocolError")  # the dropped one's
    else:
        assert out.verdict is Verdict.ACCEPTED
    assert len(script.seen) == requests
