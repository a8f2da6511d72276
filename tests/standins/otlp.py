"""A loopback stand-in for an OpenTelemetry collector's OTLP/HTTP traces receiver (``POST /v1/traces``).

It checks what a collector checks (the protobuf content type, an optional gzip encoding, a body that parses as
an ``ExportTraceServiceRequest``), answers as one does, and keeps the spans it accepted, flattened:

    with OtlpStandIn() as collector:
        ...  # OTEL_EXPORTER_OTLP_ENDPOINT=collector.base_url
        [span] = collector.spans_named("GET /healthz")
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.standins import Answer, Served, StandIn

__all__ = ["ExportedSpan", "OtlpStandIn"]

PROTOBUF = "application/x-protobuf"


@dataclass(frozen=True)
class ExportedSpan:
    """One span as the collector received it: ids in hex, its kind's name, its and its resource's attributes."""

    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    status: str


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return None if kind is None else getattr(value, kind)


def _attributes(items: Any) -> dict[str, Any]:
    return {item.key: _value(item.value) for item in items}


class OtlpStandIn(StandIn):
    """Accepts OTLP/HTTP protobuf trace exports; ``spans`` lists what it accepted, oldest first."""

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[ExportedSpan] = []

    def route(self, method: str, path: str, headers: dict[str, str]) -> tuple[str, str | None]:
        return f"{method} {path}", None

    def answer_request(
        self, name: str, method: str, path: str, body: Any, token: str | None, headers: dict[str, str]
    ) -> Answer:
        if name != "POST /v1/traces":
            return 404, {"error": "unknown path"}
        if headers.get("content-type", "").split(";")[0].strip() != PROTOBUF:
            return 415, {"error": f"content type must be {PROTOBUF}"}
        raw = body or b""
        if headers.get("content-encoding") == "gzip":
            raw = gzip.decompress(raw)
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(raw)
        except DecodeError:
            return 400, {"error": "not an ExportTraceServiceRequest"}
        accepted = [
            ExportedSpan(
                name=span.name,
                kind=Span.SpanKind.Name(span.kind),
                trace_id=span.trace_id.hex(),
                span_id=span.span_id.hex(),
                parent_span_id=span.parent_span_id.hex(),
                attributes=_attributes(span.attributes),
                resource=_attributes(resource_spans.resource.attributes),
                status=span.status.StatusCode.Name(span.status.code),
            )
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]
        with self._lock:
            self.spans.extend(accepted)
        return 200, Served(ExportTraceServiceResponse().SerializeToString(), PROTOBUF)

    def spans_named(self, name: str) -> list[ExportedSpan]:
        with self._lock:
            return [span for span in self.spans if span.name == name]

    def children_of(self, parent: ExportedSpan) -> list[ExportedSpan]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == parent.trace_id and s.parent_span_id == parent.span_id]
