"""Widget sockets at scale: 10,000 widget WebSockets on one api process while 1,000 messages/s reach random ones.

Starts one ``service.app:create_app`` under uvicorn (as ``switchboard api`` runs it) on a scratch
database holding ``--sockets`` sessions, opens one ``/pocketping/stream?sessionId=`` WebSocket per
session (as the widget's ``client.ts`` does), then publishes ``--rate`` operator messages a second
for ``--duration`` seconds, each to a random session, on the widget channel in Redis: the path an
operator reply from another api instance or a worker's AI reply takes to the socket. Latency is
from the publish to the frame arriving at that socket (one clock: the bench process does both).

    .venv/bin/python bench/sockets.py [--sockets 10000] [--rate 1000] [--duration 20]

The run fails unless every socket opened, and every message reached its own socket exactly once
and no other. It prints the api's RSS idle, with the sockets open and after the flow; the last
lines are ``rss_mb: N`` (with the sockets open, after the flow) and ``p99_ms: N``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import websockets
from ingest import BenchError, _admin, api_env, cleanup_redis, fresh_database, http_server
from redis.asyncio import Redis

OPEN_AT_ONCE = 100  # handshakes in flight while the sockets open
BATCH_EVERY = 0.01  # seconds between publishes; the api's own publisher batches likewise


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid``, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for process {pid}")


async def create_sessions(database_url: str, count: int) -> list[str]:
    """``count`` conversation rows, as the widget's connect leaves them (their creation is not what is measured)."""
    now = datetime.now(UTC)
    ids = [f"bench-socket-{i}-{uuid.uuid4().hex[:8]}" for i in range(count)]
    conn = await asyncpg.connect(database_url)
    try:
        await conn.copy_records_to_table(
            "conversation",
            records=[(i, f"visitor-{i}", now, now) for i in ids],
            columns=["id", "visitor_id", "created_at", "last_activity"],
        )
    finally:
        await conn.close()
    return ids


class Sockets:
    """The widgets' sockets, and what each received."""

    def __init__(self) -> None:
        self.received: dict[str, list[str]] = {}
        self.latencies: list[float] = []
        self.sent_at: dict[str, float] = {}
        self.tasks: list[asyncio.Task[None]] = []

    async def open(self, ws_url: str, session_ids: list[str]) -> list[websockets.ClientConnection]:
        gate = asyncio.Semaphore(OPEN_AT_ONCE)

        async def one(session_id: str) -> websockets.ClientConnection:
            async with gate:
                return await websockets.connect(f"{ws_url}/pocketping/stream?sessionId={session_id}", max_queue=None)

        sockets = await asyncio.gather(*(one(s) for s in session_ids))
        for session_id, socket in zip(session_ids, sockets, strict=True):
            self.received[session_id] = []
            self.tasks.append(asyncio.create_task(self._listen(session_id, socket)))
        return sockets

    async def _listen(self, session_id: str, socket: websockets.ClientConnection) -> None:
        async for frame in socket:
            event = json.loads(frame)
            if event.get("type") != "message":
                continue
            message_id = event["data"]["id"]
            self.latencies.append(time.perf_counter() - self.sent_at[message_id])
            self.received[session_id].append(message_id)


async def flow(
    redis: Redis, channel: str, sockets: Sockets, session_ids: list[str], rate: int, seconds: float
) -> dict[str, str]:
    """Publish ``rate`` messages a second to random sessions for ``seconds``; which session each went to."""
    destined: dict[str, str] = {}
    start = time.perf_counter()
    sent = 0
    while (elapsed := time.perf_counter() - start) < seconds:
        due = int(elapsed * rate) - sent
        envelopes = []
        for _ in range(due):
            message_id = f"bench-{sent}"
            session_id = random.choice(session_ids)
            event = {
                "type": "message",
                "data": {
                    "id": message_id,
                    "sessionId": session_id,
                    "content": f"reply {sent}",
                    "sender": "operator",
                    "timestamp": datetime.now(UTC).isoformat(),
                },
            }
            envelopes.append(json.dumps([session_id, json.dumps(event)]))
            destined[message_id] = session_id
            sockets.sent_at[message_id] = time.perf_counter()
            sent += 1
        if envelopes:
            await redis.publish(channel, "[" + ",".join(envelopes) + "]")
        await asyncio.sleep(BATCH_EVERY)
    return destined


def check(sockets: Sockets, destined: dict[str, str]) -> None:
    """Every message at its own socket exactly once, and nowhere else."""
    wrong = [(s, m) for s, got in sockets.received.items() for m in got if destined.get(m) != s]
    twice = [m for m, n in Counter(m for got in sockets.received.values() for m in got).items() if n > 1]
    arrived = {m for got in sockets.received.values() for m in got}
    missing = [m for m in destined if m not in arrived]
    if wrong or twice or missing:
        raise BenchError(f"{len(missing)} messages missing, {len(twice)} twice, {len(wrong)} at another socket")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def run(args: argparse.Namespace, database_url: str, prefix: str) -> None:
    env = api_env(database_url, args.redis_url, prefix)  # every socket comes from 127.0.0.1: budgets lifted
    session_ids = await create_sessions(database_url, args.sockets)
    redis = Redis.from_url(args.redis_url)
    sockets = Sockets()
    try:
        app = ["--factory", "service.app:create_app", *(["--ws", args.ws] if args.ws else [])]
        with http_server(app, env, "/healthz") as server:
            idle = rss_mb(server.pgid)
            began = time.perf_counter()
            opened = await sockets.open(server.url.replace("http://", "ws://"), session_ids)
            took = time.perf_counter() - began
            # The bench's own 10,000 sockets are long-lived: out of its collector's way, so its pauses are not counted.
            gc.freeze()
            await asyncio.sleep(2)  # the api settles (its accept tasks end)
            with_sockets = rss_mb(server.pgid)
            print(
                f"{len(opened):,} sockets open in {took:.1f} s;"
                f" api RSS {idle:.0f} MB idle, {with_sockets:.0f} MB with the sockets open"
            )

            channel = f"{prefix}:widget-events"
            destined = await flow(redis, channel, sockets, session_ids, args.rate, args.duration)
            await asyncio.sleep(2)  # the last frames arrive
            after = rss_mb(server.pgid)
            check(sockets, destined)
            for socket in opened:
                await socket.close()
            for task in sockets.tasks:
                task.cancel()
    finally:
        await redis.aclose()
    latencies_ms = [x * 1000 for x in sockets.latencies]
    rate = len(destined) / args.duration
    print(
        f"{len(destined):,} messages at {rate:,.0f}/s to random sockets, each received once by its own socket;"
        f" latency p50 {statistics.median(latencies_ms):.1f} ms, p99 {percentile(latencies_ms, 0.99):.1f} ms,"
        f" max {max(latencies_ms):.1f} ms; api RSS after the flow {after:.0f} MB"
    )
    print(f"rss_mb: {max(with_sockets, after):.0f}")
    print(f"p99_ms: {percentile(latencies_ms, 0.99):.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=10_000, help="widget WebSockets (default 10000)")
    parser.add_argument("--rate", type=int, default=1_000, help="messages a second (default 1000)")
    parser.add_argument("--duration", type=float, default=20, help="seconds of messages (default 20)")
    parser.add_argument(
        "--ws", default=None, help="uvicorn's --ws implementation (default: uvicorn's choice, as in production)"
    )
    parser.add_argument(
        "--admin-database-url",
        default=os.environ.get("BENCH_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--database", default="switchboard_bench_sockets")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()

    database_url = fresh_database(args.admin_database_url, args.database)
    prefix = f"bench-sockets-{uuid.uuid4().hex[:8]}"
    try:
        asyncio.run(run(args, database_url, prefix))
    except BenchError as exc:
        sys.exit(f"FAILED: {exc}")
    finally:
        from redis import Redis as SyncRedis

        redis = SyncRedis.from_url(args.redis_url)
        cleanup_redis(redis, prefix, [])
        redis.close()
        asyncio.run(_admin(args.admin_database_url, f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
