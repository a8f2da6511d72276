"""Webhook retries end: a delivery dies after its attempts, a long-failing endpoint is disabled, a lead redelivers."""

from __future__ import annotations

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.realtime.relay import EventRelay
from service.settings import Settings
from tests.conftest import RunningApi
from tests.integration.webhooks.test_webhooks import Receiver, lead_of_new_team, record, serve
from tests.integration.workers.test_worker import rows, run_burst


async def test_a_delivery_dies_after_its_attempts_and_a_redelivery_sends_the_same_body(
    api: RunningApi, http: httpx.AsyncClient, settings: Settings, clean_db: AsyncEngine
) -> None:
    settings = settings.model_copy(update={"outbox_retry_base_seconds": 0.02, "webhook_max_attempts": 3})
    team, lead = await lead_of_new_team(clean_db)
    receiver = Receiver(500, 500, 500, 500)  # fails four times, then takes what comes
    async with serve(receiver) as url:
        webhook = (await http.post(f"/api/v1/teams/{team}/webhooks", json={"url": url}, headers=lead)).json()
        base = f"/api/v1/teams/{team}/webhooks/{webhook['id']}"
        event_id = await record(clean_db, "conversation.closed", team, conversationId="c-1")
        await EventRelay(clean_db, api.app.state.redis, settings).step()
        assert (await run_burst(settings)).jobs_failed == 0
        assert [status for _, _, status in receiver.requests] == [500, 500, 500]
        # Dead is final: more workers and sweeps try nothing more.
        assert (await run_burst(settings)).jobs_failed == 0
        assert len(receiver.requests) == 3
        [dead] = (await http.get(f"{base}/deliveries", headers=lead)).json()["items"]
        assert (dead["state"], dead["attempts"], dead["statusCode"], dead["lastError"], dead["nextAttemptAt"]) == (
            "dead",
            3,
            500,
            "HTTP 500: nope",
            None,
        )
        assert dead["deadAt"] is not None and dead["deliveredAt"] is None

        again = await http.post(f"{base}/deliveries/{dead['id']}/redeliver", headers=lead)
        assert again.status_code == 202, again.text
        redelivery = again.json()
        assert (redelivery["state"], redelivery["attempts"], redelivery["eventId"]) == ("pending", 0, event_id)
        assert redelivery["id"] != dead["id"]
        # Still being tried: a second redelivery of it is refused.
        pending = await http.post(f"{base}/deliveries/{redelivery['id']}/redeliver", headers=lead)
        assert (pending.status_code, pending.json()["detail"]) == (
            409,
            "The delivery has not finished; it is still tried",
        )
        assert (await run_burst(settings)).jobs_failed == 0

    assert [status for _, _, status in receiver.requests] == [500, 500, 500, 500, 200]
    first, last = receiver.requests[0], receiver.requests[-1]
    assert last[1] == first[1]  # the same body: the same event id, type and data
    assert httpx.Response(200, content=last[1]).json()["id"] == event_id
    assert (first[0]["switchboard-delivery"], last[0]["switchboard-delivery"]) == (
        str(dead["id"]),
        str(redelivery["id"]),
    )
    log = (await http.get(f"{base}/deliveries", headers=lead)).json()["items"]
    assert [(d["id"], d["state"], d["attempts"], d["statusCode"]) for d in log] == [
        (redelivery["id"], "delivered", 2, 200),
        (dead["id"], "dead", 3, 500),
    ]
    assert await rows(clean_db, "SELECT action, subject_id, data FROM audit_event") == [
        {
            "action": "webhook.redelivered",
            "subject_id": webhook["id"],
            "data": {"deliveryId": dead["id"], "newDeliveryId": redelivery["id"], "eventId": event_id},
        }
    ]
    missing = await http.post(f"{base}/deliveries/999999/redeliver", headers=lead)
    assert (missing.status_code, missing.json()["detail"]) == (404, "Delivery not found")


async def test_an_endpoint_failing_too_long_is_disabled_told_and_sent_nothing_until_enabled(
    api: RunningApi, http: httpx.AsyncClient, settings: Settings, clean_db: AsyncEngine
) -> None:
    settings = settings.model_copy(
        update={"webhook_max_attempts": 1, "webhook_disable_after_seconds": 3600, "outbox_retry_base_seconds": 0.02}
    )
    team, lead = await lead_of_new_team(clean_db)
    relay = EventRelay(clean_db, api.app.state.redis, settings)
    receiver = Receiver(500, 503)
    async with serve(receiver) as url:
        webhook = (await http.post(f"/api/v1/teams/{team}/webhooks", json={"url": url}, headers=lead)).json()
        base = f"/api/v1/teams/{team}/webhooks/{webhook['id']}"
        await record(clean_db, "conversation.closed", team, conversationId="c-1")
        await relay.step()
        await run_burst(settings)
        [since] = await rows(clean_db, "SELECT enabled, failing_since FROM webhook_endpoint")
        assert since["enabled"] is True and since["failing_since"] is not None
        # As if every delivery had failed for two hours, past WEBHOOK_DISABLE_AFTER_SECONDS.
        async with clean_db.begin() as conn:
            await conn.execute(
                sa.text("UPDATE webhook_endpoint SET failing_since = failing_since - interval '2 hours'")
            )

        second = await record(clean_db, "conversation.closed", team, conversationId="c-2")
        await relay.step()
        await run_burst(settings)
        assert [status for _, _, status in receiver.requests] == [500, 503]
        disabled = (await http.get(base, headers=lead)).json()
        assert disabled["enabled"] is False and disabled["disabledAt"] is not None
        reason = disabled["disabledReason"]
        assert reason.startswith("every delivery failed since ") and reason.endswith("; last: HTTP 503: nope")
        told = {"webhookId": webhook["id"], "url": url, "reason": reason}
        assert await rows(clean_db, "SELECT kind, team_id, data FROM event WHERE kind = 'webhook.disabled'") == [
            {"kind": "webhook.disabled", "team_id": team, "data": told}
        ]
        assert await rows(clean_db, "SELECT actor_id, action, subject_type, subject_id, data FROM audit_event") == [
            {
                "actor_id": None,
                "action": "webhook.disabled",
                "subject_type": "webhook_endpoint",
                "subject_id": webhook["id"],
                "data": told,
            }
        ]
        log = (await http.get(f"{base}/deliveries", headers=lead)).json()["items"]
        assert [(d["eventId"], d["state"], d["attempts"]) for d in log] == [
            (second, "held", 1),
            (log[1]["eventId"], "dead", 1),
        ]
        refused = await http.post(f"{base}/deliveries/{log[1]['id']}/redeliver", headers=lead)
        assert (refused.status_code, refused.json()["detail"]) == (409, "The webhook is disabled; enable it first")

        # Disabled: new events queue nothing, and workers send nothing.
        await record(clean_db, "conversation.closed", team, conversationId="c-3")
        await relay.step()
        await run_burst(settings)
        assert (len(receiver.requests), len(await rows(clean_db, "SELECT id FROM outbox"))) == (2, 2)

        enabled = await http.patch(base, json={"enabled": True}, headers=lead)
        assert (enabled.status_code, enabled.json()["disabledAt"], enabled.json()["disabledReason"]) == (
            200,
            None,
            None,
        )
        await run_burst(settings)
    # The held delivery goes out once enabled; the failure streak is over.
    assert [status for _, _, status in receiver.requests] == [500, 503, 200]
    assert httpx.Response(200, content=receiver.requests[-1][1]).json()["id"] == second
    assert await rows(clean_db, "SELECT enabled, failing_since FROM webhook_endpoint") == [
        {"enabled": True, "failing_since": None}
    ]
