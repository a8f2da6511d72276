"""The canned-response template language: what renders to what, and what is refused at save time."""

from __future__ import annotations

import pytest

from service.canned.template import TemplateError, render, variables

VALUES = {
    "visitor.name": "Marie",
    "visitor.email": "",
    "operator.name": "Lena Park",
    "operator.firstName": "Lena",
    "team.name": "Billing",
}


@pytest.mark.parametrize(
    ("body", "expected", "missing"),
    [
        ("no placeholders", "no placeholders", []),
        ("", "", []),
        ("Hi {{visitor.name}}!", "Hi Marie!", []),
        ("Hi {{ visitor.name }}, {{operator.firstName}} here", "Hi Marie, Lena here", []),
        ('Mail: {{visitor.email || "unknown"}}', "Mail: unknown", []),
        ("{{visitor.email || visitor.name}}", "Marie", []),
        ("{{visitor.phone||visitor.email||'none'}}", "none", []),
        ("Hi {{visitor.email || visitor.phone}}.", "Hi .", ["visitor.email || visitor.phone"]),
        ('{{"a || b }} {{"}}', "a || b }} {{", []),
        ("{{'it\\'s'}}", "it's", []),
        ('{{"say \\"hi\\""}}', 'say "hi"', []),
        ('{{"" || visitor.name}}', "", []),
        ("{{team.name}}/{{conversation.id}}", "Billing/", ["conversation.id"]),
        ("braces } alone { are text }}", "braces } alone { are text }}", []),
        ("{{visitor.name}}{{visitor.name}}", "MarieMarie", []),
        ("multi\nline {{\n visitor.name\n}}", "multi\nline Marie", []),
        ("{{visitor.url}}", "", ["visitor.url"]),
    ],
)
def test_render(body: str, expected: str, missing: list[str]) -> None:
    assert render(body, VALUES) == (expected, missing)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{{visitor.nmae}}", "unknown variable 'visitor.nmae' at character 0"),
        ("Hi {{ visitor }}", "placeholder at character 3: expected a variable or a quoted text"),
        ("{{}}", "placeholder at character 0: expected a variable or a quoted text"),
        ("{{visitor.name | 'x'}}", "placeholder at character 0: expected '||' or '}}'"),
        ("{{visitor.name ||}}", "placeholder at character 0: expected a variable or a quoted text"),
        ("{{visitor.name visitor.email}}", "placeholder at character 0: expected '||' or '}}'"),
        ("{{__import__('os').system('x')}}", "placeholder at character 0: expected a variable or a quoted text"),
        ("{{ 1 + 1 }}", "placeholder at character 0: expected a variable or a quoted text"),
        ("Hi {{visitor.name", "unclosed or malformed placeholder at character 3"),
        ("{{'unterminated}}", "unclosed or malformed placeholder at character 0"),
        ("ok {{visitor.name}} then {{ {{x}} }}", "unclosed or malformed placeholder at character 25"),
        ("{{visitor.name.first}}", "unknown variable 'visitor.name.first' at character 0"),
    ],
)
def test_invalid_templates_are_refused(body: str, message: str) -> None:
    with pytest.raises(TemplateError) as error:
        variables(body)
    assert str(error.value) == message


def test_variables_in_first_use_order() -> None:
    body = "{{operator.name}} {{visitor.name || operator.name || 'x'}} {{team.name}}"
    assert variables(body) == ["operator.name", "visitor.name", "team.name"]
