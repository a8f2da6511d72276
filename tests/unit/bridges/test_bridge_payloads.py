"""Platform payloads reduced to what Switchboard acts on: sender, text, thread, where to answer."""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from service.bridges.payloads import discord_inbound, slack_command_inbound, slack_event_inbound, telegram_inbound
from tests.support.bridges import discord_command, telegram_message

TEAM = uuid.UUID(int=1)


def test_telegram_topic_reply_direct_message_and_ignored_updates() -> None:
    update = telegram_message(7001, "We ship to Lyon", topic=42, message_id=9, reply_to_message={"message_id": 5})
    found = telegram_inbound(TEAM, update)
    assert found is not None
    assert (found.user_id, found.user_name, found.text, found.thread_ref, found.reply_to_ref) == (
        "7001",
        "user7001",
        "We ship to Lyon",
        "42",
        "5",
    )
    assert (found.chat_id, found.message_ref, found.direct_chat_id, found.delivery_key) == (
        "-1001234567890",
        "9",
        None,
        "-1001234567890:9",
    )
    # A command in a topic keeps its topic (PocketPing's handler skips commands; we do not).
    command = telegram_inbound(TEAM, telegram_message(7001, "/claim@TeamBot", topic=42))
    assert command is not None and (command.text, command.thread_ref) == ("/claim@TeamBot", "42")
    direct = telegram_inbound(TEAM, telegram_message(7001, "/link ABC", private=True))
    assert direct is not None and (direct.direct_chat_id, direct.thread_ref) == ("7001", None)
    # A photo with a caption: the caption is the text, and nothing is downloaded.
    photo = telegram_message(7001, "", topic=42, caption="see this", photo=[{"file_id": "f", "file_size": 1}])
    assert (found := telegram_inbound(TEAM, photo)) is not None and found.text == "see this"
    bot = telegram_message(7001, "hi", topic=42)
    bot["message"]["from"]["is_bot"] = True
    assert telegram_inbound(TEAM, bot) is None
    assert telegram_inbound(TEAM, {"update_id": 1, "edited_message": {"text": "x"}}) is None
    assert telegram_inbound(TEAM, {"update_id": 1}) is None


def test_slack_events_and_slash_commands() -> None:
    event = {
        "type": "event_callback",
        "event_id": "Ev1",
        "event": {"type": "message", "user": "U1", "text": "!claim", "channel": "C1", "ts": "2.0", "thread_ts": "1.0"},
    }
    found = slack_event_inbound(TEAM, event)
    assert found is not None
    assert (found.user_id, found.text, found.thread_ref, found.chat_id, found.delivery_key) == (
        "U1",
        "!claim",
        "1.0",
        "C1",
        "Ev1",
    )
    for ignored in ({"subtype": "message_changed"}, {"bot_id": "B1"}, {"type": "reaction_added"}):
        assert slack_event_inbound(TEAM, {**event, "event": {**event["event"], **ignored}}) is None

    def command(name: str, text: str, channel: str = "C1") -> bytes:
        return urlencode({"command": name, "text": text, "user_id": "U1", "channel_id": channel}).encode()

    assert (c := slack_command_inbound(TEAM, command("/online", ""))) is not None and c.text == "/online"
    assert (c := slack_command_inbound(TEAM, command("/link", "ab cd", "D9"))) is not None
    assert (c.text, c.direct_chat_id) == ("/link ab cd", "D9")
    assert (c := slack_command_inbound(TEAM, command("/switchboard", "status"))) is not None and c.text == "/status"
    assert (c := slack_command_inbound(TEAM, command("/switchboard", ""))) is not None and c.text == "/help"


def test_discord_reply_and_commands() -> None:
    reply = discord_inbound(TEAM, discord_command("2001", "reply", ("message", "/not a command"), channel_id="3001"))
    assert reply is not None
    assert (reply.text, reply.is_reply, reply.thread_ref, reply.user_id, reply.direct_chat_id) == (
        "/not a command",
        True,
        "3001",
        "2001",
        None,
    )
    transfer = discord_inbound(TEAM, discord_command("2001", "transfer", ("operator", "@ben"), ("note", "VIP")))
    assert transfer is not None and (transfer.text, transfer.is_reply) == ("/transfer @ben VIP", False)
    dm = discord_inbound(TEAM, discord_command("2001", "link", ("code", "X"), channel_id="4001", dm=True))
    assert dm is not None and (dm.text, dm.direct_chat_id) == ("/link X", "4001")
    assert discord_inbound(TEAM, {"type": 3, "data": {"name": "x"}}) is None
