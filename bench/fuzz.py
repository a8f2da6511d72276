"""Fuzzing, longer: the campaign of tests/integration/api/test_fuzz.py with many more cases, over several seeds.

Each seed gets a scratch database and Redis prefix, an api on loopback (sign-in through a local
oidc-provider-mock) and a fresh world (``tests/support/fuzz.py``: a team, an admin lead, an operator, a queued
conversation, a widget session). Then, for that seed: invalid and valid generated input to every operation of
the OpenAPI document as anonymous, operator and admin; stateful chains as the admin; hostile JSON bodies:

    .venv/bin/python bench/fuzz.py [--seeds 3] [--examples 25] [--scenarios 40] [--steps 15] [--hostile 600]

The run fails if any answer was 500 or more, or outside the document, or if an operation was never reached. The
last line is ``operations: N, requests: N, server_errors: N, schema_violations: N``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from tests.conftest import oidc_provider, run_api
from tests.support import fuzz
from tests.support.scratch_deployment import add_server_arguments, scratch_deployment


async def one_seed(args: argparse.Namespace, issuer: str, seed: int) -> fuzz.Tally:
    """One seed's campaign against a fresh deployment; its tally, all principals and kinds together."""
    total = fuzz.Tally()
    async with scratch_deployment(args, "fuzz") as (settings, engine), run_api(fuzz.roomy(settings, issuer)) as api:
        principals, known = await fuzz.world(api.url, engine)
        async with httpx.AsyncClient(base_url=api.url) as http:
            document = (await http.get("/schema/openapi.json")).json()
        started = time.monotonic()
        # The operator and anonymous runs meet mostly 401s and 404s: a share of the admin's cases is enough.
        examples = {"anonymous": max(1, args.examples // 4), "operator": max(1, args.examples // 2)}
        tallies = await asyncio.to_thread(
            fuzz.campaign, api.url, principals, known, {**examples, "admin": args.examples}, seed
        )
        stateful = fuzz.Tally()
        links = await asyncio.to_thread(
            fuzz.run_stateful,
            api.url,
            principals["admin"],
            stateful,
            scenarios=args.scenarios,
            steps=args.steps,
            seed=seed,
        )
        sent, bad = await asyncio.to_thread(
            fuzz.send_hostile_bodies, api.url, principals["admin"], known, document, args.hostile, seed
        )
        for tally in (*tallies.values(), stateful):
            total.add(tally)
        total.requests += sent
        total.server_errors += bad
        every = fuzz.document_operations(document)
        missing = set(every) - total.operations
        total.server_errors += [f"{label}: never reached" for label in sorted(missing)]
        per = {who: t.summary() for who, t in tallies.items()}
        print(
            f"seed {seed}: {time.monotonic() - started:.0f} s, {per}, stateful {stateful.summary()} over {links} links,"
        )
        print(f"  hostile bodies {sent} ({len(bad)} bad), operations in the document {len(every)}")
    return total


async def run(args: argparse.Namespace) -> None:
    total = fuzz.Tally()
    with oidc_provider() as issuer:
        for seed in range(1, args.seeds + 1):
            total.add(await one_seed(args, issuer, seed))
    for line in sorted(set(total.server_errors))[:50]:
        print("SERVER ERROR", line)
    for line in sorted(set(total.violations))[:50]:
        print("SCHEMA VIOLATION", line)
    if total.abandoned:
        print(f"stateful runs stopped early by a flaky replay: {total.abandoned}")
    summary = total.summary()
    print(", ".join(f"{key}: {value}" for key, value in summary.items()))
    if summary["server_errors"] or summary["schema_violations"]:
        raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--examples", type=int, default=25, help="generated cases per operation and mode, as admin")
    parser.add_argument("--scenarios", type=int, default=40, help="stateful scenarios")
    parser.add_argument("--steps", type=int, default=15, help="steps per stateful scenario")
    parser.add_argument("--hostile", type=int, default=600, help="hostile JSON bodies")
    add_server_arguments(parser)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
