"""Events derived from platform records: metrics (ext/sender/metrics.py) and alerts
(ext/sender/alerts.py).

Sender process. The envelope builder hands every platform.report, runtimeDone, initReport and
restoreReport here (never a log line); the derived envelopes travel in the same spool record's
batch, so they are committed, retried and counted with the record they come from. Their
`fields` start with the same common indexed fields as every event (the builder's `_fields_for`).
"""

from __future__ import annotations

import msgspec

from ext import schema
from ext.sender import alerts
from ext.sender.metrics import ALERTS, MetricMapper, encode, inner_fields

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ext.config import Config
    from ext.sender.envelope import EnvelopeBuilder

DERIVED_KINDS = frozenset({
    "platform.report", "platform.runtimeDone", "platform.initReport", "platform.restoreReport",
})
ALERT_KINDS = frozenset({"platform.report", "platform.initReport"})


class PlatformDerivation:
    """Metric and alert envelopes of one function's platform records."""

    def __init__(self, config: Config, host: str, source: str) -> None:
        self.metrics = MetricMapper(config, host, source)
        # The report's figures then reach Splunk only as metrics (config checks the index is set).
        self.drop_events = not config.platform_events and self.metrics.enabled
        index = b',"index":' + encode(config.index) if config.index else b""
        self._alert_head = (b',"host":' + encode(host) + b',"source":' + encode(source)
                            + b',"sourcetype":' + encode(alerts.ALERT_SOURCETYPE) + index
                            + b',"fields":{')
        self.metric_made = False  # by the last derive(): the record's figures are in a metric

    def derive(self, builder: EnvelopeBuilder, kind: str, time: str | int | float,
               record: bytes) -> list[bytes]:
        """The metric event and the alert (with its counter metric) of one platform record."""
        self.metric_made = False
        if not self.metrics.enabled and kind not in ALERT_KINDS:
            return []  # nothing can come of it: spare the decoding
        try:
            figures = schema.platform_figures.decode(record)
        except (msgspec.DecodeError, RecursionError):
            return []  # a string record or odd types: the event itself still goes as it is
        alert = alerts.classify(kind, figures)
        if alert is None and not self.metrics.enabled:
            return []  # the usual report: no alert, no metrics index
        stamp = builder.stamp(time)  # as the platform event's own (a number in ms too)
        common = inner_fields(builder._fields_for(kind))
        out = []
        metric = self.metrics.platform_metrics(kind, stamp, common, figures)
        if metric is not None:
            self.metric_made = True
            out.append(metric)
        if alert is not None:
            out.append(self._alert_event(stamp, common, alert, kind, figures))
            counter = self.metrics.metric_event(stamp, common, {"alert": alert}, {ALERTS: 1})
            if counter is not None:
                out.append(counter)
        return out

    def _alert_event(self, stamp: bytes, common: bytes, alert: str, kind: str,
                     figures: schema.PlatformFigures) -> bytes:
        fields = [common, b'"alert":' + encode(alert)]
        if figures.requestId:
            fields.append(b'"request_id":' + encode(figures.requestId))
        body = encode(alerts.alert_body(alert, kind, figures))
        return (b'{"time":' + stamp + self._alert_head + b",".join(f for f in fields if f)
                + b'},"event":' + body + b"}")
