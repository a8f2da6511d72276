"""What an operator writes in a team's chat: replies to visitors and commands, attributed to their linked account.

The platform modules reduce a verified webhook to an ``Inbound``; ``handle`` acts on it and
returns what the bot answers (or None for nothing). Replies go through the operator reply
service, so a bridge reply is an operator reply like any other (claim, first response, AI
cancelled, widget and the other bridges told once, never echoed back to its source).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.ai import services as ai
from service.auth.principal import Principal, requires_team_member
from service.auth.services import load_principal
from service.bridges import links, outbound
from service.bridges.platforms import PlatformError
from service.bridges.registry import BridgeRegistry
from service.conversations.services import reply
from service.db.tables import conversation_t, member_t, message_t, operator_t, team_t, thread_t
from service.db.transactions import in_transaction
from service.errors import DomainError, Forbidden, NotFound, TooLarge, UnsupportedType
from service.files import services as files
from service.gateway.hub import SwitchboardPocketPing
from service.presence import services as presence
from service.queue import enqueue_drain
from service.routing import handoff
from service.settings import Settings

PLATFORM_NAMES = {"telegram": "Telegram", "discord": "Discord", "slack": "Slack"}
# The bridge message id columns of ``message``, by platform (a reply to a mirrored message names its conversation).
_BRIDGE_MESSAGE_ID = {
    "telegram": sa.cast(message_t.c.telegram_message_id, sa.Text),
    "discord": message_t.c.discord_message_id,
    "slack": message_t.c.slack_message_ts,
}
# "/claim", "/transfer@TeamBot @ana", and "!claim" (Slack takes every message starting with "/" for a slash command).
_COMMAND = re.compile(r"^[/!]([A-Za-z]+)(?:@\S+)?(?:\s+(.*))?$", re.DOTALL)
STATUS_LIMIT = 10

NOT_LINKED = (
    "Your {platform} account is not linked to a Switchboard operator. "
    "Get a link code on your Switchboard profile page (Chat accounts) and send /link CODE here."
)
NOT_LINKED_REPLY = "Nothing was sent to the visitor. " + NOT_LINKED
ASSIGNED_TO_OTHER = (
    "This conversation is assigned to {name}, so your message was not sent to the visitor. "
    "Ask them or a lead to transfer it to you."
)
NOT_SENT = "{reason}. Your message was not sent to the visitor."
NOT_IN_TEAM = "You are not a member of this team, so your message was not sent to the visitor."
NEEDS_THREAD = "Use /{command} in a conversation's thread."
BAD_CODE = "This link code is not valid or has expired; get a new one in Switchboard."
LINKED = "Linked: what this {platform} account writes here now counts as {name}'s."
HELP = (
    "Commands: /link CODE, /online, /away, /offline, /status; in a conversation's thread: "
    "/claim, /close, /transfer @operator, /ai. Anything else written in a thread goes to the visitor."
)


FILE_REFUSED = "{reason} (this team accepts {accepted}). Nothing was sent to the visitor."
FILE_NOT_FETCHED = "Your file could not be fetched from {platform}. Nothing was sent to the visitor."


@dataclass(frozen=True)
class InboundFile:
    """A file on a platform message: ``ref`` is what the team's bot downloads it by (Telegram file_id, Slack
    url_private, Discord attachment URL); name and type as the platform gives them (the bytes decide)."""

    ref: str
    filename: str
    mime_type: str


@dataclass(frozen=True)
class Inbound:
    """One message or command from a chat platform, as Switchboard acts on it."""

    team_id: uuid.UUID
    platform: str
    user_id: str
    user_name: str | None
    text: str
    # Where it was written: the Telegram topic, Slack thread ts or Discord thread (channel) id, if any.
    thread_ref: str | None = None
    # The platform message it replies to (Telegram), which may name the conversation instead.
    reply_to_ref: str | None = None
    # Set when it came from a direct chat with the bot (stored with a /link, for notifications).
    direct_chat_id: str | None = None
    # Where the bot answers: the chat or channel it was written in, and the message itself.
    chat_id: str | None = None
    message_ref: str | None = None
    # Unique per platform message: a re-delivered webhook sends the visitor nothing twice.
    delivery_key: str | None = None
    # A Discord /reply: the text is for the visitor even if it starts with "/".
    is_reply: bool = False
    # The files on the message, for the visitor too.
    files: tuple[InboundFile, ...] = ()


@dataclass(frozen=True)
class Bridges:
    """What handling needs from the app."""

    engine: AsyncEngine
    redis: ArqRedis
    settings: Settings
    pocketping: SwitchboardPocketPing
    registry: BridgeRegistry


async def handle(bridges: Bridges, inbound: Inbound) -> str | None:
    """Act on the message; returns the bot's answer for the sender, or None when there is nothing to say."""
    command = None if inbound.is_reply else _COMMAND.match(inbound.text.strip())
    if command is not None:
        name, argument = command.group(1).lower(), (command.group(2) or "").strip()
        if name == "link":
            return await _link(bridges, inbound, argument)
        if name in ("help", "start"):
            return HELP
        if name not in COMMANDS:
            return f"Unknown command /{name}. {HELP}"
    async with bridges.engine.connect() as conn:
        operator_id = await links.linked_operator(conn, inbound.platform, inbound.user_id)
        principal = None if operator_id is None else await load_principal(conn, operator_id, "bridge")
        conversation_id = await _conversation_of(conn, inbound)
    if principal is None:
        if command is None and conversation_id is None and not inbound.is_reply:
            return None  # chatter outside any conversation, from someone the bot does not know
        return (NOT_LINKED if command else NOT_LINKED_REPLY).format(platform=PLATFORM_NAMES[inbound.platform])
    if command is None:
        if conversation_id is not None:
            return await _reply(bridges, inbound, principal, conversation_id)
        if inbound.is_reply:
            return NEEDS_THREAD.format(command="reply")
        return HELP if inbound.direct_chat_id is not None else None
    run, needs_thread = COMMANDS[name]
    if needs_thread and conversation_id is None:
        return NEEDS_THREAD.format(command=name)
    try:
        return await run(bridges, inbound, principal, conversation_id, argument)
    except DomainError as exc:
        return f"{_as_yours(exc.detail)}."


# --- Finding the conversation ---------------------------------------------------------------------------------


async def _conversation_of(conn: AsyncConnection, inbound: Inbound) -> str | None:
    """The team's conversation of the thread, else of the mirrored message replied to (not from a DM)."""
    if inbound.thread_ref is not None:
        found = await conn.scalar(
            sa.select(thread_t.c.conversation_id).where(
                thread_t.c.team_id == inbound.team_id,
                thread_t.c.platform == inbound.platform,
                thread_t.c.thread_ref == inbound.thread_ref,
            )
        )
        if found is not None:
            return str(found)
    # Platform message ids are unique per chat: one replied to in a DM is not the team chat's.
    if inbound.reply_to_ref is None or inbound.direct_chat_id is not None:
        return None
    return await conn.scalar(  # type: ignore[no-any-return]
        sa.select(message_t.c.conversation_id)
        .select_from(message_t.join(conversation_t, conversation_t.c.id == message_t.c.conversation_id))
        .where(
            conversation_t.c.team_id == inbound.team_id, _BRIDGE_MESSAGE_ID[inbound.platform] == inbound.reply_to_ref
        )
        .order_by(message_t.c.seq.desc())
        .limit(1)
    )


async def _holder(conn: AsyncConnection, conversation_id: str) -> Any:
    """The conversation's team, status and assignee (with name)."""
    return (
        await conn.execute(
            sa.select(
                conversation_t.c.team_id,
                conversation_t.c.status,
                conversation_t.c.assignee_id,
                operator_t.c.display_name.label("assignee_name"),
            )
            .select_from(conversation_t.outerjoin(operator_t, operator_t.c.id == conversation_t.c.assignee_id))
            .where(conversation_t.c.id == conversation_id)
        )
    ).one()


# --- Replies --------------------------------------------------------------------------------------------------


async def _reply(bridges: Bridges, inbound: Inbound, principal: Principal, conversation_id: str) -> str | None:
    """Send the text to the visitor as the operator: the assignee's reply, or a claim of a waiting conversation."""
    async with bridges.engine.connect() as conn:
        before = await _holder(conn, conversation_id)
    if not principal.is_member(before.team_id):
        return NOT_IN_TEAM
    if before.status == "assigned" and before.assignee_id != principal.operator_id:
        return ASSIGNED_TO_OTHER.format(name=before.assignee_name)
    key = None if inbound.delivery_key is None else f"{inbound.platform}:{inbound.delivery_key}"
    try:
        attachment_ids = await _keep_files(bridges, inbound, principal, conversation_id)
    except PlatformError:
        return FILE_NOT_FETCHED.format(platform=PLATFORM_NAMES[inbound.platform])
    except (TooLarge, UnsupportedType) as exc:  # not a type or size the team accepts
        return FILE_REFUSED.format(reason=exc.detail.rstrip("."), accepted=exc.message.removeprefix("one of "))
    except DomainError as exc:  # an empty file, a name with nothing printable
        return NOT_SENT.format(reason=exc.detail.rstrip("."))
    try:
        await reply(
            bridges.engine,
            bridges.pocketping,
            principal,
            conversation_id,
            inbound.text,
            key,
            attachment_ids=attachment_ids,
            source_bridge=inbound.platform,
            lead_steps_in=False,
        )
    except Forbidden:  # someone else claimed it meanwhile
        async with bridges.engine.connect() as conn:
            return ASSIGNED_TO_OTHER.format(name=(await _holder(conn, conversation_id)).assignee_name)
    except NotFound:
        return NOT_IN_TEAM
    except DomainError as exc:  # closed, at capacity
        return NOT_SENT.format(reason=_as_yours(exc.detail))
    if before.assignee_id != principal.operator_id and before.status in ("new", "queued"):
        return "You claimed this conversation; your message was sent to the visitor."
    return "Sent to the visitor." if inbound.is_reply else None


async def _keep_files(bridges: Bridges, inbound: Inbound, principal: Principal, conversation_id: str) -> list[str]:
    """Download the message's files with the team's bot and keep them under the team's limits; their ids.

    All or none: when one is refused, those kept before it are deleted again.
    """
    if not inbound.files:
        return []
    async with bridges.engine.connect() as conn:
        team = await outbound.team_bridges(conn, bridges.registry, inbound.team_id)
    bridge = team.bridges.get(inbound.platform)
    if bridge is None:
        raise PlatformError(f"{inbound.platform}: not enabled for this team")
    kept: list[str] = []
    try:
        for found in inbound.files:
            data = await bridge.download(found.ref, files.MAX_UPLOAD_BYTES)
            attachment = await files.store_file(
                bridges.engine,
                bridges.registry.files,
                conversation_id,
                found.filename,
                found.mime_type,
                data,
                source=inbound.platform,
                operator_id=principal.operator_id,
                bridge_file_id=found.ref[:255],
            )
            kept.append(attachment.id)
    except BaseException:
        await files.forget(bridges.engine, bridges.registry.files, kept)
        raise
    return kept


def _as_yours(detail: str) -> str:
    """The routing service speaks of "that operator"; here the operator is the reader."""
    return detail.replace("That operator is", "You are").rstrip(".")


# --- Commands -------------------------------------------------------------------------------------------------

Command = Callable[[Bridges, Inbound, Principal, str | None, str], Awaitable[str | None]]


async def _link(bridges: Bridges, inbound: Inbound, code: str) -> str:
    operator_id = await links.take_link_code(bridges.redis, bridges.settings, code) if code else None
    if operator_id is None:
        return BAD_CODE

    async def work(conn: AsyncConnection) -> str | None:
        linked = await links.link_account(
            conn, operator_id, inbound.platform, inbound.user_id, inbound.user_name, inbound.direct_chat_id
        )
        if not linked:
            return None
        return await conn.scalar(sa.select(operator_t.c.display_name).where(operator_t.c.id == operator_id))

    name = await in_transaction(bridges.engine, work)
    if name is None:
        return BAD_CODE
    return LINKED.format(platform=PLATFORM_NAMES[inbound.platform], name=name)


def _presence(status: str) -> Command:
    async def run(bridges: Bridges, inbound: Inbound, principal: Principal, _: str | None, __: str) -> str:
        # The chat account is one of the operator's clients: /online keeps it online until /offline.
        client = presence.ClientRef(f"{inbound.platform}:{inbound.user_id}"[:100], "bridge")
        timeout = bridges.settings.presence_heartbeat_timeout_seconds
        change = await in_transaction(
            bridges.engine,
            lambda conn: presence.choose(
                conn, principal.operator_id, status, client=client, lease=timeout, reason=f"{inbound.platform}_command"
            ),
        )
        for team_id in change.drain_teams:
            await enqueue_drain(bridges.redis, team_id, "operator_online")
        return f"You are now {status}." if change.changed else f"You are already {status}."

    return run


async def _status(bridges: Bridges, inbound: Inbound, principal: Principal, _: str | None, __: str) -> str:
    """Your presence, your open conversations and the waiting queue of this chat's team."""
    async with bridges.engine.connect() as conn:
        state = await presence.current(conn, principal.operator_id)
        mine = (
            await conn.execute(
                sa.select(conversation_t.c.id, conversation_t.c.visitor_id, conversation_t.c.identity)
                .where(conversation_t.c.assignee_id == principal.operator_id, conversation_t.c.status == "assigned")
                .order_by(conversation_t.c.last_activity.desc())
                .limit(STATUS_LIMIT + 1)
            )
        ).all()
        queued = await conn.scalar(
            sa.select(sa.func.count()).where(
                conversation_t.c.team_id == inbound.team_id, conversation_t.c.status == "queued"
            )
        )
        team_name = await conn.scalar(sa.select(team_t.c.name).where(team_t.c.id == inbound.team_id))
    count = str(len(mine)) if len(mine) <= STATUS_LIMIT else f"more than {STATUS_LIMIT}"
    lines = [f"You are {state.status}.", f"Your open conversations: {count}"]
    lines += [f"• {_visitor_label(row)} ({row.id})" for row in mine[:STATUS_LIMIT]]
    lines.append(f"Waiting in the {team_name} queue: {queued}")
    return "\n".join(lines)


def _visitor_label(row: Any) -> str:
    identity = row.identity or {}
    return str(identity.get("name") or identity.get("email") or row.visitor_id)


async def _in_team(conn: AsyncConnection, principal: Principal, conversation_id: str) -> uuid.UUID | None:
    """Commands act on conversations of the operator's teams, as in the API (404 for others); returns the team."""
    team_id = await conn.scalar(
        sa.select(conversation_t.c.team_id).where(conversation_t.c.id == conversation_id).with_for_update()
    )
    requires_team_member(principal, team_id)
    return team_id  # type: ignore[no-any-return]


async def _claim(bridges: Bridges, inbound: Inbound, principal: Principal, conversation_id: str | None, _: str) -> str:
    assert conversation_id is not None
    me = principal.operator_id

    async def work(conn: AsyncConnection) -> None:
        await _in_team(conn, principal, conversation_id)
        await handoff.claim(conn, conversation_id, me, actor_id=me)

    await in_transaction(bridges.engine, work)
    return "You now hold this conversation."


async def _close(bridges: Bridges, inbound: Inbound, principal: Principal, conversation_id: str | None, _: str) -> str:
    assert conversation_id is not None

    async def work(conn: AsyncConnection) -> None:
        await _in_team(conn, principal, conversation_id)
        await handoff.close_conversation(conn, conversation_id, actor_id=principal.operator_id)

    await in_transaction(bridges.engine, work)
    return "Conversation closed."


async def _transfer(
    bridges: Bridges, inbound: Inbound, principal: Principal, conversation_id: str | None, argument: str
) -> str:
    """``/transfer @handle [note]``: the handle is a team member's email local part or display name without spaces."""
    assert conversation_id is not None
    handle, _, note = argument.partition(" ")
    handle = handle.removeprefix("@").lower()
    if not handle:
        return "Name the operator: /transfer @handle (their email before the @, or their name without spaces)."

    async def work(conn: AsyncConnection) -> str:
        team_id = await _in_team(conn, principal, conversation_id)
        matches = (
            await conn.execute(
                sa.select(operator_t.c.id, operator_t.c.display_name)
                .select_from(member_t.join(operator_t, operator_t.c.id == member_t.c.operator_id))
                .where(
                    member_t.c.team_id == team_id,
                    operator_t.c.deactivated_at.is_(None),
                    sa.or_(
                        sa.func.lower(sa.func.split_part(operator_t.c.email, "@", 1)) == handle,
                        sa.func.lower(sa.func.replace(operator_t.c.display_name, " ", "")) == handle,
                    ),
                )
            )
        ).all()
        if len(matches) != 1:
            return (
                f"No single member of this team is @{handle}." if matches else f"No member of this team is @{handle}."
            )
        [target] = matches
        await handoff.transfer_to_operator(
            conn, conversation_id, target.id, actor_id=principal.operator_id, note=note.strip() or None
        )
        return f"Transferred to {target.display_name}."

    return await in_transaction(bridges.engine, work)


async def _hand_to_ai(
    bridges: Bridges, inbound: Inbound, principal: Principal, conversation_id: str | None, _: str
) -> str:
    assert conversation_id is not None

    async def work(conn: AsyncConnection) -> None:
        await _in_team(conn, principal, conversation_id)
        await ai.control(conn, conversation_id, "handover", actor_id=principal.operator_id)

    await in_transaction(bridges.engine, work)
    await bridges.pocketping.announce_takeover(conversation_id, "handover")
    return "The AI answers this conversation now."


# name -> (what it does, whether it needs a conversation's thread)
COMMANDS: dict[str, tuple[Command, bool]] = {
    "online": (_presence("online"), False),
    "away": (_presence("away"), False),
    "offline": (_presence("offline"), False),
    "status": (_status, False),
    "claim": (_claim, True),
    "close": (_close, True),
    "transfer": (_transfer, True),
    "ai": (_hand_to_ai, True),
}
