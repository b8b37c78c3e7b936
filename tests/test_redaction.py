"""A message holding an OTP, ID, card number or password leaves no trace in storage, logs or exports."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.community.consent import AGREE
from bot.dispatcher import Dispatcher, Envelope
from bot.export import export_csv
from flows.catalog import Catalog
from flows.types import Inbound, InboundKind
from storage.models import Base
from tests.helpers import T0

SECRETS = {
    "otp": ("mã OTP của tôi là 739184", "739184"),
    "id": ("số căn cước của tôi 079186123457", "079186123457"),
    "card": ("thẻ 4539 1488 0343 6467 bị khóa", "4539148803436467"),
    "password": ("mật khẩu VNeID là Lan@2468 đúng không", "Lan@2468"),
    "pasted": ("Vietcombank: nhap ma OTP 551937 tai vcb-xacminh.top ngay", "551937"),
}
TRACES = [
    *(secret for _, secret in SECRETS.values()),
    "4539 1488 0343 6467",
    "vcb-xacminh",
    "Lan@2468",
]


async def all_stored_text(sessions: async_sessionmaker[AsyncSession]) -> str:
    """Every value of every row of every table, as text."""
    parts = []
    async with sessions() as session:
        for table in Base.metadata.sorted_tables:
            for row in (await session.execute(select(table))).all():
                parts += [json.dumps(v, ensure_ascii=False, default=str) for v in row]
    return "\n".join(parts)


def envelope(n: int, text: str = "", kind: InboundKind = InboundKind.TEXT, button: str = "") -> Envelope:
    return Envelope("console", f"e{n}", "resident", Inbound(kind, T0, text=text, button_id=button))


async def test_secrets_leave_no_trace(
    shipped: Catalog, sessions, db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    dispatcher = Dispatcher(shipped, sessions)
    inbounds = [
        envelope(0, kind=InboundKind.START),
        envelope(9, SECRETS["otp"][0]),  # before agreeing: answered with the consent question, not kept
        envelope(10, kind=InboundKind.BUTTON, button=AGREE),
        envelope(1, "cai vneid ntn"),
        envelope(2, SECRETS["otp"][0]),
        envelope(3, SECRETS["id"][0]),
        envelope(4, SECRETS["card"][0]),
        envelope(5, SECRETS["password"][0]),
        envelope(6, kind=InboundKind.BUTTON, button="scam_check"),
        envelope(7, SECRETS["pasted"][0]),  # checked as a suspicious message, also not stored
        envelope(8, "gặp người hỗ trợ"),
    ]
    for inbound in inbounds:
        assert await dispatcher.handle(inbound)

    stored = await all_stored_text(sessions)
    assert "vneid" in stored  # the scan does see the conversation...
    assert "help_requested" in stored
    assert shipped.say("secret_warning").splitlines()[0] in stored  # ...and the warnings that were queued
    for trace in TRACES:
        assert trace not in stored, trace

    out = tmp_path / "log.csv"
    assert await export_csv(sessions, shipped, out) > 0
    exported = out.read_text(encoding="utf-8-sig")
    assert all(trace not in exported for trace in TRACES)
    assert all(trace not in caplog.text for trace in TRACES)

    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":  # the file itself, free pages and journal included
        files = [Path(url.database), *Path(url.database).parent.glob("*.db-*")]
        raw = b"".join(f.read_bytes() for f in files if f.is_file())
        for trace in TRACES:
            assert trace.encode() not in raw, trace
