"""Shared by migrations."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def add_reference(
    table: str, column: str, type_: sa.types.TypeEngine, target: str, ondelete: str | None = None
) -> None:
    """Add a nullable column with a foreign key; SQLite takes it inline in ADD COLUMN."""
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        ref_table, ref_column = target.split(".")
        action = f" ON DELETE {ondelete}" if ondelete else ""
        kind = type_.compile(dialect=bind.dialect)
        op.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind} REFERENCES {ref_table} ({ref_column}){action}")
    else:
        op.add_column(table, sa.Column(column, type_, sa.ForeignKey(target, ondelete=ondelete), nullable=True))
