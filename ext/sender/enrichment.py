"""The indexed fields that say which function, where, and in which environment (sender process).

Every event and metric carries them (ext/sender/envelope.py puts them into the common `fields` once,
as bytes). Nothing here needs the control plane: the unqualified function ARN is
`arn:<partition>:lambda:<region>:<account>:function:<name>` (an INVOKE's `invokedFunctionArn`
is the same plus an optional alias or version suffix), and the version is fixed per
environment (AWS_LAMBDA_FUNCTION_VERSION). The account id is register's answer (the
`accountId` feature), handed over in the Config.

What the extension's environment lacks (lambda-protocol.md §6.1: no AWS_EXECUTION_ENV, log
group or stream for extensions) comes from the telemetry itself: `platform.initStart` (or
`platform.restoreStart` after a SnapStart restore) names the runtime version, the
initialization type and the instance id, which is the environment's log stream: one per
execution environment. The first `platform.start` after it is the cold start. What was learned
is kept in a small file beside the spool, so a restarted sender (or the next extension
instance after a reset, same /tmp) still knows it.
"""

from __future__ import annotations

import contextlib
import os

import msgspec

from ext import schema

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ext.config import Config

STATE_FILE = "environment.json"
INIT_KINDS = frozenset({"platform.initStart", "platform.restoreStart"})
_ARCHITECTURES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
# Partitions by region prefix, most specific first (AWS's partition list).
_PARTITIONS = (("us-isob-", "aws-iso-b"), ("us-isof-", "aws-iso-f"), ("eu-isoe-", "aws-iso-e"),
               ("us-iso-", "aws-iso"), ("us-gov-", "aws-us-gov"), ("cn-", "aws-cn"))


class InitFacts(msgspec.Struct, omit_defaults=True):
    """What platform.initStart / restoreStart said, and the cold start's request id."""

    runtime: str = ""
    environment_id: str = ""
    init_type: str = ""
    cold_request: str = ""  # the first invocation after the last init
    cold_pending: bool = False  # an init seen, its first invocation's start not yet


class _InitRecord(msgspec.Struct):
    runtimeVersion: str = ""  # noqa: N815 - the Telemetry API's names
    initializationType: str = ""  # noqa: N815
    instanceId: str = ""  # noqa: N815


_init_record = msgspec.json.Decoder(_InitRecord)
_facts = msgspec.json.Decoder(InitFacts)


def partition(region: str) -> str:
    for prefix, name in _PARTITIONS:
        if region.startswith(prefix):
            return name
    return "aws"


def architecture() -> str:
    machine = os.uname().machine
    return _ARCHITECTURES.get(machine, machine)


class Enrichment:
    """The enrichment fields as JSON bytes (`,"name":"value"...`), and the cold start.

    `fields()` changes only when an init is seen; the envelope builder then rebuilds its
    cached prefixes. Per event, the only work left is comparing the request id with
    `cold_request`.
    """

    def __init__(self, config: Config, function_name: str) -> None:
        env = dict(config.aws_environment)
        # Outside Lambda (tests, tools) there is no function environment to describe.
        self.enabled = bool(config.enrich) and "AWS_LAMBDA_FUNCTION_VERSION" in env
        self._wanted = frozenset(config.enrich)
        self._static: list[tuple[str, str]] = []
        if self.enabled:
            region = env.get("AWS_REGION", "")
            if region and config.account_id:
                self._static.append(("function_arn", f"arn:{partition(region)}:lambda:{region}:"
                                     f"{config.account_id}:function:{function_name}"))
            self._static += [
                ("function_version", env.get("AWS_LAMBDA_FUNCTION_VERSION", "")),
                ("aws_account_id", config.account_id),
                ("aws_region", region),
                ("memory_size_mb", env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")),
                ("architecture", architecture()),
                # Extensions do not see the log group; this is Lambda's default for it.
                ("log_group", env.get("AWS_LAMBDA_LOG_GROUP_NAME")
                 or f"/aws/lambda/{function_name}"),
            ]
        self._env_runtime = env.get("AWS_EXECUTION_ENV", "")
        self._env_init_type = env.get("AWS_LAMBDA_INITIALIZATION_TYPE", "")
        self._user = list(config.user_fields)
        self._path = os.path.join(os.path.dirname(config.spool_dir.rstrip("/")), STATE_FILE)
        self.facts = self._load() if self.enabled else InitFacts()
        # Kept in the file too: a sender restarted after the init's record was committed never
        # reads that initStart again, and would miss the cold start.
        self._cold_pending = self.facts.cold_pending
        self.cold_request: bytes | None = _json_or_none(self.facts.cold_request)
        self._fields = self._encode()

    def fields(self) -> bytes:
        return self._fields

    def init_seen(self, record: bytes) -> bool:
        """platform.initStart / restoreStart: learn from it; True if the fields changed."""
        if not self.enabled:
            return False
        try:
            seen = _init_record.decode(record)
        except (msgspec.DecodeError, RecursionError):
            seen = _InitRecord()
        # The next platform.start is a cold start. An initStart of a failed init's retry
        # inside an invocation (phase "invoke") is still an init that invocation pays for.
        self._cold_pending = True
        self.cold_request = None
        facts = InitFacts(runtime=seen.runtimeVersion or self.facts.runtime,
                          environment_id=seen.instanceId or self.facts.environment_id,
                          init_type=seen.initializationType or self.facts.init_type,
                          cold_pending=True)
        changed = (facts.runtime, facts.environment_id, facts.init_type) != (
            self.facts.runtime, self.facts.environment_id, self.facts.init_type)
        self.facts = facts
        self._save()
        if changed:
            self._fields = self._encode()
        return changed

    def invocation_started(self, request_id: bytes) -> None:
        """platform.start (its JSON-encoded request id): the first after an init is cold."""
        if not self._cold_pending or "cold_start" not in self._wanted:
            return
        self._cold_pending = self.facts.cold_pending = False
        self.cold_request = request_id
        with contextlib.suppress(msgspec.DecodeError):
            self.facts.cold_request = msgspec.json.decode(request_id, type=str)
        self._save()

    def _encode(self) -> bytes:
        pairs = list(self._static)
        if self.enabled:
            pairs += [("runtime", self._env_runtime or self.facts.runtime),
                      ("environment_id", self.facts.environment_id),
                      ("init_type", self.facts.init_type or self._env_init_type)]
        pairs = [(name, value) for name, value in pairs if name in self._wanted]
        pairs += self._user
        return b"".join(b"," + _json(name) + b":" + _json(value) for name, value in pairs if value)

    def _load(self) -> InitFacts:
        try:
            with open(self._path, "rb") as file:
                return _facts.decode(file.read(4096))
        except (OSError, msgspec.DecodeError):
            return InitFacts()

    def _save(self) -> None:
        """Best effort: without the file a restarted sender only forgets the cold start."""
        tmp = self._path + ".tmp"
        try:
            with open(tmp, "wb") as file:
                file.write(schema.encoder.encode(self.facts))
            os.replace(tmp, self._path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _json(text: str) -> bytes:
    return schema.encoder.encode(text)


def _json_or_none(text: str) -> bytes | None:
    return _json(text) if text else None
