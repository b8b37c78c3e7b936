"""Broadcasts from the dashboard (both databases): the form, a refused template, the preview's counts,
one confirmation, the officer's areas only, and the overview's table."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from storage.models import Broadcast, BroadcastStatus, ChannelIdentity
from tests.dashboard_site import Site, open_site


@pytest.fixture
async def site(db_url: str, tmp_path: Path) -> AsyncIterator[Site]:
    async with open_site(db_url, tmp_path) as opened:
        yield opened


async def reachable(site: Site, area: str, name: str, chat: int) -> None:
    person_id, _ = await site.person(area, name)
    async with site.app.sessions.begin() as session:
        session.add(
            ChannelIdentity(person_id=person_id, channel="telegram", external_id=str(chat), created_at=site.now)
        )


async def broadcasts(site: Site) -> list[Broadcast]:
    async with site.app.sessions() as session:
        return list(await session.scalars(select(Broadcast).order_by(Broadcast.id)))


async def test_an_officer_previews_then_confirms_a_broadcast_once(site: Site) -> None:
    await reachable(site, "demo-thon-1", "Bà Tư", 1)
    await reachable(site, "demo-thon-2", "Ông Ba", 2)
    await reachable(site, "xa-b-thon-1", "Anh Nam", 3)
    csrf = await site.login(await site.officer())
    page = await site.client.get("/dashboard/broadcast")
    assert page.status == 200
    html = await page.text()
    assert "Thôn Đông" in html
    assert "Thôn Bên Sông" not in html  # commune B is not theirs

    form = {"csrf": csrf, "area": "demo", "who": "all", "text": "Chào {{ ten }} ở {{ thon }}", "when": "now"}
    preview = await site.client.post("/dashboard/broadcast", data=form)
    assert preview.status == 200
    html = await preview.text()
    assert "Gửi tới <strong>2</strong> người" in html
    assert "Chào Bà Tư ở Thôn Đông" in html or "Chào Ông Ba ở Thôn Tây" in html
    [draft] = await broadcasts(site)
    assert draft.status == BroadcastStatus.DRAFT

    confirm = {"csrf": csrf, "broadcast": str(draft.id), "action": "send"}
    assert (await site.client.post("/dashboard/broadcast/confirm", data={**confirm, "csrf": "x"})).status == 403
    sent = await site.client.post("/dashboard/broadcast/confirm", data=confirm)
    assert "Đã nhận thông báo" in await sent.text()
    again = await site.client.post("/dashboard/broadcast/confirm", data=confirm)
    assert "đã được gửi đi rồi" in await again.text()
    [confirmed] = await broadcasts(site)
    assert confirmed.status == BroadcastStatus.SCHEDULED
    assert len(await site.audit("broadcast_confirmed")) == 1
    overview = await site.client.get("/dashboard/")
    assert "Chào {{ ten }} ở {{ thon }}" in await overview.text()


async def test_escapes_other_communes_and_empty_audiences_are_refused(site: Site) -> None:
    await reachable(site, "demo-thon-1", "Bà Tư", 1)
    csrf = await site.login(await site.officer())
    cases = [
        ({"area": "demo", "who": "all", "text": "{{ ''.__class__.__mro__ }}"}, "Chỉ chèn được"),
        ({"area": "demo", "who": "all", "text": "{% include 'base.html' %}"}, "Chỉ chèn được"),
        ({"area": "xa-b", "who": "all", "text": "Chào"}, "không thuộc phạm vi"),
        ({"area": "demo", "who": "completed", "text": "Chào"}, "Chọn bài học"),
        ({"area": "demo", "who": "completed", "module": "vneid", "text": "Chào"}, "Chưa có ai"),
        (
            {"area": "demo", "who": "all", "text": "Chào", "when": "yearly", "day": "2026-10-10", "time": "22:00"},
            "Chọn giờ khác",
        ),
        ({"area": "demo", "who": "all", "text": "Chào", "when": "at", "day": "2020-01-01", "time": "8:00"}, "đã qua"),
    ]
    for form, expected in cases:
        response = await site.client.post("/dashboard/broadcast", data={"csrf": csrf, **form})
        assert response.status == 400, form
        assert expected in await response.text(), form
    async with site.app.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Broadcast)) == 0


async def test_another_officers_draft_cannot_be_confirmed(site: Site) -> None:
    await reachable(site, "demo-thon-1", "Bà Tư", 1)
    csrf = await site.login(await site.officer())
    form = {"csrf": csrf, "area": "demo", "who": "all", "text": "Họp thôn", "when": "now"}
    assert (await site.client.post("/dashboard/broadcast", data=form)).status == 200
    [draft] = await broadcasts(site)
    other = await site.officer("xa-b", "Anh Khác")
    async with site.app.sessions.begin() as session:
        row = await session.get(Broadcast, draft.id)
        row.author_id = other
    sent = await site.client.post(
        "/dashboard/broadcast/confirm", data={"csrf": csrf, "broadcast": str(draft.id), "action": "send"}
    )
    assert sent.status == 403
    [still] = await broadcasts(site)
    assert still.status == BroadcastStatus.DRAFT


async def test_the_preview_says_who_on_zalo_oa_is_out_of_its_window(db_url: str, tmp_path: Path) -> None:
    zalo = {"zalo_oa_app_id": "1", "zalo_oa_app_secret": "s", "zalo_oa_secret_key": "k"}
    async with open_site(db_url, tmp_path, **zalo) as site:
        for name, chat, last in (("Bà Tư", "z1", site.now), ("Ông Ba", "z2", None)):
            person_id, _ = await site.person("demo-thon-1", name)
            async with site.app.sessions.begin() as session:
                identity = ChannelIdentity(
                    person_id=person_id, channel="zalo_oa", external_id=chat, created_at=site.now
                )
                identity.last_inbound_at = last
                session.add(identity)
        csrf = await site.login(await site.officer())
        form = {"csrf": csrf, "area": "demo", "who": "all", "text": "Họp thôn", "when": "now"}
        html = await (await site.client.post("/dashboard/broadcast", data=form)).text()
    assert "Zalo OA 2" in html
    assert "1 người trên Zalo OA chưa nhắn cho xã trong 7 ngày qua" in html
