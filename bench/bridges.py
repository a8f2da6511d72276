"""Chat bridges: what a team's Telegram bridge costs a visitor's message on ``POST /pocketping/message``.

One Switchboard api (uvicorn, 1 process) on a scratch database, two teams: ``plain`` (no bridges)
and ``bridged`` (Telegram enabled through ``PATCH /api/v1/teams/{id}/bridges``, the Bot API being
the loopback stand-in of tests/standins, ``TELEGRAM_API_BASE`` pointing at it). ``--sessions``
conversations are routed to each team by an arq burst worker (the default team is switched in
between), the bridged ones get their forum topic during the warm-up, then wrk posts visitor
messages round-robin over one team's conversations at a time, interleaved ``--rounds`` times:

- ``plain``: the baseline;
- ``bridged 0 ms``: the stand-in answers at once (Switchboard's own cost of the bridge hook);
- ``bridged N ms``: the stand-in sleeps ``--delay-ms`` before answering, as the real API's round trip would.

The widget's request only queues the post (an outbox row written by the statement that stores the message); a
burst worker in this process posts them after each bridged run, so the api's figure is its own and the
worker's posting rate is reported beside it.

    .venv/bin/python bench/bridges.py [--rounds 2] [--duration 5] [--delay-ms 50]

Every 2xx bridged message must reach the stand-in as one ``sendMessage`` into its topic. The last
line is ``ratio: X.XX`` (median bridged throughput with the delay / median plain throughput); the
line before is ``ratio_0ms``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from arq.worker import Worker
from ingest import (
    ROOT,
    SECRET_KEY,
    BenchError,
    WrkResult,
    _admin,
    _stat,
    add_wrk_arguments,
    api_env,
    cleanup_redis,
    create_sessions,
    fresh_database,
    http_server,
    run_wrk,
)
from redis import Redis

sys.path.insert(0, str(ROOT))  # tests.standins

from service.auth.principal import new_personal_token
from service.logging import configure_logging
from service.settings import Settings
from tests.standins import TelegramStandIn
from workers.settings import worker_settings

BOT_TOKEN = "111111:bench-telegram-bot-token"
CHAT_ID = "-1001000000001"


class SlowTelegram(TelegramStandIn):
    """The Telegram stand-in as a real API server behaves under load, answering after ``delay`` seconds.

    The tests' stand-in closes each connection (HTTP/1.0) and listens with the stdlib's backlog of 5:
    32 concurrent hooks would then pay a new connection per call and SYN retries of a second. Here
    connections are kept alive (the bridge's httpx client reuses them) and the backlog is 128.
    """

    delay = 0.0

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._server.socket.listen(128)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        handler = super()._handler()
        handler.protocol_version = "HTTP/1.1"  # every answer carries content-length
        return handler

    def answer(self, name: str, method: str, path: str, body: Any, token: str | None) -> tuple[int, Any]:
        if self.delay:
            time.sleep(self.delay)
        return super().answer(name, method, path, body, token)


async def seed(database_url: str) -> tuple[uuid.UUID, uuid.UUID, str]:
    """Teams ``plain`` (the default) and ``bridged``, and a lead of ``bridged`` with a token; returns the token."""
    conn = await asyncpg.connect(database_url)
    try:
        plain, bridged, lead = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        await conn.execute(
            "INSERT INTO team (id, name, is_default) VALUES ($1, 'plain', true), ($2, 'bridged', false)", plain, bridged
        )
        await conn.execute(
            "INSERT INTO operator (id, subject, display_name) VALUES ($1, $2, 'Lead')", lead, f"s-{lead}"
        )
        await conn.execute(
            "INSERT INTO team_member (team_id, operator_id, role) VALUES ($1, $2, 'lead')", bridged, lead
        )
        secret, digest, prefix = new_personal_token()
        await conn.execute(
            "INSERT INTO api_token (id, operator_id, name, token_hash, prefix, scopes)"
            " VALUES ($1, $2, 'bench', $3, $4, '{read,write,admin}')",
            uuid.uuid4(),
            lead,
            digest,
            prefix,
        )
    finally:
        await conn.close()
    return plain, bridged, secret


async def fetch(database_url: str, sql: str, *params: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return list(await conn.fetch(sql, *params))
    finally:
        await conn.close()


async def route_all(settings: Settings) -> None:
    """Run the queued jobs (routing, bridge posts) to the end, as ``switchboard worker`` would (no cron)."""
    options = {**worker_settings(settings), "burst": True, "poll_delay": 0, "handle_signals": False, "cron_jobs": []}
    worker = Worker(**options)
    try:
        await worker.main()
    finally:
        await worker.close()
    if worker.jobs_failed:
        raise BenchError(f"{worker.jobs_failed} jobs failed")


def say_hello(url: str, sessions: list[str]) -> None:
    """One visitor message in each conversation, one after the other."""
    with httpx.Client(base_url=url, timeout=10) as client:
        for session_id in sessions:
            body = {"sessionId": session_id, "content": "Hello", "sender": "visitor"}
            if (response := client.post("/pocketping/message", json=body)).status_code != 200:
                raise BenchError(f"message answered {response.status_code}: {response.text[:300]}")


def routed_sessions(url: str, settings: Settings, team: uuid.UUID, count: int, workdir: Path) -> tuple[list[str], Path]:
    """``count`` new conversations, each with a first message, routed by the worker to ``team`` (the default)."""
    sessions = create_sessions(url, count)
    say_hello(url, sessions)
    asyncio.run(route_all(settings))
    placed = asyncio.run(
        fetch(
            settings.database_url,
            "SELECT count(*) FROM conversation WHERE team_id = $1 AND id::text = ANY($2::text[])",
            team,
            sessions,
        )
    )[0][0]
    if placed != count:
        raise BenchError(f"{placed} of {count} conversations routed to team {team}")
    sessions_file = workdir / f"sessions-{team}.txt"
    sessions_file.write_text("\n".join(sessions) + "\n")
    return sessions, sessions_file


def settle(telegram: SlowTelegram) -> None:
    """Wait until the stand-in has had no call for a second: the api's requests in flight are done."""
    while True:
        count = len(telegram.calls)
        time.sleep(1 + telegram.delay)
        if len(telegram.calls) == count:
            return


def measure_bridged(
    url: str, settings: Settings, sessions_file: Path, args: argparse.Namespace, telegram: SlowTelegram
) -> tuple[WrkResult, str]:
    """One wrk run on the bridged conversations; then a worker posts what they queued, and every 2xx response
    must have posted one message to Telegram.

    Also returns a note: how fast the worker posted them (afterwards, so the api's figure is its own).
    """
    asyncio.run(route_all(settings))  # what earlier runs (the warm-up) queued is posted before counting
    settle(telegram)
    telegram.clear()
    result = run_wrk(url, sessions_file, args, args.duration)
    time.sleep(1)  # requests in flight when wrk stopped still finish
    started = time.perf_counter()
    asyncio.run(route_all(settings))  # the posts, as the worker delivers them (burst: until none is left)
    posting = time.perf_counter() - started
    sent, topics = len(telegram.calls_to("sendMessage")), len(telegram.calls_to("createForumTopic"))
    failed = [call for call in telegram.calls if call.status != 200]
    # wrk stops at the deadline with up to one request per connection in flight, which the server completes.
    if not result.requests <= sent <= result.requests + args.connections or topics or failed:
        raise BenchError(
            f"{result.requests} 2xx responses, {sent} sendMessage calls, {topics} new topics,"
            f" {len(failed)} failed Telegram calls (want one sendMessage each, no topics, no failures)"
        )
    names = sorted({call.name for call in telegram.calls})
    rate = sent / posting if posting else 0
    calls = f"Telegram calls: {len(telegram.calls):,} ({', '.join(names)})"
    return result, f"{calls}; a worker posted them at {rate:,.0f}/s"


def api_seconds(pid: int) -> float:
    """CPU seconds the api process (uvicorn, one process) has used so far."""
    return _stat(Path(f"/proc/{pid}/stat"))[3] / os.sysconf("SC_CLK_TCK")


def line(name: str, result: WrkResult) -> str:
    return (
        f"{name:<40} {result.rate:>8,.0f} msgs/s   p50 {result.p50_ms:7.2f} ms   p99 {result.p99_ms:7.2f} ms"
        f"   ({result.requests:,} requests in {result.seconds:.1f} s, 0 non-2xx)"
    )


def run(args: argparse.Namespace, workdir: Path) -> dict[str, list[WrkResult]]:
    database = args.database
    database_url = fresh_database(args.admin_database_url, database)
    prefix = f"bench-bridges-{uuid.uuid4().hex[:8]}"
    redis = Redis.from_url(args.redis_url)
    sessions: list[str] = []
    telegram = SlowTelegram(tokens={BOT_TOKEN}).start()
    env = {**api_env(database_url, args.redis_url, prefix), "TELEGRAM_API_BASE": telegram.base_url}
    settings = Settings(
        database_url=database_url,
        redis_url=args.redis_url,
        secret_key=SECRET_KEY,
        redis_prefix=prefix,
        log_level="WARNING",
        telegram_api_base=telegram.base_url,  # the burst worker posts to the stand-in too
    )
    configure_logging(settings)  # the burst worker runs in this process
    try:
        plain, bridged, token = asyncio.run(seed(database_url))
        with http_server(["--factory", "service.app:create_app"], env, "/healthz") as server:
            plain_sessions, plain_file = routed_sessions(server.url, settings, plain, args.sessions, workdir)
            sessions += plain_sessions
            asyncio.run(_admin(database_url, f"UPDATE team SET is_default = (id = '{bridged}')"))
            bridged_sessions, bridged_file = routed_sessions(server.url, settings, bridged, args.sessions, workdir)
            sessions += bridged_sessions
            response = httpx.patch(
                f"{server.url}/api/v1/teams/{bridged}/bridges",
                json={"telegram": {"enabled": True, "chatId": CHAT_ID, "botToken": BOT_TOKEN}},
                headers={"Authorization": f"Bearer {token}"},
            )
            if response.status_code != 200:
                raise BenchError(f"PATCH bridges answered {response.status_code}: {response.text[:300]}")
            say_hello(server.url, bridged_sessions)  # the first message since opens the conversation's forum topic
            asyncio.run(route_all(settings))  # posted by the worker
            if (topics := len(telegram.calls_to("createForumTopic"))) != args.sessions:
                raise BenchError(f"{topics} forum topics opened for {args.sessions} bridged conversations")
            run_wrk(server.url, plain_file, args, args.warmup)
            run_wrk(server.url, bridged_file, args, args.warmup)
            delays = [0.0] + ([args.delay_ms / 1000] if args.delay_ms else [])
            results: dict[str, list[WrkResult]] = {}
            # Interleaved, so drift on a shared machine (CPU steal, noisy neighbours) hits all alike.
            for _ in range(args.rounds):
                api = api_seconds(server.pgid)
                result = run_wrk(server.url, plain_file, args, args.duration)
                results.setdefault("plain", []).append(result)
                note = f"api CPU {(api_seconds(server.pgid) - api) / result.seconds:.0%} of a core"
                print(f"{line('plain    (no bridges)', result)}\n    {note}", flush=True)
                for delay in delays:
                    telegram.delay = delay
                    name = f"bridged  (Telegram, {delay * 1000:g} ms)"
                    api = api_seconds(server.pgid)
                    result, note = measure_bridged(server.url, settings, bridged_file, args, telegram)
                    results.setdefault(f"{delay * 1000:g}", []).append(result)
                    # Includes the settling after wrk, when the api is idle: a lower bound.
                    api_cpu = (api_seconds(server.pgid) - api) / result.seconds
                    print(f"{line(name, result)}\n    api CPU {api_cpu:.0%} of a core; {note}", flush=True)
            print(
                f"checked: {args.sessions} conversations routed to each team; one forum topic per bridged"
                " conversation (before the warm-up); one sendMessage per 2xx bridged message, no failed Telegram call"
            )
            return results
    finally:
        telegram.stop()
        cleanup_redis(redis, prefix, sessions)
        redis.close()
        with contextlib.suppress(Exception):
            asyncio.run(_admin(args.admin_database_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5, help="measured seconds per run (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per configuration, interleaved (default 2)")
    parser.add_argument("--delay-ms", type=float, default=50, help="stand-in delay of the third config; 0: none")
    parser.add_argument("--warmup", type=float, default=2, help="warm-up seconds per team (default 2)")
    parser.add_argument("--sessions", type=int, default=100, help="conversations per team (default 100)")
    add_wrk_arguments(parser, database="switchboard_bench_bridges")
    args = parser.parse_args()

    if shutil.which("wrk") is None:
        sys.exit("bench/bridges.py needs wrk: apt-get install -y wrk")
    print(
        f"POST /pocketping/message, visitor messages in conversations routed to a team: wrk {args.threads} threads,"
        f" {args.connections} connections, {args.rounds} interleaved runs of {args.duration:g} s per configuration,"
        f" {args.sessions} conversations per team; 1 api process; {os.cpu_count()} cores"
    )
    print(
        "note: Telegram is a loopback stand-in (tests/standins; keep-alive, backlog 128) in this process, sharing the"
        " cores with the api; 'bridged N ms' sleeps N ms in the stand-in before"
        " each answer to mimic the real Bot API's round trip; widget budgets lifted to 1000000000"
    )
    try:
        with tempfile.TemporaryDirectory(prefix="bench-bridges-") as tmp:
            results = run(args, Path(tmp))
    except BenchError as exc:
        sys.exit(f"FAILED: {exc}")

    def median(name: str) -> float:
        return statistics.median(result.rate for result in results[name])

    for name, runs in results.items():
        label = "plain" if name == "plain" else f"bridged {name} ms"
        p50 = statistics.median(r.p50_ms for r in runs)
        p99 = statistics.median(r.p99_ms for r in runs)
        print(f"median {label:<18} {median(name):>8,.0f} msgs/s   p50 {p50:7.2f} ms   p99 {p99:7.2f} ms")
    print(f"ratio_0ms: {median('0') / median('plain'):.2f}")
    last = f"{args.delay_ms:g}" if args.delay_ms else "0"
    print(f"ratio: {median(last) / median('plain'):.2f}")


if __name__ == "__main__":
    main()
