"""outbox: a column that orders the ids a batch of replies gets

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

The dispatcher inserts a transaction's replies in one statement and needs each one's id, in
order. SQLite cannot say which new id went to which row, so SQLAlchemy inserted them one
statement per row; with an insert sentinel (SQLAlchemy fills it with the row's position in the
statement) it inserts them together and sorts the ids it gets back.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("insert_sentinel", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("insert_sentinel")
