"""Pure routing decisions: team selection by rules, and candidates in, ranked or excluded list out (no I/O)."""

from __future__ import annotations

import fnmatch
import re
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from typing import Any

# Exclusion reasons, in the order they are checked: the first that applies is recorded.
NOT_MEMBER = "not_member"
PREVIOUS_ASSIGNEE = "previous_assignee"
OFFLINE = "offline"
MISSING_SKILL = "missing_skill"
AT_CAPACITY = "at_capacity"
QUEUED_AHEAD = "queued_ahead"


# Steps of a waiting conversation's skill requirement: as asked, one level lower, or none (any member).
EXACT = "exact"
RELAXED = "relaxed"
ANY = "any"
MAX_SKILL_LEVEL = 5


def skill_level(skill: str) -> tuple[str, int]:
    """``"fr:3"`` -> ``("fr", 3)``; a skill without a level is level 1."""
    name, _, level = skill.partition(":")
    return name, int(level) if level else 1


def skill_token(name: str, level: int) -> str:
    """The stored form: ``"fr"`` for level 1, ``"fr:3"`` above."""
    return name if level <= 1 else f"{name}:{level}"


def merge_skills(*lists: Iterable[str]) -> tuple[str, ...]:
    """Several requirements as one: each skill once, at the highest level asked, in first-seen order."""
    levels: dict[str, int] = {}
    for skills in lists:
        for skill in skills:
            name, level = skill_level(skill)
            levels[name] = max(level, levels.get(name, 0))
    return tuple(skill_token(name, level) for name, level in levels.items())


def skill_ladder(skills: Iterable[str]) -> frozenset[str]:
    """Every level a member's skills cover (``fr:3`` covers ``fr``, ``fr:2``, ``fr:3``): a requirement holds when it
    is a subset. The SQL function ``skill_ladder`` (migration 0024) is the same."""
    return frozenset(skill_token(name, n) for name, level in map(skill_level, skills) for n in range(1, level + 1))


def relaxed_skills(requirement: Iterable[str], step: str) -> tuple[str, ...]:
    """The requirement at a step: as asked (``exact``), each level one lower (never below 1), or nothing (``any``)."""
    if step == ANY:
        return ()
    if step == RELAXED:
        return tuple(skill_token(name, level - 1) for name, level in map(skill_level, requirement))
    return tuple(requirement)


def next_skill_step(step: str, relax_after: int | None, any_after: int | None) -> tuple[str, int] | None:
    """The step that follows ``step`` and how long after the conversation started waiting it comes; None when
    nothing is left to relax. A team whose "any member" delay is not longer than the relaxing one skips it."""
    if step == EXACT and relax_after is not None and (any_after is None or relax_after < any_after):
        return RELAXED, relax_after
    if step in (EXACT, RELAXED) and any_after is not None:
        return ANY, any_after
    return None


@dataclass(frozen=True)
class Candidate:
    """One operator as the decision sees them, read from ``operator`` and ``team_member``."""

    operator_id: uuid.UUID
    status: str
    open_conversations: int
    capacity: int
    # The levels their skills cover (``skill_ladder``), so a requirement holds when it is a subset.
    skills: frozenset[str] = frozenset()
    last_assigned_at: datetime | None = None
    is_member: bool = True
    # A queued conversation of the team that they could take comes before this one: it goes first.
    queued_ahead: bool = False


@dataclass(frozen=True)
class Evaluation:
    """A candidate's verdict: excluded with a reason, or eligible with a rank (0 is best) and its score."""

    candidate: Candidate
    excluded: str | None = None
    rank: int | None = None
    load: Fraction | None = None
    missing_skills: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """The candidate as stored in ``routing_decision.candidates`` (camelCase, like the API)."""
        c = self.candidate
        entry: dict[str, Any] = {
            "operatorId": str(c.operator_id),
            "status": c.status,
            "open": c.open_conversations,
            "capacity": c.capacity,
            "lastAssignedAt": c.last_assigned_at.isoformat() if c.last_assigned_at else None,
        }
        if self.excluded is not None:
            entry["excluded"] = self.excluded
            if self.missing_skills:
                entry["missingSkills"] = list(self.missing_skills)
        else:
            entry["rank"] = self.rank
            if self.load is not None:
                entry["load"] = round(float(self.load), 4)
        return entry


@dataclass(frozen=True)
class Decision:
    """Every candidate evaluated; ``ranked`` holds the eligible ones in the order they should be tried."""

    policy: str
    evaluations: tuple[Evaluation, ...]
    ranked: tuple[uuid.UUID, ...] = field(default=())

    def candidates_json(
        self, lost: Mapping[uuid.UUID, str] | None = None, busy: Collection[uuid.UUID] = ()
    ) -> list[dict[str, Any]]:
        """Stored form; ``lost`` marks ranked candidates whose capacity check failed at the row (a race),
        ``busy`` those passed over because another assignment to them was in flight."""
        out = []
        for evaluation in self.evaluations:
            entry = evaluation.as_json()
            operator_id = evaluation.candidate.operator_id
            if lost and operator_id in lost:
                entry.pop("rank", None)
                entry.pop("load", None)
                entry["excluded"] = lost[operator_id]
            elif operator_id in busy:
                entry["busy"] = True
            out.append(entry)
        return out


def exclusion(candidate: Candidate, required_skills: Iterable[str], exclude: Iterable[uuid.UUID]) -> str | None:
    """Why this candidate may not take the conversation, or None when eligible."""
    if not candidate.is_member:
        return NOT_MEMBER
    if candidate.operator_id in set(exclude):
        return PREVIOUS_ASSIGNEE
    if candidate.status != "online":
        return OFFLINE
    if not set(required_skills) <= candidate.skills:
        return MISSING_SKILL
    if candidate.open_conversations >= candidate.capacity:
        return AT_CAPACITY
    if candidate.queued_ahead:
        return QUEUED_AHEAD
    return None


def _longest_ago(candidate: Candidate) -> tuple[bool, datetime | None]:
    # Never assigned sorts first; then the oldest assignment.
    return (candidate.last_assigned_at is not None, candidate.last_assigned_at)


def decide(
    policy: str,
    candidates: Sequence[Candidate],
    *,
    required_skills: Iterable[str] = (),
    exclude: Iterable[uuid.UUID] = (),
) -> Decision:
    """Evaluate and rank candidates under ``policy``; ``manual`` evaluates them but ranks nobody.

    ``round_robin``: assigned longest ago (never first), then operator id.
    ``least_busy``: lowest open ÷ capacity (exact fractions), then assigned longest ago, then id.
    ``pooled``: ranked as ``round_robin``, but offered to all of them rather than assigned.
    """
    skills = tuple(required_skills)
    excluded = tuple(exclude)
    verdicts = [(c, exclusion(c, skills, excluded)) for c in candidates]
    eligible = [c for c, reason in verdicts if reason is None]
    if policy == "least_busy":
        eligible.sort(key=lambda c: (Fraction(c.open_conversations, c.capacity), _longest_ago(c), c.operator_id))
    elif policy in ("round_robin", "pooled"):
        # pooled: the conversation is offered to every eligible member, in this order; the first to claim it wins.
        eligible.sort(key=lambda c: (_longest_ago(c), c.operator_id))
    elif policy == "manual":
        eligible = []
    else:
        raise ValueError(f"unknown routing policy {policy!r}")
    rank = {c.operator_id: n for n, c in enumerate(eligible)}
    evaluations = [
        Evaluation(
            c,
            excluded=reason,
            rank=rank.get(c.operator_id),
            load=Fraction(c.open_conversations, c.capacity) if policy == "least_busy" and reason is None else None,
            missing_skills=tuple(sorted(set(skills) - c.skills)) if reason == MISSING_SKILL else (),
        )
        for c, reason in verdicts
    ]
    return Decision(policy, tuple(evaluations), tuple(c.operator_id for c in eligible))


# --- Team selection -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """A routing rule as matched here; ``conditions`` keys are listed in docs/routing.md."""

    team_id: uuid.UUID
    conditions: Mapping[str, Any]
    set_priority: int | None = None
    required_skills: tuple[str, ...] = ()
    rule_id: uuid.UUID | None = None
    name: str | None = None
    set_tags: tuple[uuid.UUID, ...] = ()

    @property
    def reads_message(self) -> bool:
        """Whether it looks at the visitor's first message, so it can only be decided once that exists."""
        return "keyword" in self.conditions


@dataclass(frozen=True)
class Visit:
    """What rules can look at: the page, the visitor's language and country, identity and metadata."""

    url: str | None = None
    language: str | None = None
    country: str | None = None
    identity: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    # The visitor's first message; None while they have not written (a keyword rule matches nothing yet).
    message: str | None = None

    @classmethod
    def from_session(
        cls,
        metadata: Mapping[str, Any] | None,
        identity: Mapping[str, Any] | None,
        phone_country: str | None,
        message: str | None = None,
    ) -> Visit:
        """From a conversation's PocketPing session metadata (``url``, ``language``, ``country``), identity and
        first visitor message."""
        meta = dict(metadata or {})
        language = meta.get("language")
        country = meta.get("country") or phone_country
        return cls(
            url=meta.get("url"),
            # "fr-FR" matches a rule for "fr".
            language=str(language).lower() if language else None,
            country=str(country).upper() if country else None,
            identity=dict(identity or {}),
            metadata=meta,
            message=message,
        )


def _one_of(value: str | None, wanted: Any, normalize: Any) -> bool:
    options = [normalize(str(w)) for w in (wanted if isinstance(wanted, list) else [wanted])]
    return value is not None and any(value == o or value.startswith(o + "-") for o in options)


def _fields_match(values: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    # Strings are globs ("*@acme.com"); anything else must be equal.
    for key, expected in wanted.items():
        actual = values.get(key)
        if isinstance(expected, str):
            if actual is None or not fnmatch.fnmatchcase(str(actual), expected):
                return False
        elif actual != expected:
            return False
    return True


def _has_keyword(message: str | None, keywords: Any) -> bool:
    """Any keyword (a word or phrase) stands in the message as whole words, whatever the case."""
    if message is None:
        return False
    text = message.casefold()
    options = keywords if isinstance(keywords, list) else [keywords]
    return any(re.search(r"(?<!\w)" + re.escape(str(k).casefold()) + r"(?!\w)", text) for k in options)


def rule_matches(conditions: Mapping[str, Any], visit: Visit) -> bool:
    """All present conditions hold (an empty rule matches everything)."""
    if "keyword" in conditions and not _has_keyword(visit.message, conditions["keyword"]):
        return False
    if "url" in conditions and not (visit.url and fnmatch.fnmatchcase(visit.url, str(conditions["url"]))):
        return False
    if "language" in conditions and not _one_of(visit.language, conditions["language"], str.lower):
        return False
    if "country" in conditions and not _one_of(visit.country, conditions["country"], str.upper):
        return False
    if not _fields_match(visit.identity, conditions.get("identity", {})):
        return False
    return _fields_match(visit.metadata, conditions.get("metadata", {}))


def select_rule(rules: Sequence[Rule], visit: Visit) -> Rule | None:
    """The first rule, in order, whose conditions match; None means the default team."""
    return next((rule for rule in rules if rule_matches(rule.conditions, visit)), None)
