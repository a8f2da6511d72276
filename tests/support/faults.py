"""Faults injected into a running deployment mid-traffic, for tests/faults/ and bench/faults.py.

A deployment here is real processes on servers of its own: a PostgreSQL cluster (``initdb`` into a temporary
directory, on a free port), a Redis server (no persistence), api processes (uvicorn on ``create_app``) and arq
worker processes (``tests/support/routing_worker.py``, periodic sweep on). Visitors speak the widget protocol over
HTTP to the apis in turn (a load balancer: a failed request is retried on the next api); operators reply through
the REST API with an ``Idempotency-Key``. A loopback receiver takes the team's webhooks.

Afterwards ``check`` reads PostgreSQL and the REST API: every acknowledged message stored once and shown to the
operators once, no conversation assigned twice, each webhook event delivered under one delivery id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import sqlalchemy as sa
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.db.migrate import upgrade
from service.dev import free_port
from service.settings import Settings
from service.webhooks import services as webhooks
from service.webhooks.schemas import WebhookEndpointCreate
from tests.factories import add_member, bearer, make_operator, make_team, personal_token
from tests.support.crash import serve_hook
from tests.support.faultproxy import FaultProxy, Toxics, fault_proxy
from tests.support.routing_worker import start_worker, stop_worker, worker_env

# What a client waits for one answer: a hung request counts as a failure, as a load balancer's timeout would.
REQUEST_TIMEOUT = 5.0


def _as_postgres_user() -> dict[str, Any]:
    """PostgreSQL refuses to run as root: its tools then run as the ``postgres`` system user."""
    return {"user": "postgres"} if os.geteuid() == 0 else {}


class PrivatePostgres:
    """A PostgreSQL cluster of its own (trust, user postgres) in a temporary directory, on a free loopback port."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="switchboard-faults-pg-"))
        self.data = self.directory / "data"
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")

    def _pg_ctl(self, *argv: str) -> None:
        subprocess.run(
            ["pg_ctl", "-D", str(self.data), "-w", "-t", "60", *argv],
            check=True,
            stdout=subprocess.DEVNULL,
            **_as_postgres_user(),
        )

    def init(self) -> None:
        subprocess.run(
            ["initdb", "-U", "postgres", "--auth=trust", "-D", str(self.data)],
            check=True,
            stdout=subprocess.DEVNULL,
            **_as_postgres_user(),
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg_ctl("-o", options, "-l", str(self.directory / "log"), "start")

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("-m", mode, "stop")

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def private_postgres() -> Any:
    """A started cluster for the block; stopped and deleted after."""
    cluster = PrivatePostgres()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


class PrivateRedis:
    """A Redis server of its own on a free port, without persistence: a restart comes back empty."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.02)
                continue
            writer.close()
            return

    async def kill(self) -> None:
        """SIGKILL: what it held is gone (it keeps nothing on disk)."""
        assert self.process is not None
        self.process.kill()
        await self.process.wait()


@asynccontextmanager
async def private_redis() -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis()
    await server.start()
    try:
        yield server
    finally:
        if server.process is not None and server.process.returncode is None:
            await server.kill()


@asynccontextmanager
async def fresh_database(admin_url: str) -> AsyncIterator[str]:
    """A new migrated database on the server of ``admin_url``; dropped after."""
    name = f"sb_faults_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        await asyncio.to_thread(upgrade, url)
        yield url
    finally:
        # A connection of its own: the server may have restarted meanwhile.
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


class Receiver:
    """A webhook receiver on loopback: records each request's event id and ``Switchboard-Delivery``, answers 200."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[str, str]] = []  # (event id from the body, delivery id)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        delivery = dict(scope["headers"]).get(b"switchboard-delivery", b"").decode()
        self.deliveries.append((str(json.loads(body)["id"]), delivery))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})


def deployment_settings(database_url: str, redis_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        secret_key="faults-secret-key-with-at-least-32-characters",
        environment="test",
        redis_prefix=f"sbfaults:{uuid.uuid4().hex[:8]}",
        log_json=False,
        log_level="WARNING",
        webhook_allowed_cidrs=[IPv4Network("127.0.0.1/32")],
        webhook_timeout_seconds=5.0,
    )


class Api:
    """One api process (uvicorn on ``create_app``) on its own port; kill it and start it again on the same one."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start the process; returns once it answers ``/readyz`` with 200."""
        env = {
            **worker_env(self.settings),
            # Every visitor here comes from 127.0.0.1: the per-IP and per-session budgets are not what is tested.
            "WIDGET_MESSAGE_LIMIT_PER_SESSION": "1000000",
            "WIDGET_MESSAGE_LIMIT_PER_IP": "1000000",
            "WIDGET_SIGNAL_LIMIT_PER_IP": "1000000",
        }
        argv = [sys.executable, "-m", "uvicorn", "service.app:create_app", "--factory"]
        argv += ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning", "--no-access-log"]
        self.process = await asyncio.create_subprocess_exec(*argv, env=env, cwd=os.getcwd())
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as http:
            deadline = time.monotonic() + 60
            while True:
                assert self.process.returncode is None, f"api exited with {self.process.returncode}"
                assert time.monotonic() < deadline, "api not ready in 60 s"
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)

    async def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        assert await self.process.wait() == -signal.SIGKILL

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


@dataclass
class Team:
    """The default team: round robin over two online operators with room for everything."""

    team_id: uuid.UUID
    operators: list[uuid.UUID]
    tokens: list[str]
    admin_token: str


async def seed(engine: AsyncEngine, settings: Settings, webhook_url: str) -> Team:
    team_id = await make_team(engine, "Support", is_default=True, routing_policy="round_robin")
    operators, tokens = [], []
    for name in ("Ada", "Bob"):
        operator_id = await make_operator(engine, name, status="online")
        await add_member(engine, team_id, operator_id, capacity=1000)
        operators.append(operator_id)
        tokens.append(await personal_token(engine, operator_id))
    admin = await make_operator(engine, "Root", is_admin=True)
    async with engine.begin() as conn:
        # Routing's events: one or two per conversation (every message's would outnumber what two workers on a
        # loaded machine deliver within the run).
        subscribed = WebhookEndpointCreate(url=webhook_url, events=["conversation.queued", "conversation.assigned"])
        await webhooks.create_endpoint(conn, team_id, subscribed, settings)
    return Team(team_id, operators, tokens, await personal_token(engine, admin))


@dataclass
class Sent:
    """One visitor message as the visitor saw it: acknowledged (its id) or not, and how many tries may have
    reached a server without an answer (each may have stored a copy)."""

    session_id: str
    content: str
    message_id: str | None = None
    unanswered: int = 0


@dataclass
class Traffic:
    """Visitors and operators against the apis; what each got acknowledged, and when requests succeeded."""

    apis: list[Api]
    team: Team
    sent: list[Sent] = field(default_factory=list)
    replies: dict[str, str] = field(default_factory=dict)  # idempotency key -> acknowledged reply id
    sessions: set[str] = field(default_factory=set)
    answered_at: list[tuple[float, float]] = field(default_factory=list)  # (request start, answer) of each 200
    errors: list[str] = field(default_factory=list)
    _turn: int = 0
    _stop_visitors: asyncio.Event = field(default_factory=asyncio.Event)

    async def request(
        self, http: httpx.AsyncClient, method: str, path: str, ok: int, *, patience: float = 60.0, **kwargs: Any
    ) -> tuple[httpx.Response, int]:
        """Like a load balancer: each failure (no answer, a 5xx) is retried on the next api, after a pause.
        Returns the answer and how many tries may have reached a server and gone unanswered."""
        unanswered = 0
        deadline = time.monotonic() + patience
        while True:
            api = self.apis[self._turn % len(self.apis)]
            self._turn += 1
            started = time.monotonic()
            try:
                response = await http.request(method, api.url + path, timeout=REQUEST_TIMEOUT, **kwargs)
            except httpx.ConnectError:
                response = None  # never reached a server
            except httpx.TransportError as exc:
                unanswered += 1
                self.errors.append(f"{type(exc).__name__} {path}")
                response = None
            if response is not None and response.status_code == ok:
                self.answered_at.append((started, time.monotonic()))
                return response, unanswered
            if response is not None:
                self.errors.append(f"{response.status_code} {path}")
                assert response.status_code in (502, 503), (path, response.status_code, response.text)
                if response.status_code == 503:
                    assert "Retry-After" in response.headers, response.headers
            assert time.monotonic() < deadline, f"{method} {path} failed for {patience} s: {self.errors[-5:]}"
            await asyncio.sleep(0.1)

    async def visitor(self, number: int, messages: int, pause: float) -> None:
        async with httpx.AsyncClient() as http:
            visitor_id = f"visitor-{number}-{uuid.uuid4().hex[:6]}"
            connected, _ = await self.request(http, "POST", "/pocketping/connect", 200, json={"visitorId": visitor_id})
            session_id = connected.json()["sessionId"]
            self.sessions.add(session_id)
            for n in range(messages):
                if self._stop_visitors.is_set():
                    return
                sent = Sent(session_id, f"{visitor_id} message {n}")
                body = {"sessionId": session_id, "content": sent.content, "sender": "visitor"}
                response, sent.unanswered = await self.request(http, "POST", "/pocketping/message", 200, json=body)
                sent.message_id = response.json()["messageId"]
                self.sent.append(sent)
                await asyncio.sleep(pause)

    async def operator(self, index: int, stop: asyncio.Event) -> None:
        """Answers every visitor message of its conversations, once per message, as a mobile client would."""
        headers = bearer(self.team.tokens[index])
        async with httpx.AsyncClient(headers=headers) as http:
            while not stop.is_set():
                listed, _ = await self.request(
                    http, "GET", "/api/v1/conversations", 200, params={"assignee": "me", "limit": 100}
                )
                for conversation in listed.json()["items"]:
                    await self._answer(http, conversation["id"])
                await asyncio.sleep(0.2)

    async def _answer(self, http: httpx.AsyncClient, conversation_id: str) -> None:
        page, _ = await self.request(
            http, "GET", f"/api/v1/conversations/{conversation_id}/messages", 200, params={"limit": 100}
        )
        items = page.json()["items"]
        if not items or items[-1]["sender"] != "visitor":
            return
        key = f"reply-{items[-1]['id']}"
        reply, _ = await self.request(
            http,
            "POST",
            f"/api/v1/conversations/{conversation_id}/messages",
            201,
            json={"content": f"Answer to {items[-1]['id']}"},
            headers={"Idempotency-Key": key},
        )
        self.replies[key] = reply.json()["id"]

    def first_success_after(self, moment: float) -> float | None:
        """Seconds from ``moment`` to the first 200 of a request started after it."""
        answers = [answer for started, answer in self.answered_at if started >= moment]
        return round(min(answers) - moment, 2) if answers else None


async def probe_routing(traffic: Traffic, engine: AsyncEngine, moment: float, limit: float) -> float | None:
    """A new visitor right after ``moment``: seconds from it to their conversation being assigned."""
    async with httpx.AsyncClient() as http:
        connected, _ = await traffic.request(
            http, "POST", "/pocketping/connect", 200, json={"visitorId": f"probe-{uuid.uuid4().hex[:6]}"}
        )
        session_id = connected.json()["sessionId"]
        body = {"sessionId": session_id, "content": "probe", "sender": "visitor"}
        await traffic.request(http, "POST", "/pocketping/message", 200, json=body)
    traffic.sessions.add(session_id)
    while time.monotonic() - moment < limit:
        with contextlib.suppress(OSError, sa.exc.DBAPIError):
            async with engine.connect() as conn:
                status = await conn.scalar(
                    sa.text("SELECT status FROM conversation WHERE id = :id"), {"id": session_id}
                )
            if status == "assigned":
                return round(time.monotonic() - moment, 2)
        await asyncio.sleep(0.05)
    return None


@dataclass
class Outcome:
    """What a fault run measured: recovery times (None: not within the limit) and the traffic's totals."""

    fault: str
    message_after: float | None
    routing_after: float | None
    acknowledged: int
    replies: int
    unanswered_tries: int
    webhook_events: int
    webhook_repeats: int  # deliveries of an event beyond its first (same delivery id: at-least-once)
    failed_requests: int

    def line(self) -> str:
        return (
            f"{self.fault}: message {self.message_after} s, routing {self.routing_after} s; "
            f"{self.acknowledged} messages, {self.replies} replies, {self.failed_requests} failed requests retried, "
            f"{self.unanswered_tries} unanswered sends, {self.webhook_events} webhook events "
            f"({self.webhook_repeats} repeated)"
        )


@dataclass
class Deployment:
    """The processes of one run, and what they run against."""

    settings: Settings
    engine: AsyncEngine
    apis: list[Api]
    workers: list[asyncio.subprocess.Process]
    team: Team
    receiver: Receiver
    postgres: PrivatePostgres
    redis: PrivateRedis
    links: list[FaultProxy] = field(default_factory=list)  # postgres, redis: the fault proxies, if any


async def start_worker_ready(settings: Settings) -> asyncio.subprocess.Process:
    """A worker (sweep on) that has started: it wrote a health-check key of its own."""
    redis = Redis.from_url(settings.redis_url)
    key = f"{settings.queue_name}:ready:{uuid.uuid4().hex[:8]}"
    try:
        process = await start_worker(settings, sweep=True, ready_key=key)
        deadline = time.monotonic() + 90
        while not await redis.exists(key):
            assert process.returncode is None and time.monotonic() < deadline, "worker did not start"
            await asyncio.sleep(0.05)
    finally:
        await redis.aclose()
    return process


@asynccontextmanager
async def deployment(
    postgres: PrivatePostgres, redis: PrivateRedis, *, apis: int = 2, workers: int = 2, links: Toxics | None = None
) -> AsyncIterator[Deployment]:
    """A new database on ``postgres``, seeded; ``apis`` api processes and ``workers`` workers (sweep on).

    With ``links``, every process reaches PostgreSQL and Redis through a fault proxy each with those toxics
    (``Deployment.links``: postgres, redis); the test's own checks connect directly."""
    async with fresh_database(postgres.admin_url) as database_url, contextlib.AsyncExitStack() as stack:
        proxied: list[FaultProxy] = []
        if links is not None:
            proxied = [
                await stack.enter_async_context(fault_proxy("127.0.0.1", port, links, seed=seed))
                for seed, port in enumerate((postgres.port, redis.port))
            ]
        async with _processes(postgres, redis, database_url, apis, workers, proxied) as deployed:
            yield deployed


def _through(url: str, proxy: FaultProxy) -> str:
    """``url`` with its port replaced by the proxy's."""
    head, _, tail = url.rpartition(":")
    _port, slash, rest = tail.partition("/")
    return f"{head}:{proxy.port}{slash}{rest}"


@asynccontextmanager
async def _processes(
    postgres: PrivatePostgres,
    redis: PrivateRedis,
    database_url: str,
    apis: int,
    workers: int,
    links: list[FaultProxy],
) -> AsyncIterator[Deployment]:
    if links:
        settings = deployment_settings(_through(database_url, links[0]), _through(redis.url, links[1]))
    else:
        settings = deployment_settings(database_url, redis.url)
    engine = create_async_engine(database_url.replace("postgresql://", "postgresql+asyncpg://"), pool_pre_ping=True)
    receiver = Receiver()
    running: list[Api] = []
    processes: list[asyncio.subprocess.Process] = []
    try:
        async with serve_hook(receiver) as hook:
            team = await seed(engine, settings, hook)
            running = [Api(settings) for _ in range(apis)]
            # All at once: each process spends seconds importing on a loaded machine.
            started = await asyncio.gather(
                *(api.start() for api in running), *(start_worker_ready(settings) for _ in range(workers))
            )
            processes = [process for process in started if process is not None]
            yield Deployment(settings, engine, running, processes, team, receiver, postgres, redis, links)
    finally:
        for process in processes:
            with contextlib.suppress(TimeoutError):
                await stop_worker(process)
        for api in running:
            await api.stop()
        await engine.dispose()


async def run_fault(
    deployed: Deployment,
    name: str,
    fault: Callable[[Deployment, Traffic], Awaitable[None]],
    *,
    visitors: int,
    messages: int,
    pause: float,
    before: float,
    limit: float = 15.0,
) -> Outcome:
    """Traffic, then ``fault`` once ``before`` seconds passed and each visitor is writing (it returns when the
    fault has ended: the server is back, or the process is dead and nothing replaces it), then recovery measured,
    traffic finished and everything checked."""
    traffic = Traffic(deployed.apis, deployed.team)
    operators_done = asyncio.Event()
    visiting = [asyncio.create_task(traffic.visitor(n, messages, pause)) for n in range(visitors)]
    answering = [asyncio.create_task(traffic.operator(i, operators_done)) for i in range(len(deployed.team.tokens))]
    try:
        await asyncio.sleep(before)
        while len(traffic.sent) < visitors:  # noqa: ASYNC110  (mid-traffic: every visitor is writing by now)
            await asyncio.sleep(0.05)
        await fault(deployed, traffic)
        ended = time.monotonic()
        routing_after = await probe_routing(traffic, deployed.engine, ended, limit)
        message_after = traffic.first_success_after(ended)
        await asyncio.gather(*visiting)
        await settle(deployed, traffic, answering, limit=60)
    finally:
        operators_done.set()
        for task in visiting:
            task.cancel()
        await asyncio.gather(*answering, *visiting, return_exceptions=True)
    return await check(deployed, traffic, name, message_after, routing_after)


async def _rows(engine: AsyncEngine, sql: str, **params: Any) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [dict(row) for row in (await conn.execute(sa.text(sql), params)).mappings()]


async def settle(deployed: Deployment, traffic: Traffic, answering: list[asyncio.Task[None]], *, limit: float) -> None:
    """Until every conversation is assigned, every visitor message answered and every webhook delivered."""
    deadline = time.monotonic() + limit
    while True:
        for task in answering:
            if task.done():
                task.result()  # an operator gave up: its failure is the test's
        [state] = await _rows(
            deployed.engine,
            "SELECT (SELECT count(*) FROM conversation WHERE status <> 'assigned') AS unassigned, "
            "(SELECT count(*) FROM conversation c WHERE (SELECT sender FROM message m WHERE m.conversation_id = c.id "
            " ORDER BY seq DESC LIMIT 1) = 'visitor') AS unanswered, "
            "(SELECT count(*) FROM outbox WHERE delivered_at IS NULL AND webhook_endpoint_id IS NOT NULL) "
            " AS undelivered",
        )
        if state == {"unassigned": 0, "unanswered": 0, "undelivered": 0}:
            return
        assert time.monotonic() < deadline, (state, traffic.errors[-5:])
        await asyncio.sleep(0.2)


async def check(
    deployed: Deployment, traffic: Traffic, name: str, message_after: float | None, routing_after: float | None
) -> Outcome:
    """Nothing acknowledged lost, nothing twice; the figures of the run."""
    engine = deployed.engine
    stored = await _rows(engine, "SELECT id, conversation_id, sender, content FROM message")
    by_id = {row["id"]: row for row in stored}
    copies: dict[tuple[str, str], int] = {}
    for row in stored:
        copies[(row["conversation_id"], row["content"])] = copies.get((row["conversation_id"], row["content"]), 0) + 1
    for sent in traffic.sent:
        row = by_id.get(sent.message_id or "")
        assert row is not None, f"acknowledged message {sent.message_id} lost"
        assert (row["conversation_id"], row["sender"], row["content"]) == (sent.session_id, "visitor", sent.content)
        # A copy beyond the acknowledged one only from a try that reached a server and got no answer.
        assert copies[(sent.session_id, sent.content)] <= 1 + sent.unanswered, (
            sent,
            copies[(sent.session_id, sent.content)],
        )
    # Every acknowledged reply stored once (a retried key was answered from the first).
    assert len(set(traffic.replies.values())) == len(traffic.replies)
    for reply_id in traffic.replies.values():
        assert by_id[reply_id]["sender"] == "operator"
    replies_per_message = await _rows(
        engine,
        "SELECT content, count(*) AS n FROM message WHERE sender = 'operator' GROUP BY content HAVING count(*) > 1",
    )
    assert replies_per_message == [], replies_per_message
    # The operators see each acknowledged message once, through the REST API.
    async with httpx.AsyncClient(headers=bearer(deployed.team.admin_token), timeout=REQUEST_TIMEOUT) as http:
        for session_id in sorted(traffic.sessions):
            page = await http.get(
                f"{deployed.apis[-1].url}/api/v1/conversations/{session_id}/messages", params={"limit": 100}
            )
            assert page.status_code == 200, page.text
            assert page.json()["nextCursor"] is None
            ids = [item["id"] for item in page.json()["items"]]
            assert len(ids) == len(set(ids))
            expected = {s.message_id for s in traffic.sent if s.session_id == session_id}
            assert expected <= set(ids), expected - set(ids)
    # Assigned once each: one routed assignment, never two open ones.
    assignments = await _rows(
        engine,
        "SELECT c.id, count(a.id) FILTER (WHERE a.reason = 'routed') AS routed, "
        "count(a.id) FILTER (WHERE a.ended_at IS NULL) AS open FROM conversation c "
        "LEFT JOIN assignment a ON a.conversation_id = c.id GROUP BY c.id",
    )
    assert len(assignments) == len(traffic.sessions)
    assert [a for a in assignments if (a["routed"], a["open"]) != (1, 1)] == []
    # Webhooks: each event reaches the receiver, every time under the same delivery id (at-least-once).
    delivered: dict[str, set[str]] = {}
    for event_id, delivery in deployed.receiver.deliveries:
        delivered.setdefault(event_id, set()).add(delivery)
    assert [event for event, ids in delivered.items() if len(ids) != 1] == []
    outbox = await _rows(
        engine, "SELECT count(*) AS n FROM outbox WHERE webhook_endpoint_id IS NOT NULL AND delivered_at IS NOT NULL"
    )
    assert len(delivered) == outbox[0]["n"]
    return Outcome(
        fault=name,
        message_after=message_after,
        routing_after=routing_after,
        acknowledged=len(traffic.sent),
        replies=len(traffic.replies),
        unanswered_tries=sum(s.unanswered for s in traffic.sent),
        webhook_events=len(delivered),
        webhook_repeats=len(deployed.receiver.deliveries) - len(delivered),
        failed_requests=len(traffic.errors),
    )


# The faults ----------------------------------------------------------------------------------------------------


async def kill_a_worker(deployed: Deployment, traffic: Traffic) -> None:
    """SIGKILL one worker; the other carries on (nothing is restarted)."""
    victim = deployed.workers[0]
    victim.kill()
    assert await victim.wait() == -signal.SIGKILL


async def kill_an_api(deployed: Deployment, traffic: Traffic) -> None:
    """SIGKILL one api mid-request; nothing replaces it: clients go on with the other, as behind a load balancer
    (whose health check would stop sending to the dead one; here each try on it is refused and retried)."""
    await deployed.apis[0].kill()


# How long PostgreSQL stays down: long enough for every process to notice.
POSTGRES_DOWN_SECONDS = 3.0


async def _down_answers(deployed: Deployment, traffic: Traffic) -> None:
    """Each api answers a widget message and an API read with 503, Retry-After and problem details, at once."""
    session_id = sorted(traffic.sessions)[0]
    admin = bearer(deployed.team.admin_token)
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT) as http:
        for api in [api for api in deployed.apis if api.process and api.process.returncode is None]:
            body = {"sessionId": session_id, "content": "while down", "sender": "visitor"}
            for response in (
                await http.post(f"{api.url}/pocketping/message", json=body),
                await http.get(f"{api.url}/api/v1/conversations", headers=admin),
            ):
                assert response.status_code == 503, response.text
                assert response.headers["Retry-After"] == "5"
                assert response.headers["content-type"] == "application/problem+json"


async def restart_postgres(deployed: Deployment, traffic: Traffic) -> None:
    """Stop PostgreSQL at once (``-m immediate``: connections cut, as in a crash), keep it down for a few seconds
    while the apis answer 503, start it again; the fault ends when it accepts connections."""
    await asyncio.to_thread(deployed.postgres.stop, "immediate")
    try:
        down_until = time.monotonic() + POSTGRES_DOWN_SECONDS
        await asyncio.sleep(1.0)  # the pools find their connections dead
        await _down_answers(deployed, traffic)
        await asyncio.sleep(max(0.0, down_until - time.monotonic()))
    finally:
        await asyncio.to_thread(deployed.postgres.start)


REDIS_DOWN_SECONDS = 2.0


async def restart_redis_empty(deployed: Deployment, traffic: Traffic) -> None:
    """SIGKILL Redis (no persistence: the queue, its in-flight jobs, sessions and limits are gone), keep it down a
    moment, start an empty one on the same port; the fault ends when it accepts connections."""
    await deployed.redis.kill()
    try:
        await asyncio.sleep(REDIS_DOWN_SECONDS)
    finally:
        await deployed.redis.start()


# Links from every process to PostgreSQL and to Redis: 20-50 ms each way, 2% of new connections reset.
SLOW_LOSSY = Toxics(latency=0.02, jitter=0.03, reset=0.02, reset_after=1.0)
PARTITION_SECONDS = 3.0


async def _partition(link: FaultProxy) -> None:
    """Cut the link (open connections reset, new ones refused) for a while, then heal it."""
    link.cut()
    try:
        await asyncio.sleep(PARTITION_SECONDS)
    finally:
        link.heal()


async def cut_redis_link(deployed: Deployment, traffic: Traffic) -> None:
    """Partition every process from Redis."""
    await _partition(deployed.links[1])


async def cut_postgres_link(deployed: Deployment, traffic: Traffic) -> None:
    """Partition every process from PostgreSQL."""
    await _partition(deployed.links[0])


# By the names bench/faults.py takes.
FAULTS: dict[str, Callable[[Deployment, Traffic], Awaitable[None]]] = {
    "worker": kill_a_worker,
    "api": kill_an_api,
    "postgres": restart_postgres,
    "redis": restart_redis_empty,
}
