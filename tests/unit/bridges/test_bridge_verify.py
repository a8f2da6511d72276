"""Webhook authenticity checks, against signatures made the way each platform makes them."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from service.bridges.verify import discord_genuine, slack_genuine, slack_signature, telegram_genuine

BODY = b'{"type":"event_callback"}'


def test_telegram_secret_token() -> None:
    secret = "tg-secret-0123456789"
    assert telegram_genuine(secret, {"x-telegram-bot-api-secret-token": secret})
    assert not telegram_genuine(secret, {"x-telegram-bot-api-secret-token": secret + "x"})
    assert not telegram_genuine(secret, {})
    assert not telegram_genuine(None, {"x-telegram-bot-api-secret-token": ""})


def test_slack_v0_signature_and_its_five_minute_window() -> None:
    secret, now = "slack-signing-secret", 1_800_000_000
    # Slack's documented example (api.slack.com/authentication/verifying-requests-from-slack).
    example = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
        b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
        b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    assert slack_signature("8f742231b10e8888abcd99yyyzzz85a5", "1531420618", example) == (
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    )

    def headers(ts: int, signature: str | None = None) -> dict[str, str]:
        return {
            "x-slack-request-timestamp": str(ts),
            "x-slack-signature": signature or slack_signature(secret, str(ts), BODY),
        }

    assert slack_genuine(secret, headers(now), BODY, now=now)
    assert slack_genuine(secret, headers(now - 300), BODY, now=now)
    assert not slack_genuine(secret, headers(now - 301), BODY, now=now)
    assert not slack_genuine(secret, headers(now + 301), BODY, now=now)
    assert not slack_genuine(secret, headers(now), BODY + b" ", now=now)
    assert not slack_genuine("another-secret", headers(now), BODY, now=now)
    assert not slack_genuine(secret, {"x-slack-request-timestamp": "soon", "x-slack-signature": "v0=00"}, BODY)
    assert not slack_genuine(secret, {}, BODY)
    assert not slack_genuine(None, headers(now), BODY, now=now)


def test_discord_ed25519() -> None:
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    timestamp = "1800000000"
    signature = key.sign(timestamp.encode() + BODY).hex()
    good = {"x-signature-ed25519": signature, "x-signature-timestamp": timestamp}
    assert discord_genuine(public, good, BODY)
    assert not discord_genuine(public, good, BODY + b" ")
    assert not discord_genuine(public, {**good, "x-signature-timestamp": "1800000001"}, BODY)
    assert not discord_genuine(public, {**good, "x-signature-ed25519": "zz"}, BODY)
    other = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    assert not discord_genuine(other, good, BODY)
    assert not discord_genuine(public, {}, BODY)
    assert not discord_genuine(None, good, BODY)
