"""The visitor panel and the REST detail: what the widget sent at connect and identify, the device, and the same
visitor's earlier conversations."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.factories import add_member, bearer, make_operator, make_team, personal_token
from tests.support.routing import make_conversation

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.2 Mobile/15E148 Safari/604.1"
)
# What client.ts sends at /connect (window.location.href, document.referrer, document.title, navigator.userAgent,
# the Intl time zone, navigator.language, the screen size, the bot signals).
METADATA = {
    "url": "https://shop.example/cart?step=2",
    "referrer": "https://search.example/?q=<b>lamps</b>",
    "pageTitle": "Your cart",
    "userAgent": IPHONE,
    "timezone": "Europe/Paris",
    "language": "fr-FR",
    "screenResolution": "390x844",
    "botSignals": {"webdriver": False, "plugins": True, "languages": False, "chrome": False, "permissions": False},
}
IDENTITY = {"id": "u-42", "email": "grace@example.com", "name": "Grace <Hopper>", "plan": "pro", "company": "Navy"}


def facts(page: str) -> dict[str, str]:
    """The visitor panel's facts by name, their text without tags."""
    found = re.findall(r'<dd data-fact="([^"]+)">(.*?)</dd>', page, re.S)
    return {name: re.sub(r"<[^>]+>", "", value) for name, value in found}


async def test_the_panel_and_the_detail_show_what_the_widget_sent_and_earlier_conversations(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    team, other_team = await make_team(clean_db, "Support", is_default=True), await make_team(clean_db, "Billing")
    lena = await make_operator(clean_db, "Lena")
    await add_member(clean_db, team, lena)
    headers = bearer(await personal_token(clean_db, lena))

    connected = await http.post(
        "/pocketping/connect", json={"visitorId": "v-grace", "metadata": METADATA, "identity": {"id": "u-42"}}
    )
    session_id = connected.json()["sessionId"]
    identified = await http.post("/pocketping/identify", json={"sessionId": session_id, "identity": IDENTITY})
    assert identified.status_code == 200
    now = datetime.now(UTC)
    async with clean_db.begin() as conn:
        await conn.execute(
            sa.text("UPDATE conversation SET team_id = :t WHERE id = :id"), {"t": team, "id": session_id}
        )
    # Earlier: this browser last week, the same user on another device, and one of another team (not shown);
    # a later one and another visitor's are not earlier conversations of this visitor.
    last_week = now - timedelta(days=7)
    await make_conversation(
        clean_db, team, id="c-last-week", visitor_id="v-grace", status="closed", created_at=last_week
    )
    await make_conversation(
        clean_db,
        team,
        id="c-laptop",
        visitor_id="v-laptop",
        identity={"id": "u-42"},
        created_at=now - timedelta(days=1),
    )
    await make_conversation(
        clean_db, other_team, id="c-billing", visitor_id="v-grace", created_at=now - timedelta(days=2)
    )
    await make_conversation(clean_db, team, id="c-later", visitor_id="v-grace", created_at=now + timedelta(days=1))
    await make_conversation(clean_db, team, id="c-stranger", visitor_id="v-else", created_at=last_week)

    detail = (await http.get(f"/api/v1/conversations/{session_id}", headers=headers)).json()
    assert detail["visitor"] == {
        "id": "v-grace",
        "identity": IDENTITY,
        # Stored as the SDK keeps it: its own field names, the client's IP added, the bot signals dropped.
        "metadata": {
            "url": "https://shop.example/cart?step=2",
            "referrer": "https://search.example/?q=<b>lamps</b>",
            "page_title": "Your cart",
            "user_agent": IPHONE,
            "timezone": "Europe/Paris",
            "language": "fr-FR",
            "screen_resolution": "390x844",
            "ip": "127.0.0.1",
        },
        "phone": None,
        "phoneCountry": None,
        "device": {"browser": "Mobile Safari 17.2", "os": "iOS 17.2", "model": "iPhone"},
    }
    assert [(c["id"], c["status"], c["teamName"]) for c in detail["earlierConversations"]] == [
        ("c-laptop", "new", "Support"),
        ("c-last-week", "closed", "Support"),
    ]

    page = await http.get(f"/app/conversations/{session_id}", headers=headers)
    assert page.status_code == 200
    assert facts(page.text) == {
        "url": "https://shop.example/cart?step=2",
        "pageTitle": "Your cart",
        "referrer": "https://search.example/?q=&lt;b&gt;lamps&lt;/b&gt;",
        "language": "fr-FR",
        "timezone": "Europe/Paris",
        "device": "Mobile Safari 17.2 · iOS 17.2 · iPhone",
        "screen": "390x844",
        "visitorId": "v-grace",
        "identity.id": "u-42",
        "identity.email": "grace@example.com",
        "identity.name": "Grace &lt;Hopper&gt;",
        "identity.company": "Navy",
        "identity.plan": "pro",
    }
    assert '<a href="https://shop.example/cart?step=2" target="_blank" rel="noopener noreferrer nofollow">' in page.text
    assert re.findall(r'<li data-earlier="([^"]+)"><a href="/app/conversations/\1">', page.text) == [
        "c-laptop",
        "c-last-week",
    ]


async def test_a_visitor_who_sent_nothing_shows_only_their_id_and_a_page_that_is_not_a_link(
    http: httpx.AsyncClient, clean_db: AsyncEngine
) -> None:
    team, lena = await make_team(clean_db, "Support"), await make_operator(clean_db, "Lena")
    await add_member(clean_db, team, lena)
    await make_conversation(clean_db, team, id="c-bare", visitor_id="v-bare")
    await make_conversation(
        clean_db, team, id="c-js", visitor_id="v-js", session_metadata={"url": "javascript:alert(1)"}
    )
    headers = bearer(await personal_token(clean_db, lena))

    bare = await http.get("/app/conversations/c-bare", headers=headers)
    assert facts(bare.text) == {"visitorId": "v-bare"}
    assert "Not identified" in bare.text and '<li class="empty">None.</li>' in bare.text
    scripted = await http.get("/app/conversations/c-js", headers=headers)
    assert facts(scripted.text) == {"url": "javascript:alert(1)", "visitorId": "v-js"}
    assert 'href="javascript' not in scripted.text
