"""The base of every operator-API schema: camelCase JSON on the wire, snake_case in Python."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    """Request and response bodies of ``/api/v1`` (``XCreate`` / ``XUpdate`` / ``XPublic``)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)
