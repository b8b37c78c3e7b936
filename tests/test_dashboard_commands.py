"""Getting to the dashboard and the report without a browser: /dangnhap in chat, `hocvuso login`, `hocvuso report`."""

from __future__ import annotations

import re
from pathlib import Path

import docx
import openpyxl
import pytest
from sqlalchemy import select

from bot.cli import main
from bot.dashboard.links import LINK_LIFETIME, dashboard_key, read_token
from bot.dispatcher import Dispatcher
from flows.catalog import Catalog
from flows.community import AreaKind, AreaSpec
from storage.areas import seed_areas, upsert_areas
from storage.models import AuditEntry, Person, Role
from storage.roles import create_invite, grant
from tests.chat import Chat, texts
from tests.helpers import T0

LINK = re.compile(r"(https://bot\.example\.gov\.vn/dashboard/login/(\S+))")


@pytest.fixture
async def town(shipped: Catalog, sessions) -> Dispatcher:
    async with sessions.begin() as session:
        await seed_areas(session, shipped.areas, T0)
    return Dispatcher(shipped, sessions, clock=lambda: T0, base_url="https://bot.example.gov.vn")


async def test_an_officer_gets_a_one_time_link_in_chat_and_a_resident_does_not(
    town: Dispatcher, shipped: Catalog, sessions
) -> None:
    officer, resident = Chat(town, sessions, "officer"), Chat(town, sessions, "resident")
    await officer.join()
    await resident.join()
    person = await officer.person()
    async with sessions.begin() as session:
        await grant(session, person.id, Role.OFFICER, "demo", None, T0)
    reply = texts(await officer.send("/dangnhap"))
    found = LINK.search(reply)
    assert found, reply
    async with sessions.begin() as session:
        claims = read_token(await dashboard_key(session), found.group(2))
    assert claims is not None
    assert claims.person_id == person.id
    assert claims.expires == (T0 + LINK_LIFETIME).replace(microsecond=0)
    assert "đến 08:40 02/11/2026" in reply  # ten minutes after 01:30 UTC, shown in Vietnam time

    refused = texts(await resident.send("/dangnhap"))
    assert refused.startswith(shipped.say("login_officer_only"))
    assert not LINK.search(refused)
    async with sessions() as session:
        entries = list(await session.scalars(select(AuditEntry).where(AuditEntry.action == "login_link_created")))
    assert [(e.actor_id, e.detail["person_id"], e.area_code) for e in entries] == [(person.id, person.id, "demo")]


async def test_officers_are_told_about_dangnhap_when_they_take_the_role(town: Dispatcher, sessions) -> None:
    officer = Chat(town, sessions, "officer")
    await officer.join()
    async with sessions.begin() as session:
        code = await create_invite(session, Role.OFFICER, "demo", None, T0, 72)
    assert "/dangnhap" in texts(await officer.send(f"/ma {code}"))


async def test_the_login_command_prints_a_link_for_officers_only(shipped: Catalog, sessions, cli, monkeypatch) -> None:
    monkeypatch.setenv("HOCVUSO_PUBLIC_URL", "https://bot.example.gov.vn/")
    async with sessions.begin() as session:
        await seed_areas(session, shipped.areas, T0)
        officer, resident = Person(created_at=T0), Person(created_at=T0)
        session.add_all([officer, resident])
        await session.flush()
        await grant(session, officer.id, Role.OFFICER, "demo", None, T0)
    code, out, err = await cli("login", str(officer.id))
    assert (code, err) == (0, "")
    assert LINK.search(out), out
    assert "one use" in out
    code, _, err = await cli("login", str(resident.id))
    assert code == 1
    assert f"person {resident.id} is not an officer" in err


async def test_the_report_command_writes_the_xlsx_and_the_docx(shipped: Catalog, sessions, cli, tmp_path: Path) -> None:
    async with sessions.begin() as session:
        await seed_areas(session, shipped.areas, T0)
    out = tmp_path / "reports"
    code, stdout, err = await cli("report", "--quarter", "2026Q4", "--out-dir", str(out))  # the only commune
    assert (code, err) == (0, "")
    assert "15/09/2026 to 14/12/2026" in stdout
    book = openpyxl.load_workbook(out / "bao-cao-demo-2026Q4.xlsx")
    assert book.sheetnames == [shipped.label(f"report.sheet_{s}") for s in ("summary", "areas", "modules")]
    villages = [row[0] for row in book[shipped.label("report.sheet_areas")].iter_rows(min_row=2, values_only=True)]
    assert villages == ["Thôn Bắc", "Thôn Đông", "Thôn Tây", "Tổ dân phố 1", shipped.label("report.total")]
    document = docx.Document(out / "bao-cao-demo-2026Q4.docx")
    assert "Kết quả thực hiện Phong trào “Bình dân học vụ số” quý IV năm 2026" in [p.text for p in document.paragraphs]
    assert not list(out.glob(".*partial"))
    async with sessions() as session:
        entries = list(await session.scalars(select(AuditEntry).where(AuditEntry.action == "report_created")))
    assert [(e.actor_id, e.area_code, e.detail["quarter"]) for e in entries] == [(None, "demo", "2026Q4")]

    async with sessions.begin() as session:
        await upsert_areas(session, [AreaSpec(code="xa-b", kind=AreaKind.COMMUNE, name="Xã B")], T0)
    for args, message in (
        ([], "choose the commune with --area (communes: xa-b, demo)"),
        (["--area", "nowhere"], "no area 'nowhere'"),
        (["--area", "demo-thon-1"], "is a village"),
    ):
        code, _, err = await cli("report", "--quarter", "2026Q4", "--out-dir", str(out), *args)
        assert code == 1
        assert message in err


def test_a_quarter_is_checked_before_anything_runs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["report", "--quarter", "2026-06"])
    assert stopped.value.code == 2
    assert "write it like 2026Q2" in capsys.readouterr().err
