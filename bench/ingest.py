"""Widget ingest: visitor messages per second through ``POST /pocketping/message``.

Switchboard (Litestar, PostgreSQL storage, routing job enqueued to Redis by the RoutingBridge)
against PocketPing's own FastAPI router (``MemoryStorage``): same wrk client, same machine,
same run. All three servers (PocketPing, Switchboard with 1 and with 2 processes) start once
and are measured in turn, ``--rounds`` times, so drift on a shared machine (CPU steal) hits
each alike; a server idles while another is measured.

    .venv/bin/python bench/ingest.py [--rounds 3] [--duration 8] [--connections 32] [--threads 2]

Each server is its own uvicorn subprocess (uvloop, httptools, no access log; `--server granian`
puts Switchboard under granian instead, to compare). For each:
pre-create ``--sessions`` sessions through ``POST /pocketping/connect``, warm up, then measure
with ``bench/wrk/message.lua`` (round-robin over the sessions). Any non-2xx response or socket
error fails the run; for Switchboard the new message rows must match the 2xx responses and
every session must have exactly one routing job queued.

The last line is ``ratio: X.XX`` (median Switchboard 1 process / median PocketPing); the line
before it is ``ratio_2proc`` (Switchboard with ``--workers 2``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
from redis import Redis

ROOT = Path(__file__).resolve().parent.parent
LUA_SCRIPT = ROOT / "bench" / "wrk" / "message.lua"
SECRET_KEY = "bench-ingest-secret-key-with-32-plus-characters"
# The widget gateway budgets messages per session and per client IP; every wrk request comes from
# 127.0.0.1, round-robin over a few sessions, so the benchmark lifts them (the Redis check is still paid).
LIFTED_LIMITS = {
    name: "1000000000"
    for name in ("WIDGET_MESSAGE_LIMIT_PER_SESSION", "WIDGET_MESSAGE_LIMIT_PER_IP", "WIDGET_SIGNAL_LIMIT_PER_IP")
}


class BenchError(Exception):
    """A failed check: the numbers would not mean what they say."""


@dataclass
class WrkResult:
    requests: int  # 2xx responses (any other status fails the run)
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


@dataclass
class Measurement:
    name: str
    wrk: WrkResult
    cpu: dict[str, float]  # share of one core, by process kind, during the measured run


# Plumbing -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    pgid: int  # uvicorn and its worker processes


def server_command(server: str, app: list[str], port: int, workers: int) -> list[str]:
    """The command line of ``server`` (uvicorn or granian) serving ``app`` on ``port``, without access logs."""
    if server == "granian":
        return [
            sys.executable, "-m", "granian", "--interface", "asgi", *app,
            "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--http", "1",
            "--log-level", "warning", "--no-access-log", "--workers", str(workers),
        ]  # fmt: skip
    return [
        sys.executable, "-m", "uvicorn", *app,
        "--host", "127.0.0.1", "--port", str(port),
        "--loop", "uvloop", "--http", "httptools",
        "--log-level", "warning", "--no-access-log",
        "--workers", str(workers),
    ]  # fmt: skip


@contextlib.contextmanager
def http_server(
    app: list[str], env: dict[str, str], ready_path: str, workers: int = 1, server: str = "uvicorn"
) -> Iterator[Server]:
    """Run ``app`` under ``server`` in a process group of its own; yield it once it answers."""
    port = free_port()
    command = server_command(server, app, port, workers)
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        command, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise BenchError(f"server did not start: {' '.join(app)}\n{log.read().decode(errors='replace')}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + ready_path, timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        yield Server(url, process.pid)
    except BaseException:
        log.seek(0)
        if tail := log.read()[-3000:].decode(errors="replace").strip():
            print(f"--- {' '.join(app)} said:\n{tail}", file=sys.stderr)
        raise
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def api_env(database_url: str, redis_url: str, prefix: str) -> dict[str, str]:
    """A benchmark api's environment: its database and Redis prefix, the widget budgets lifted."""
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SECRET_KEY": SECRET_KEY,
        "REDIS_PREFIX": prefix,
        "LOG_LEVEL": "WARNING",
        **LIFTED_LIMITS,
    }


def create_sessions(url: str, count: int) -> list[str]:
    """``POST /pocketping/connect`` for ``count`` new visitors; their session ids."""
    ids = []
    with httpx.Client(base_url=url, timeout=10) as client:
        for i in range(count):
            response = client.post("/pocketping/connect", json={"visitorId": f"bench-visitor-{i}-{uuid.uuid4().hex}"})
            if response.status_code != 200:
                raise BenchError(f"connect answered {response.status_code}: {response.text[:300]}")
            ids.append(response.json()["sessionId"])
    return ids


def run_wrk(url: str, sessions_file: Path, args: argparse.Namespace, seconds: float) -> WrkResult:
    command = [
        "wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{seconds:g}s", "--timeout", "5s",
        "-s", str(LUA_SCRIPT), url, "--", str(sessions_file), str(args.threads),
    ]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = next((line for line in output.splitlines() if line.startswith("WRK_JSON ")), None)
    if line is None:
        raise BenchError(f"no summary from wrk:\n{output}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    errors = {kind: data[kind] for kind in ("connect", "read", "write", "status", "timeout")}
    if any(errors.values()):
        # wrk's "status" errors are responses with a status >= 400: the non-2xx count here.
        raise BenchError(f"wrk against {url}: {data['requests']} responses, errors {errors} (must all be 0)")
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
    )


@dataclass
class Watched:
    """The processes whose CPU is reported: the server under test, PostgreSQL, Redis."""

    server_pgid: int
    postmaster: int | None
    redis: int | None

    @classmethod
    def find(cls, server: Server, args: argparse.Namespace) -> Watched:
        """PostgreSQL's postmaster is the parent of a backend; Redis tells its pid (both on this machine)."""

        async def postmaster_pid() -> int:
            conn = await asyncpg.connect(args.admin_database_url)
            try:
                backend = int(await conn.fetchval("SELECT pg_backend_pid()"))
                return _stat(Path(f"/proc/{backend}/stat"))[1]  # read while the backend lives
            finally:
                await conn.close()

        postmaster = redis = None
        with contextlib.suppress(Exception):
            postmaster = asyncio.run(postmaster_pid())
        with contextlib.suppress(Exception), Redis.from_url(args.redis_url) as client:
            redis = int(client.info("server")["process_id"])
        return cls(server.pgid, postmaster, redis)

    def snapshot(self) -> dict[tuple[str, int], int]:
        """CPU ticks used so far, by (kind, pid), and by the whole machine."""
        busy = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        # user nice system idle iowait irq softirq steal: busy is everything but idle and iowait.
        ticks = {("machine", 0): sum(busy) - busy[3] - busy[4]}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                pid, ppid, pgid, used = _stat(stat)
            except (OSError, ValueError):
                continue
            if pgid == self.server_pgid:
                ticks["server", pid] = used
            elif self.postmaster in (pid, ppid):
                ticks["postgres", pid] = used
            elif pid == self.redis:
                ticks["redis", pid] = used
        return ticks


def _stat(path: Path) -> tuple[int, int, int, int]:
    """pid, parent pid, process group and CPU ticks from ``/proc/<pid>/stat``."""
    text = path.read_text()
    fields = text[text.rindex(")") + 2 :].split()
    # utime + stime, plus cutime + cstime: the postmaster is credited with the backends that
    # exited (pool connections opened and closed during the run).
    return int(path.parent.name), int(fields[1]), int(fields[2]), sum(int(field) for field in fields[11:15])


def measure(name: str, server: Server, sessions_file: Path, args: argparse.Namespace) -> Measurement:
    """One measured wrk run, with the CPU each kind of process used meanwhile."""
    watched = Watched.find(server, args)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    before, started = watched.snapshot(), time.monotonic()
    result = run_wrk(server.url, sessions_file, args, args.duration)
    after, elapsed = watched.snapshot(), time.monotonic() - started
    hz = os.sysconf("SC_CLK_TCK")
    cpu = dict.fromkeys(["server", "wrk", "postgres", "redis", "machine"], 0.0)
    for (kind, pid), ticks in after.items():
        cpu[kind] += (ticks - before.get((kind, pid), 0)) / hz / elapsed
    # wrk has exited by the second snapshot; it is the only child of ours reaped meanwhile.
    wrk = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu["wrk"] = (wrk.ru_utime + wrk.ru_stime - children.ru_utime - children.ru_stime) / elapsed
    return Measurement(name, result, cpu)


# The two servers -------------------------------------------------------------------------


@dataclass
class Target:
    """A running server with its sessions, ready to be measured any number of times."""

    name: str
    server: Server
    sessions_file: Path
    measurements: list[Measurement]


@contextlib.contextmanager
def pocketping_target(args: argparse.Namespace, workdir: Path) -> Iterator[Target]:
    app = ["--app-dir", str(ROOT / "bench"), "pocketping_reference:app"]
    with http_server(app, {}, "/pocketping/presence") as server:
        sessions_file = workdir / "pocketping-sessions.txt"
        sessions_file.write_text("\n".join(create_sessions(server.url, args.sessions)) + "\n")
        run_wrk(server.url, sessions_file, args, args.warmup)
        yield Target("pocketping   FastAPI, MemoryStorage, 1 process", server, sessions_file, [])


async def _admin(admin_url: str, *statements: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def count_messages(database_url: str) -> int:
    async def count() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM message"))
        finally:
            await conn.close()

    return asyncio.run(count())


def fresh_database(admin_url: str, name: str) -> str:
    """Drop and recreate database ``name`` on the admin URL's server, migrated to head."""
    from service.db.migrate import upgrade

    asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'))
    database_url = f"{admin_url.rsplit('/', 1)[0]}/{name}"
    upgrade(database_url)
    return database_url


@contextlib.contextmanager
def switchboard_target(args: argparse.Namespace, workdir: Path, workers: int) -> Iterator[Target]:
    """A Switchboard api on its own database; on exit, check every 2xx response left its row and job."""
    database = f"{args.database}_{workers}"
    database_url = fresh_database(args.admin_database_url, database)
    prefix = f"bench-ingest-{uuid.uuid4().hex[:8]}"
    env = api_env(database_url, args.redis_url, prefix)
    redis = Redis.from_url(args.redis_url)
    sessions: list[str] = []
    try:
        with http_server(["--factory", "service.app:create_app"], env, "/healthz", workers, args.server) as server:
            sessions = create_sessions(server.url, args.sessions)
            sessions_file = workdir / f"switchboard-{workers}-sessions.txt"
            sessions_file.write_text("\n".join(sessions) + "\n")
            run_wrk(server.url, sessions_file, args, args.warmup)
            time.sleep(0.5)  # requests in flight when wrk stopped still finish
            rows_before = count_messages(database_url)
            name = f"switchboard  Litestar, PostgreSQL + Redis, {workers} process{'es' * (workers > 1)}"
            target = Target(name, server, sessions_file, [])
            yield target
            time.sleep(0.5)
            rows = count_messages(database_url) - rows_before
        # Every 2xx response has its row; wrk stops at the deadline with up to one request per
        # connection in flight, which the server still completes.
        answered = sum(m.wrk.requests for m in target.measurements)
        in_flight = args.connections * len(target.measurements)
        if not answered <= rows <= answered + in_flight:
            raise BenchError(f"{rows} message rows written for {answered} 2xx responses")
        jobs = redis.zcard(f"{prefix}:queue")
        if jobs != len(sessions):
            raise BenchError(f"{jobs} routing jobs queued for {len(sessions)} sessions (expected one per session)")
        print(
            f"checked {name.split(',')[-1].strip()}: {rows:,} new message rows for {answered:,} 2xx responses;"
            f" {jobs} routing jobs queued in Redis, one per session"
        )
    finally:
        cleanup_redis(redis, prefix, sessions)
        redis.close()
        with contextlib.suppress(Exception):
            asyncio.run(_admin(args.admin_database_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


def cleanup_redis(redis: Redis, prefix: str, sessions: list[str]) -> None:
    keys = list(redis.scan_iter(match=f"{prefix}:*", count=1000))
    # arq keeps each job under "arq:job:<job id>", and job ids start with the queue name ("<prefix>:queue").
    keys += list(redis.scan_iter(match=f"arq:*:{prefix}:queue:*", count=1000))
    if keys:
        redis.delete(*keys)


# Report ---------------------------------------------------------------------------------


def report(m: Measurement) -> str:
    w, cpu = m.wrk, dict(m.cpu)
    machine = cpu.pop("machine")
    cpu["other"] = max(0.0, machine - sum(cpu.values()))  # anything else running on the machine meanwhile
    shares = ", ".join(f"{kind} {share:.0%}" for kind, share in cpu.items())
    return (
        f"{m.name:<50} {w.rate:>8,.0f} msgs/s   p50 {w.p50_ms:6.2f} ms   p99 {w.p99_ms:6.2f} ms\n"
        f"    {w.requests:,} requests in {w.seconds:.1f} s, 0 non-2xx; CPU (100% = one core): {shares};"
        f" machine busy {machine:.0%} of {100 * (os.cpu_count() or 1)}%"
    )


def median_rate(target: Target) -> float:
    return statistics.median(m.wrk.rate for m in target.measurements)


def add_wrk_arguments(parser: argparse.ArgumentParser, database: str) -> None:
    """The options every wrk benchmark of a Switchboard api shares: the client, PostgreSQL and Redis."""
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument(
        "--admin-database-url",
        default=os.environ.get("BENCH_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL database to create the benchmark databases from",
    )
    parser.add_argument("--database", default=database, help="name (prefix); dropped again at the end")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8, help="measured seconds per run (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per server, interleaved (default 3)")
    parser.add_argument("--warmup", type=float, default=3, help="warm-up seconds per server (default 3)")
    parser.add_argument("--sessions", type=int, default=200, help="pre-created sessions (default 200)")
    parser.add_argument(
        "--server",
        choices=["uvicorn", "granian"],
        default="uvicorn",
        help="Switchboard's server (default uvicorn; granian needs `pip install granian==2.8.9`)",
    )
    add_wrk_arguments(parser, database="switchboard_bench")
    args = parser.parse_args()

    if shutil.which("wrk") is None:
        sys.exit("bench/ingest.py needs wrk: apt-get install -y wrk")
    print(
        f"POST /pocketping/message: wrk {args.threads} threads, {args.connections} connections,"
        f" {args.rounds} interleaved runs of {args.duration:g} s per server after {args.warmup:g} s warm-up,"
        f" round-robin over {args.sessions} sessions; {os.cpu_count()} cores; the servers idle while the"
        " others are measured (uvicorn, uvloop, httptools, no access log)"
    )
    print(
        "note: Switchboard runs with its widget budgets at 1000000000 (every request comes from 127.0.0.1;"
        " the limiter would throttle the benchmark; its Redis round trip is still paid)"
    )
    try:
        with (
            tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp,
            pocketping_target(args, Path(tmp)) as reference,
            switchboard_target(args, Path(tmp), workers=1) as single,
            switchboard_target(args, Path(tmp), workers=2) as double,
        ):
            # Interleaved, so drift on a shared machine (CPU steal, noisy neighbours) hits all alike.
            for _ in range(args.rounds):
                for target in (reference, single, double):
                    measurement = measure(target.name, target.server, target.sessions_file, args)
                    target.measurements.append(measurement)
                    print(report(measurement), flush=True)
    except BenchError as exc:
        sys.exit(f"FAILED: {exc}")
    for target in (reference, single, double):
        print(f"median {target.name:<43} {median_rate(target):>8,.0f} msgs/s")
    print(f"ratio_2proc: {median_rate(double) / median_rate(reference):.2f}")
    print(f"ratio: {median_rate(single) / median_rate(reference):.2f}")


if __name__ == "__main__":
    main()
