"""Writes the settings reference from ``Settings``: the table in docs/running.md and deploy/env.example.

Run ``python -m service.settings_docs`` (or ``make settings-docs``) after changing a setting;
``--check`` only reports whether the committed files are current (tests/test_settings_docs.py).
"""

from __future__ import annotations

import sys
import textwrap
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import AliasChoices, AnyHttpUrl
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
RUNNING_MD = ROOT / "docs" / "running.md"
ENV_EXAMPLE = ROOT / "deploy" / "env.example"
START = "<!-- settings:start -->"
END = "<!-- settings:end -->"
REGENERATE = "python -m service.settings_docs"


@dataclass(frozen=True)
class Variable:
    """One environment variable as the docs describe it."""

    name: str
    aliases: tuple[str, ...]
    kind: str
    default: str
    value: str | None  # the default as a KEY=value line would hold it; None: no default written
    description: str
    example: str | None
    secret: bool


# Read by the processes Switchboard runs, not by Settings (they are documented and listed all the same).
EXTERNAL = (
    Variable(
        name="FORWARDED_ALLOW_IPS",
        aliases=(),
        kind="comma-separated list",
        default="`127.0.0.1`",
        value="127.0.0.1",
        description="uvicorn's: proxies whose `X-Forwarded-For` is trusted. Set it behind a load balancer, or every "
        "visitor shares the proxy's widget budgets.",
        example="127.0.0.1",
        secret=False,
    ),
)


def _env_names(name: str, field: FieldInfo) -> tuple[str, ...]:
    prefix = str(Settings.model_config.get("env_prefix") or "")
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return tuple(f"{prefix}{choice}".upper() for choice in alias.choices if isinstance(choice, str))
    if isinstance(alias, str):
        return (f"{prefix}{alias}".upper(),)
    return (f"{prefix}{name}".upper(),)


def _kind(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        inner = [arg for arg in get_args(annotation) if arg is not type(None)]
        return " or ".join(_kind(arg) for arg in inner)
    if origin is Literal:
        return "one of " + ", ".join(f"`{arg}`" for arg in get_args(annotation))
    if origin is list:
        return "comma-separated list"
    if origin is dict:
        return "JSON object"
    if annotation is bool:
        return "`true` or `false`"
    if annotation is int:
        return "integer"
    if annotation is float:
        return "number"
    if annotation is AnyHttpUrl:
        return "URL"
    return "text"


def _bounds(field: FieldInfo) -> str:
    parts = []
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge):
            parts.append(f">= {item.ge}")
        elif isinstance(item, annotated_types.Gt):
            parts.append(f"> {item.gt}")
        elif isinstance(item, annotated_types.Le):
            parts.append(f"<= {item.le}")
        elif isinstance(item, annotated_types.Lt):
            parts.append(f"< {item.lt}")
        elif isinstance(item, annotated_types.MinLen):
            parts.append(f"{item.min_length}+ characters")
        elif getattr(item, "pattern", None):
            parts.append(f"matching `{item.pattern}`")
    return ", ".join(parts)


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_value(item) for item in value)  # as the variable is written
    return str(value)


def variables() -> Iterator[Variable]:
    """Every setting in the order ``Settings`` declares them, then the variables read by others."""
    for name, field in Settings.model_fields.items():
        names = _env_names(name, field)
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        secret = bool(extra.get("secret"))
        kind = _kind(field.annotation)
        bounds = _bounds(field)
        if bounds:
            kind = f"{kind}, {bounds}"
        value: str | None = None
        if field.is_required():
            default = "required"
        elif secret:
            default = "secret"
        elif field.default_factory is not None:
            made = field.default_factory()  # type: ignore[call-arg]
            value = _value(made) if made else None
            default = f"`{value}`" if value else "empty"
        elif field.default is None or field.default is PydanticUndefined:
            default = "unset"
        else:
            value = _value(field.default)
            default = f"`{value}`"
        if secret and field.is_required():
            default = "required, secret"
        examples = field.examples or []
        yield Variable(
            name=names[0],
            aliases=names[1:],
            kind=kind,
            default=default,
            value=value,
            description=field.description or "",
            example=str(examples[0]) if examples else None,
            secret=secret,
        )
    yield from EXTERNAL


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_table() -> str:
    """The markdown table that goes between the markers in docs/running.md."""
    lines = [
        f"<!-- Generated from service/settings.py by `{REGENERATE}` (make settings-docs); do not edit by hand. -->",
        "",
        "| Variable | Type | Default | Meaning |",
        "|---|---|---|---|",
    ]
    for var in variables():
        name = f"`{var.name}`"
        if var.aliases:
            name += " (also read as " + ", ".join(f"`{alias}`" for alias in var.aliases) + ")"
        lines.append(f"| {name} | {_cell(var.kind)} | {_cell(var.default)} | {_cell(var.description)} |")
    return "\n".join(lines) + "\n"


def splice(document: str, table: str) -> str:
    """``document`` with everything between the markers replaced by ``table``."""
    start = document.index(START) + len(START)
    end = document.index(END, start)
    return f"{document[:start]}\n{table}{document[end:]}"


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, width=100, initial_indent="# ", subsequent_indent="# ", break_on_hyphens=False)


def render_env_example() -> str:
    """deploy/env.example: every variable, its description and default; the ones to fill in uncommented."""
    lines = [
        "# Switchboard settings, KEY=value, read by systemd (EnvironmentFile=/etc/switchboard/env) and by",
        "# compose (copy to deploy/switchboard.env). Keep this file private (mode 0640, owner root, group",
        "# switchboard): it holds secrets.",
        "#",
        f"# Generated from service/settings.py by `{REGENERATE}` (make settings-docs);",
        "# do not edit by hand. The variables with an example value are the ones to fill in; every other",
        "# one is commented out at its default. docs/running.md describes them in a table.",
    ]
    for var in variables():
        lines.append("")
        lines.extend(_comment(var.description))
        default = var.default.replace("`", "")
        facts = [var.kind, default if default.startswith(("required", "secret")) else f"default: {default}"]
        if var.aliases:
            facts.append("also read as " + ", ".join(var.aliases))
        lines.extend(_comment("(" + "; ".join(facts) + ")"))
        if var.example is not None:
            lines.append(f"{var.name}={var.example}")
        else:
            lines.append(f"# {var.name}={'' if var.value is None else var.value}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write both files, or with ``--check`` exit 1 naming the ones that are out of date."""
    args = list(sys.argv[1:] if argv is None else argv)
    wanted = {
        RUNNING_MD: splice(RUNNING_MD.read_text(), render_table()),
        ENV_EXAMPLE: render_env_example(),
    }
    stale = [path for path, text in wanted.items() if path.read_text() != text]
    if "--check" in args:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is out of date; run `{REGENERATE}`", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(wanted[path])
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
