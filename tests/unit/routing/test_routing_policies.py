"""Table-driven tests of the pure routing decision: policies, tie-breaks, exclusion reasons, rule matching."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from service.routing.policies import (
    Candidate,
    Rule,
    Visit,
    decide,
    relaxed_skills,
    rule_matches,
    select_rule,
    skill_ladder,
)

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
A, B, C, D = (uuid.UUID(int=n) for n in (1, 2, 3, 4))


def cand(operator_id: uuid.UUID, **values: object) -> Candidate:
    base: dict[str, object] = {"status": "online", "open_conversations": 0, "capacity": 5}
    return Candidate(operator_id=operator_id, **(base | values))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("policy", "candidates", "ranked"),
    [
        # round_robin: never assigned first, then assigned longest ago, then id.
        ("round_robin", [cand(A, last_assigned_at=T0), cand(B)], [B, A]),
        ("round_robin", [cand(A, last_assigned_at=T0), cand(B, last_assigned_at=T0 - timedelta(1))], [B, A]),
        ("round_robin", [cand(B), cand(A)], [A, B]),
        ("round_robin", [cand(B, last_assigned_at=T0), cand(A, last_assigned_at=T0)], [A, B]),
        # Load does not matter to round_robin.
        ("round_robin", [cand(A, open_conversations=4), cand(B, last_assigned_at=T0)], [A, B]),
        # least_busy: lowest open/capacity; exact ratios (1/3 == 2/6), then longest ago, then id.
        ("least_busy", [cand(A, open_conversations=2), cand(B, open_conversations=1)], [B, A]),
        ("least_busy", [cand(A, open_conversations=4, capacity=10), cand(B, open_conversations=1, capacity=2)], [A, B]),
        (
            "least_busy",
            [
                cand(A, open_conversations=2, capacity=6, last_assigned_at=T0),
                cand(B, open_conversations=1, capacity=3, last_assigned_at=T0 - timedelta(1)),
            ],
            [B, A],
        ),
        ("least_busy", [cand(B, open_conversations=1, capacity=3), cand(A, open_conversations=2, capacity=6)], [A, B]),
        (
            "least_busy",
            [cand(A, open_conversations=1, last_assigned_at=T0), cand(B, open_conversations=1)],
            [B, A],
        ),
        # manual ranks nobody.
        ("manual", [cand(A), cand(B)], []),
        ("round_robin", [], []),
    ],
)
def test_policy_ranking(policy: str, candidates: list[Candidate], ranked: list[uuid.UUID]) -> None:
    assert list(decide(policy, candidates).ranked) == ranked


@pytest.mark.parametrize(
    ("candidate", "skills", "exclude", "reason"),
    [
        (cand(A), (), (), None),
        (cand(A, is_member=False), (), (), "not_member"),
        (cand(A), (), (A,), "previous_assignee"),
        (cand(A, status="offline"), (), (), "offline"),
        (cand(A, status="away"), (), (), "offline"),
        (cand(A, open_conversations=5), (), (), "at_capacity"),
        (cand(A, open_conversations=7), (), (), "at_capacity"),
        (cand(A, capacity=0), (), (), "at_capacity"),
        (cand(A, skills=frozenset({"fr"})), ("fr", "billing"), (), "missing_skill"),
        (cand(A, skills=frozenset({"fr", "billing", "de"})), ("fr", "billing"), (), None),
        # The first reason in check order wins: membership, previous, presence, skills, capacity.
        (cand(A, is_member=False, status="offline"), (), (A,), "not_member"),
        (cand(A, status="offline"), (), (A,), "previous_assignee"),
        (cand(A, status="offline", open_conversations=9), ("x",), (), "offline"),
        (cand(A, open_conversations=9), ("x",), (), "missing_skill"),
    ],
)
def test_exclusion_reasons(
    candidate: Candidate, skills: tuple[str, ...], exclude: tuple[uuid.UUID, ...], reason: str | None
) -> None:
    decision = decide("least_busy", [candidate], required_skills=skills, exclude=exclude)
    [evaluation] = decision.evaluations
    assert evaluation.excluded == reason
    assert list(decision.ranked) == ([] if reason else [A])


def test_stored_candidates_name_the_missing_skills() -> None:
    decision = decide("round_robin", [cand(A, skills=frozenset({"fr"}))], required_skills=("fr", "billing", "de"))
    [stored] = decision.candidates_json()
    assert (stored["excluded"], stored["missingSkills"]) == ("missing_skill", ["billing", "de"])


def test_stored_candidates_show_reasons_scores_and_lost_races() -> None:
    decision = decide(
        "least_busy",
        [cand(A, open_conversations=1, capacity=4), cand(B, status="offline"), cand(C, open_conversations=2)],
    )
    assert decision.candidates_json({C: "at_capacity"}) == [
        {
            "operatorId": str(A),
            "status": "online",
            "open": 1,
            "capacity": 4,
            "lastAssignedAt": None,
            "rank": 0,
            "load": 0.25,
        },
        {
            "operatorId": str(B),
            "status": "offline",
            "open": 0,
            "capacity": 5,
            "lastAssignedAt": None,
            "excluded": "offline",
        },
        {
            "operatorId": str(C),
            "status": "online",
            "open": 2,
            "capacity": 5,
            "lastAssignedAt": None,
            "excluded": "at_capacity",
        },
    ]


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown routing policy 'random'"):
        decide("random", [cand(A)])


@pytest.mark.parametrize(
    ("conditions", "visit", "matches"),
    [
        ({}, Visit(), True),
        ({"url": "https://shop.test/billing/*"}, Visit(url="https://shop.test/billing/42"), True),
        ({"url": "https://shop.test/billing/*"}, Visit(url="https://shop.test/pricing"), False),
        ({"url": "*/billing*"}, Visit(), False),
        ({"language": "fr"}, Visit(language="fr-fr"), True),
        ({"language": ["de", "FR"]}, Visit(language="fr"), True),
        ({"language": "fr"}, Visit(language="fy"), False),
        ({"country": ["BE", "fr"]}, Visit(country="FR"), True),
        ({"country": "FR"}, Visit(), False),
        ({"identity": {"email": "*@acme.com"}}, Visit(identity={"email": "jo@acme.com"}), True),
        ({"identity": {"email": "*@acme.com"}}, Visit(identity={"email": "jo@other.com"}), False),
        ({"identity": {"plan": "pro"}}, Visit(identity={}), False),
        ({"metadata": {"vip": True}}, Visit(metadata={"vip": True}), True),
        ({"metadata": {"vip": True}}, Visit(metadata={"vip": "yes"}), False),
        ({"url": "*/de/*", "language": "de"}, Visit(url="https://x/de/a", language="en"), False),
    ],
)
def test_rule_conditions(conditions: dict[str, object], visit: Visit, matches: bool) -> None:
    assert rule_matches(conditions, visit) is matches


def test_first_matching_rule_wins_else_default() -> None:
    rules = [
        Rule(A, {"language": "de"}),
        Rule(B, {"url": "*/pricing"}, set_priority=3),
        Rule(C, {"url": "*"}),
    ]
    assert select_rule(rules, Visit(url="https://x/pricing", language="de")) == rules[0]
    assert select_rule(rules, Visit(url="https://x/pricing")) == rules[1]
    assert select_rule(rules, Visit(url="https://x/")) == rules[2]
    assert select_rule(rules[:2], Visit(url="https://x/")) is None


def test_visit_from_session_normalizes_language_and_country() -> None:
    visit = Visit.from_session({"url": "https://x", "language": "fr-FR"}, {"email": "a@b"}, "be")
    assert (visit.url, visit.language, visit.country, visit.identity) == ("https://x", "fr-fr", "BE", {"email": "a@b"})


def test_pooled_ranks_every_eligible_member_by_round_robin_order() -> None:
    candidates = [cand(A, last_assigned_at=T0), cand(B), cand(C, status="offline"), cand(D, open_conversations=5)]
    decision = decide("pooled", candidates)
    assert decision.ranked == (B, A)
    assert [e.excluded for e in decision.evaluations] == [None, None, "offline", "at_capacity"]


def test_skill_levels_are_minimums() -> None:
    fluent, basic = cand(A, skills=skill_ladder(["fr:4"])), cand(B, skills=skill_ladder(["fr"]))
    decision = decide("round_robin", [fluent, basic], required_skills=["fr:3"])
    assert decision.ranked == (A,)
    assert [(e.excluded, e.missing_skills) for e in decision.evaluations] == [(None, ()), ("missing_skill", ("fr:3",))]
    assert decide("round_robin", [fluent, basic], required_skills=relaxed_skills(["fr:2"], "relaxed")).ranked == (A, B)
