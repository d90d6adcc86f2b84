"""The wire formats' own promises (ext/schema.py): what the listener admits, and the defaults a
record without a field is read with."""

from __future__ import annotations

import json

import msgspec
import pytest

from ext import config, schema
from ext.sender.envelope import EnvelopeBuilder

TIME = "2026-10-08T07:30:28.235Z"


def test_the_listener_admits_no_field_beyond_time_type_and_record() -> None:
    # A value the listener has not looked at (e.g. nested too deep) must not reach the sender.
    extra = {"time": TIME, "type": "function", "record": "x", "extra": [[1]]}
    with pytest.raises(msgspec.ValidationError, match="unknown field `extra`"):
        schema.intake_event.decode(json.dumps(extra).encode())
    with pytest.raises(msgspec.ValidationError, match="unknown field `extra`"):
        schema.intake_batch.decode(json.dumps([extra]).encode())
    plain = schema.intake_event.decode(json.dumps({"time": TIME, "type": "function",
                                                   "record": "x"}).encode())
    assert (plain.time, plain.type, bytes(plain.record)) == (TIME, "function", b'"x"')
    # The sender reads what the spool holds as it is (an older version's spool included).
    assert schema.telemetry_event.decode(json.dumps(extra).encode()).type == "function"


@pytest.mark.parametrize("record", [{"droppedBytes": 900, "reason": "fell behind"}, {}])
def test_a_drop_notice_without_its_count_counts_no_record(record: dict[str, object]) -> None:
    # platform.logsDropped's droppedRecords feeds the sender's dropped-records figure: a notice
    # without it must not add a record Lambda did not say it dropped.
    assert schema.drop_notice.decode(json.dumps(record).encode()).droppedRecords == 0
    cfg = config.load({"SPLUNK_HOST": "http://h:8088", "SPLUNK_HEC_TOKEN": "t"})
    builder = EnvelopeBuilder(cfg, "fn")
    body = json.dumps([{"time": TIME, "type": "platform.logsDropped", "record": record}])
    assert len(builder.build(body.encode())) == 1  # the notice itself still goes to Splunk
    assert builder.dropped_records == 0
