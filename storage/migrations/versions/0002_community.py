"""areas, households, roles, invites, audit log; consent and anonymous subjects

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

Columns are added with plain ALTER TABLE (no batch copy): on SQLite a batch
copy drops and recreates ``persons``, and with foreign keys on that would
cascade into every table that points at it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from storage.migrations.helpers import BigId, add_reference

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "areas",
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("parent_code", sa.String(length=40), nullable=True),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("households", sa.Integer(), nullable=True),
        sa.Column("adults", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["parent_code"], ["areas.code"]),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_index("ix_areas_parent_code", "areas", ["parent_code"])
    op.create_table(
        "households",
        sa.Column("id", BigId, nullable=False),
        sa.Column("code", sa.String(length=12), nullable=False),
        sa.Column("area_code", sa.String(length=40), nullable=False),
        sa.Column("label", sa.String(length=80), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["area_code"], ["areas.code"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
    )
    op.create_index("ix_households_area_code", "households", ["area_code"])

    op.add_column("persons", sa.Column("subject", sa.BigInteger(), nullable=True))
    random_key = "abs(random())" if op.get_bind().dialect.name == "sqlite" else "floor(random() * 9e18)::bigint"
    op.execute(f"UPDATE persons SET subject = {random_key}")
    op.add_column("persons", sa.Column("consented_at", sa.DateTime(timezone=True), nullable=True))
    add_reference("persons", "area_code", sa.String(40), "areas.code")
    add_reference("persons", "household_id", BigId, "households.id", ondelete="SET NULL")
    add_reference("persons", "mentor_id", BigId, "persons.id", ondelete="SET NULL")
    op.add_column("persons", sa.Column("mentor_code", sa.String(12), nullable=True))
    op.create_index("ix_persons_area_code", "persons", ["area_code"])
    op.create_index("ix_persons_household_id", "persons", ["household_id"])
    op.create_index("ix_persons_mentor_id", "persons", ["mentor_id"])
    op.create_index("ix_persons_mentor_code", "persons", ["mentor_code"], unique=True)

    op.create_table(
        "role_grants",
        sa.Column("id", BigId, nullable=False),
        sa.Column("person_id", BigId, nullable=False),
        sa.Column("role", sa.String(length=12), nullable=False),
        sa.Column("area_code", sa.String(length=40), nullable=False),
        sa.Column("granted_by", BigId, nullable=True),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["area_code"], ["areas.code"]),
        sa.ForeignKeyConstraint(["granted_by"], ["persons.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["person_id"], ["persons.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_role_grants_person", "role_grants", ["person_id", "revoked_at"])
    op.create_table(
        "invites",
        sa.Column("id", BigId, nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=12), nullable=False),
        sa.Column("area_code", sa.String(length=40), nullable=False),
        sa.Column("created_by", BigId, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_by", BigId, nullable=True),
        sa.ForeignKeyConstraint(["area_code"], ["areas.code"]),
        sa.ForeignKeyConstraint(["created_by"], ["persons.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["used_by"], ["persons.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code_hash"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", BigId, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_id", BigId, nullable=True),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("area_code", sa.String(length=40), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["actor_id"], ["persons.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])

    op.add_column("participation_events", sa.Column("subject", sa.BigInteger(), nullable=True))
    op.add_column("participation_events", sa.Column("area_code", sa.String(length=40), nullable=True))
    add_reference("participation_events", "corrects_id", BigId, "participation_events.id")
    op.create_index("ix_participation_events_subject", "participation_events", ["subject"])
    op.create_index("ix_participation_events_area_code", "participation_events", ["area_code"])


def downgrade() -> None:
    raise NotImplementedError("0002 adds personal-data tables; restore a backup to go back")
