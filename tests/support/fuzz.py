"""Fuzzing the whole HTTP surface: Schemathesis over every operation of the OpenAPI document (positive, negative and
stateful, as any principal), and Hypothesis strategies for hostile JSON bodies.

Used by ``tests/integration/api/test_fuzz.py`` (bounded) and ``bench/fuzz.py`` (long). A run never stops at its
first failure: it counts requests and records every answer of 500 or more and every schema violation, so one
report names them all (and Hypothesis does not spend the run shrinking).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from service.conversations.schemas import EXAMPLE_CONVERSATION_ID
from service.settings import Settings
from tests.factories import add_member, bearer, make_operator, make_team, personal_token
from tests.support.oidc import oidc_settings
from tests.support.routing import make_conversation

METHODS = ("get", "put", "post", "delete", "patch")
MEGABYTE = 1024 * 1024
# Larger than any request needs: a generated request that takes this long is itself a finding.
REQUEST_TIMEOUT = 20.0
# An answer outside the document: a status it does not list, another media type, missing or wrong headers, or
# a body its schema refuses.
CONFORMANCE = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@dataclass
class Tally:
    """What a run did: operations reached, requests sent, and every server error or schema violation seen."""

    operations: set[str] = field(default_factory=set)
    requests: int = 0
    server_errors: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    # Stateful runs Hypothesis stopped because a replay drew other steps (see ``run_stateful``).
    abandoned: int = 0

    def saw(self, label: str, method: str, url: str, status: int, body: str) -> None:
        self.operations.add(label)
        self.requests += 1
        if status >= 500:
            self.server_errors.append(f"{label}: {method} {url} -> {status} {body[:300]}")

    def add(self, other: Tally) -> None:
        self.operations |= other.operations
        self.requests += other.requests
        self.server_errors += other.server_errors
        self.violations += other.violations
        self.abandoned += other.abandoned

    def summary(self) -> dict[str, int]:
        return {
            "operations": len(self.operations),
            "requests": self.requests,
            "server_errors": len(self.server_errors),
            "schema_violations": len(self.violations),
        }


def streams(definition: dict[str, Any]) -> bool:
    """Server-Sent Events never end: such an operation's answer is judged by its status and headers only."""
    ok = [r for status, r in definition.get("responses", {}).items() if status.startswith("2")]
    return any(media.startswith("text/event-stream") for r in ok for media in r.get("content", {}))


def load(base_url: str) -> Any:
    """The service's own OpenAPI document, as Schemathesis reads it."""
    return schemathesis.openapi.from_url(f"{base_url}/schema/openapi.json")


def document_operations(document: dict[str, Any]) -> list[str]:
    """Every operation of an OpenAPI document, as ``METHOD /path`` (Schemathesis' labels)."""
    return [f"{m.upper()} {path}" for path, item in document["paths"].items() for m in METHODS if m in item]


def _settings(examples: int, seed: int | None = None, **extra: Any) -> hypothesis.settings:
    """Hypothesis settings of a run: the same cases every time, unless a ``seed`` asks for other ones."""
    return hypothesis.settings(
        max_examples=examples,
        derandomize=seed is None,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        **extra,
    )


def _seeded(seed: int | None) -> Callable[[Any], Any]:
    """``hypothesis.seed(seed)``, or nothing (derandomized) without one."""
    return hypothesis.seed(seed) if seed is not None else lambda test: test


def _judge(tally: Tally, case: Any, response: Any, stream: bool) -> None:
    """Count the answer; for a complete one, check it against the document (documented statuses only)."""
    label = case.operation.label
    body = "" if stream else response.text
    tally.saw(label, case.method, response.request.url, response.status_code, body)
    if stream or response.status_code >= 500:
        return
    try:
        case.validate_response(response, checks=CONFORMANCE)
    except (Exception, BaseExceptionGroup) as exc:  # Schemathesis raises a group of its findings
        tally.violations.append(f"{label}: {response.status_code} {str(exc)[:400]}")


def call(case: Any, base_url: str, headers: dict[str, str], stream: bool) -> Any:
    """Send the case; an event stream is read up to its headers, then closed (a ``requests`` response)."""
    if not stream:
        # A redirect is the operation's answer: following it would judge another page by this one's document.
        return case.call(base_url=base_url, headers=headers, timeout=REQUEST_TIMEOUT, allow_redirects=False)
    kwargs = case.as_transport_kwargs(base_url=base_url, headers=headers)
    with requests.request(**kwargs, stream=True, timeout=REQUEST_TIMEOUT, allow_redirects=False) as response:
        return response


def use_known(case: Any, known: dict[str, str]) -> None:
    """Set the case's path and query parameters, and its JSON body's top-level members, that ``known`` names."""
    if case.path_parameters:
        case.path_parameters = {k: known.get(k, v) for k, v in case.path_parameters.items()}
    if case.query:
        case.query = {k: known.get(k, v) for k, v in case.query.items()}
    if isinstance(case.body, dict):
        case.body = {k: known.get(k, v) for k, v in case.body.items()}


def run_operations(
    base_url: str,
    headers: dict[str, str],
    tally: Tally,
    *,
    mode: GenerationMode,
    examples: int,
    known: dict[str, str] | None = None,
    skip: Callable[[str], bool] = lambda label: False,
    seed: int | None = None,
) -> None:
    """``examples`` generated requests per operation (``mode``: valid, or invalid, input), with ``headers``.

    Every other case outside a DELETE has its path parameters, query parameters and top-level body members set
    to ``known`` values (those it names), so real objects are reached and not only 404s; deletions keep generated
    ids, so the run's principal and objects survive it.
    """
    schema = load(base_url)
    known = known or {}
    for result in schema.get_all_operations():
        operation = result.ok()
        if skip(operation.label):
            continue

        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        @_settings(examples, seed, phases=[Phase.explicit, Phase.generate])
        @_seeded(seed)
        def run(case: Any) -> None:
            if tally.requests % 2 and case.method != "DELETE":
                use_known(case, known)
            stream = streams(case.operation.definition.raw)
            try:
                response = call(case, base_url, headers, stream)
            except requests.Timeout:
                tally.server_errors.append(f"{case.operation.label}: no answer within {REQUEST_TIMEOUT} s")
                return
            _judge(tally, case, response, stream)

        try:
            run()
        except hypothesis.errors.Unsatisfiable:
            # Negative mode finds nothing invalid to send to an operation without inputs: nothing to fuzz.
            tally.operations.add(operation.label)


def run_stateful(
    base_url: str,
    headers: dict[str, str],
    tally: Tally,
    *,
    scenarios: int,
    steps: int,
    skip: Callable[[str], bool] = lambda label: False,
    seed: int | None = None,
) -> int:
    """Scenarios that chain operations through the document's links (an id one answer gives, the next one uses);
    returns how many links the state machine follows."""
    schema = load(base_url).exclude(func=lambda ctx: skip(ctx.operation.label) or streams(ctx.operation.definition.raw))
    machine = schema.as_state_machine()

    class Fuzz(machine):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": base_url, "headers": headers, "timeout": REQUEST_TIMEOUT, "allow_redirects": False}

        def validate_response(self, response: Any, case: Any, *args: Any, **kwargs: Any) -> None:
            _judge(tally, case, response, False)

        def _step(self, input: Any) -> Any:
            # A step that gets no answer is recorded, not raised: Hypothesis would replay the scenario, and a replay
            # against a server whose state moved on draws other steps (a "flaky" error hiding the real one).
            try:
                return super()._step(input)
            except Exception as exc:
                tally.server_errors.append(f"{input.case.operation.label}: no answer: {str(exc)[:300]}")
                return None

    try:
        Fuzz.run(settings=_settings(scenarios, seed, stateful_step_count=steps, phases=[Phase.generate]))
    except hypothesis.errors.FlakyStrategyDefinition:
        # Which rules are enabled depends on what the server answered earlier (its bundles of ids); when Hypothesis
        # replays a scenario against a server that moved on, the draws differ and it gives up. The steps run so
        # far were judged; the rest of the run is lost, and counted.
        tally.abandoned += 1
    return int(schema.statistic.transitions.total)


# --- A world to fuzz ---------------------------------------------------------------------------------------------


def roomy(settings: Settings, oidc_issuer: str) -> Settings:
    """Settings with sign-in configured (so ``/auth/login`` works) and the widget budgets out of the way:
    generated traffic all comes from one address and one session."""
    return oidc_settings(
        settings,
        oidc_issuer,
        widget_message_limit_per_session=10**9,
        widget_message_limit_per_ip=10**9,
        widget_signal_limit_per_ip=10**9,
    )


async def world(base_url: str, engine: AsyncEngine) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """A team with an admin lead and an operator, a queued conversation and a widget session: the principals'
    headers (``admin``, ``operator``, ``anonymous``), and the known ids generated requests are pointed at."""
    team = await make_team(engine, "Support", is_default=True, welcome_message="Hello")
    admin = await make_operator(engine, "Root", is_admin=True, status="online")
    olga = await make_operator(engine, "Olga", status="online")
    await add_member(engine, team, admin, "lead")
    await add_member(engine, team, olga, "operator")
    await make_conversation(engine, team, id=EXAMPLE_CONVERSATION_ID, status="queued")
    async with httpx.AsyncClient(base_url=base_url) as http:
        session_id = (await http.post("/pocketping/connect", json={"visitorId": "v-fuzz"})).json()["sessionId"]
    principals = {
        "admin": bearer(await personal_token(engine, admin)),
        "operator": bearer(await personal_token(engine, olga)),
        "anonymous": {},
    }
    known = {
        "conversation_id": EXAMPLE_CONVERSATION_ID,
        "team_id": str(team),
        "operator_id": str(olga),
        "sessionId": session_id,
    }
    return principals, known


# Anonymous first and the admin last: what a run deletes is then gone only for the runs after it.
PRINCIPALS = ("anonymous", "operator", "admin")


def campaign(
    base_url: str,
    principals: dict[str, dict[str, str]],
    known: dict[str, str],
    examples: dict[str, int],
    seed: int | None = None,
) -> dict[str, Tally]:
    """Invalid, then valid, generated input to every operation as each principal: a tally per principal."""
    tallies: dict[str, Tally] = {}
    for who in PRINCIPALS:
        tally = tallies[who] = Tally()
        for mode in (GenerationMode.NEGATIVE, GenerationMode.POSITIVE):
            run_operations(base_url, principals[who], tally, mode=mode, examples=examples[who], known=known, seed=seed)
    return tallies


def send_hostile_bodies(
    base_url: str, headers: dict[str, str], known: dict[str, str], document: Any, examples: int, seed: int | None = None
) -> tuple[int, list[str]]:
    """Hostile values in every JSON-body operation (as the whole body, or as one member of a plausible one);
    returns (requests, answers that were neither a 2xx nor a 4xx problem)."""
    operations = json_body_operations(document)
    bad: list[str] = []
    sent = 0
    session = requests.Session()

    @hypothesis.given(data=st.data())
    @_settings(examples, seed, phases=[Phase.generate])
    @_seeded(seed)
    def run(data: Any) -> None:
        nonlocal sent
        method, template = data.draw(st.sampled_from(operations))
        base = {"sessionId": known["sessionId"], "content": "hi", "visitorId": "v-hostile", "name": "x"}
        where = data.draw(st.sampled_from(paths_of(base, depth=1)))
        value = data.draw(hostile_values())
        body = with_hostile(base, where, value)
        url = base_url + fill_path(template, known)
        headers_json = {**headers, "Content-Type": "application/json"}
        response = session.request(method, url, data=body, headers=headers_json, timeout=REQUEST_TIMEOUT)
        sent += 1
        media = response.headers.get("content-type", "")
        if response.status_code >= 500 or (response.status_code >= 400 and media != "application/problem+json"):
            bad.append(
                f"{method.upper()} {template} {where} {value[:60]!r}: {response.status_code} {response.text[:200]}"
            )

    run()
    return sent, bad


# --- Hostile JSON ------------------------------------------------------------------------------------------------

# Each strategy gives raw JSON text (bytes): what a hostile client can put on the wire, including what no JSON
# library would write (invalid UTF-8, lone surrogate escapes, numbers no float holds).


def deep_nesting() -> st.SearchStrategy[bytes]:
    """Arrays or objects nested from a little past any sane limit to 20,000 deep."""
    return st.builds(
        lambda depth, arrays: (b"[" * depth + b"]" * depth) if arrays else (b'{"a":' * depth + b"1" + b"}" * depth),
        st.sampled_from([40, 65, 200, 5_000, 20_000]),
        st.booleans(),
    )


def huge_numbers() -> st.SearchStrategy[bytes]:
    """Integers past 64 bits (up to 5,000 digits), exponents past any float, and the non-JSON NaN and Infinity."""
    literal = st.sampled_from(["1e400", "-1e400", "1e-400", "-0", "0.0000000000000000000000001", "NaN", "Infinity"])
    big = st.integers(min_value=64, max_value=5_000).map(lambda digits: "9" * digits)
    signed = st.integers().filter(lambda n: abs(n) > 2**63).map(str)
    return st.one_of(literal, big, signed).map(str.encode)


def _json_string(text: str) -> bytes:
    return json.dumps(text).encode()


def nul_strings() -> st.SearchStrategy[bytes]:
    """Strings with NUL characters, escaped (``\\u0000``) as JSON writes them."""
    return st.builds(lambda a, b: _json_string(f"{a}\x00{b}"), st.text(max_size=20), st.text(max_size=20))


def lone_surrogates() -> st.SearchStrategy[bytes]:
    """Strings holding an unpaired surrogate escape (``\\ud800``): valid JSON, not encodable as UTF-8."""
    half = st.sampled_from(["\\ud800", "\\udbff", "\\udc00", "\\udfff", "\\ud83d"])
    return st.builds(lambda a, s, b: f'"{a}{s}{b}"'.encode(), st.sampled_from(["", "a", "hi "]), half, st.just("z"))


def invalid_utf8() -> st.SearchStrategy[bytes]:
    """Strings with bytes that are not UTF-8: a stray continuation, a cut sequence, an encoded surrogate, 0xff."""
    bad = st.sampled_from([b"\xff", b"\xc3", b"\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf"])
    return st.builds(lambda a, b: b'"' + a.encode() + b + b'"', st.sampled_from(["", "caf", "x"]), bad)


def megabyte_strings() -> st.SearchStrategy[bytes]:
    """One-megabyte strings, in one-byte and in multi-byte characters."""
    return st.sampled_from(["x", "é", "\U0001f600"]).map(lambda ch: _json_string(ch * (MEGABYTE // len(ch.encode()))))


def hostile_values() -> st.SearchStrategy[bytes]:
    """One hostile JSON value (the 1 MB strings drawn least often: they cost the most)."""
    return st.one_of(
        deep_nesting(), huge_numbers(), nul_strings(), lone_surrogates(), invalid_utf8(), megabyte_strings()
    )


PLACEHOLDER = "\x01hostile\x01"


def with_hostile(body: Any, path: list[str | int], value: bytes) -> bytes:
    """``body`` as JSON with the value at ``path`` (the whole body for ``[]``) replaced by the raw ``value``."""
    if not path:
        return value
    copy = json.loads(json.dumps(body))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = PLACEHOLDER
    return json.dumps(copy).encode().replace(json.dumps(PLACEHOLDER).encode(), value)


def paths_of(body: Any, prefix: list[str | int] | None = None, depth: int = 2) -> list[list[str | int]]:
    """Where a hostile value may go: the whole body, and each member down to ``depth`` levels."""
    prefix = prefix or []
    found = [prefix]
    if depth and isinstance(body, dict):
        for key, member in body.items():
            found += paths_of(member, [*prefix, key], depth - 1)
    elif depth and isinstance(body, list):
        for index, member in enumerate(body[:3]):
            found += paths_of(member, [*prefix, index], depth - 1)
    return found


def json_body_operations(document: dict[str, Any]) -> list[tuple[str, str]]:
    """``(method, path template)`` of every operation that takes a JSON body."""
    return [
        (method, path)
        for path, item in document["paths"].items()
        for method in METHODS
        if method in item and "application/json" in item[method].get("requestBody", {}).get("content", {})
    ]


def fill_path(template: str, known: dict[str, str]) -> str:
    """The path with each ``{parameter}`` set to its known id, or to an id that exists nowhere."""
    return re.sub(r"\{(\w+)\}", lambda m: known.get(m.group(1), "00000000-0000-4000-8000-000000000000"), template)
