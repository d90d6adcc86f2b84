"""CPU of one HEC request in the sender (issue 12): the HEC client's thread, per request.

The client (ext/sender/hec.py) POSTs a 10-line gzip body to the local HEC receiver, run in its
own process so that only the client's CPU is counted (time.thread_time: user + system of the
calling thread). Three cases: plain HTTP on a kept-alive connection; TLS on a kept-alive
connection; TLS with a new connection per request (what a keep-alive connection that HEC, or
its load balancer, closed while the sandbox was frozen costs: a reconnect and a handshake).
TLS trusts a CA bundle of the system's CAs plus the receiver's self-signed certificate, as
a production endpoint is verified against the system's CAs. Also printed: the first request of
a new client (its connection, its TLS context and CAs: the CAs chosen for the receiver's chain
after a probe handshake, ext/sender/trust.py), and that first request as it was before the
choice (every CA of the bundle loaded) and with a bundle of only the receiver's certificate
(the fastest setting: loaded whole, no probe).
Run: `.venv/bin/python -m benchmarks.bench_hec_request [--quick] [--requests 300]`
-> results/hec_request.json.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks import common
from benchmarks.bench_first_invocation import TlsHecProcess, _certificate
from benchmarks.rig import TOKEN, HecProcess
from ext.config import Config
from ext.sender.hec import HecClient, Verdict

BODY = gzip.compress(b"\n".join(
    b'{"time":1700000000.%03d,"event":"log line %d of a small invocation: some words"}' % (n, n)
    for n in range(10)), 1)


def _drop_connection(client: HecClient) -> None:
    """Closes the pooled connection, as HEC closing it during a freeze would."""
    pool = client._pool.pool
    for conn in list(pool.queue if pool is not None else []):
        if conn is not None:
            conn.close()


def measure(url: str, ca_bundle: str | None, requests: int, reconnect: bool,
            every_ca: bool = False) -> tuple[float, float]:
    """(CPU ms of a new client's first request, CPU us per request after it); `every_ca`: the
    whole bundle loaded, as before the CAs were chosen for HEC's chain."""
    client = HecClient(Config(hec_url=url, hec_path="/services/collector/event",
                              hec_token=TOKEN, ca_bundle=ca_bundle))
    try:
        started = time.thread_time()
        if every_ca:
            client._trust_all()
        if client.post(BODY).verdict is not Verdict.ACCEPTED:
            raise RuntimeError("HEC did not accept the request")
        first = time.thread_time() - started
        spent = 0.0
        for _ in range(requests):
            if reconnect:
                _drop_connection(client)
            started = time.thread_time()
            outcome = client.post(BODY)
            spent += time.thread_time() - started
            if outcome.verdict is not Verdict.ACCEPTED:
                raise RuntimeError(f"HEC did not accept the request: {outcome}")
    finally:
        client.close()
    return first * 1000, spent / requests * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args(argv)
    requests = 30 if args.quick else args.requests
    tls = shutil.which("openssl") is not None
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-hec-") as tmp:
        work = Path(tmp)
        plain = HecProcess(work / "plain.sqlite")
        secure: HecProcess | None = None
        try:
            cases: list[tuple[str, str, str | None, bool, int, bool]] = [
                ("http, kept alive", plain.url, None, False, requests, False)]
            if tls:
                cert, key, bundle = _certificate(work)
                secure = TlsHecProcess(work / "tls.sqlite", cert, key)
                few = max(10, requests // 10)
                cases += [("https, kept alive", secure.url, str(bundle), False, requests, False),
                          ("https, reconnect each", secure.url, str(bundle), True, few, False),
                          ("https, every CA loaded", secure.url, str(bundle), False, few, True),
                          ("https, own CA only", secure.url, str(cert), False, few, False)]
            else:
                print("no openssl CLI: the TLS cases are left out")
            print(f"{'case':<24} {'first request CPU ms':>21} {'CPU us per request':>19}")
            for name, url, ca, reconnect, n, every_ca in cases:
                first, per = measure(url, ca, n, reconnect, every_ca)
                results[name] = {"first_request_cpu_ms": first, "cpu_us_per_request": per,
                                 "requests": n}
                print(f"{name:<24} {first:>21.1f} {per:>19.0f}", flush=True)
        finally:
            plain.stop()
            if secure is not None:
                secure.stop()
    common.write_result("hec_request", results, quick=args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
