"""community classes, their sign-ups, survey answers; broadcasts may invite to a survey

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from storage.migrations.helpers import BigId

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "classes",
        sa.Column("id", BigId, nullable=False),
        sa.Column("area_code", sa.String(length=40), nullable=False),
        sa.Column("topic", sa.String(length=120), nullable=False),
        sa.Column("for_group", sa.String(length=30), nullable=False),
        sa.Column("module", sa.String(length=40), nullable=True),
        sa.Column("place", sa.String(length=160), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("created_by", BigId, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["area_code"], ["areas.code"]),
        sa.ForeignKeyConstraint(["created_by"], ["persons.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_classes_area_code", "classes", ["area_code"])
    op.create_index("ix_classes_starts_at", "classes", ["starts_at"])
    op.create_table(
        "class_signups",
        sa.Column("id", BigId, nullable=False),
        sa.Column("class_id", BigId, nullable=False),
        sa.Column("person_id", BigId, nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("seat", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reminders_sent", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["class_id"], ["classes.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["person_id"], ["persons.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("class_id", "person_id", name="uq_class_signup_person"),
    )
    op.create_index("ix_class_signups_seat", "class_signups", ["class_id", "seat"], unique=True)
    op.create_index("ix_class_signups_person_id", "class_signups", ["person_id"])
    op.create_table(
        "survey_answers",
        sa.Column("id", BigId, nullable=False),
        sa.Column("survey", sa.String(length=40), nullable=False),
        sa.Column("question", sa.String(length=40), nullable=False),
        sa.Column("respondent", sa.String(length=40), nullable=False),
        sa.Column("person_id", BigId, nullable=False),
        sa.Column("household_id", BigId, nullable=True),
        sa.Column("area_code", sa.String(length=40), nullable=True),
        sa.Column("option", sa.String(length=20), nullable=False),
        sa.Column("value", sa.Integer(), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["person_id"], ["persons.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["household_id"], ["households.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("survey", "question", "respondent", name="uq_survey_answer_respondent"),
    )
    op.create_index("ix_survey_answers_person_id", "survey_answers", ["person_id"])
    op.create_index("ix_survey_answers_area_code", "survey_answers", ["area_code"])
    op.add_column("broadcasts", sa.Column("survey", sa.String(length=40), nullable=True))


def downgrade() -> None:
    op.drop_column("broadcasts", "survey")
    op.drop_table("survey_answers")
    op.drop_table("class_signups")
    op.drop_table("classes")
