"""Dashboard pages over HTTP: which conversations each inbox tab lists, long histories, and escaping."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.models import Message
from tests.factories import add_member, bearer, make_operator, make_team, personal_token
from tests.routing_support import make_conversation


async def add_messages(engine: AsyncEngine, conversation_id: str, contents: list[str]) -> None:
    start = datetime.now(UTC)
    rows = [
        {
            "id": f"m-{index:03d}",
            "conversation_id": conversation_id,
            "sender": "visitor",
            "content": content,
            "created_at": start + timedelta(seconds=index),
        }
        for index, content in enumerate(contents)
    ]
    async with engine.begin() as conn:
        await conn.execute(sa.insert(Message.__table__), rows)  # type: ignore[attr-defined]


def listed(page: httpx.Response) -> list[str]:
    """The conversation ids an inbox page lists, in order."""
    assert page.status_code == 200, page.text
    return re.findall(r'data-conversation="([^"]+)"', page.text)


async def test_inbox_tabs_list_mine_the_queue_and_all_for_leads(http: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    team, other = await make_team(clean_db, "Support"), await make_team(clean_db, "Billing")
    olga, lena = await make_operator(clean_db, "Olga"), await make_operator(clean_db, "Lena")
    await add_member(clean_db, team, olga, "operator")
    await add_member(clean_db, team, lena, "lead")
    now = datetime.now(UTC)
    mine, _ = await make_conversation(
        clean_db, team, status="assigned", assignee_id=olga, assigned_at=now, last_activity=now
    )
    theirs, _ = await make_conversation(
        clean_db, team, status="assigned", assignee_id=lena, assigned_at=now, last_activity=now - timedelta(seconds=1)
    )
    waiting, _ = await make_conversation(clean_db, team, status="queued", last_activity=now - timedelta(seconds=2))
    await make_conversation(clean_db, team, status="closed", closed_at=now)
    await make_conversation(clean_db, other, status="queued")
    as_olga, as_lena = bearer(await personal_token(clean_db, olga)), bearer(await personal_token(clean_db, lena))

    assert listed(await http.get("/app", headers=as_olga)) == [mine]
    assert listed(await http.get("/app/inbox", params={"tab": "queue"}, headers=as_olga)) == [waiting]
    assert (await http.get("/app/inbox", params={"tab": "all"}, headers=as_olga)).status_code == 403
    assert listed(await http.get("/app", params={"tab": "all"}, headers=as_lena)) == [mine, theirs, waiting]
    assert (await http.get("/app", params={"tab": "everything"}, headers=as_lena)).status_code == 400


async def test_a_long_conversation_shows_its_newest_messages_escaped(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    team, olga = await make_team(clean_db, "Support"), await make_operator(clean_db, "Olga")
    await add_member(clean_db, team, olga, "operator")
    conversation_id, _ = await make_conversation(clean_db, team, status="queued")
    await add_messages(clean_db, conversation_id, [f"message {i}" for i in range(100)] + ["<script>alert(1)</script>"])
    headers = bearer(await personal_token(clean_db, olga))

    page = await http.get(f"/app/conversations/{conversation_id}", headers=headers)
    assert page.status_code == 200
    shown = re.findall(r'data-message="([^"]+)"', page.text)
    assert shown == [f"m-{i:03d}" for i in range(1, 101)]
    assert "Older messages are not shown here" in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and "<script>alert" not in page.text

    short_id, _ = await make_conversation(clean_db, team, status="queued", id=f"c-{uuid.uuid4().hex[:8]}")
    thread = await http.get(f"/app/conversations/{short_id}/thread", headers=headers)
    assert thread.status_code == 200
    assert "No messages yet." in thread.text and "Older messages" not in thread.text
