"""Faults mid-traffic: seconds from each fault's end to the first acknowledged widget message and to a new
conversation being assigned, with nothing acknowledged lost and nothing delivered twice.

Each run starts its own PostgreSQL cluster (``initdb`` in a temporary directory) and Redis server on free ports,
so the faults never touch shared servers; then, per fault, a new database, two api processes, two workers (sweep
on), visitors on the widget protocol, operators replying through the REST API and a webhook receiver
(``tests/support/faults.py``, the same harness as ``tests/faults/``, with more traffic):

    .venv/bin/python bench/faults.py [--fault all] [--runs 3] [--visitors 30] [--messages 20]

A run fails (exit status 1) if a check fails or a recovery takes longer than ``--limit`` seconds. The last lines
are ``max_message_s: N`` and ``max_routing_s: N`` over every fault and run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.faults import FAULTS, Outcome, deployment, private_postgres, private_redis, run_fault


async def one_run(args: argparse.Namespace, name: str) -> Outcome:
    with private_postgres() as cluster:
        async with private_redis() as redis, deployment(cluster, redis) as deployed:
            return await run_fault(
                deployed,
                name,
                FAULTS[name],
                visitors=args.visitors,
                messages=args.messages,
                pause=args.pause,
                before=args.before,
                limit=args.limit,
            )


async def run(args: argparse.Namespace) -> None:
    names = list(FAULTS) if args.fault == "all" else [args.fault]
    worst = {"message": 0.0, "routing": 0.0}
    for name in names:
        for n in range(args.runs):
            outcome = await one_run(args, name)
            print(f"run {n + 1}: {outcome.line()}", flush=True)
            for figure, value in (("message", outcome.message_after), ("routing", outcome.routing_after)):
                if value is None:
                    print(f"FAILED: {name}: no {figure} within {args.limit} s")
                    raise SystemExit(1)
                worst[figure] = max(worst[figure], value)
    print(f"max_message_s: {worst['message']:.2f}")
    print(f"max_routing_s: {worst['routing']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fault", choices=["all", *FAULTS], default="all")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--visitors", type=int, default=30)
    parser.add_argument("--messages", type=int, default=20, help="per visitor")
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between a visitor's messages")
    parser.add_argument("--before", type=float, default=3.0, help="seconds of traffic before the fault")
    parser.add_argument("--limit", type=float, default=15.0, help="seconds allowed for recovery")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
