"""Posts to a team's chats come from a worker through the outbox: the widget's answer waits for no platform,
and the chats get each message once, in the order the conversation had them, whichever worker posts."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings
from tests.conftest import RunningApi
from tests.integration.bridges.test_bridges_outbound import (
    CHAT_A,
    TOKEN_A,
    Platforms,
    bridged,
    bridged_api,
    configure,
    platforms,
    say,
    two_teams,
    visitor,
    work,
)
from tests.integration.workers.test_worker import run_burst
from tests.support.routing import rows

__all__ = ["bridged", "bridged_api", "platforms"]  # the fixtures, shared with the outbound tests


async def test_a_burst_of_messages_reaches_the_chat_once_each_in_order_with_two_workers(
    bridged_api: RunningApi, bridged: Settings, platforms: Platforms, clean_db: AsyncEngine
) -> None:
    people = await two_teams(clean_db)
    async with bridged_api.client() as http:
        await configure(
            http, people["a"], people["lead_a"], {"telegram": {"enabled": True, "chatId": CHAT_A, "botToken": TOKEN_A}}
        )
        session_id = await visitor(http, "Vera", "https://shop.example/", "First")
        await work(bridged, bridged_api)  # routed, the topic opened with the first message
        [topic] = platforms.telegram.calls_to("createForumTopic")
        thread = topic.response["result"]["message_thread_id"]
        platforms.telegram.clear()

        texts = [f"Message {n:02d}" for n in range(20)]
        for text in texts:
            await say(http, session_id, text)
        assert platforms.telegram.calls == []  # the widget's requests called no platform
        # Two workers at once, as a deployment runs them: one posts the conversation, the other's tries wait.
        bursts = await asyncio.gather(run_burst(bridged, cron_jobs=[]), run_burst(bridged, cron_jobs=[]))
        assert all(burst.jobs_failed == 0 for burst in bursts)
        for _ in range(3):  # a try that found the other worker posting is retried once it is done
            if len(platforms.telegram.calls_to("sendMessage")) == len(texts):
                break
            await asyncio.sleep(1)
            await run_burst(bridged, cron_jobs=[])
    posted = [c for c in platforms.telegram.calls_to("sendMessage") if c.body.get("message_thread_id") == thread]
    assert [next(t for t in texts if t in str(c.body["text"])) for c in posted] == texts
    ids = await rows(clean_db, "SELECT telegram_message_id FROM message WHERE content LIKE 'Message %' ORDER BY seq")
    assert [r["telegram_message_id"] for r in ids] == [c.response["result"]["message_id"] for c in posted]
    [pending] = await rows(
        clean_db, "SELECT count(*) AS n FROM outbox WHERE kind = 'bridge_post' AND delivered_at IS NULL"
    )
    assert pending["n"] == 0
