"""broadcasts, their runs and reminders; opt-outs as a column

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

APScheduler's job store creates its own table (apscheduler_jobs) when the scheduler starts.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from storage.migrations.helpers import BigId, add_reference

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "broadcasts",
        sa.Column("id", BigId, nullable=False),
        sa.Column("author_id", BigId, nullable=True),
        sa.Column("area_code", sa.String(length=40), nullable=False),
        sa.Column("audience", sa.JSON(), nullable=False),
        sa.Column("template", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("send_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("every_year", sa.String(length=11), nullable=True),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["author_id"], ["persons.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["area_code"], ["areas.code"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_broadcasts_status", "broadcasts", ["status"])
    op.create_table(
        "broadcast_runs",
        sa.Column("id", BigId, nullable=False),
        sa.Column("broadcast_id", BigId, nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["broadcast_id"], ["broadcasts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("broadcast_id", "due_at", name="uq_broadcast_run_due"),
    )
    add_reference("outbox", "run_id", BigId, "broadcast_runs.id")
    op.create_index("ix_outbox_run_person", "outbox", ["run_id", "person_id"], unique=True)
    op.create_table(
        "reminders",
        sa.Column("id", BigId, nullable=False),
        sa.Column("person_id", BigId, nullable=False),
        sa.Column("module", sa.String(length=40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["person_id"], ["persons.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("person_id", "module", "number", name="uq_reminder_person_module_number"),
    )
    op.add_column("persons", sa.Column("opted_out_at", sa.DateTime(timezone=True), nullable=True))
    subscribed = (
        "json_extract(state, '$.subscribed') = 0"
        if op.get_bind().dialect.name == "sqlite"
        else "(state::jsonb ->> 'subscribed') = 'false'"
    )
    op.execute(
        "UPDATE persons SET opted_out_at = (SELECT updated_at FROM conversations c WHERE c.person_id = persons.id) "
        f"WHERE id IN (SELECT person_id FROM conversations WHERE {subscribed})"
    )


def downgrade() -> None:
    op.drop_column("persons", "opted_out_at")
    op.drop_table("reminders")
    op.drop_index("ix_outbox_run_person", "outbox")
    op.drop_column("outbox", "run_id")
    op.drop_table("broadcast_runs")
    op.drop_table("broadcasts")
