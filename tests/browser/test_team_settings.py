"""Team settings in headless Chromium: a lead's policy change routes the next visitor, secrets stay unshown."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from playwright.async_api import Browser, Page, expect
from sqlalchemy.ext.asyncio import AsyncEngine

from service.settings import Settings
from service.teams.services import bridge_secret
from tests.browser.test_dashboard import lena_leads_the_default_team, visitor_writes
from tests.browser.test_pages import signed_in_page
from tests.conftest import run_api
from tests.factories import add_member, make_operator
from tests.support.oidc import set_user
from tests.support.routing import make_conversation, rows, set_values


async def online_member(engine: AsyncEngine, team_id: uuid.UUID, name: str, last_assigned: datetime) -> uuid.UUID:
    operator_id = await make_operator(engine, name, status="online", last_heartbeat_at=datetime.now(UTC))
    await add_member(engine, team_id, operator_id, "operator", last_assigned_at=last_assigned)
    return operator_id


async def routed(engine: AsyncEngine, conversation_id: str) -> tuple[str, uuid.UUID | None, str]:
    """Status, assignee and the policy of the newest decision."""
    [row] = await rows(
        engine,
        "SELECT c.status, c.assignee_id, d.policy FROM conversation c JOIN routing_decision d "
        "ON d.conversation_id = c.id WHERE c.id = :id ORDER BY d.id DESC LIMIT 1",
        id=conversation_id,
    )
    return row["status"], row["assignee_id"], row["policy"]


async def save(page: Page, form: str, method: str) -> int:
    """Submit a settings form; returns the API's status for it."""
    async with page.expect_response(lambda r: r.request.method == method and "/api/v1/" in r.url) as answer:
        await page.click(f"{form} button[type=submit]")
    return (await answer.value).status


async def rule_names(page: Page) -> list[str]:
    return await page.locator("#section-rules [data-name=name]").evaluate_all("(inputs) => inputs.map((i) => i.value)")


async def test_a_lead_changes_the_routing_policy_and_the_next_conversation_follows_it(
    settings: Settings, clean_db: AsyncEngine, oidc_issuer: str, browser: Browser
) -> None:
    settings, port, team_id = await lena_leads_the_default_team(settings, clean_db, oidc_issuer)
    await set_values(clean_db, "team", {"id": team_id}, routing_policy="least_busy")
    # Olga was assigned longest ago but is busier (2 of 5); Otto is idle but was assigned more recently.
    # So round robin picks Olga and least busy picks Otto.
    olga = await online_member(clean_db, team_id, "Olga", datetime(2020, 1, 1, tzinfo=UTC))
    otto = await online_member(clean_db, team_id, "Otto", datetime(2021, 1, 1, tzinfo=UTC))
    for _ in range(2):
        await make_conversation(clean_db, team_id, status="assigned", assignee_id=olga, assigned_at=datetime.now(UTC))
    await set_values(clean_db, "operator", {"id": olga}, open_conversations=2)

    async with run_api(settings, port=port) as api:
        first = await visitor_writes(api, settings, "v-first", "Hello?")
        assert await routed(clean_db, first) == ("assigned", otto, "least_busy")

        settings_page = f"{api.url}/app/teams/{team_id}"
        async with signed_in_page(browser, settings_page, "lena") as page:
            policy = page.locator("#section-settings select[name=routingPolicy]")
            await expect(policy).to_have_value("least_busy")
            await policy.select_option("round_robin")
            assert await save(page, "#section-settings form", "PATCH") == 200
            await page.reload()
            await expect(policy).to_have_value("round_robin")

        # Lena's tab made her online; her last tab closed, and the presence grace is over (as if 30 s passed).
        await set_values(clean_db, "operator", {"subject": "lena"}, status="offline")
        # Now Otto holds 1 of 5 and Olga 2 of 5: least busy would pick Otto again, round robin picks Olga.
        second = await visitor_writes(api, settings, "v-second", "Hello?")
        assert await routed(clean_db, second) == ("assigned", olga, "round_robin")


async def test_a_bridge_secret_is_never_shown_back_and_errors_sit_at_their_field(
    settings: Settings, clean_db: AsyncEngine, oidc_issuer: str, browser: Browser
) -> None:
    settings, port, team_id = await lena_leads_the_default_team(settings, clean_db, oidc_issuer)
    token = "123456:AAH-telegram-token-typed-in-the-browser"
    async with run_api(settings, port=port) as api:
        async with signed_in_page(browser, f"{api.url}/app/teams/{team_id}", "lena") as page:
            telegram = "#section-bridges form[data-bridge=telegram]"
            await expect(page.locator(f"{telegram} .configured[data-for='telegram.botToken']")).to_have_text("not set")

            # A bad chat id: the API's problem names the field, the page shows it there and saves nothing.
            await page.fill(f"{telegram} input[name='telegram.chatId']", "my group")
            await page.fill(f"{telegram} input[name='telegram.botToken']", token)
            assert await save(page, telegram, "PATCH") == 400
            error = page.locator(f"{telegram} .field-error")
            await expect(error).to_have_count(1)
            await expect(error).to_have_attribute("data-field", "telegram.chatId")
            await expect(page.locator(f"{telegram} input[name='telegram.chatId']")).to_have_attribute(
                "aria-invalid", "true"
            )

            await page.fill(f"{telegram} input[name='telegram.chatId']", "-1001234")
            await page.check(f"{telegram} input[name='telegram.enabled']")
            assert await save(page, telegram, "PATCH") == 200
            await expect(page.locator(f"{telegram} .configured[data-for='telegram.botToken']")).to_have_text(
                "configured"
            )
            await expect(page.locator(f"{telegram} .field-error")).to_have_count(0)
            await expect(page.locator(f"{telegram} input[name='telegram.botToken']")).to_have_value("")
            assert token not in await page.content()

            # An empty secret field keeps the stored secret while the rest changes.
            await page.fill(f"{telegram} input[name='telegram.chatId']", "-1009999")
            assert await save(page, telegram, "PATCH") == 200
            await expect(page.locator(f"{telegram} input[name='telegram.chatId']")).to_have_value("-1009999")
            response = await page.reload()
            assert response is not None and token not in await response.text()
            await expect(page.locator(f"{telegram} .configured[data-for='telegram.botToken']")).to_have_text(
                "configured"
            )
    [team] = await rows(clean_db, "SELECT bridge_settings FROM team WHERE id = :id", id=team_id)
    stored = team["bridge_settings"]
    assert (stored["telegram"]["chatId"], stored["telegram"]["enabled"]) == ("-1009999", True)
    assert bridge_secret(settings.secret_key, stored, "telegram", "botToken") == token
    assert token not in str(stored)


async def test_an_operator_who_leads_no_team_gets_403(
    settings: Settings, clean_db: AsyncEngine, oidc_issuer: str, browser: Browser
) -> None:
    settings, port, team_id = await lena_leads_the_default_team(settings, clean_db, oidc_issuer)
    await set_user(oidc_issuer, "olga", name="Olga", groups=["support"])
    async with run_api(settings, port=port) as api:
        async with signed_in_page(browser, f"{api.url}/app", "olga") as page:
            await expect(page.locator("header .nav a[href='/app/teams']")).to_have_count(0)
            for url in (f"{api.url}/app/teams/{team_id}", f"{api.url}/app/teams"):
                response = await page.goto(url)
                assert response is not None and response.status == 403
                await expect(page.locator("h1")).to_have_text("403")
    async with clean_db.connect() as conn:
        assert (await conn.execute(sa.text("SELECT role FROM team_member"))).scalars().all() == ["operator"]


async def test_a_lead_edits_rules_members_and_webhooks(
    settings: Settings, clean_db: AsyncEngine, oidc_issuer: str, browser: Browser
) -> None:
    settings, port, team_id = await lena_leads_the_default_team(settings, clean_db, oidc_issuer)
    olga = await online_member(clean_db, team_id, "Olga", datetime(2020, 1, 1, tzinfo=UTC))
    async with run_api(settings, port=port) as api:
        async with signed_in_page(browser, f"{api.url}/app/teams/{team_id}", "lena") as page:
            # Rules: two added, the second refused for one country (named at its field), fixed, moved first.
            rules = page.locator("#section-rules")
            for _ in range(2):
                await rules.locator("[data-rule-action=add]").click()
            german, vip = rules.locator("[data-rule]").nth(0), rules.locator("[data-rule]").nth(1)
            await german.locator("[data-name=name]").fill("German")
            await german.locator("[data-name='conditions.url']").fill("https://shop.example/de/*")
            await german.locator("[data-name='conditions.language']").fill("de")
            await vip.locator("[data-name=name]").fill("VIP")
            await vip.locator("[data-name='conditions.identity']").fill("email = *@bigcorp.com\nplan = gold")
            await vip.locator("[data-name='conditions.country']").fill("FR, France")
            await vip.locator("[data-name=requiredSkills]").fill("vip")
            assert await save(page, "#section-rules form", "PUT") == 400
            await expect(rules.locator(".field-error")).to_have_count(1)
            await expect(vip.locator(".field-error")).to_have_attribute("data-field", "rules.1.conditions.country.1")
            await vip.locator("[data-name='conditions.country']").fill("fr, be")
            await vip.locator("[data-rule-action=up]").click()
            assert await save(page, "#section-rules form", "PUT") == 200
            # Read back from the server: in the new order, the countries as the API stores them.
            await expect(rules.locator("[data-name='conditions.country']").first).to_have_value("FR, BE")
            assert await rule_names(page) == ["VIP", "German"]
            stored = await rows(
                clean_db, "SELECT name, conditions, required_skills FROM routing_rule ORDER BY position"
            )
            assert stored == [
                {
                    "name": "VIP",
                    "conditions": {"identity": {"email": "*@bigcorp.com", "plan": "gold"}, "country": ["FR", "BE"]},
                    "required_skills": ["vip"],
                },
                {
                    "name": "German",
                    "conditions": {"url": "https://shop.example/de/*", "language": ["de"]},
                    "required_skills": [],
                },
            ]
            await rules.locator("[data-rule]").nth(1).locator("[data-rule-action=remove]").click()
            assert await save(page, "#section-rules form", "PUT") == 200
            await expect(rules.locator("[data-rule]")).to_have_count(1)
            assert await rule_names(page) == ["VIP"]

            # Members: a bad capacity is named at its field; a good one and skills are saved.
            member = page.locator(f"[data-member='{olga}']")
            await member.locator("input[name=capacity]").fill("-1")
            assert await save(page, f"[data-member='{olga}'] form", "PATCH") == 400
            await expect(member.locator(".field-error")).to_have_attribute("data-field", "capacity")
            await member.locator("input[name=capacity]").fill("2")
            await member.locator("input[name=skills]").fill("Billing, vip")
            assert await save(page, f"[data-member='{olga}'] form", "PATCH") == 200
            await expect(member.locator(".member-head")).to_contain_text("0 open of 2")
            await expect(member.locator("input[name=skills]")).to_have_value("billing, vip")

            # Webhooks: the signing secret is shown once; a test delivery appears in the log; disable, delete.
            hooks = page.locator("#section-webhooks")
            await hooks.locator("input[name=url]").fill("http://127.0.0.1:9/hook")
            await hooks.locator("input[name=events][value='conversation.assigned']").check()
            assert await save(page, "#section-webhooks form.add", "POST") == 201
            secret = await page.locator("#webhook-secret [data-secret]").text_content()
            assert secret is not None and secret.startswith("whsec_")
            await expect(page.locator("#webhook-secret")).to_be_visible()
            webhook = hooks.locator("[data-webhook]")
            await expect(webhook.locator(".meta")).to_have_text("conversation.assigned")
            await webhook.locator("button:has-text('Send test')").click()
            await webhook.locator("button:has-text('Recent deliveries')").click()
            await expect(webhook.locator(".deliveries td").first).to_have_text("webhook.test")
            await webhook.locator("button:has-text('Disable')").click()
            await expect(webhook.locator(".status")).to_have_text("disabled")
            response = await page.reload()
            assert response is not None and secret not in await response.text()
            await webhook.locator("button:has-text('Delete')").click()
            await expect(hooks.locator(".webhooks")).to_contain_text("No webhooks yet.")
    assert await rows(clean_db, "SELECT capacity, skills FROM team_member WHERE operator_id = :id", id=olga) == [
        {"capacity": 2, "skills": ["billing", "vip"]}
    ]
    assert await rows(clean_db, "SELECT id FROM webhook_endpoint") == []


async def test_a_lead_sets_business_hours_sees_errors_at_their_field_and_clears_them(
    settings: Settings, clean_db: AsyncEngine, oidc_issuer: str, browser: Browser
) -> None:
    settings, port, team_id = await lena_leads_the_default_team(settings, clean_db, oidc_issuer)

    async def stored() -> object:
        [row] = await rows(clean_db, "SELECT business_hours FROM team WHERE id = :id", id=team_id)
        return row["business_hours"]

    async with run_api(settings, port=port) as api:
        async with signed_in_page(browser, f"{api.url}/app/teams/{team_id}", "lena") as page:
            form = "#section-settings form"
            zone = page.locator(f"{form} input[name='businessHours.timeZone']")
            monday = page.locator(f"{form} input[name='businessHours.weekly.mon']")
            await zone.fill("Mars/Olympus")
            await monday.fill("09:00-12:30, 13:30-17:30")
            assert await save(page, form, "PATCH") == 400
            error = page.locator(f"{form} .field-error")
            await expect(error).to_have_attribute("data-field", "businessHours.timeZone")
            await expect(zone).to_have_attribute("aria-invalid", "true")

            await zone.fill("Europe/Paris")
            assert await save(page, form, "PATCH") == 200
            assert await stored() == {
                "timeZone": "Europe/Paris",
                "weekly": {"mon": ["09:00-12:30", "13:30-17:30"]},
                "holidays": [],
            }
            await page.reload()
            await expect(monday).to_have_value("09:00-12:30, 13:30-17:30")

            # Every hours field empty: the team has no hours again (24/7).
            await zone.fill("")
            await monday.fill("")
            assert await save(page, form, "PATCH") == 200
            assert await stored() is None
