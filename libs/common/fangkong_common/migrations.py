"""Alembic helpers every service shares: the async env.py body, the outbox and
inbox tables for each service's first migration, and running upgrades from code."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import command, context, op
from alembic.config import Config
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection

from fangkong_common.db import Base, create_engine


def create_outbox_and_inbox() -> None:
    """For a service's first migration."""
    op.create_table(
        "outbox",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_outbox"),
        sa.UniqueConstraint("event_id", name="uq_outbox_event_id"),
    )
    op.create_index("ix_outbox_pending", "outbox", ["seq"], postgresql_where=sa.text("published_at IS NULL"),
                    sqlite_where=sa.text("published_at IS NULL"))
    op.create_index("ix_outbox_published_at", "outbox", ["published_at"])
    op.create_table(
        "inbox",
        sa.Column("consumer_group", sa.String(200), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("consumer_group", "event_id", name="pk_inbox"),
    )
    op.create_index("ix_inbox_applied_at", "inbox", ["applied_at"])


def create_pii_audit_table() -> None:
    """The audit trail of unmasked personal-data reads (fangkong_common.audit)."""
    op.create_table(
        "pii_audit",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("role", sa.String(40), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("fields", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("path", sa.String(500), nullable=True),
        sa.Column("correlation_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_pii_audit"),
    )
    op.create_index("ix_pii_audit_at", "pii_audit", ["at"])
    op.create_index("ix_pii_audit_actor", "pii_audit", ["actor"])
    op.create_index("ix_pii_audit_subject", "pii_audit", ["subject"])


def drop_outbox_and_inbox() -> None:
    op.drop_table("inbox")
    op.drop_table("outbox")


def _do_run(connection: Connection, target_metadata: Sequence[MetaData]) -> None:
    context.configure(
        connection=connection,
        target_metadata=list(target_metadata),
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_env(service_metadata: MetaData) -> None:
    """The whole body of a service's ``migrations/env.py``.

    With a connection handed in (``upgrade`` below, from a running event loop)
    it migrates on that; otherwise it opens the URL of the alembic config.
    """
    # The shared tables register on Base.metadata when their modules are imported.
    import fangkong_common.audit, fangkong_common.inbox, fangkong_common.outbox  # noqa: F401, E401

    target = [Base.metadata, service_metadata]
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _do_run(connection, target)
        return
    if context.is_offline_mode():
        context.configure(url=context.config.get_main_option("sqlalchemy.url"), target_metadata=target,
                          literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return

    async def _online() -> None:
        engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
        async with engine.connect() as conn:
            await conn.run_sync(_do_run, target)
        await engine.dispose()

    asyncio.run(_online())


def alembic_config(script_location: Path, url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("sqlalchemy.url", url)
    return config


async def upgrade(engine, script_location: Path, revision: str = "head") -> None:
    """Upgrade from inside a running event loop (service start-up, tests)."""
    config = alembic_config(script_location, str(engine.url.render_as_string(hide_password=False)))

    def _upgrade(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)
