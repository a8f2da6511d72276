"""Canned-response templates: ``{{ visitor.name || operator.name || "there" }}`` placeholders, parsed and filled.

Only the variables in ``VARIABLES`` and quoted literals are allowed; nothing is evaluated.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

VARIABLES: dict[str, str] = {
    "visitor.name": "the visitor's name (identity)",
    "visitor.email": "the visitor's email (identity)",
    "visitor.id": "the visitor's id in your system (identity)",
    "visitor.phone": "the visitor's phone number",
    "visitor.country": "the visitor's country code",
    "visitor.language": "the visitor's browser language",
    "visitor.url": "the page the visitor is on",
    "operator.name": "your display name",
    "operator.firstName": "the first word of your display name",
    "operator.email": "your email",
    "team.name": "the conversation's team",
    "conversation.id": "the conversation id",
}

# A placeholder: anything but braces and quotes, or quoted literals (which may contain braces), up to "}}".
_PLACEHOLDER = re.compile(r"""\{\{((?:[^{}"']|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')*)\}\}""", re.DOTALL)
_TERM = re.compile(
    r"""\s*(?:(?P<var>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)|"(?P<dq>(?:[^"\\]|\\.)*)"|'(?P<sq>(?:[^'\\]|\\.)*)')\s*""",
    re.DOTALL,
)
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


class TemplateError(ValueError):
    """The body is not a valid template; the message says where and why."""


@dataclass(frozen=True)
class Variable:
    name: str


@dataclass(frozen=True)
class Literal:
    text: str


Term = Variable | Literal
Part = str | tuple[Term, ...]


def _alternatives(inner: str, start: int) -> tuple[Term, ...]:
    """``a || b || "c"`` as its terms, in order."""
    terms: list[Term] = []
    pos = 0
    while True:
        match = _TERM.match(inner, pos)
        if match is None:
            raise TemplateError(f"placeholder at character {start}: expected a variable or a quoted text")
        if match["var"] is not None:
            if match["var"] not in VARIABLES:
                raise TemplateError(f"unknown variable {match['var']!r} at character {start}")
            terms.append(Variable(match["var"]))
        else:
            quoted = match["dq"] if match["dq"] is not None else match["sq"]
            terms.append(Literal(_ESCAPE.sub(r"\1", quoted)))
        pos = match.end()
        if pos == len(inner):
            return tuple(terms)
        if not inner.startswith("||", pos):
            raise TemplateError(f"placeholder at character {start}: expected '||' or '}}}}'")
        pos += 2


def parse(body: str) -> list[Part]:
    """Text and placeholders in order; ``TemplateError`` for an unknown variable or a malformed placeholder."""
    parts: list[Part] = []
    pos = 0
    for match in _PLACEHOLDER.finditer(body):
        text = body[pos : match.start()]
        if "{{" in text:
            raise TemplateError(f"unclosed or malformed placeholder at character {pos + text.index('{{')}")
        parts.extend([text] if text else [])
        parts.append(_alternatives(match[1], match.start()))
        pos = match.end()
    rest = body[pos:]
    if "{{" in rest:
        raise TemplateError(f"unclosed or malformed placeholder at character {pos + rest.index('{{')}")
    parts.extend([rest] if rest else [])
    return parts


def variables(body: str) -> list[str]:
    """The variables a (valid) template uses, in first-use order."""
    names = [t.name for part in parse(body) if isinstance(part, tuple) for t in part if isinstance(t, Variable)]
    return list(dict.fromkeys(names))


def render(body: str, values: Mapping[str, str | None]) -> tuple[str, list[str]]:
    """The filled text and the placeholders that came out empty (named by their variables).

    Each placeholder takes its first non-empty variable, or its first literal; when neither exists it is empty.
    """
    out: list[str] = []
    missing: list[str] = []
    for part in parse(body):
        if isinstance(part, str):
            out.append(part)
            continue
        for term in part:
            value = term.text if isinstance(term, Literal) else (values.get(term.name) or "").strip()
            if value or isinstance(term, Literal):
                out.append(value)
                break
        else:
            missing.append(" || ".join(t.name for t in part if isinstance(t, Variable)))
    return "".join(out), missing
