"""The base of every operator-API schema: camelCase JSON on the wire, snake_case in Python."""

from __future__ import annotations

from typing import Any

from pydantic import AfterValidator, BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    """Request and response bodies of ``/api/v1`` (``XCreate`` / ``XUpdate`` / ``XPublic``)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


def no_nul(value: str) -> str:
    # PostgreSQL text and JSONB cannot hold NUL: refuse it here, naming the field, not with a 500.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


NoNul = AfterValidator(no_nul)


def not_null(value: Any) -> Any:
    """In a PATCH, ``null`` clears an optional setting; for a required one it is an error naming the field."""
    if value is None:
        raise ValueError("may not be null; leave the field out to keep its value")
    return value
