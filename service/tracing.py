"""OpenTelemetry traces, sent to an OTLP/HTTP endpoint when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.

The api traces each request (one server span, named by route template) and the workers each job; both
trace every SQL statement under those spans. Without an endpoint nothing is built and nothing is traced.
Each process has its own provider, passed where it is used rather than set globally, so several apps in
one process (the tests) do not share one.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Callable, Coroutine
from typing import Any, Literal, ParamSpec, TypeVar

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings

Role = Literal["api", "worker"]
# Job arguments that identify what a job is about; recorded on its span (they are primitives, never content).
_JOB_ATTRIBUTES = ("conversation_id", "team_id", "timer_id", "revision", "trigger", "outbox_id")

P = ParamSpec("P")
R = TypeVar("R")


def tracer_provider(settings: Settings, role: Role) -> TracerProvider | None:
    """A provider exporting in batches to the configured endpoint; ``None`` when none is configured."""
    if settings.otel_exporter_otlp_endpoint is None:
        return None
    resource = Resource.create(
        {
            "service.name": settings.otel_service_name,
            "service.namespace": "switchboard",
            "service.instance.id": f"{socket.gethostname()}:{os.getpid()}",
            "switchboard.role": role,
        }
    )
    provider = TracerProvider(resource=resource)
    endpoint = f"{str(settings.otel_exporter_otlp_endpoint).rstrip('/')}/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


def trace_engine(engine: AsyncEngine, provider: TracerProvider | None) -> None:
    """A client span for every statement this engine runs (its pool metrics stay with Prometheus)."""
    if provider is None:
        return
    tracer = provider.get_tracer("switchboard.db")
    unused = NoOpMeterProvider().get_meter("switchboard.db").create_up_down_counter("db.client.connections.usage")
    EngineTracer(tracer, engine.sync_engine, unused)


def traced_job(
    job: Callable[P, Coroutine[Any, Any, R]], provider: TracerProvider | None
) -> Callable[P, Coroutine[Any, Any, R]]:
    """``job`` in a consumer span named after it, with the ids it was given and its outcome."""
    if provider is None:
        return job
    tracer = provider.get_tracer("switchboard.worker")
    name = job.__name__

    @functools.wraps(job)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        ctx: dict[str, Any] = args[0] if args and isinstance(args[0], dict) else {}
        attributes = {f"switchboard.{key}": str(kwargs[key]) for key in _JOB_ATTRIBUTES if key in kwargs}
        attributes.update({"messaging.system": "arq", "messaging.operation.name": "process"})
        if "job_id" in ctx:
            attributes.update({"messaging.message.id": str(ctx["job_id"]), "arq.job_try": ctx.get("job_try", 1)})
        with tracer.start_as_current_span(f"job {name}", kind=SpanKind.CONSUMER, attributes=attributes) as span:
            result = await job(*args, **kwargs)
            span.set_status(Status(StatusCode.OK))
            return result

    return run


def shutdown(provider: TracerProvider | None) -> None:
    """Send what is buffered and stop exporting (at process end)."""
    if provider is not None:
        provider.shutdown()
