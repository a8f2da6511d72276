"""Dashboard pages over HTTP: which conversations each inbox tab lists, long histories, escaping, analytics."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.models import Assignment, Message
from service.db.transactions import in_transaction
from service.routing import placement
from tests.factories import add_member, bearer, make_operator, make_team, personal_token
from tests.support.routing import make_conversation, set_values


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


def utc(day: int, clock: str) -> datetime:
    hour, minute, second = (int(part) for part in clock.split(":"))
    return datetime(2026, 11, day, hour, minute, second, tzinfo=UTC)


async def test_the_analytics_page_shows_the_numbers_and_draws_the_charts(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    team = await make_team(clean_db, "Support", default_capacity=2)
    olga, oskar, lena = [await make_operator(clean_db, name) for name in ("Olga", "Oskar", "Lena")]
    for operator, role in ((olga, "operator"), (oskar, "operator"), (lena, "lead")):
        await add_member(clean_db, team, operator, role)
    ops = {"Olga": olga, "Oskar": oskar}
    # (id, created, url, messages [(sender, operator, at)], assignment (operator, at)); Monday 23 to Wednesday 25.
    seeded = [
        (
            "c1",
            utc(23, "09:00:00"),
            "https://shop.example/pricing?x=1",
            [("visitor", None, utc(23, "09:00:00")), ("operator", "Olga", utc(23, "09:00:30"))],
            ("Olga", utc(23, "09:00:10")),
        ),
        (
            "c2",
            utc(23, "09:30:00"),
            "https://shop.example/pricing",
            [
                ("visitor", None, utc(23, "09:30:00")),
                ("ai", None, utc(23, "09:30:10")),
                ("operator", "Olga", utc(23, "09:31:30")),
            ],
            ("Olga", utc(23, "09:31:00")),
        ),
        (
            "c3",
            utc(25, "14:00:00"),
            "https://shop.example/checkout",
            [("visitor", None, utc(25, "14:00:00")), ("operator", "Oskar", utc(25, "14:02:00"))],
            ("Oskar", utc(25, "14:00:50")),
        ),
    ]
    async with clean_db.begin() as conn:
        for conversation_id, created, url, messages, (assignee, assigned) in seeded:
            await make_conversation(conn, team, id=conversation_id, created_at=created, session_metadata={"url": url})
            for n, (sender, name, sent) in enumerate(messages):
                operator_id = ops[name] if name else None
                await conn.execute(
                    sa.insert(Message.__table__).values(  # type: ignore[attr-defined]
                        id=f"{conversation_id}-{n}",
                        conversation_id=conversation_id,
                        sender=sender,
                        operator_id=operator_id,
                        content="x",
                        created_at=sent,
                    )
                )
            await conn.execute(
                sa.insert(Assignment.__table__).values(  # type: ignore[attr-defined]
                    conversation_id=conversation_id,
                    operator_id=ops[assignee],
                    team_id=team,
                    reason="routed",
                    started_at=assigned,
                )
            )
    as_lena, as_olga = bearer(await personal_token(clean_db, lena)), bearer(await personal_token(clean_db, olga))
    query = {"teamId": str(team), "from": "2026-11-23", "to": "2026-11-25", "tz": "UTC"}

    page = await http.get("/app/analytics", params=query, headers=as_lena)
    assert page.status_code == 200, page.text
    html = page.text
    # One bar per day of the range, Tuesday empty.
    assert re.findall(r'data-day="([^"]+)" data-sessions="(\d+)"', html) == [
        ("2026-11-23", "2"),
        ("2026-11-24", "0"),
        ("2026-11-25", "1"),
    ]
    # The heatmap has every weekday x hour; Monday 09h holds both Monday sessions.
    cells = re.findall(r'<rect class="cell" data-sessions="(\d+)"', html)
    assert len(cells) == 168 and cells[9] == "2" and cells[2 * 24 + 14] == "1" and cells.count("0") == 166
    # First response 30 s, 10 s (the AI), 120 s: average 53.3, p50 30, p90 30 + 0.8 * 90 = 102.
    assert "<th>First response</th><td>53.3 s</td><td>30.0 s</td><td>102.0 s</td><td>3 of 3</td>" in html
    # Time to assignment 10 s, 60 s, 50 s: average 40, p50 50, p90 50 + 0.8 * 10 = 58.
    assert "<th>Time to assignment</th><td>40.0 s</td><td>50.0 s</td><td>58.0 s</td><td>3 of 3</td>" in html
    assert "Human: <strong>3</strong> (75.0 %) · AI: <strong>1</strong> (25.0 %)" in html
    assert re.findall(r'<td class="page">([^<]+)</td><td>(\d+)</td>', html) == [
        ("https://shop.example/pricing", "2"),
        ("https://shop.example/checkout", "1"),
    ]
    # Assignments 2, 1, 0: mean 1, CV sqrt(2/3), Gini 4/9; per slot (capacity 2) 1, 0.5, 0.
    assert (
        "Mean assignments 1.0 · coefficient of variation 0.8165 · Gini 0.4444 · Gini per capacity slot 0.4444" in html
    )
    assert f'<tr data-operator="{olga}"><td>Olga</td><td>2</td><td>2</td><td>2</td><td>2</td><td>1.0</td></tr>' in html
    assert f'<tr data-operator="{lena}"><td>Lena</td><td>0</td><td>0</td><td>0</td><td>2</td><td>0.0</td></tr>' in html
    export = re.search(r'href="(/api/v1/analytics/export.csv\?metric=sessionsByDay[^"]*)"', html)
    assert export is not None
    csv = await http.get(export.group(1).replace("&amp;", "&"), headers=as_lena)
    assert csv.status_code == 200
    assert csv.text.splitlines()[1:] == [
        "2026-11-23T00:00:00Z,2026-11-23,2",
        "2026-11-24T00:00:00Z,2026-11-24,0",
        "2026-11-25T00:00:00Z,2026-11-25,1",
    ]

    assert 'href="/app/analytics"' in (await http.get("/app", headers=as_lena)).text
    assert 'href="/app/analytics"' not in (await http.get("/app", headers=as_olga)).text
    assert (await http.get("/app/analytics", params=query, headers=as_olga)).status_code == 403
    bad_team = await http.get("/app/analytics", params={**query, "teamId": "nope"}, headers=as_lena)
    assert bad_team.status_code == 400 and "teamId is not valid" in bad_team.text

    # The tag filter: only c3 (Wednesday; answered after 120 s, assigned after 50 s), the CSV links keep it.
    checkout = (await http.post(f"/api/v1/teams/{team}/tags", json={"name": "checkout"}, headers=as_lena)).json()["id"]
    assert (
        await http.post("/api/v1/conversations/c3/tags", json={"tagId": checkout}, headers=as_lena)
    ).status_code == 200
    html = (await http.get("/app/analytics", params={**query, "tag": checkout}, headers=as_lena)).text
    assert f'<option value="{checkout}" selected>checkout</option>' in html
    assert re.findall(r'data-day="([^"]+)" data-sessions="(\d+)"', html) == [
        ("2026-11-23", "0"),
        ("2026-11-24", "0"),
        ("2026-11-25", "1"),
    ]
    assert "<th>First response</th><td>2.0 min</td><td>2.0 min</td><td>2.0 min</td><td>1 of 1</td>" in html
    assert "<th>Time to assignment</th><td>50.0 s</td><td>50.0 s</td><td>50.0 s</td><td>1 of 1</td>" in html
    export = re.search(r'href="(/api/v1/analytics/export.csv\?metric=topPages[^"]*)"', html)
    assert export is not None and f"tag={checkout}" in export.group(1)
    csv = await http.get(export.group(1).replace("&amp;", "&"), headers=as_lena)
    assert csv.text.splitlines() == ["page,sessions", "https://shop.example/checkout,1"]
    bad_tag = await http.get("/app/analytics", params={**query, "tag": "nope"}, headers=as_lena)
    assert bad_tag.status_code == 400 and "tag is not valid" in bad_tag.text


def words(page: httpx.Response) -> str:
    """The page's text with whitespace collapsed, for phrase assertions."""
    assert page.status_code == 200, page.text
    return " ".join(page.text.split())


async def test_the_conversation_page_explains_routing_and_offers_transfers_and_ai_controls(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    team = await make_team(clean_db, "Support", routing_policy="least_busy", default_capacity=3)
    billing = await make_team(clean_db, "Billing")
    people = {}
    for name, role, status, skills in (
        ("Lena", "lead", "online", ["billing"]),
        ("Olga", "operator", "offline", ["billing"]),
        ("Max", "operator", "online", ["billing"]),
        ("Sam", "operator", "online", []),
    ):
        people[name] = await make_operator(clean_db, name, status=status)
        await add_member(clean_db, team, people[name], role, skills=skills)
    await set_values(clean_db, "operator", {"id": people["Max"]}, open_conversations=3)
    conversation_id, revision = await make_conversation(clean_db, team, required_skills=["billing"])
    outcome = await in_transaction(
        clean_db, lambda conn: placement.route_conversation(conn, conversation_id, revision, "visitor_message")
    )
    assert outcome.operator_id == people["Lena"]
    as_olga, as_lena = [bearer(await personal_token(clean_db, people[n])) for n in ("Olga", "Lena")]

    why = words(await http.get(f"/app/conversations/{conversation_id}/routing", headers=as_olga))
    assert re.findall(r'"trigger">([^<]+)</span> · policy ([^<]+) · <strong class="outcome">([^<]+)<', why) == [
        ("the visitor wrote", "least busy", "assigned to Lena")
    ]
    assert sorted(re.findall(r'<span class="name">([^<]+)</span>: ([^<]+)</li>', why)) == [
        ("Lena", "eligible, rank 1, 0/3 open — chosen"),
        ("Max", "at capacity 3/3"),
        ("Olga", "offline"),
        ("Sam", "missing skill billing"),
    ]

    choices = words(await http.get(f"/app/conversations/{conversation_id}/transfer-targets", headers=as_olga))
    assert re.findall(r'<option value="([a-z]*):?[^"]*"( disabled)?> ?([^<]+?) ?</option>', choices) == [
        ("", "", "Choose an operator or a team"),
        ("operator", " disabled", "Lena — online, 1/3 open, has it"),
        ("operator", "", "Max — online, 3/3 open, full"),
        ("operator", "", "Olga (you) — offline, 0/3 open"),
        ("operator", "", "Sam — online, 0/3 open"),
        ("team", "", "Billing"),
    ]
    assert f'value="team:{billing}"' in choices

    # The capacity override is offered to leads only; the AI state follows the team and the controls.
    olga_page = words(await http.get(f"/app/conversations/{conversation_id}", headers=as_olga))
    assert 'name="overrideCapacity"' not in olga_page and "AI is off for this team" in olga_page
    assert "Hand over to AI" not in olga_page and "Pause AI" in olga_page
    await set_values(clean_db, "team", {"id": team}, ai_enabled=True)
    await set_values(clean_db, "conversation", {"id": conversation_id}, ai_paused=True)
    lena_page = words(await http.get(f"/app/conversations/{conversation_id}", headers=as_lena))
    assert 'name="overrideCapacity"' in lena_page and 'data-ai-state="paused"' in lena_page
    assert "Resume AI" in lena_page and "Hand over to AI" in lena_page and "Pause AI" not in lena_page


async def test_tags_and_macros_on_the_conversation_page_and_the_inbox_tag_filter(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    team = await make_team(clean_db, "Support")
    olga, lena = await make_operator(clean_db, "Olga"), await make_operator(clean_db, "Lena")
    await add_member(clean_db, team, olga, "operator")
    await add_member(clean_db, team, lena, "lead")
    as_olga, as_lena = bearer(await personal_token(clean_db, olga)), bearer(await personal_token(clean_db, lena))
    tags = f"/api/v1/teams/{team}/tags"
    refund = (await http.post(tags, json={"name": "refund", "color": "#aa3300"}, headers=as_lena)).json()["id"]
    vip = (await http.post(tags, json={"name": "<vip>"}, headers=as_lena)).json()["id"]
    macro = {"name": "Done & dusted", "addTags": [vip], "removeTags": [refund], "action": "close"}
    macro_id = (await http.post(f"/api/v1/teams/{team}/macros", json=macro, headers=as_lena)).json()["id"]
    tagged, _ = await make_conversation(clean_db, team, status="queued")
    untagged, _ = await make_conversation(clean_db, team, status="queued")
    await http.post(f"/api/v1/conversations/{tagged}/tags", json={"tagId": refund}, headers=as_olga)

    page = await http.get(f"/app/conversations/{tagged}", headers=as_olga)
    assert page.status_code == 200, page.text
    # The tag on it, with its colour and a remove button; the form offers the other tag only (escaped).
    assert re.findall(r'data-tag="([^"]+)" data-color="([^"]+)">refund', page.text) == [(refund, "#aa3300")]
    assert f'hx-delete="/api/v1/conversations/{tagged}/tags/{refund}"' in page.text
    [choices] = re.findall(r'<select name="tagId"[^>]*>(.*?)</select>', page.text, re.DOTALL)
    assert re.findall(r'<option value="([^"]+)">([^<]*)</option>', choices) == [(vip, "&lt;vip&gt;")]
    # The macro picker: one button per macro, applying it through the API, with what it does.
    assert re.findall(r'data-macro="([^"]+)" data-idempotent hx-post="([^"]+)"', page.text) == [
        (macro_id, f"/api/v1/conversations/{tagged}/macros/{macro_id}")
    ]
    assert "untag refund · tag &lt;vip&gt; · close" in page.text

    queue = {"tab": "queue"}
    assert sorted(listed(await http.get("/app", params=queue, headers=as_olga))) == sorted([tagged, untagged])
    filtered = await http.get("/app", params={**queue, "tag": refund}, headers=as_olga)
    assert listed(filtered) == [tagged]
    assert f'<option value="{refund}" selected>refund</option>' in filtered.text
    assert f'hx-get="/app/inbox?tab=queue&amp;tag={refund}"' in filtered.text
    assert listed(await http.get("/app/inbox", params={**queue, "tag": vip}, headers=as_olga)) == []
    assert (await http.get("/app", params={**queue, "tag": "nope"}, headers=as_olga)).status_code == 400

    # The rules editor shows a rule's keywords and keeps its tags (saved again as they are).
    rule = {"name": "Refunds", "conditions": {"keyword": ["refund", "money back"]}, "setTags": [refund]}
    assert (await http.put(f"/api/v1/teams/{team}/rules", json={"rules": [rule]}, headers=as_lena)).status_code == 200
    settings = (await http.get(f"/app/teams/{team}", headers=as_lena)).text
    assert 'data-name="conditions.keyword" value="refund, money back"' in settings
    assert f'data-name="setTags" value="{refund}"' in settings

    # Applied (as the page's button does), the macro retags and closes: the page shows it without the picker.
    assert (await http.post(f"/api/v1/conversations/{tagged}/macros/{macro_id}", headers=as_olga)).status_code == 200
    page = await http.get(f"/app/conversations/{tagged}", headers=as_olga)
    assert re.findall(r'data-tag="([^"]+)"', page.text) == [vip]
    assert "data-macro=" not in page.text
