"""Queue order, longer: the race of tests/integration/routing/test_queue_order.py over more seeds and conversations.

Each seed gets a scratch database and Redis prefix; 4 routers route ``--conversations`` conversations while
operators flap (presence service, drains by 2 worker processes) and conversations close, then the assignment
history is replayed (``tests/support/queue_order.py``):

    .venv/bin/python bench/queue_order.py [--seeds 10] [--conversations 2000]

The run fails if any automatic assignment was made while a conversation of its team that comes first in queue
order, and that the operator could take, was waiting. The last line is ``out_of_order: N``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.queue_order import out_of_order, race
from tests.support.scratch_deployment import add_server_arguments, scratch_deployment


async def one_seed(args: argparse.Namespace, seed: int) -> int:
    async with scratch_deployment(args, "order") as (settings, engine):
        counts = await race(settings, engine, seed=seed, conversations=args.conversations)
        bad = await out_of_order(engine)
    print(f"seed {seed}: {dict(sorted(counts.items()))}, out of order: {len(bad)}")
    return len(bad)


async def run(args: argparse.Namespace) -> None:
    total = 0
    for seed in range(1, args.seeds + 1):
        total += await one_seed(args, seed)
    print(f"out_of_order: {total}")
    if total:
        raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--conversations", type=int, default=2000)
    add_server_arguments(parser)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
