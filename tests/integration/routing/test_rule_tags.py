"""Routing rules that set tags, and rules on the keywords of the visitor's first message (decided when it arrives)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.models import Message
from service.db.transactions import in_transaction
from service.routing import handoff, placement
from tests.factories import make_team
from tests.integration.teams.test_teams_api import errors, person
from tests.support.routing import make_conversation, rows


async def tag(http: httpx.AsyncClient, team_id: uuid.UUID, name: str, auth: dict[str, str]) -> str:
    response = await http.post(f"/api/v1/teams/{team_id}/tags", json={"name": name}, headers=auth)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def visitor_says(engine: AsyncEngine, conversation_id: str, content: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(Message.__table__).values(  # type: ignore[attr-defined]
                id=f"{conversation_id}-{uuid.uuid4().hex[:6]}",
                conversation_id=conversation_id,
                sender="visitor",
                content=content,
                created_at=datetime.now(UTC),
            )
        )


async def connect(engine: AsyncEngine, conversation_id: str) -> None:
    """What the gateway does when the widget connects: the rules choose the visitor's team."""
    await in_transaction(engine, lambda conn: placement.choose_team(conn, conversation_id))


async def route(engine: AsyncEngine, conversation_id: str) -> placement.RouteOutcome:
    return await in_transaction(engine, lambda conn: placement.route_conversation(conn, conversation_id, 1, "test"))


async def test_rule_tags_are_checked_against_the_team(http: httpx.AsyncClient, clean_db: AsyncEngine) -> None:
    billing = await make_team(clean_db, "Billing")
    sales = await make_team(clean_db, "Sales")
    _, lead_auth = await person(clean_db, "Lena", billing, "lead")
    _, sales_auth = await person(clean_db, "Sam", sales, "lead")
    refund = await tag(http, billing, "refund", lead_auth)
    theirs = await tag(http, sales, "lead", sales_auth)
    path = f"/api/v1/teams/{billing}/rules"
    ok = {"name": "refunds", "conditions": {"keyword": ["Refund", "money back"]}, "setTags": [refund]}

    for rule, field in (
        ({**ok, "setTags": [theirs]}, "rules.1.setTags"),
        ({**ok, "setTags": [str(uuid.uuid4())]}, "rules.1.setTags"),
    ):
        response = await http.put(path, json={"rules": [ok, rule]}, headers=lead_auth)
        assert (response.status_code, errors(response)) == (422, [field]), response.text
    for rule, field in (
        ({**ok, "conditions": {"keyword": ["x" * 101]}}, "rules.1.conditions.keyword.0"),
        ({**ok, "conditions": {"keyword": ["a\x00b"]}}, "rules.1.conditions.keyword.0"),
        ({**ok, "conditions": {"keyword": []}}, "rules.1.conditions.keyword"),
        ({**ok, "setTags": ["nope"]}, "rules.1.setTags.0"),
    ):
        response = await http.put(path, json={"rules": [ok, rule]}, headers=lead_auth)
        assert (response.status_code, errors(response)) == (400, [field]), response.text
    response = await http.put(path, json={"rules": [ok]}, headers=lead_auth)
    assert response.status_code == 200, response.text
    [stored] = response.json()["items"]
    assert (stored["conditions"]["keyword"], stored["setTags"]) == (["refund", "money back"], [refund])
    # A deleted tag leaves the rules that set it.
    await http.delete(f"/api/v1/teams/{billing}/tags/{refund}", headers=lead_auth)
    assert (await http.get(path, headers=lead_auth)).json()["items"][0]["setTags"] == []


async def test_a_keyword_rule_waits_for_the_first_message_and_wins_over_the_choice_at_connect(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    billing = await make_team(clean_db, "Billing")
    sales = await make_team(clean_db, "Sales")
    default_team = await make_team(clean_db, "Support", is_default=True)
    _, billing_auth = await person(clean_db, "Lena", billing, "lead")
    _, sales_auth = await person(clean_db, "Sam", sales, "lead")
    refund = await tag(http, billing, "refund", billing_auth)
    pricing = await tag(http, sales, "pricing-page", sales_auth)
    keyword_rule = {"name": "refunds", "conditions": {"keyword": ["refund", "money back"]}, "setTags": [refund]}
    page_rule = {"name": "pricing", "conditions": {"url": "*/pricing*"}, "setTags": [pricing]}
    assert (
        await http.put(f"/api/v1/teams/{billing}/rules", json={"rules": [keyword_rule]}, headers=billing_auth)
    ).status_code == 200
    # Billing's rule comes first (position 0 in both lists: teams in age order, billing is older).
    assert (
        await http.put(f"/api/v1/teams/{sales}/rules", json={"rules": [page_rule]}, headers=sales_auth)
    ).status_code == 200
    meta = {"url": "https://shop.test/pricing"}
    asks_refund, _ = await make_conversation(clean_db, session_metadata=meta)
    asks_price, _ = await make_conversation(clean_db, session_metadata=meta)
    refunded_elsewhere, _ = await make_conversation(clean_db, session_metadata={"url": "https://shop.test/"})

    for conversation_id in (asks_refund, asks_price, refunded_elsewhere):
        await connect(clean_db, conversation_id)
    chosen = await rows(clean_db, "SELECT id, selected_team_id FROM conversation ORDER BY id")
    # No message yet: the keyword rule matches nothing, the page rule decides.
    assert {r["id"]: r["selected_team_id"] for r in chosen} == {
        asks_refund: sales,
        asks_price: sales,
        refunded_elsewhere: default_team,
    }

    await visitor_says(clean_db, asks_refund, "Hi! I want my MONEY BACK, please.")
    await visitor_says(clean_db, asks_refund, "refund")  # only the first message counts
    await visitor_says(clean_db, asks_price, "How much is it? (refunds aside)")
    await visitor_says(clean_db, refunded_elsewhere, "Refund?")
    for conversation_id in (asks_refund, asks_price, refunded_elsewhere):
        assert (await route(clean_db, conversation_id)).outcome == "queued"

    placed = await rows(clean_db, "SELECT id, team_id FROM conversation ORDER BY id")
    assert {r["id"]: r["team_id"] for r in placed} == {
        asks_refund: billing,
        asks_price: sales,
        refunded_elsewhere: billing,
    }
    tagged = await rows(
        clean_db,
        "SELECT ct.conversation_id, t.name, ct.source, ct.added_by FROM conversation_tag ct"
        " JOIN tag t ON t.id = ct.tag_id ORDER BY ct.conversation_id",
    )
    assert sorted(tagged, key=lambda r: r["conversation_id"]) == sorted(
        [
            {"conversation_id": asks_refund, "name": "refund", "source": "rule", "added_by": None},
            {"conversation_id": asks_price, "name": "pricing-page", "source": "rule", "added_by": None},
            {"conversation_id": refunded_elsewhere, "name": "refund", "source": "rule", "added_by": None},
        ],
        key=lambda r: r["conversation_id"],
    )
    # Closed and reopened: its tags stay, once.
    await in_transaction(clean_db, lambda conn: handoff.close_conversation(conn, asks_price, actor_id=None))
    await in_transaction(clean_db, lambda conn: handoff.reopen_conversation(conn, asks_price, actor_id=None))
    assert len(await rows(clean_db, "SELECT 1 FROM conversation_tag WHERE conversation_id = :c", c=asks_price)) == 1
