"""Crash resume: seconds from a worker's SIGKILL to its routing job, timer firing and webhook delivery being done.

Each run (``--runs``, default 5) gets a scratch database and Redis prefix of its own, then
``tests/support/crash.py`` starts a worker, lets it take a routing job, a first-response timer's trigger and a
webhook delivery (held mid-job by row locks and a receiver that does not answer), starts a second worker (its
periodic sweep on, as in production, but not its start-up run) and kills the first with SIGKILL:

    .venv/bin/python bench/crash_resume.py [--runs 5] [--limit 400]

The run fails if a piece of work is not done within ``--limit`` seconds. The last line is ``max_s: N``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.crash import crash_mid_work
from tests.support.scratch_deployment import add_server_arguments, scratch_deployment


async def one_run(args: argparse.Namespace) -> dict[str, float]:
    async with scratch_deployment(args, "crash") as (settings, engine):
        crash = await crash_mid_work(settings, engine, limit=args.limit)
    return crash.done_after


async def run(args: argparse.Namespace) -> None:
    worst: list[float] = []
    for n in range(args.runs):
        done = await one_run(args)
        if len(done) < 3:
            print(f"FAILED: run {n + 1}: only {sorted(done)} done within {args.limit} s")
            raise SystemExit(1)
        print(f"run {n + 1}: " + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(done.items())))
        worst.append(max(done.values()))
    print(f"median_s: {statistics.median(worst):.1f}")
    print(f"max_s: {max(worst):.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--limit", type=float, default=400.0, help="seconds to wait for the work after the kill")
    add_server_arguments(parser)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
