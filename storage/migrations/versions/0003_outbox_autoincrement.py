"""outbox ids never reused on SQLite

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

Readers follow the outbox by id (the web chat polls "after id N"). SQLite
without AUTOINCREMENT gives a new row max(id) + 1, so after a person deletes
their data the next message could take an id a reader has already passed.
PostgreSQL sequences never go back: nothing to do there.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table("outbox", recreate="always", table_kwargs={"sqlite_autoincrement": True}):
        pass


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table("outbox", recreate="always", table_kwargs={"sqlite_autoincrement": False}):
        pass
