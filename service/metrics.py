"""Prometheus metrics, correct across processes.

Every api and worker process on a host writes its counters, histograms and live gauges to ``METRICS_DIR``
(prometheus-client's multi-process mode), and any api's ``/metrics`` adds them up. What the database knows
better than any process (queue depth and oldest wait per team, outbox backlog per kind, overdue timers) is
read from PostgreSQL at scrape time instead, so it is right whichever process answers.

Call sites use the functions below; before ``configure`` (a process that never serves or works, a script)
they do nothing.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest, multiprocess, values
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.settings import Settings

TRANSPORTS = ("widget_websocket", "widget_sse", "operator_sse")
_PID_FILE = re.compile(r"_(\d+)\.db$")
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _Instruments:
    """This process's metrics; created by ``configure`` once the multi-process mode is chosen."""

    def __init__(self) -> None:
        self.ingest_batch = Histogram(
            "switchboard_ingest_batch_size",
            "Visitor messages written to PostgreSQL in one statement",
            buckets=_BATCH_BUCKETS,
        )
        self.routing = Histogram(
            "switchboard_routing_decision_seconds",
            "Time to route one conversation: its whole transaction, by outcome",
            ["outcome"],
            buckets=_SECONDS_BUCKETS,
        )
        self.timer_lateness = Histogram(
            "switchboard_timer_lateness_seconds",
            "How long after its due time a timer fired, by kind",
            ["kind"],
            buckets=_SECONDS_BUCKETS,
        )
        self.connections = Gauge(
            "switchboard_realtime_connections",
            "Open live connections: widget WebSockets and SSE streams, operator event streams",
            ["transport"],
            multiprocess_mode="livesum",
        )
        for transport in TRANSPORTS:  # each series exists, at 0, before its first connection
            self.connections.labels(transport)
        self.db_pool = Gauge(
            "switchboard_db_pool_connections",
            "PostgreSQL pool connections of the live processes: in use, and the pools' size",
            ["state"],
            multiprocess_mode="livesum",
        )


_instruments: _Instruments | None = None
_directory: str | None = None


def metrics_directory(settings: Settings) -> str:
    return settings.metrics_dir or str(Path(settings.data_dir) / "metrics")


def configure(settings: Settings) -> None:
    """Choose this process's metrics directory and create its metrics (once per process)."""
    global _instruments, _directory
    if _instruments is not None:
        return
    _directory = metrics_directory(settings)
    os.makedirs(_directory, exist_ok=True)
    _forget_dead_processes(_directory)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _directory
    # The library picks its value class when it is imported; this process's metrics go to files instead.
    values.ValueClass = values.MultiProcessValue()
    _instruments = _Instruments()


def _forget_dead_processes(directory: str) -> None:
    """Drop the files of processes that are gone, so the directory does not grow with every restart: their
    counters reset, which rate() tolerates."""
    for pid in _dead_pids(directory):
        for path in glob.glob(os.path.join(directory, f"*_{pid}.db")):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)


def _dead_pids(directory: str) -> set[int]:
    found = {int(m.group(1)) for path in glob.glob(os.path.join(directory, "*.db")) if (m := _PID_FILE.search(path))}
    return {pid for pid in found if not _alive(pid)}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def observe_ingest_batch(size: int) -> None:
    if _instruments is not None:
        _instruments.ingest_batch.observe(size)


def observe_routing(outcome: str, seconds: float) -> None:
    if _instruments is not None:
        _instruments.routing.labels(outcome).observe(seconds)


def observe_timer_lateness(kind: str, seconds: float) -> None:
    if _instruments is not None:
        _instruments.timer_lateness.labels(kind).observe(max(seconds, 0.0))


@contextlib.contextmanager
def connection(transport: str) -> Iterator[None]:
    """Count a live connection (one of ``TRANSPORTS``) while the block runs."""
    gauge = _instruments.connections.labels(transport) if _instruments is not None else None
    if gauge is not None:
        gauge.inc()
    try:
        yield
    finally:
        if gauge is not None:
            gauge.dec()


def watch_pool(engine: AsyncEngine, size: int) -> Callable[[], None]:
    """Count this engine's checked-out connections, and its size (pool plus overflow), in the pool gauges, until
    the returned function is called (when the engine is disposed)."""
    if _instruments is None:
        return lambda: None
    in_use, capacity = _instruments.db_pool.labels("in_use"), _instruments.db_pool.labels("size")
    capacity.inc(size)
    pool = engine.sync_engine.pool

    def checkout(*_: object) -> None:
        in_use.inc()

    def checkin(*_: object) -> None:
        in_use.dec()

    event.listen(pool, "checkout", checkout)
    event.listen(pool, "checkin", checkin)

    def unwatch() -> None:
        capacity.dec(size)
        event.remove(pool, "checkout", checkout)
        event.remove(pool, "checkin", checkin)

    return unwatch


# What PostgreSQL knows, read at scrape time.
_QUEUES = sa.text(
    "SELECT team_id, count(*) AS depth, extract(epoch FROM now() - min(waiting_since)) AS oldest "
    "FROM conversation WHERE status = 'queued' AND team_id IS NOT NULL GROUP BY team_id ORDER BY team_id"
)
_OUTBOX = sa.text(  # held rows (a disabled webhook's) count: they wait to be sent; dead ones never will be
    "SELECT kind, count(*) AS backlog FROM outbox WHERE delivered_at IS NULL AND dead_at IS NULL "
    "GROUP BY kind ORDER BY kind"
)
_TIMERS = sa.text(
    "SELECT kind, count(*) AS overdue, extract(epoch FROM now() - min(due_at)) AS late FROM timer "
    "WHERE state = 'pending' AND due_at < now() GROUP BY kind ORDER BY kind"
)


async def _database_families(conn: AsyncConnection) -> list[Any]:
    depth = GaugeMetricFamily("switchboard_queue_depth", "Conversations waiting in each team's queue", labels=["team"])
    oldest = GaugeMetricFamily(
        "switchboard_queue_oldest_wait_seconds", "How long the longest-waiting conversation has waited", labels=["team"]
    )
    for row in await conn.execute(_QUEUES):
        depth.add_metric([str(row.team_id)], row.depth)
        oldest.add_metric([str(row.team_id)], float(row.oldest or 0))
    backlog = GaugeMetricFamily(
        "switchboard_outbox_backlog", "Outbox rows not yet delivered (due, leased or waiting to retry)", labels=["kind"]
    )
    for row in await conn.execute(_OUTBOX):
        backlog.add_metric([row.kind], row.backlog)
    overdue = GaugeMetricFamily("switchboard_timers_overdue", "Pending timers past their due time", labels=["kind"])
    late = GaugeMetricFamily(
        "switchboard_timers_overdue_seconds",
        "How far past its due time the most overdue pending timer is",
        labels=["kind"],
    )
    for row in await conn.execute(_TIMERS):
        overdue.add_metric([row.kind], row.overdue)
        late.add_metric([row.kind], float(row.late or 0))
    return [depth, oldest, backlog, overdue, late]


class _Fixed:
    """A collector answering families read beforehand (the scrape reads the database asynchronously)."""

    def __init__(self, families: list[Any]) -> None:
        self._families = families

    def collect(self) -> list[Any]:
        return self._families


async def exposition(engine: AsyncEngine) -> bytes:
    """The Prometheus text of every live process's metrics on this host, and of the database's figures."""
    async with engine.connect() as conn:
        families = await _database_families(conn)
    registry = CollectorRegistry()
    if _directory is not None:
        for pid in _dead_pids(_directory):  # a killed process's connections and pool use are gone with it
            multiprocess.mark_process_dead(pid, _directory)
        multiprocess.MultiProcessCollector(registry, path=_directory)
    registry.register(_Fixed(families))  # type: ignore[arg-type]
    return generate_latest(registry)
