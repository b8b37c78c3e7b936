"""zalo: the OA's OAuth tokens, each account's last message (Zalo's sending window), link codes

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

Zalo's refresh token works once: the new pair is inserted and the old row retired (its secrets
wiped) in one transaction. ``channel_identities.last_inbound_at`` is when the account last wrote:
Zalo OA accepts consultation messages only within 7 days of it. A link code joins a person's
accounts on two channels; only its hash is stored.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from storage.migrations.helpers import BigId

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("channel_identities", sa.Column("last_inbound_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "oauth_tokens",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("access_token", sa.Text(), nullable=False),
        sa.Column("refresh_token", sa.Text(), nullable=False),
        sa.Column("access_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_oauth_tokens_provider_retired", "oauth_tokens", ["provider", "retired_at"])
    op.create_table(
        "link_codes",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("person_id", BigId, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["person_id"], ["persons.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code_hash", name="uq_link_codes_code_hash"),
    )
    op.create_index("ix_link_codes_person_id", "link_codes", ["person_id"])


def downgrade() -> None:
    op.drop_index("ix_link_codes_person_id", table_name="link_codes")
    op.drop_table("link_codes")
    op.drop_index("ix_oauth_tokens_provider_retired", table_name="oauth_tokens")
    op.drop_table("oauth_tokens")
    with op.batch_alter_table("channel_identities") as batch:
        batch.drop_column("last_inbound_at")
