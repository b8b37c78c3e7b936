"""dashboard logins: used login links and the sessions they opened

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

Login links are signed and expire after ten minutes; only their use is stored, so that each works
once. The row then stands for the officer's dashboard session until it expires or they log out.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "dashboard_logins",
        sa.Column("nonce", sa.String(length=32), nullable=False),
        sa.Column("person_id", BigId, nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["person_id"], ["persons.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("nonce"),
    )
    op.create_index("ix_dashboard_logins_person_id", "dashboard_logins", ["person_id"])


def downgrade() -> None:
    op.drop_index("ix_dashboard_logins_person_id", table_name="dashboard_logins")
    op.drop_table("dashboard_logins")
