"""What reading the HEC token from AWS costs the sender, against what boto3 would cost.

1. Start-up: a fresh interpreter imports (and, for boto3, builds a client) — median wall time and
   peak RSS per case, each in its own subprocess.
2. Sender memory: a child builds the sender's HecClient with a static token (PSS before), then
   fetches the token from a local GetSecretValue endpoint through ext.sender.token_source
   (PSS after);
   the same with a boto3 client for comparison. PSS from /proc/self/smaps_rollup.

Measured at full CPU; Lambda at 128 MB gives about 7% of a core, so its wall times are ~10x longer.
Run: `nice -n 10 python -m benchmarks.bench_token_fetch [--quick]`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from benchmarks import common
from benchmarks.bench_cold_start import cold_init
from benchmarks.rig import extension_rig

SIGN = (
    "from ext.sender import sigv4, secret_store, token_source\n"
    "sigv4.sign('POST', 'secretsmanager.us-east-1.amazonaws.com', '/', query=[],"
    " headers=[('X-Amz-Target', 'secretsmanager.GetSecretValue')], body=b'{}',"
    " credentials=sigv4.Credentials('AKID', 'secret', 'token'), region='us-east-1',"
    " service='secretsmanager', amz_date='20260101T000000Z')"
)
BOTO_CLIENT = ("import boto3; boto3.client('{service}', region_name='us-east-1',"
               " aws_access_key_id='a', aws_secret_access_key='b')")
STARTUP_CASES = {
    "python (nothing imported)": "pass",
    "urllib3 + json (the sender has them already)": "import urllib3, json",
    "+ ext.sender.sigv4/secret_store/token_source, sign once": "import urllib3, json\n" + SIGN,
    "import boto3": "import boto3",
    "boto3 Secrets Manager client": BOTO_CLIENT.format(service="secretsmanager"),
    "boto3 SSM client": BOTO_CLIENT.format(service="ssm"),
}
# VmHWM, not ru_maxrss: the latter keeps the forking parent's peak across exec on Linux.
TIMED = (
    "import time\nstart = time.perf_counter()\n{code}\nelapsed = time.perf_counter() - start\n"
    "hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM:')][0]\n"
    "print(elapsed * 1000, hwm.split()[1])"
)
PSS_CHILD = """
import json, sys
def pss_kib():
    for line in open("/proc/self/smaps_rollup"):
        if line.startswith("Pss:"):
            return int(line.split()[1])
from ext import config
from ext.sender.hec import HecClient
import ext.sender.envelope, ext.sender.process  # what the sender process imports anyway
env = {"SPLUNK_HOST": "http://127.0.0.1:9", "SPLUNK_HEC_TOKEN": "static",
       "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "k",
       "AWS_SESSION_TOKEN": "t", "AWS_ENDPOINT_URL": sys.argv[1]}
HecClient(config.load(env))
before = pss_kib()
if sys.argv[2] == "ext":
    env.pop("SPLUNK_HEC_TOKEN")
    env["SPLUNK_HEC_TOKEN_SECRET_ARN"] = "arn:aws:secretsmanager:us-east-1:1:secret:hec-AbCdEf"
    client = HecClient(config.load(env))
    assert client.tokens.current() == "11111111-2222-3333-4444-555555555555"
else:
    import boto3
    sm = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=sys.argv[1],
                      aws_access_key_id="AKID", aws_secret_access_key="k")
    assert sm.get_secret_value(SecretId="hec")["SecretString"].startswith("1111")
print(json.dumps({"before_kib": before, "after_kib": pss_kib()}))
"""


class _SecretsEndpoint(BaseHTTPRequestHandler):
    """Answers every POST as GetSecretValue would (the benchmark measures the client side)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = json.dumps({"ARN": "arn", "Name": "hec",
                           "SecretString": "11111111-2222-3333-4444-555555555555"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@contextmanager
def secrets_endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SecretsEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def has_boto3() -> bool:
    return importlib.util.find_spec("boto3") is not None


def startup(runs: int) -> dict[str, dict[str, float]]:
    found = {}
    for name, code in STARTUP_CASES.items():
        if "boto3" in code and not has_boto3():
            continue
        times, peaks = [], []
        for _ in range(runs):
            done = subprocess.run([sys.executable, "-c", TIMED.format(code=code)],
                                  capture_output=True, text=True, check=True, cwd=common.REPO)
            ms, kib = done.stdout.split()
            times.append(float(ms))
            peaks.append(int(kib) / 1024)
        found[name] = {"ms": statistics.median(times), "rss_mib": statistics.median(peaks)}
    return found


def sender_pss(runs: int) -> dict[str, dict[str, float]]:
    found = {}
    with secrets_endpoint() as url:
        for kind in ("ext", "boto3") if has_boto3() else ("ext",):
            growth = []
            for _ in range(runs):
                done = subprocess.run([sys.executable, "-c", PSS_CHILD, url, kind],
                                      capture_output=True, text=True, check=True, cwd=common.REPO)
                sample = json.loads(done.stdout)
                growth.append((sample["after_kib"] - sample["before_kib"]) / 1024)
            found[kind] = {"pss_growth_mib": statistics.median(growth)}
    return found


# The token from Secrets Manager instead of the environment: the fetch happens in the sender, on
# its first request, so the init path must not change. The endpoint refuses connections (nothing
# listens on port 9): an init does not wait for it.
SECRET_SOURCE = {
    "SPLUNK_HEC_TOKEN_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:hec",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret",
    "AWS_SESSION_TOKEN": "t",
}


def cold_start(runs: int) -> dict[str, dict[str, float]]:
    """Spawn -> first event/next, interleaved: the token in SPLUNK_HEC_TOKEN, then from an ARN."""
    samples: dict[str, list[float]] = {"SPLUNK_HEC_TOKEN": [], "SPLUNK_HEC_TOKEN_SECRET_ARN": []}
    with extension_rig() as rig:
        cold_init(rig)  # warm the page cache; not counted
        for _ in range(runs):
            samples["SPLUNK_HEC_TOKEN"].append(cold_init(rig)["first_next_ms"])
            secret = cold_init(rig, SECRET_SOURCE, without=("SPLUNK_HEC_TOKEN",))
            samples["SPLUNK_HEC_TOKEN_SECRET_ARN"].append(secret["first_next_ms"])
    return {name: common.summary(values) for name, values in samples.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_token_fetch", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one run per case (CI smoke)")
    args = parser.parse_args(argv)
    runs = 1 if args.quick else 7
    results = {"startup": startup(runs), "sender_pss": sender_pss(3 if not args.quick else 1),
               "cold_start_ms": cold_start(2 if args.quick else 20)}
    base = results["startup"]["python (nothing imported)"]["rss_mib"]
    common.print_table(
        f"Start-up, median of {runs} fresh interpreters (full CPU)",
        ["case", "ms", "peak RSS MiB", "vs python MiB"],
        [[name, row["ms"], row["rss_mib"], row["rss_mib"] - base]
         for name, row in results["startup"].items()],
    )
    common.print_table(
        "Sender PSS growth from reading the token once (after HecClient with a static token)",
        ["client", "PSS growth MiB"],
        [[name, row["pss_growth_mib"]] for name, row in results["sender_pss"].items()],
    )
    cold = results["cold_start_ms"]
    base_p50 = cold["SPLUNK_HEC_TOKEN"]["p50"]
    common.print_table(
        "Cold start, spawn -> first event/next (ms), interleaved fresh sandboxes",
        ["token from", "p50", "p95", "p50 vs env"],
        [[name, row["p50"], row["p95"], f"{row['p50'] / base_p50:.3f}x"]
         for name, row in cold.items()],
    )
    common.write_result("token_fetch", results, quick=args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
