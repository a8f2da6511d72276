"""The SSRF guard end to end: blocked receivers refused at create and update, at send time, and behind redirects."""

from __future__ import annotations

import ssl
from ipaddress import IPv4Network, ip_address
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings
from service.webhooks import services as webhooks
from service.webhooks.schemas import WebhookEndpointCreate
from tests.conftest import RunningApi
from tests.integration.webhooks.test_webhooks import Receiver, lead_of_new_team, serve
from tests.integration.workers.test_worker import run_burst
from tests.support.tls import self_signed
from workers import jobs

NOT_PUBLIC = "not a public address: webhooks are not sent there unless WEBHOOK_ALLOWED_CIDRS allows it"


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.2",  # loopback (the tests allow 127.0.0.1 only)
        "[::1]",
        "10.1.2.3",  # private (RFC 1918)
        "172.16.0.1",
        "192.168.0.10",
        "[fd00::1]",  # unique local (fc00::/7)
        "169.254.169.254",  # link-local: the cloud metadata address
        "[fe80::1]",
        "0.0.0.0",  # unspecified
        "[::]",
        "224.0.0.1",  # multicast
        "[ff02::1]",
        "100.64.0.1",  # shared (CGNAT)
        "[::ffff:169.254.169.254]",  # IPv4-mapped IPv6 forms
        "[::ffff:10.0.0.1]",
    ],
)
async def test_a_receiver_at_a_blocked_address_is_refused_on_url(
    host: str, http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    team, lead = await lead_of_new_team(clean_db)
    base = f"/api/v1/teams/{team}/webhooks"
    response = await http.post(base, json={"url": f"http://{host}:8080/hook"}, headers=lead)
    problem = response.json()
    assert (response.status_code, [e["field"] for e in problem["errors"]]) == (422, ["url"]), host
    address, _, why = problem["detail"].partition(" is ")
    assert (ip_address(address), why) == (ip_address(host.strip("[]")), NOT_PUBLIC)

    created = (await http.post(base, json={"url": "https://example.com/hook"}, headers=lead)).json()
    changed = await http.patch(f"{base}/{created['id']}", json={"url": f"http://{host}/x"}, headers=lead)
    assert (changed.status_code, [e["field"] for e in changed.json()["errors"]]) == (422, ["url"])


async def test_a_name_resolving_to_loopback_is_refused_when_sent_and_not_retried(
    api: RunningApi, http: httpx.AsyncClient, settings: Settings, clean_db: AsyncEngine
) -> None:
    team, lead = await lead_of_new_team(clean_db)
    receiver = Receiver()
    async with serve(receiver) as url:
        # Accepted when created (as if its DNS then said otherwise); refused when sent: the check that counts.
        named = url.replace("127.0.0.1", "localhost")
        permissive = settings.model_copy(update={"webhook_allowed_cidrs": [IPv4Network("0.0.0.0/0")]})
        async with clean_db.begin() as conn:
            endpoint = await webhooks.create_endpoint(conn, team, WebhookEndpointCreate(url=named), permissive)
        test = await http.post(f"/api/v1/teams/{team}/webhooks/{endpoint.id}/test", headers=lead)
        strict = settings.model_copy(update={"webhook_allowed_cidrs": [], "outbox_retry_base_seconds": 0.02})
        assert (await run_burst(strict)).jobs_failed == 0
        assert (await run_burst(strict)).jobs_failed == 0
    assert receiver.requests == []
    [delivery] = (await http.get(f"/api/v1/teams/{team}/webhooks/{endpoint.id}/deliveries", headers=lead)).json()[
        "items"
    ]
    assert (delivery["id"], delivery["state"], delivery["attempts"], delivery["statusCode"]) == (
        test.json()["id"],
        "dead",
        1,
        None,
    )
    assert delivery["lastError"] == f"refused: localhost resolves to 127.0.0.1, {NOT_PUBLIC}"


class Redirecting(Receiver):
    """Answers every POST with a 307 to ``location``."""

    def __init__(self, location: str) -> None:
        super().__init__()
        self.location = location

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        self.requests.append(({k.decode(): v.decode() for k, v in scope["headers"]}, b"", 307))
        headers = [(b"location", self.location.encode()), (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 307, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


async def test_a_redirect_is_not_followed_and_the_allowlist_allows_its_networks(
    api: RunningApi, http: httpx.AsyncClient, settings: Settings, clean_db: AsyncEngine
) -> None:
    settings = settings.model_copy(update={"webhook_max_attempts": 2, "outbox_retry_base_seconds": 0.02})
    team, lead = await lead_of_new_team(clean_db)
    inside = Receiver()
    async with serve(inside, host="127.0.0.2") as inside_url:
        bouncer = Redirecting(inside_url)
        async with serve(bouncer) as url:
            created = (await http.post(f"/api/v1/teams/{team}/webhooks", json={"url": url}, headers=lead)).json()
            await http.post(f"/api/v1/teams/{team}/webhooks/{created['id']}/test", headers=lead)
            assert (await run_burst(settings)).jobs_failed == 0
        assert (len(bouncer.requests), inside.requests) == (2, [])
        [delivery] = (await http.get(f"/api/v1/teams/{team}/webhooks/{created['id']}/deliveries", headers=lead)).json()[
            "items"
        ]
        assert (delivery["state"], delivery["statusCode"], delivery["lastError"]) == (
            "dead",
            307,
            f"HTTP 307: redirect to {inside_url} not followed",
        )

        # The address the redirect pointed at, once an admin allows its network, is a receiver like any other.
        allowing = settings.model_copy(
            update={"webhook_allowed_cidrs": [IPv4Network("127.0.0.1/32"), IPv4Network("127.0.0.2/32")]}
        )
        async with clean_db.begin() as conn:
            endpoint = await webhooks.create_endpoint(conn, team, WebhookEndpointCreate(url=inside_url), allowing)
        await http.post(f"/api/v1/teams/{team}/webhooks/{endpoint.id}/test", headers=lead)
        assert (await run_burst(settings)).jobs_failed == 0
        assert inside.requests == []  # the workers' allowlist still refuses it
        test = await http.post(f"/api/v1/teams/{team}/webhooks/{endpoint.id}/test", headers=lead)
        assert (await run_burst(allowing)).jobs_failed == 0
    [(headers, _, status)] = inside.requests
    assert (headers["switchboard-delivery"], headers["host"], status) == (
        str(test.json()["id"]),
        inside_url.split("/")[2],
        200,
    )


@pytest.mark.parametrize(("certified", "outcome"), [("localhost", "delivered"), ("other.example", "failed")])
async def test_https_goes_to_the_checked_address_and_checks_the_certificate_against_the_name(
    certified: str,
    outcome: str,
    tmp_path: Path,
    api: RunningApi,
    http: httpx.AsyncClient,
    settings: Settings,
    clean_db: AsyncEngine,
) -> None:
    team, lead = await lead_of_new_team(clean_db)
    certificate, key = self_signed(tmp_path, certified)
    receiver = Receiver()
    trusting = ssl.create_default_context(cafile=str(certificate))
    async with (
        serve(receiver, ssl_certfile=str(certificate), ssl_keyfile=str(key)) as url,
        httpx2.AsyncClient(verify=trusting) as client,
    ):
        named = url.replace("127.0.0.1", "localhost")
        created = (await http.post(f"/api/v1/teams/{team}/webhooks", json={"url": named}, headers=lead)).json()
        test = (await http.post(f"/api/v1/teams/{team}/webhooks/{created['id']}/test", headers=lead)).json()
        ctx = {"engine": clean_db, "settings": settings, "http": client, "redis": api.app.state.redis}
        assert await jobs.deliver_outbox(ctx, outbox_id=test["id"]) == outcome
    [delivery] = (await http.get(f"/api/v1/teams/{team}/webhooks/{created['id']}/deliveries", headers=lead)).json()[
        "items"
    ]
    if outcome == "delivered":
        # Connected to 127.0.0.1, yet TLS verified the certificate of the name (it holds no IP address).
        [(headers, _, _)] = receiver.requests
        assert (headers["host"], delivery["state"]) == (named.split("/")[2], "delivered")
    else:
        assert receiver.requests == []
        assert "certificate is not valid for 'localhost'" in delivery["lastError"]
