"""The team settings page's views: bridge forms from the API's schemas, rule conditions as editable lines."""

from __future__ import annotations

from service.dashboard.teams import bridge_forms, field_lines
from service.teams.schemas import BridgesPublic, TelegramPublic


def test_bridge_forms_follow_the_schemas_and_carry_no_secret() -> None:
    telegram = TelegramPublic(enabled=True, chat_id="-1001", bot_token_configured=True, webhook_secret_configured=False)
    forms = {
        form.name: {f.name: (f.kind, f.value) for f in form.fields}
        for form in bridge_forms(BridgesPublic(telegram=telegram))
    }
    assert forms["telegram"] == {
        "enabled": ("bool", True),
        "chatId": ("text", "-1001"),
        "botToken": ("secret", True),
        "webhookSecret": ("secret", False),
    }
    # Not configured: the public key is a setting, the two Slack credentials are secrets.
    assert forms["discord"]["publicKey"] == ("text", None)
    assert forms["discord"]["botToken"] == ("secret", False)
    assert (forms["slack"]["botToken"], forms["slack"]["signingSecret"]) == (("secret", False), ("secret", False))
    [telegram_form, _, slack_form] = bridge_forms(BridgesPublic())
    assert [(f.label, f.hint) for f in telegram_form.fields][1:] == [
        ("Chat ID", "The group (forum) the team's conversations go to"),
        ("Bot token", None),
        ("Webhook secret", "the secret_token given to Telegram's setWebhook; inbound updates without it get 401"),
    ]
    assert slack_form.fields[2].hint == "xoxb-..."


def test_field_lines_quote_what_would_read_back_as_another_type() -> None:
    values = {"email": "*@bigcorp.com", "plan": "true", "age": 30, "vip": True, "code": "42", "pad": " x", "q": '"a"'}
    assert field_lines(values).split("\n") == [
        "email = *@bigcorp.com",
        'plan = "true"',
        "age = 30",
        "vip = true",
        'code = "42"',
        'pad = " x"',
        'q = "\\"a\\""',
    ]
    assert field_lines(None) == ""
