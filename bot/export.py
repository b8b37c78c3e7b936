"""Participation-log exports: streamed, pseudonymous, safe to open in Excel."""

from __future__ import annotations

import csv
import hashlib
import hmac
import os
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flows.catalog import EXPORT_COLUMNS, Catalog
from storage.clock import LOCAL_TZ
from storage.models import ParticipationEvent
from storage.repo import app_secret

PSEUDONYM_SECRET = "pseudonym_key"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
STREAM_CHUNK = 2000


def safe_cell(value: object) -> str:
    """Text for a spreadsheet cell that Excel will not run as a formula."""
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(_FORMULA_START) else text


def pseudonym(key: bytes, person_id: int | None) -> str:
    """A stable id that cannot be turned back into the person without the key."""
    if person_id is None:
        return ""
    return "p-" + hmac.new(key, f"person:{person_id}".encode(), hashlib.sha256).hexdigest()[:12]


async def pseudonym_key(sessions: async_sessionmaker[AsyncSession]) -> bytes:
    """The installation's pseudonym key, created on first use and then kept."""
    return bytes.fromhex(await app_secret(sessions, PSEUDONYM_SECRET))


async def export_csv(sessions: async_sessionmaker[AsyncSession], catalog: Catalog, out: Path) -> int:
    """Write the whole participation log to ``out`` (UTF-8 with BOM); return the row count.

    Rows are streamed, and the file appears under its name only when complete.
    """
    key = await pseudonym_key(sessions)
    partial = out.with_name(f".{out.name}.partial")
    count = 0
    try:
        with partial.open("w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow([catalog.messages.labels[f"export.{column}"] for column in EXPORT_COLUMNS])
            async with sessions() as session:
                e = ParticipationEvent
                result = await session.stream(
                    select(e.at, e.person_id, e.channel, e.module, e.module_version, e.kind, e.step, e.assisted_by)
                    .order_by(e.at, e.id)
                    .execution_options(yield_per=STREAM_CHUNK)
                )
                async for at, person_id, channel, module, version, kind, step, assisted_by in result:
                    cells = (
                        at.astimezone(LOCAL_TZ).isoformat(timespec="seconds"),
                        pseudonym(key, person_id),
                        channel,
                        module,
                        version,
                        kind,
                        step,
                        pseudonym(key, assisted_by),
                    )
                    writer.writerow(safe_cell(value) for value in cells)
                    count += 1
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    return count
