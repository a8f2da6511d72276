"""The "why was this routed here" panel words each stored candidate verdict plainly."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from service.dashboard.conversation import trigger_words, verdict_words
from service.routing.schemas import CandidatePublic


def candidate(**values: Any) -> CandidatePublic:
    stored = {"operatorId": str(uuid.uuid4()), "status": "online", "open": 1, "capacity": 3} | values
    return CandidatePublic.model_validate(stored)


@pytest.mark.parametrize(
    ("stored", "words"),
    [
        ({"excluded": "not_member"}, "not in the team"),
        ({"excluded": "previous_assignee"}, "it was taken from them earlier"),
        ({"excluded": "offline", "status": "offline"}, "offline"),
        ({"excluded": "offline", "status": "away"}, "away"),
        ({"excluded": "missing_skill", "missingSkills": ["billing", "fr"]}, "missing skill billing, fr"),
        # Decisions stored before missing skills were recorded.
        ({"excluded": "missing_skill"}, "missing a required skill"),
        ({"excluded": "at_capacity", "open": 3}, "at capacity 3/3"),
        ({"rank": 0, "load": 0.3333}, "eligible, rank 1, 1/3 open"),
        ({"rank": 1, "busy": True}, "passed over: another assignment to them was in flight"),
        ({}, "eligible, 1/3 open"),  # manual teams rank nobody
    ],
)
def test_verdicts_in_plain_words(stored: dict[str, Any], words: str) -> None:
    assert verdict_words(candidate(**stored)) == words


def test_triggers_in_plain_words() -> None:
    assert [trigger_words(t) for t in ("visitor_message", "first_response_timeout", "some_new_trigger")] == [
        "the visitor wrote",
        "nobody answered in time",
        "some new trigger",
    ]
