"""Alembic migrations, shipped inside the package so `switchboard db upgrade` works anywhere."""
