"""The officers' dashboard over HTTP (both databases): login links, sessions, scope, CSRF, every page,
the exports and the reports, opened with openpyxl and python-docx."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path

import docx
import openpyxl
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from bot.dashboard.links import issue_login_link
from bot.dashboard.views import Dashboard
from bot.export import pseudonym, pseudonym_key
from bot.reports.periods import Quarter
from storage.metrics import area_metrics
from storage.models import DashboardLogin, Person
from storage.roles import active_grants, revoke
from tests.dashboard_site import Site, csrf_in, open_site

FORMULA = '=HYPERLINK("http://attacker.example","bấm vào đây")'


@pytest.fixture
async def site(db_url: str, tmp_path: Path) -> AsyncIterator[Site]:
    async with open_site(db_url, tmp_path) as opened:
        yield opened


async def town(site: Site) -> dict[str, tuple[int, int]]:
    """Residents in both communes with some learning: Bà Tư (a formula as her name) in commune A."""
    people = {
        "tu": await site.person("demo-thon-1", FORMULA),
        "ba": await site.person("demo-thon-2", "Ông Ba"),
        "nam": await site.person("xa-b-thon-1", "Anh Nam Bên Sông"),
    }
    await site.events(people["tu"], "demo-thon-1", ("started", "vneid"), ("completed", "vneid"), ("stuck", "lua_dao"))
    await site.events(people["ba"], "demo-thon-2", ("started", "lua_dao"), ("help_requested", "lua_dao"))
    await site.events(people["nam"], "xa-b-thon-1", ("started", "vneid"), ("completed", "vneid"))
    return people


def rows_of(body: bytes) -> list[list[str]]:
    assert body.startswith("\ufeff".encode()), "CSV for Excel starts with a BOM"
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))


# --- login ------------------------------------------------------------------------------------


async def test_a_login_link_opens_a_strict_http_only_session_once(site: Site) -> None:
    officer = await site.officer()
    path = await site.link(officer)
    assert re.fullmatch(r"/dashboard/login/[\w.-]+", path)
    for _ in range(2):  # a chat app previewing the link uses nothing
        page = await site.client.get(path)
        assert page.status == 200
        assert "Vào trang quản lý" in await page.text()
    token = csrf_in(await page.text())
    done = await site.client.post(path, data={"csrf": token}, allow_redirects=False)
    assert done.status == 303
    assert done.headers["Location"] == "/dashboard/"
    cookie = next(v for v in done.headers.getall("Set-Cookie") if v.startswith("hocvuso_dashboard="))
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain http here; see the https test
    assert "Xã Mẫu" in await (await site.client.get("/dashboard/")).text()
    assert [e.detail["person_id"] for e in await site.audit("login_link_created")] == [officer]
    assert [e.actor_id for e in await site.audit("login")] == [officer]

    again = await site.client.post(path, data={"csrf": token}, allow_redirects=False)
    assert again.status == 410
    assert "đã được dùng" in await again.text()
    assert (await site.client.get(path)).status == 410


async def test_an_expired_or_forged_link_is_refused(site: Site) -> None:
    officer = await site.officer()
    old = await site.link(officer, now=site.now - dt.timedelta(minutes=11))
    page = await site.client.get(old)
    assert page.status == 410
    assert "hết hạn" in await page.text()
    refused = await site.client.post(old, data={"csrf": "x"}, cookies={"hocvuso_login": "x"})
    assert refused.status == 410
    fresh = await site.link(officer)
    forged = fresh[:-3] + ("AAA" if not fresh.endswith("AAA") else "BBB")
    assert (await site.client.get(forged)).status == 404
    other = re.sub(r"/login/(\d+)\.", "/login/999.", fresh)  # someone else's id under the same signature
    assert (await site.client.get(other)).status == 404
    async with site.app.sessions() as session:
        assert await session.scalar(select(DashboardLogin.nonce)) is None  # nothing was used
    assert (await site.client.get("/dashboard/")).status == 401


async def test_only_officers_get_links_and_sessions_end_with_the_role(site: Site) -> None:
    resident, _ = await site.person("demo-thon-1")
    async with site.app.sessions.begin() as session:
        assert await issue_login_link(session, resident, "http://bot.test", site.now, None) is None
    officer = await site.officer()
    await site.login(officer)
    async with site.app.sessions.begin() as session:
        (role,) = await active_grants(session, officer)
        assert await revoke(session, role.id, None, site.now)
    page = await site.client.get("/dashboard/")
    assert page.status == 403
    assert "chưa có quyền cán bộ" in await page.text()


async def test_logging_out_ends_the_session_on_the_server(site: Site) -> None:
    officer = await site.officer()
    csrf = await site.login(officer)
    cookie = site.client.session.cookie_jar.filter_cookies(site.client.make_url("/dashboard/"))["hocvuso_dashboard"]
    out = await site.client.post("/dashboard/logout", data={"csrf": csrf})
    assert out.status == 200
    assert "đã đăng xuất" in await out.text()
    assert (await site.client.get("/dashboard/")).status == 401
    replayed = await site.client.get("/dashboard/", cookies={"hocvuso_dashboard": cookie.value})
    assert replayed.status == 401  # the old cookie is worth nothing now
    assert [e.actor_id for e in await site.audit("logout")] == [officer]


async def test_cookies_are_secure_behind_https(site: Site) -> None:
    dashboard = Dashboard(site.app.catalog, site.app.sessions, public_url="https://bot.example.gov.vn")
    server = web.Application()
    server.add_subapp("/dashboard/", dashboard.application())
    async with TestClient(TestServer(server)) as client:
        path = await site.link(await site.officer())
        page = await client.get(path)
        assert "Secure" in page.headers["Set-Cookie"]
        token = csrf_in(await page.text())
        # a browser sends a Secure cookie back over https only; this test client talks http, so by hand
        done = await client.post(
            path, data={"csrf": token}, headers={"Cookie": f"hocvuso_login={token}"}, allow_redirects=False
        )
        cookie = next(v for v in done.headers.getall("Set-Cookie") if v.startswith("hocvuso_dashboard="))
        assert "Secure" in cookie
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie


# --- CSRF, scope, every page -------------------------------------------------------------------


async def test_a_post_without_the_csrf_token_is_refused(site: Site) -> None:
    await town(site)
    await site.login(await site.officer())
    forms = {
        "/dashboard/export": {"area": "demo", "format": "csv"},
        "/dashboard/report": {"area": "demo", "quarter": "2026Q4", "document": "xlsx"},
        "/dashboard/logout": {},
    }
    for path, form in forms.items():
        assert (await site.client.post(path, data=form)).status == 403, path
        assert (await site.client.post(path, data={**form, "csrf": "forged"})).status == 403, path
    assert await site.audit("log_exported") == []
    assert await site.audit("report_created") == []
    assert (await site.client.get("/dashboard/")).status == 200  # still logged in: logout was refused too
    path = await site.link(await site.officer())
    page = await site.client.get(path)
    assert (await site.client.post(path, data={"csrf": "guess"})).status == 403  # login form: double submit
    assert (await site.client.post(path, data={"csrf": csrf_in(await page.text())})).status == 200


async def test_an_officer_of_commune_a_cannot_see_commune_b(site: Site) -> None:
    await town(site)
    csrf = await site.login(await site.officer("demo"))
    overview = await (await site.client.get("/dashboard/")).text()
    assert "Thôn Đông" in overview
    assert "Bên Sông" not in overview
    assert "Xã Bên Kia" not in overview
    for code in ("xa-b", "xa-b-thon-1", "nowhere"):
        page = await site.client.get(f"/dashboard/?area={code}")
        assert page.status == 403, code
        assert "Bên Sông" not in await page.text()
    export = await site.client.post("/dashboard/export", data={"csrf": csrf, "area": "xa-b", "format": "csv"})
    assert export.status == 400
    assert "không thuộc phạm vi" in await export.text()
    report = await site.client.post(
        "/dashboard/report", data={"csrf": csrf, "area": "xa-b", "quarter": "2026Q4", "document": "xlsx"}
    )
    assert report.status == 400
    for page in ("/dashboard/export", "/dashboard/report"):
        assert "Bên Kia" not in await (await site.client.get(page)).text()
    whole = await site.client.post("/dashboard/export", data={"csrf": csrf, "format": "csv"})
    assert all(row[8] != "Thôn Bên Sông" for row in rows_of(await whole.read())[1:])
    assert await site.audit("report_created") == []
    assert [e.area_code for e in await site.audit("log_exported")] == ["demo"]


async def test_every_page_needs_a_session_and_carries_the_security_headers(site: Site) -> None:
    pages = ["/dashboard/", "/dashboard/export", "/dashboard/report"]
    for path in pages:
        page = await site.client.get(path)
        assert page.status == 401, path
        assert "/dangnhap" in await page.text()
    assert (await site.client.get("/dashboard", allow_redirects=False)).headers["Location"] == "/dashboard/"
    await site.login(await site.officer())
    for path in [*pages, "/dashboard/static/dashboard.css"]:
        page = await site.client.get(path)
        assert page.status == 200, path
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        assert page.headers["X-Frame-Options"] == "DENY"
        assert page.headers["Referrer-Policy"] == "no-referrer"
        html = await page.text()
        assert not re.search(r"(src|href)=\"(https?:)?//", html), f"{path} loads something from elsewhere"
        assert "<script" not in html
    for path in pages:
        html = await (await site.client.get(path)).text()
        assert html.count('name="csrf"') == html.count('<form method="post"'), path  # every POST form has it


async def test_the_overview_shows_progress_funnels_help_volunteers_messages_and_the_due_date(site: Site) -> None:
    await town(site)
    csrf_page = await site.login(await site.officer("demo", "Chị Lan"))
    assert csrf_page
    html = await (await site.client.get("/dashboard/")).text()
    for expected in (
        "Thôn Đông",  # a village row, with a link to its own page
        "/dashboard/?area=demo-thon-1",
        "0/910",  # adults done over the official adults of Thôn Đông
        "Cài và dùng VNeID",  # a funnel row
        "Người dân đang chờ hỗ trợ",
        "<td>Chị Lan</td>",  # in the table of role holders (officers do volunteers' work too)
        "Báo cáo quý",
        '<svg class="chart"',
        '<polyline class="line line-adults"',
    ):
        assert expected in html, expected
    quarter = Quarter.of(site.now.astimezone(dt.timezone(dt.timedelta(hours=7))).date())
    assert f"Báo cáo quý {quarter.roman}/{quarter.year}</strong>: nộp trước ngày {quarter.due:%d/%m/%Y}" in html
    key = await pseudonym_key(site.app.sessions)
    waiting = re.findall(r"<code>(p-[0-9a-f]+)</code>", html)
    people = await town_people(site)
    assert waiting == [pseudonym(key, people["Ông Ba"])]  # Ông Ba asked for help; Bà Tư only got stuck
    village = await (await site.client.get("/dashboard/?area=demo-thon-1")).text()
    assert "← Về cấp trên" in village
    assert "Thôn Tây" not in village.split("Tiến độ so với")[1].split("</table>")[0]


async def town_people(site: Site) -> dict[str, int]:
    async with site.app.sessions() as session:
        return {name: pid for pid, name in await session.execute(select(Person.id, Person.display_name))}


# --- exports ------------------------------------------------------------------------------------


async def test_the_csv_export_streams_the_officers_rows_pseudonymous_unless_names_are_asked(site: Site) -> None:
    people = await town(site)
    officer = await site.officer()
    csrf = await site.login(officer)
    response = await site.client.post("/dashboard/export", data={"csrf": csrf, "area": "demo", "format": "csv"})
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Transfer-Encoding"] == "chunked"  # streamed, not built in memory
    assert re.fullmatch(r'attachment; filename="nhat-ky-demo-\d{8}\.csv"', response.headers["Content-Disposition"])
    header, *rows = rows_of(await response.read())
    assert header == [
        site.app.catalog.label(f"export.{c}")
        for c in ("at", "person", "channel", "module", "module_version", "kind", "step", "assisted_by", "area")
    ]
    key = await pseudonym_key(site.app.sessions)
    assert {r[1] for r in rows} == {pseudonym(key, people["tu"][0]), pseudonym(key, people["ba"][0])}
    assert {r[8] for r in rows} == {"Thôn Đông", "Thôn Tây"}
    assert len(rows) == 5
    body = "\n".join(",".join(r) for r in rows)
    assert "Ông Ba" not in body
    assert "HYPERLINK" not in body

    named = await site.client.post(
        "/dashboard/export", data={"csrf": csrf, "area": "demo", "format": "csv", "names": "yes"}
    )
    header, *rows = rows_of(await named.read())
    assert header[-2:] == [site.app.catalog.label("export.name"), site.app.catalog.label("export.assisted_by_name")]
    names = {r[9] for r in rows}
    assert names == {"Ông Ba", "'" + FORMULA}  # the formula a resident typed as her name is text, not a formula
    audits = await site.audit("log_exported")
    assert [(a.actor_id, a.area_code, a.detail["names"], a.detail["format"]) for a in audits] == [
        (officer, "demo", False, "csv"),
        (officer, "demo", True, "csv"),
    ]


async def test_the_xlsx_export_opens_in_openpyxl_and_a_formula_name_stays_inert(site: Site) -> None:
    await town(site)
    csrf = await site.login(await site.officer())
    response = await site.client.post(
        "/dashboard/export", data={"csrf": csrf, "area": "demo-thon-1", "format": "xlsx", "names": "yes"}
    )
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    book = openpyxl.load_workbook(io.BytesIO(await response.read()))
    labels = site.app.catalog.label
    assert book.sheetnames == [labels("export.sheet"), labels("export.legend_sheet")]
    sheet = book[labels("export.sheet")]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][0] == labels("export.at")
    assert [r[5] for r in rows[1:]] == ["started", "completed", "stuck"]
    assert {r[8] for r in rows[1:]} == {"Thôn Đông"}
    assert rows[1][4] == 1  # the module version is a number
    name_cells = [row[9] for row in sheet.iter_rows(min_row=2)]
    assert all(cell.value == "'" + FORMULA and cell.data_type == "s" for cell in name_cells)
    legend = dict(book[labels("export.legend_sheet")].iter_rows(min_row=2, values_only=True))
    assert legend["help_requested"] == labels("kind.help_requested")


async def test_export_filters_by_dates_module_and_kind(site: Site) -> None:
    who = await site.person("demo-thon-1")
    local = dt.timezone(dt.timedelta(hours=7))
    june = dt.datetime(2026, 6, 14, 23, 30, tzinfo=local)  # the last evening of quý II, local time
    await site.events(who, "demo-thon-1", ("started", "vneid"), ("completed", "vneid"), at=june)
    await site.events(who, "demo-thon-1", ("started", "lua_dao"), at=june + dt.timedelta(hours=1))  # 15/06
    csrf = await site.login(await site.officer())

    async def export(**form: str) -> list[list[str]]:
        response = await site.client.post("/dashboard/export", data={"csrf": csrf, "format": "csv", **form})
        assert response.status == 200, await response.text()
        return rows_of(await response.read())[1:]

    assert len(await export(since="2026-03-15", until="2026-06-14")) == 2
    assert len(await export(since="15/06/2026")) == 1  # typed the Vietnamese way
    assert [r[5] for r in await export(module="vneid", kind="completed")] == ["completed"]
    assert await export(module="lua_dao", until="2026-06-14") == []
    bad = await site.client.post("/dashboard/export", data={"csrf": csrf, "since": "2026-07-01", "until": "2026-06-01"})
    assert bad.status == 400
    assert "phải trước" in await bad.text()
    bad = await site.client.post("/dashboard/export", data={"csrf": csrf, "since": "31/02/2026", "module": "nope"})
    assert bad.status == 400
    text = await bad.text()
    assert "“Từ ngày” chưa đúng" in text
    assert "Bài học này không có" in text


# --- reports ------------------------------------------------------------------------------------


async def test_the_report_comes_as_xlsx_tables_and_a_docx_draft(site: Site) -> None:
    await town(site)
    officer = await site.officer()
    csrf = await site.login(officer)
    today = site.now.astimezone(dt.timezone(dt.timedelta(hours=7))).date()
    quarter = Quarter.of(today)
    form = {"csrf": csrf, "area": "demo", "quarter": str(quarter)}

    response = await site.client.post("/dashboard/report", data={**form, "document": "xlsx"})
    assert response.status == 200
    assert f'filename="bao-cao-demo-{quarter}.xlsx"' in response.headers["Content-Disposition"]
    book = openpyxl.load_workbook(io.BytesIO(await response.read()))
    label = site.app.catalog.label
    assert book.sheetnames == [
        label("report.sheet_summary"),
        label("report.sheet_areas"),
        label("report.sheet_modules"),
    ]
    areas = list(book[label("report.sheet_areas")].iter_rows(values_only=True))
    assert areas[0][0] == label("report.col_village")
    by_name = {row[0]: row for row in areas[1:]}
    async with site.app.sessions() as session:
        metrics = {
            m.name: m for m in await area_metrics(session, site.app.catalog.community, ["demo"], year=quarter.year)
        }
    for name in ("Thôn Đông", "Thôn Tây"):
        assert by_name[name][1] == by_name[name][3] == metrics[name].people_reached  # all of it happened this quarter
        assert by_name[name][6] == metrics[name].adults_completed
    total = by_name[label("report.total")]
    assert total[3] == metrics["Xã Mẫu (dữ liệu ví dụ)"].people_reached == 2
    modules = {row[0]: row for row in book[label("report.sheet_modules")].iter_rows(min_row=2, values_only=True)}
    assert modules["Cài và dùng VNeID"][1:3] == (1, 1)  # started, completed in the quarter
    assert modules["Phòng chống lừa đảo"][7] == 1  # stuck, cumulative

    response = await site.client.post("/dashboard/report", data={**form, "document": "docx"})
    assert response.status == 200
    document = docx.Document(io.BytesIO(await response.read()))
    header = document.tables[0]
    assert header.cell(0, 0).text.startswith("ỦY BAN NHÂN DÂN XÃ MẪU")
    assert "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM\nĐộc lập - Tự do - Hạnh phúc" in header.cell(0, 1).text
    text = "\n".join(p.text for p in document.paragraphs)
    for heading in ("I. KẾT QUẢ THỰC HIỆN", "II. KHÓ KHĂN, VƯỚNG MẮC VÀ NGUYÊN NHÂN", "III. ĐỀ XUẤT, KIẾN NGHỊ"):
        assert heading in text
    assert f"quý {quarter.roman} năm {quarter.year}" in text
    assert f"Số liệu tính từ ngày {quarter.start:%d/%m/%Y} đến hết ngày {quarter.end:%d/%m/%Y}" in text
    assert "1. Người dân tham gia học: 2 người mới trong quý" in text
    assert text.count(label("report.fill_in")) == 4  # results, difficulties, causes, proposals left to write
    assert "Còn 1 lượt người dân nhờ người hỗ trợ" in text  # a hint from the figures
    assert document.styles["Normal"].font.name == "Times New Roman"
    villages = document.tables[1]
    assert [row.cells[0].text for row in villages.rows][1:] == [
        "Thôn Bắc",
        "Thôn Đông",
        "Thôn Tây",
        "Tổ dân phố 1",
        label("report.total"),
    ]
    audits = await site.audit("report_created")
    assert [(a.actor_id, a.area_code, a.detail["format"]) for a in audits] == [
        (officer, "demo", "xlsx"),
        (officer, "demo", "docx"),
    ]
