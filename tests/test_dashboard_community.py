"""The dashboard's classes and survey results (scoped to the officer's areas), and the self-reported
indicators next to the targets on the overview and in the quarterly report (both databases)."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import AsyncIterator
from pathlib import Path

import docx
import openpyxl
import pytest

from bot.reports.periods import Quarter
from storage.clock import LOCAL_TZ
from storage.models import CommunityClass, SurveyAnswer
from tests.dashboard_site import Site, open_site


@pytest.fixture
async def site(db_url: str, tmp_path: Path) -> AsyncIterator[Site]:
    async with open_site(db_url, tmp_path) as opened:
        yield opened


async def answered(site: Site, area: str, respondent: str, values: dict[str, int]) -> None:
    person_id, _ = await site.person(area)
    async with site.app.sessions.begin() as session:
        session.add_all(
            SurveyAnswer(
                survey="chi_so_so",
                question=question,
                respondent=respondent,
                person_id=person_id,
                area_code=area,
                option=f"n{value}",
                value=value,
                answered_at=site.now - dt.timedelta(hours=1),
            )
            for question, value in values.items()
        )


async def classes(site: Site) -> None:
    async with site.app.sessions.begin() as session:
        for area, topic in (("demo-thon-1", "Cài VNeID ở thôn Đông"), ("xa-b-thon-1", "Lớp của xã bên kia")):
            session.add(
                CommunityClass(
                    area_code=area,
                    topic=topic,
                    for_group="elderly",
                    place="Nhà văn hóa",
                    starts_at=site.now + dt.timedelta(days=2),
                    capacity=20,
                    created_at=site.now,
                )
            )


async def test_classes_and_survey_results_per_village_within_the_officers_scope(site: Site) -> None:
    await classes(site)
    await answered(site, "demo-thon-1", "h1", {"smartphone": 3, "epayment": 1, "vneid_level2": 2})
    await answered(site, "demo-thon-1", "h2", {"smartphone": 2, "epayment": 2, "vneid_level2": 0})
    await answered(site, "demo-thon-2", "h3", {"smartphone": 4, "epayment": 0, "vneid_level2": 1})
    await answered(site, "xa-b-thon-1", "h4", {"smartphone": 1, "epayment": 1, "vneid_level2": 1})
    await site.login(await site.officer())

    page = await site.client.get("/dashboard/community?area=demo")
    assert page.status == 200
    html = await page.text()
    assert "Cài VNeID ở thôn Đông" in html
    assert "0/20" in html
    assert "Lớp của xã bên kia" not in html
    assert "Cộng: 5 người" in html  # Thôn Đông's smartphones: 3 + 2
    assert "Cộng: 9 người" in html  # the commune: 3 + 2 + 4 (commune B's answer left out)
    assert "(người dân tự khai)" in html
    assert (await site.client.get("/dashboard/community?area=xa-b")).status == 403

    overview = await (await site.client.get("/dashboard/?area=demo")).text()
    assert "Người trưởng thành có điện thoại thông minh (tự khai) (chỉ tiêu" in overview
    assert "5/910" in overview  # Thôn Đông: 5 adults reported, of 910


async def test_the_report_shows_the_self_reported_indicators_next_to_the_targets(site: Site) -> None:
    await answered(site, "demo-thon-1", "h1", {"smartphone": 3, "epayment": 1, "vneid_level2": 2})
    officer = await site.officer()
    csrf = await site.login(officer)
    quarter = Quarter.of(site.now.astimezone(LOCAL_TZ).date())
    form = {"csrf": csrf, "area": "demo", "quarter": str(quarter)}
    book = openpyxl.load_workbook(
        io.BytesIO(await (await site.client.post("/dashboard/report", data={**form, "document": "xlsx"})).read())
    )
    summary = {
        row[0]: row[1] for row in book[site.app.catalog.label("report.sheet_summary")].iter_rows(values_only=True)
    }
    phones = summary["Người trưởng thành có điện thoại thông minh (tự khai)"]
    assert phones.startswith("Người trưởng thành có điện thoại thông minh: 3 trên 3.350 người")
    assert "(tự khai)" in phones
    document = docx.Document(
        io.BytesIO(await (await site.client.post("/dashboard/report", data={**form, "document": "docx"})).read())
    )
    text = "\n".join(p.text for p in document.paragraphs)
    assert "7. Chỉ số người dân tự khai qua khảo sát" in text
    assert "- Người có tài khoản VNeID mức 2: 2 trên 3.350 người" in text
