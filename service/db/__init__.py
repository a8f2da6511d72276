"""Table models and database access; importing this package registers every table."""

from sqlmodel import SQLModel

# Constraint names must be stable so migrations can drop what they created.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

from service.db import models  # noqa: E402,F401  (registers the tables)

metadata = SQLModel.metadata
