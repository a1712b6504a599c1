"""Sends traces, metrics and logs to an OTLP endpoint with the real OpenTelemetry Python SDK.

Used by hpcotel's integration tests (collector/tests/python_sdk.rs). Every item carries the
resource attribute `test.run_id` so a test can find exactly what this run sent.

  --protocol grpc           OTLPSpanExporter & co. from opentelemetry-exporter-otlp-proto-grpc
  --protocol http/protobuf  ... from opentelemetry-exporter-otlp-proto-http
  --protocol http/json      the SDK's own OTLP encoders, written as OTLP/JSON per the spec
                            (the Python SDK ships no JSON exporter): lowerCamelCase keys,
                            hex trace/span ids, integer enums.

Prints one JSON line: {"traces": "SUCCESS", "metrics": "SUCCESS", "logs": "SUCCESS"}.
"""

import argparse
import base64
import json
import sys
import urllib.request

from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExportResult, InMemoryMetricReader
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

try:  # SDK >= 1.39 moved the log export result
    from opentelemetry.sdk._logs.export import LogRecordExportResult as LogExportResult
except ImportError:  # pragma: no cover
    from opentelemetry.sdk._logs.export import LogExportResult


def hexify_ids(node):
    """OTLP/JSON writes trace and span ids as hex, protobuf's JSON mapping as base64."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                hexify_ids(value)
    elif isinstance(node, list):
        for item in node:
            hexify_ids(item)
    return node


def post_json(url, message, headers):
    body = json.dumps(hexify_ids(json_format.MessageToDict(message, use_integers_for_enums=True)))
    req = urllib.request.Request(url, data=body.encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    for k, v in headers.items():
        req.add_header(k, v)
    with urllib.request.urlopen(req, timeout=10) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{url}: HTTP {resp.status}")
        reply = json.loads(resp.read() or b"{}")
        if (reply.get("partialSuccess") or {}).get("errorMessage"):
            raise RuntimeError(f"{url}: partial success {reply}")


class JsonSpanExporter:
    def __init__(self, base, headers):
        self.url, self.headers = base + "/v1/traces", headers

    def export(self, spans):
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        post_json(self.url, encode_spans(spans), self.headers)
        return SpanExportResult.SUCCESS

    def shutdown(self):
        pass

    def force_flush(self, timeout_millis=None):
        return True


class JsonMetricExporter:
    def __init__(self, base, headers):
        self.url, self.headers = base + "/v1/metrics", headers

    def export(self, data):
        from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

        post_json(self.url, encode_metrics(data), self.headers)
        return MetricExportResult.SUCCESS

    def shutdown(self):
        pass


class JsonLogExporter:
    def __init__(self, base, headers):
        self.url, self.headers = base + "/v1/logs", headers

    def export(self, batch):
        from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs

        post_json(self.url, encode_logs(batch), self.headers)
        return LogExportResult.SUCCESS

    def shutdown(self):
        pass

    def force_flush(self, timeout_millis=None):
        return True


def exporters(protocol, endpoint, headers):
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

        kw = dict(endpoint=endpoint, insecure=True, headers=tuple(headers.items()))
        return OTLPSpanExporter(**kw), OTLPMetricExporter(**kw), OTLPLogExporter(**kw)
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

        return (
            OTLPSpanExporter(endpoint=endpoint + "/v1/traces", headers=headers),
            OTLPMetricExporter(endpoint=endpoint + "/v1/metrics", headers=headers),
            OTLPLogExporter(endpoint=endpoint + "/v1/logs", headers=headers),
        )
    if protocol == "http/json":
        return (
            JsonSpanExporter(endpoint, headers),
            JsonMetricExporter(endpoint, headers),
            JsonLogExporter(endpoint, headers),
        )
    raise SystemExit(f"unknown protocol {protocol}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--protocol", required=True)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--run-id", required=True)
    ap.add_argument("--header", action="append", default=[], help="key=value")
    args = ap.parse_args()
    headers = dict(h.split("=", 1) for h in args.header)
    resource = Resource.create({"service.name": "sdk-test", "test.run_id": args.run_id})
    span_exp, metric_exp, log_exp = exporters(args.protocol, args.endpoint, headers)
    result = {}

    # Traces: a parent and a child span with typed attributes.
    spans_out = []

    class Recording:
        def export(self, spans):
            r = span_exp.export(spans)
            spans_out.append(r)
            return r

        def shutdown(self):
            span_exp.shutdown()

        def force_flush(self, timeout_millis=None):
            return True

    tp = TracerProvider(resource=resource)
    tp.add_span_processor(SimpleSpanProcessor(Recording()))
    tracer = tp.get_tracer("hpcotel.test")
    with tracer.start_as_current_span("checkout", kind=trace.SpanKind.SERVER) as parent:
        parent.set_attribute("http.request.method", "POST")
        parent.set_attribute("cart.items", 3)
        with tracer.start_as_current_span("db.query") as child:
            child.set_attribute("db.system.name", "postgresql")
            child.set_attribute("ratio", 0.25)
    tp.shutdown()
    result["traces"] = "SUCCESS" if spans_out and all(r == SpanExportResult.SUCCESS for r in spans_out) else "FAILURE"

    # Metrics: a counter and a histogram, collected once and exported.
    reader = InMemoryMetricReader()
    mp = MeterProvider(resource=resource, metric_readers=[reader])
    meter = mp.get_meter("hpcotel.test")
    counter = meter.create_counter("requests", unit="{request}", description="requests served")
    counter.add(5, {"route": "/checkout"})
    counter.add(2, {"route": "/cart"})
    hist = meter.create_histogram("latency", unit="ms")
    for v in (10, 20, 30):
        hist.record(v, {"route": "/checkout"})
    data = reader.get_metrics_data()
    r = metric_exp.export(data)
    result["metrics"] = "SUCCESS" if r == MetricExportResult.SUCCESS else "FAILURE"
    mp.shutdown()

    # Logs: two records with bodies and attributes.
    import logging

    from opentelemetry.sdk._logs import LoggingHandler

    logs_out = []

    class RecordingLogs:
        def export(self, batch):
            r = log_exp.export(batch)
            logs_out.append(r)
            return r

        def shutdown(self):
            log_exp.shutdown()

        def force_flush(self, timeout_millis=None):
            return True

    lp = LoggerProvider(resource=resource)
    lp.add_log_record_processor(SimpleLogRecordProcessor(RecordingLogs()))
    logger = logging.getLogger("hpcotel.test." + args.run_id)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(LoggingHandler(level=logging.INFO, logger_provider=lp))
    logger.warning("GPU 0 fell off the bus", extra={"gpu.index": 0})
    logger.info("rollout finished")
    lp.shutdown()
    result["logs"] = "SUCCESS" if len(logs_out) == 2 and all(r == LogExportResult.SUCCESS for r in logs_out) else "FAILURE"

    print(json.dumps(result))
    return 0 if all(v == "SUCCESS" for v in result.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
