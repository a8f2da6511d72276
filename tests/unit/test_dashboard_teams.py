"""The team settings page's views: bridge forms from the API's schemas, rule conditions as editable lines."""

from __future__ import annotations

from service.dashboard.teams import bridge_forms, field_lines
from service.teams.schemas import BridgesPublic, TelegramPublic


def test_bridge_forms_follow_the_schemas_and_carry_no_secret() -> None:
    stored = BridgesPublic(telegram=TelegramPublic(enabled=True, chat_id="-1001", bot_token_configured=True))
    forms = {form.name: {f.name: (f.kind, f.value) for f in form.fields} for form in bridge_forms(stored)}
    assert forms["telegram"] == {"enabled": ("bool", True), "chatId": ("text", "-1001"), "botToken": ("secret", True)}
    # Not configured: the public key is a setting, the two Slack credentials are secrets.
    assert forms["discord"]["publicKey"] == ("text", None)
    assert forms["discord"]["botToken"] == ("secret", False)
    assert (forms["slack"]["botToken"], forms["slack"]["signingSecret"]) == (("secret", False), ("secret", False))
    labels = [f.label for f in bridge_forms(stored)[0].fields]
    assert labels == ["Enabled", "Chat ID", "Bot token"]


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
