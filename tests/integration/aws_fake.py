"""A local AWS API for the token tests: moto in server mode on 127.0.0.1, IAM enforced.

Started as a subprocess on a free port with INITIAL_NO_AUTH_ACTION_COUNT=3: the three calls that
create the admin user are the last unauthenticated ones, so every later request (the extension's
included) must carry a valid SigV4 signature from a known key and pass the IAM policy check.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3

REGION = "us-east-1"
START_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


class FakeAws:
    """Clients with admin rights, and function identities (roles assumed like Lambda does)."""

    def __init__(self, url: str) -> None:
        self.url = url
        boot = {"endpoint_url": url, "region_name": REGION,
                "aws_access_key_id": "bootstrap", "aws_secret_access_key": "bootstrap"}
        iam = boto3.client("iam", **boot)
        self.admin_arn = iam.create_user(UserName="admin")["User"]["Arn"]
        key = iam.create_access_key(UserName="admin")["AccessKey"]
        iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=_policy(
            {"Effect": "Allow", "Action": "*", "Resource": "*"}))
        self.admin = {"endpoint_url": url, "region_name": REGION,
                      "aws_access_key_id": key["AccessKeyId"],
                      "aws_secret_access_key": key["SecretAccessKey"]}
        self.iam = boto3.client("iam", **self.admin)
        self.secrets = boto3.client("secretsmanager", **self.admin)
        self.ssm = boto3.client("ssm", **self.admin)

    def function_identity(self, name: str, actions: list[str]) -> dict[str, str]:
        """Environment of a function whose role may perform `actions` (may be []): temporary
        credentials from sts:AssumeRole, with a session token, as Lambda gives them."""
        # Lambda assumes the role in AWS; here the admin user stands in for the service.
        trust = _policy({"Effect": "Allow", "Action": "sts:AssumeRole",
                         "Principal": {"AWS": self.admin_arn}})
        role = self.iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]
        if actions:
            self.allow(name, actions)
        sts = boto3.client("sts", **self.admin)
        credentials = sts.assume_role(RoleArn=role["Arn"], RoleSessionName=name)["Credentials"]
        return {
            "AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
            "AWS_SESSION_TOKEN": credentials["SessionToken"],
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": self.url,
        }

    def allow(self, name: str, actions: list[str]) -> None:
        # moto checks actions, not resource ARNs; the one-ARN grant is Terraform's (test_terraform).
        self.iam.put_role_policy(RoleName=name, PolicyName="token", PolicyDocument=_policy(
            {"Effect": "Allow", "Action": actions, "Resource": "*"}))


@contextmanager
def moto_server() -> Iterator[FakeAws]:
    port = _free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        yield FakeAws(url)
    finally:
        # Its own process group: whatever the server started goes with it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
