"""``switchboard import pocketping``: a user's own PocketPing storage, loaded once however often it runs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import sqlalchemy as sa
from pocketping.models import Attachment, Message, Sender, Session
from pocketping.storage import MemoryStorage
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db.tables import attachment_t, conversation_t, message_t
from service.gateway.importer import import_storage
from service.settings import Settings
from tests.factories import make_team
from tests.support.cli import switchboard

# The user's storage module, as it would sit in their app: 100 sessions of 100 messages, the same every time.
LEGACY_CHAT = textwrap.dedent(
    """
    from datetime import UTC, datetime, timedelta

    from pocketping.models import Message, Sender, Session
    from pocketping.storage import MemoryStorage

    START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


    async def make_storage():
        storage = MemoryStorage()
        for s in range(100):
            began = START + timedelta(hours=s)
            await storage.create_session(
                Session(id=f"legacy-{s}", visitor_id=f"visitor-{s}", created_at=began, last_activity=began)
            )
            for m in range(100):
                sender = Sender.VISITOR if m % 2 == 0 else Sender.OPERATOR
                await storage.save_message(
                    Message(
                        id=f"legacy-{s}-{m}",
                        session_id=f"legacy-{s}",
                        content=f"message {m} of session {s}",
                        sender=sender,
                        timestamp=began + timedelta(seconds=m),
                    )
                )
        return storage
    """
)


async def _counts(engine: AsyncEngine) -> tuple[int, int]:
    async with engine.connect() as conn:
        conversations = (await conn.execute(sa.select(sa.func.count()).select_from(conversation_t))).scalar_one()
        messages = (await conn.execute(sa.select(sa.func.count()).select_from(message_t))).scalar_one()
    return conversations, messages


async def test_a_10000_message_storage_imported_twice_gives_the_same_rows_once(
    settings: Settings, clean_db: AsyncEngine, tmp_path: Path
) -> None:
    (tmp_path / "legacy_chat.py").write_text(LEGACY_CHAT)
    await make_team(clean_db, "Support")
    argv = ("import", "pocketping", "--storage", "legacy_chat:make_storage", "--team", "Support")

    first = await switchboard(settings, *argv, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    added = "sessions: 100 read, 100 added; messages: 10000 read, 10000 added; attachments: 0 added\n"
    assert first.stdout == added
    async with clean_db.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(message_t.c.id, message_t.c.sender, message_t.c.content)
                .where(message_t.c.conversation_id == "legacy-7")
                .order_by(message_t.c.seq)
            )
        ).all()
        conversation = (await conn.execute(sa.select(conversation_t).where(conversation_t.c.id == "legacy-7"))).one()
    # In the storage's order, with its senders and words.
    assert [r.id for r in rows] == [f"legacy-7-{m}" for m in range(100)]
    assert (rows[1].sender, rows[1].content) == ("operator", "message 1 of session 7")
    # History, in the team asked for: closed, and routed again when the visitor writes.
    assert (conversation.status, conversation.visitor_id) == ("closed", "visitor-7")
    assert conversation.closed_at == conversation.last_activity
    assert conversation.team_id is not None

    second = await switchboard(settings, *argv, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout == "sessions: 100 read, 0 added; messages: 10000 read, 0 added; attachments: 0 added\n"
    assert await _counts(clean_db) == (100, 10_000)


async def test_a_second_run_adds_what_the_storage_gained_and_changes_nothing_already_imported(
    clean_db: AsyncEngine,
) -> None:
    storage = MemoryStorage()
    session = Session(id="s-1", visitor_id="v-1")
    await storage.create_session(session)
    photo = Attachment(id="a-1", filename="cat.png", mime_type="image/png", size=3, url="https://files.test/cat.png")
    await storage.save_message(
        Message(id="m-1", session_id="s-1", content="hello", sender=Sender.VISITOR, attachments=[photo])
    )
    first = await import_storage(clean_db, storage)
    assert (first.sessions_added, first.messages_added, first.attachments_added) == (1, 1, 1)

    # The source moved on: a reply, an edit to what was imported, a new session.
    storage._messages["s-1"][0].content = "edited at the source"
    await storage.save_message(Message(id="m-2", session_id="s-1", content="hi!", sender=Sender.OPERATOR))
    await storage.create_session(Session(id="s-2", visitor_id="v-2"))
    second = await import_storage(clean_db, storage)
    assert (second.sessions_read, second.sessions_added, second.messages_read, second.messages_added) == (2, 1, 2, 1)

    async with clean_db.connect() as conn:
        messages = (await conn.execute(sa.select(message_t.c.id, message_t.c.content).order_by(message_t.c.seq))).all()
        attachment = (await conn.execute(sa.select(attachment_t))).one()
    assert [tuple(m) for m in messages] == [("m-1", "hello"), ("m-2", "hi!")]
    assert (attachment.message_id, attachment.conversation_id, attachment.url) == (
        "m-1",
        "s-1",
        "https://files.test/cat.png",
    )


class PagesIgnoringAfter(MemoryStorage):
    """A storage whose ``get_messages`` ignores ``after``: the import must still end, each message once."""

    async def get_messages(self, session_id: str, after: str | None = None, limit: int = 50) -> list[Message]:
        return await super().get_messages(session_id, None, limit)


async def test_a_storage_that_ignores_after_still_ends_with_each_message_once(clean_db: AsyncEngine) -> None:
    storage = PagesIgnoringAfter()
    await storage.create_session(Session(id="s-1", visitor_id="v-1"))
    for m in range(3):
        await storage.save_message(Message(id=f"m-{m}", session_id="s-1", content="x", sender=Sender.VISITOR))
    report = await import_storage(clean_db, storage)
    assert (report.messages_read, report.messages_added) == (3, 3)


async def test_a_bad_storage_or_team_is_refused_with_the_reason_and_nothing_stored(
    settings: Settings, clean_db: AsyncEngine, tmp_path: Path
) -> None:
    (tmp_path / "legacy_chat.py").write_text(LEGACY_CHAT + "\nNOT_A_STORAGE = 42\n")
    shapeless = await switchboard(settings, "import", "pocketping", "--storage", "legacy_chat", cwd=tmp_path)
    missing = await switchboard(settings, "import", "pocketping", "--storage", "nowhere:make", cwd=tmp_path)
    wrong = await switchboard(settings, "import", "pocketping", "--storage", "legacy_chat:NOT_A_STORAGE", cwd=tmp_path)
    no_team = await switchboard(
        settings, "import", "pocketping", "--storage", "legacy_chat:make_storage", "--team", "Nobody", cwd=tmp_path
    )
    assert [r.returncode for r in (shapeless, missing, wrong, no_team)] == [2, 2, 2, 1]
    assert "Invalid value for --storage: give module:factory" in shapeless.stderr
    assert "cannot load nowhere:make: No module named 'nowhere'" in missing.stderr
    assert "legacy_chat:NOT_A_STORAGE gave int, not a pocketping Storage" in wrong.stderr
    assert "Error: no team is called 'Nobody'" in no_team.stderr
    assert await _counts(clean_db) == (0, 0)
