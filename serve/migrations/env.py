"""Alembic environment, configured in code: ``serve.db.Database.migrate`` passes an open
connection in ``config.attributes["connection"]``; the ``alembic`` command line may instead set
``sqlalchemy.url`` (see ``serve.db.alembic_config``)."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import create_engine

from serve.models import Base, UTCDateTime
from serve.settings import SettingsError

config = context.config


def render_item(kind: str, obj, autogen_context):
    """Migrations stay independent of model code: UTCDateTime is written as its impl."""
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


OPTIONS: dict[str, Any] = {"target_metadata": Base.metadata, "render_as_batch": True,
                           "compare_type": True, "render_item": render_item}


def run_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True,
                      **OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, **OPTIONS)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise SettingsError("no database to migrate: pass a connection or set sqlalchemy.url")
    engine = create_engine(url)
    with engine.begin() as conn:
        context.configure(connection=conn, **OPTIONS)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
