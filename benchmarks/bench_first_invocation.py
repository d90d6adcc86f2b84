"""The first invocations after a cold start under Lambda's CPU share (issue 12: the first
invocation's post-runtime at 128 MB <= 150 ms), over plain HTTP or TLS.

Each run is a fresh sandbox (the emulator's cgroup gives it memory / 1,769 of a core) and a fresh
HEC receiver; it is initialised, then invoked INVOCATIONS times with 10 lines, GAP_S apart.
Per invocation: post-runtime (runtime response -> the extension's `next`: billed), and the CPU
of each extension process, all threads (/proc/<pid>/task/*/schedstat). With `--tls` the receiver
speaks TLS with a self-signed certificate (made with the openssl CLI) and the extension trusts
a CA bundle of the system's CAs plus that certificate (`--ca system`): a production HEC endpoint
is verified against the system's ~145 CAs, of which the sender loads only those that can anchor
the receiver's chain (ext/sender/trust.py); `--ca own`: a bundle of only that certificate.
Needs root for the cgroup CPU limit (without it the sandbox runs on whole cores; it says so).
Run: `.venv/bin/python -m benchmarks.bench_first_invocation [--quick] [--memory 128] [--runs 5]
[--tls [--ca system|own]]` -> results/first_invocation.json.
"""

from __future__ import annotations

import argparse
import ssl
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.rig import HecProcess, Rig, cpu_ns, extension_processes
from ext.local.hec.certificates import self_signed
from ext.local.layer import EXTENSION_NAME, make_local_opt

INVOCATIONS = 3
GAP_S = 0.3
LINES = 10


class TlsHecProcess(HecProcess):
    """The local HEC receiver over TLS (its admin endpoint too)."""

    def __init__(self, db: Path, cert: Path, key: Path) -> None:
        super().__init__(db, ("--tls-cert", str(cert), "--tls-key", str(key)))


def _certificate(folder: Path) -> tuple[Path, Path, Path]:
    """(certificate, key, CA bundle = the system's CAs + the certificate)."""
    cert, key = self_signed(folder)
    bundle = folder / "bundle.pem"
    system = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
    bundle.write_bytes((system.read_bytes() if system.is_file() else b"") + cert.read_bytes())
    return cert, key, bundle


@contextmanager
def rig(tls: bool, ca: str = "system") -> Iterator[tuple[Rig, dict[str, str]]]:
    """A fresh receiver (TLS or not) and /opt folder; the extension's environment."""
    with tempfile.TemporaryDirectory(prefix="bench-first-") as tmp:
        work = Path(tmp)
        extra: dict[str, str] = {}
        if tls:
            cert, key, bundle = _certificate(work)
            hec: HecProcess = TlsHecProcess(work / "hec.sqlite", cert, key)
            extra["SPLUNK_CA_BUNDLE"] = str(bundle if ca == "system" else cert)
        else:
            hec = HecProcess(work / "hec.sqlite")
        made = Rig(hec, make_local_opt(work / "opt"), work)
        try:
            yield made, made.env(SPLUNK_FLUSH="adaptive", **extra)
        finally:
            hec.stop()


def run(memory_mb: int, tls: bool, n: int, ca: str = "system") -> dict[str, Any]:
    with rig(tls, ca) as (made, env):
        sb = made.sandbox(env, memory_mb=memory_mb, limits=True, timeout_s=60.0,
                          init_timeout_s=60.0)
        rows = []
        try:
            init = sb.init()
            limited = sb.inspect()["limits"]
            roles = extension_processes(sb)
            for k in range(INVOCATIONS):
                before = {role: cpu_ns([pid]) for role, pid in roles.items()}
                result = sb.invoke({"lines": LINES, "size": 100, "tag": f"F{n}-{k}-"})
                after = {role: cpu_ns([pid]) for role, pid in roles.items()}
                if result.status != "success" or result.post_runtime_ms is None:
                    raise RuntimeError(f"invoke failed: {result}")
                rows.append({"post_runtime_ms": result.post_runtime_ms,
                             "cpu_ms": {r: (after[r] - before[r]) / 1e6 for r in roles}})
                time.sleep(GAP_S)
            sb.shutdown()
        finally:
            sb.close()
    ext_init: dict[str, Any] = init.get("extensions", {}).get(EXTENSION_NAME, {})
    return {"init_ms": ext_init.get("first_next_ms"), "limits": limited, "invocations": rows}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run at 1,769 MB, plain HTTP")
    parser.add_argument("--memory", type=int, default=128)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--ca", choices=("system", "own"), default="system",
                        help="with --tls: the CA bundle the extension trusts")
    args = parser.parse_args(argv)
    memory, runs = (1769, 1) if args.quick else (args.memory, args.runs)
    transport = f"TLS, CA bundle: {args.ca}" if args.tls else "plain HTTP"
    results = []
    for n in range(runs):
        result = run(memory, args.tls, n, args.ca)
        if n == 0:
            print(f"memory {memory} MB, {transport}, limits: {result['limits']}")
        cells = "  ".join(
            f"{inv['post_runtime_ms']:6.1f} ms ("
            + " ".join(f"{r} {c:.1f}" for r, c in inv["cpu_ms"].items()) + ")"
            for inv in result["invocations"])
        print(f"run {n}: init {result['init_ms']} ms | post-runtime (CPU ms): {cells}",
              flush=True)
        results.append(result)
    firsts = [r["invocations"][0]["post_runtime_ms"] for r in results]
    seconds = [r["invocations"][1]["post_runtime_ms"] for r in results]
    sender = [r["invocations"][0]["cpu_ms"].get("sender", 0.0) for r in results]
    print(f"{transport}: first invocation post-runtime ms: median "
          f"{statistics.median(firsts):.1f}, max {max(firsts):.1f} (target 150 at 128 MB); "
          f"second: median {statistics.median(seconds):.1f}, max {max(seconds):.1f}; "
          f"sender CPU in the first: median {statistics.median(sender):.1f} ms")
    common.write_result("first_invocation", {
        "memory_mb": memory, "tls": args.tls, "ca": args.ca if args.tls else None,
        "runs": results, "first_post_runtime_ms": common.summary(firsts),
        "second_post_runtime_ms": common.summary(seconds),
    }, quick=args.quick, targets={"first_post_runtime_ms_128": 150.0})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
