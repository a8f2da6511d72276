"""The same cases against the SDK's MemoryStorage (the reference) and our PostgresStorage."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from pocketping.models import (
    Attachment,
    AttachmentStatus,
    Message,
    MessageStatus,
    Sender,
    Session,
    SessionCsat,
    SessionMetadata,
    UserIdentity,
)
from pocketping.storage import BridgeMessageIds, MemoryStorage, Storage
from sqlalchemy.ext.asyncio import AsyncEngine

from service.gateway.storage import PostgresStorage

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "postgres"])
async def storage(request: pytest.FixtureRequest, clean_db: AsyncEngine) -> AsyncIterator[Storage]:
    yield MemoryStorage() if request.param == "memory" else PostgresStorage(clean_db)


def reference_bug(request: pytest.FixtureRequest, why: str) -> None:
    """Where the reference is wrong, it must fail (strict xfail) and ours must pass."""
    if "memory" in request.node.callspec.id:
        request.node.add_marker(pytest.mark.xfail(reason=f"MemoryStorage: {why}", strict=True))


def make_session(visitor: str = "visitor-1", *, at: datetime = T0, **extra: object) -> Session:
    return Session(id=f"s-{uuid.uuid4().hex[:10]}", visitor_id=visitor, created_at=at, last_activity=at, **extra)


def make_message(session: Session, n: int, sender: Sender = Sender.VISITOR) -> Message:
    return Message(
        id=f"m-{uuid.uuid4().hex[:10]}",
        session_id=session.id,
        content=f"message {n}",
        sender=sender,
        timestamp=T0 + timedelta(seconds=n),
    )


async def test_session_round_trip_keeps_every_field(storage: Storage) -> None:
    session = make_session(
        metadata=SessionMetadata(url="https://shop.example/cart", language="fr", country="FR", ip="203.0.113.9"),
        identity=UserIdentity(id="u-1", email="ana@example.com", name="Ana", plan="pro"),
        user_phone="+33612345678",
        user_phone_country="FR",
        csat=SessionCsat(pending=True, requested_at=T0),
    )
    await storage.create_session(session)
    loaded = await storage.get_session(session.id)
    assert loaded is not None
    assert loaded.model_dump() == session.model_dump()


async def test_unknown_session_is_none(storage: Storage) -> None:
    assert await storage.get_session("nope") is None
    assert await storage.get_session_by_visitor_id("nobody") is None


async def test_update_session(storage: Storage) -> None:
    session = make_session()
    await storage.create_session(session)
    session.ai_active = True
    session.last_activity = T0 + timedelta(minutes=5)
    session.identity = UserIdentity(id="u-2", name="Bo")
    await storage.update_session(session)
    loaded = await storage.get_session(session.id)
    assert loaded is not None
    assert loaded.ai_active is True
    assert loaded.last_activity == T0 + timedelta(minutes=5)
    assert loaded.identity is not None and loaded.identity.name == "Bo"


async def test_session_by_visitor_is_the_most_recently_active(storage: Storage) -> None:
    older = make_session("v", at=T0)
    newer = make_session("v", at=T0 + timedelta(hours=1))
    other = make_session("w", at=T0 + timedelta(hours=2))
    for session in (newer, older, other):
        await storage.create_session(session)
    found = await storage.get_session_by_visitor_id("v")
    assert found is not None and found.id == newer.id


async def test_delete_session_removes_its_messages(storage: Storage) -> None:
    session = make_session()
    await storage.create_session(session)
    await storage.save_message(make_message(session, 1))
    await storage.delete_session(session.id)
    assert await storage.get_session(session.id) is None
    assert await storage.get_messages(session.id) == []


async def test_deleted_session_message_is_gone_by_id(storage: Storage, request: pytest.FixtureRequest) -> None:
    reference_bug(request, "delete_session leaves messages reachable by id")
    session = make_session()
    await storage.create_session(session)
    message = make_message(session, 1)
    await storage.save_message(message)
    await storage.delete_session(session.id)
    assert await storage.get_message(message.id) is None


async def test_list_sessions_since(storage: Storage) -> None:
    early = make_session("a", at=T0)
    late = make_session("b", at=T0 + timedelta(days=2))
    await storage.create_session(early)
    await storage.create_session(late)
    assert {s.id for s in await storage.list_sessions()} == {early.id, late.id}
    assert [s.id for s in await storage.list_sessions(since=T0 + timedelta(days=1))] == [late.id]


async def test_messages_in_order_with_after_and_limit(storage: Storage) -> None:
    session = make_session()
    await storage.create_session(session)
    messages = [make_message(session, n, Sender.VISITOR if n % 2 else Sender.OPERATOR) for n in range(1, 8)]
    for message in messages:
        await storage.save_message(message)
    assert [m.id for m in await storage.get_messages(session.id)] == [m.id for m in messages]
    page = await storage.get_messages(session.id, after=messages[2].id, limit=2)
    assert [m.id for m in page] == [messages[3].id, messages[4].id]
    # An unknown cursor pages from the start, as the reference does.
    assert len(await storage.get_messages(session.id, after="unknown")) == 7
    loaded = await storage.get_message(messages[1].id)
    assert loaded is not None
    assert loaded.model_dump() == messages[1].model_dump()


async def test_without_a_cursor_the_latest_messages_oldest_first(
    storage: Storage, request: pytest.FixtureRequest
) -> None:
    reference_bug(request, "the oldest messages, which the SDK's connect hands the widget as its whole history")
    session = make_session()
    await storage.create_session(session)
    messages = [make_message(session, n) for n in range(1, 8)]
    for message in messages:
        await storage.save_message(message)
    assert [m.id for m in await storage.get_messages(session.id, limit=3)] == [m.id for m in messages[4:]]


async def test_a_timestamp_cursor_pages_through_what_changed_after_it(
    storage: Storage, request: pytest.FixtureRequest
) -> None:
    reference_bug(request, "the widget's ISO timestamp is taken for an unknown id: every message from the start")
    session = make_session()
    await storage.create_session(session)
    messages = [make_message(session, n) for n in range(1, 8)]  # created at T0 + n s
    messages[0].read_at = T0 + timedelta(seconds=5, milliseconds=500)  # read after #5 was created
    for message in messages:
        await storage.save_message(message)
    after = (T0 + timedelta(seconds=4)).isoformat().replace("+00:00", "Z")  # as the widget writes it
    page = await storage.get_messages(session.id, after=after, limit=2)
    assert [m.id for m in page] == [messages[4].id, messages[0].id]
    # The next poll starts from the latest time the page holds, and goes on from there.
    page = await storage.get_messages(session.id, after="2026-01-01T12:00:05.500Z", limit=2)
    assert [m.id for m in page] == [messages[5].id, messages[6].id]
    assert await storage.get_messages(session.id, after="2026-01-01T12:00:07Z") == []
    # Without a zone, UTC.
    assert [m.id for m in await storage.get_messages(session.id, after="2026-01-01T12:00:06")] == [messages[6].id]


async def test_resaving_a_message_updates_it_in_place(storage: Storage, request: pytest.FixtureRequest) -> None:
    reference_bug(request, "save_message appends, so a re-save (read receipt) duplicates the message")
    session = make_session()
    await storage.create_session(session)
    message = make_message(session, 1)
    await storage.save_message(message)
    message.status = MessageStatus.READ
    message.read_at = T0 + timedelta(seconds=30)
    await storage.save_message(message)
    await storage.save_message(message)
    stored = await storage.get_messages(session.id)
    assert len(stored) == 1
    assert stored[0].status is MessageStatus.READ
    assert stored[0].read_at == T0 + timedelta(seconds=30)


async def test_update_message_edits_and_soft_deletes(storage: Storage) -> None:
    session = make_session()
    await storage.create_session(session)
    message = make_message(session, 1)
    await storage.save_message(message)
    message.content = "edited"
    message.edited_at = T0 + timedelta(minutes=1)
    await storage.update_message(message)
    message.deleted_at = T0 + timedelta(minutes=2)
    await storage.update_message(message)
    loaded = await storage.get_message(message.id)
    assert loaded is not None
    assert (loaded.content, loaded.edited_at, loaded.deleted_at) == (
        "edited",
        T0 + timedelta(minutes=1),
        T0 + timedelta(minutes=2),
    )
    assert len(await storage.get_messages(session.id)) == 1


async def test_bridge_message_ids_merge(storage: Storage) -> None:
    session = make_session()
    await storage.create_session(session)
    message = make_message(session, 1)
    await storage.save_message(message)
    assert await storage.get_bridge_message_ids(message.id) is None
    await storage.save_bridge_message_ids(message.id, BridgeMessageIds(telegram_message_id=42))
    await storage.save_bridge_message_ids(message.id, BridgeMessageIds(slack_message_ts="1700000000.0001"))
    assert await storage.get_bridge_message_ids(message.id) == BridgeMessageIds(
        telegram_message_id=42, discord_message_id=None, slack_message_ts="1700000000.0001"
    )


async def test_attachments_are_saved_linked_and_hydrated(storage: Storage) -> None:
    session = make_session()
    await storage.create_session(session)
    pending = Attachment(
        id="att-1",
        filename="cart.png",
        mime_type="image/png",
        size=2048,
        url="https://files/att-1",
        status=AttachmentStatus.PENDING,
        created_at=T0,
    )
    await storage.save_attachment(pending)
    assert (await storage.get_attachment("att-1")) == pending
    message = make_message(session, 1)
    # The SDK links the upload before saving the message.
    linked = pending.model_copy(update={"message_id": message.id, "status": AttachmentStatus.READY})
    await storage.update_attachment(linked)
    await storage.save_message(message)
    assert [a.id for a in await storage.get_message_attachments(message.id)] == ["att-1"]
    loaded = await storage.get_message(message.id)
    assert loaded is not None and loaded.attachments is not None
    assert [(a.id, a.status) for a in loaded.attachments] == [("att-1", AttachmentStatus.READY)]
    assert await storage.get_attachment("missing") is None


async def test_cleanup_old_sessions(storage: Storage) -> None:
    stale = make_session("a", at=T0)
    fresh = make_session("b", at=T0 + timedelta(days=10))
    await storage.create_session(stale)
    await storage.create_session(fresh)
    assert await storage.cleanup_old_sessions(T0 + timedelta(days=1)) == 1
    assert await storage.get_session(stale.id) is None
    assert await storage.get_session(fresh.id) is not None
