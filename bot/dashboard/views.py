"""The officers' dashboard under /dashboard/: login by link, the overview, log exports and quarterly reports.

Every page but the login pages needs an open session; every area asked for is checked against the
officer's scope (``storage.roles.scope``) on each request; every POST carries the session's CSRF token;
every export and report is audited before the first byte leaves.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import secrets
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from importlib.resources import files
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.broadcasts import scheduler as broadcast_scheduler
from bot.broadcasts import service as broadcast_service
from bot.dashboard.auth import (
    COOKIE_PATH,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    NoLongerOfficer,
    NotLoggedIn,
    Officer,
    officer_of,
    set_cookie,
)
from bot.dashboard.community import community_page
from bot.dashboard.forms import (
    BroadcastRequest,
    ExportRequest,
    ReportRequest,
    kind_choices,
    module_choices,
    quarter_choices,
    read_broadcast,
    read_export,
    read_report,
)
from bot.dashboard.links import (
    LOGIN_PATH,
    SESSION_LIFETIME,
    LinkClaims,
    csrf_valid,
    dashboard_key,
    read_token,
    session_cookie,
)
from bot.dashboard.overview import overview
from bot.export import ExportFormat, csv_bytes, pseudonym_key, write_xlsx
from bot.pages import render
from bot.reports.document import write_report_docx
from bot.reports.figures import authority_name, report_figures
from bot.reports.workbook import write_report_xlsx
from flows.catalog import Catalog
from flows.community import AreaKind
from storage.areas import area_tree
from storage.clock import LOCAL_TZ, Clock, utc_now
from storage.logins import claim_login, end_login
from storage.models import Area, Broadcast, BroadcastStatus, DashboardLogin, Role
from storage.roles import audit, scope

OFFICER = web.RequestKey("officer", Officer)
PUBLIC_ROUTES = {"login", "login_post", "stylesheet"}
FILE_CHUNK = 256 * 1024
CONTENT_TYPES = {
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",  # the login link's token never leaves in a Referer
    "Cache-Control": "no-store",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Dashboard:
    def __init__(
        self,
        catalog: Catalog,
        sessions: async_sessionmaker[AsyncSession],
        public_url: str = "",
        clock: Clock = utc_now,
        windows: Mapping[str, dt.timedelta] | None = None,
    ) -> None:
        self._catalog = catalog
        self._windows = dict(windows or {})  # Settings.sending_windows, for broadcast previews
        self._sessions = sessions
        self._secure = public_url.startswith("https://")  # cookies only over HTTPS when served behind it
        self._clock = clock
        self._key: bytes | None = None

    def application(self) -> web.Application:
        """The sub-application to mount at /dashboard/."""
        dashboard = web.Application(middlewares=[self._guard])
        dashboard.on_response_prepare.append(_security_headers)
        dashboard.add_routes(
            [
                web.get("/", self.home, name="home"),
                web.get("/login/{token}", self.login_page, name="login"),
                web.post("/login/{token}", self.login, name="login_post"),
                web.post("/logout", self.logout, name="logout"),
                web.get("/export", self.export_page, name="export"),
                web.post("/export", self.export, name="export_post"),
                web.get("/report", self.report_page, name="report"),
                web.post("/report", self.report, name="report_post"),
                web.get("/community", self.community, name="community"),
                web.get("/broadcast", self.broadcast_page, name="broadcast"),
                web.post("/broadcast", self.broadcast_preview, name="broadcast_post"),
                web.post("/broadcast/confirm", self.broadcast_confirm, name="broadcast_confirm"),
                web.get("/static/dashboard.css", self.stylesheet, name="stylesheet"),
            ]
        )
        return dashboard

    async def key(self) -> bytes:
        if self._key is None:
            async with self._sessions.begin() as session:
                self._key = await dashboard_key(session)
        return self._key

    # --- the guard: session, scope, CSRF --------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.match_info.route.name in PUBLIC_ROUTES:
            return await handler(request)
        key = await self.key()
        try:
            async with self._sessions() as session:
                officer = await officer_of(session, key, request.cookies.get(SESSION_COOKIE, ""), self._clock())
        except NotLoggedIn:
            return _message("not_logged_in", 401)
        except NoLongerOfficer:
            return _message("no_role", 403)
        request[OFFICER] = officer
        if request.method == "POST" and not csrf_valid(key, officer.nonce, str((await request.post()).get("csrf", ""))):
            return _message("stale_form", 403)
        return await handler(request)

    # --- login and logout -----------------------------------------------------------------------

    async def login_page(self, request: web.Request) -> web.StreamResponse:
        """The link's page: one button. Opening it uses nothing (chat apps open links to preview them)."""
        _, problem = await self._link(request.match_info["token"])
        if problem:
            return _message(problem, 404 if problem == "link_invalid" else 410)
        token = secrets.token_urlsafe(24)
        response = web.Response(text=render("dashboard/login.html", csrf=token), content_type="text/html")
        set_cookie(response, LOGIN_COOKIE, token, self._secure, 15 * 60, LOGIN_PATH)
        return response

    async def login(self, request: web.Request) -> web.StreamResponse:
        claims, problem = await self._link(request.match_info["token"])
        if claims is None or problem:
            return _message(problem or "link_invalid", 404 if problem == "link_invalid" else 410)
        form = await request.post()
        sent, kept = str(form.get("csrf", "")), request.cookies.get(LOGIN_COOKIE, "")
        if not sent or not kept or not secrets.compare_digest(sent, kept):  # double submit: no session yet
            return _message("login_again", 403)
        now = self._clock()
        async with self._sessions.begin() as session:
            if not await scope(session, claims.person_id, Role.OFFICER):
                return _message("no_role", 403)
            if not await claim_login(session, claims.nonce, claims.person_id, now, now + SESSION_LIFETIME):
                return _message("link_used", 410)
            await audit(session, claims.person_id, "login", None, now=now, channel="dashboard")
        response = web.Response(status=303, headers={"Location": "/dashboard/"})
        cookie = session_cookie(await self.key(), claims.nonce)
        lifetime = int(SESSION_LIFETIME.total_seconds())
        set_cookie(response, SESSION_COOKIE, cookie, self._secure, lifetime, COOKIE_PATH)
        response.del_cookie(LOGIN_COOKIE, path=LOGIN_PATH)
        return response

    async def _link(self, token: str) -> tuple[LinkClaims | None, str | None]:
        """A link's claims, and why it cannot log anyone in ("link_invalid", "link_expired", "link_used") or None."""
        claims = read_token(await self.key(), token)
        if claims is None:
            return None, "link_invalid"
        if claims.expires <= self._clock():
            return claims, "link_expired"
        async with self._sessions() as session:
            if await session.get(DashboardLogin, claims.nonce) is not None:
                return claims, "link_used"
        return claims, None

    async def logout(self, request: web.Request) -> web.StreamResponse:
        officer = request[OFFICER]
        now = self._clock()
        async with self._sessions.begin() as session:
            await end_login(session, officer.nonce, now)
            await audit(session, officer.person_id, "logout", None, now=now, channel="dashboard")
        response = _message("logged_out", 200)
        response.del_cookie(SESSION_COOKIE, path=COOKIE_PATH)
        return response

    # --- pages ----------------------------------------------------------------------------------

    async def home(self, request: web.Request) -> web.StreamResponse:
        officer = request[OFFICER]
        code = request.query.get("area") or officer.roots[0]
        if not officer.may_see(code):
            return _message("forbidden", 403)
        key = await pseudonym_key(self._sessions)
        async with self._sessions() as session:
            area = await session.get(Area, code)
            if area is None:
                return _message("forbidden", 403)
            page = await overview(session, self._catalog, area, key, self._clock())
            places = await self._places(session, officer)
        parent = area.parent_code if area.parent_code and officer.may_see(area.parent_code) else None
        return self._render(request, "dashboard/overview.html", page=page, area=area, parent=parent, places=places)

    async def community(self, request: web.Request) -> web.StreamResponse:
        """Classes (upcoming and the last weeks') and survey results per village, self-reported."""
        officer = request[OFFICER]
        code = request.query.get("area") or officer.roots[0]
        if not officer.may_see(code):
            return _message("forbidden", 403)
        async with self._sessions() as session:
            area = await session.get(Area, code)
            if area is None:
                return _message("forbidden", 403)
            page = await community_page(session, self._catalog, area, self._clock())
            places = await self._places(session, officer)
        return self._render(request, "dashboard/community.html", area=area, places=places, **page)

    async def export_page(self, request: web.Request, problems: list[str] | None = None) -> web.StreamResponse:
        officer = request[OFFICER]
        async with self._sessions() as session:
            places = await self._places(session, officer)
        form = dict(request.query) if problems is None else dict(await request.post())
        return self._render(
            request,
            "dashboard/export.html",
            status=400 if problems else 200,
            places=places,
            modules=module_choices(self._catalog),
            kinds=kind_choices(self._catalog),
            form=form,
            problems=problems or [],
        )

    async def export(self, request: web.Request) -> web.StreamResponse:
        officer = request[OFFICER]
        asked = read_export(await request.post(), officer, self._catalog)
        if not isinstance(asked, ExportRequest):
            return await self.export_page(request, asked.keys)
        now = self._clock()
        async with self._sessions.begin() as session:
            await audit(
                session,
                officer.person_id,
                "log_exported",
                asked.area_code,
                now=now,
                format=asked.export_format.value,
                names=asked.names,
                filters=asked.filters.describe(),
            )
        day = now.astimezone(LOCAL_TZ).strftime("%Y%m%d")
        suffix = asked.export_format.value
        response = web.StreamResponse(headers=_attachment(f"nhat-ky-{asked.area_code}-{day}.{suffix}"))
        response.content_type = CONTENT_TYPES[suffix]
        if asked.export_format is ExportFormat.CSV:
            response.charset = "utf-8"
        await response.prepare(request)
        if asked.export_format is ExportFormat.CSV:
            async for piece in csv_bytes(self._sessions, self._catalog, asked.filters, asked.names):
                await response.write(piece)
        else:
            with tempfile.TemporaryFile() as handle:  # on disk, not in memory; gone when closed
                await write_xlsx(self._sessions, self._catalog, handle, asked.filters, asked.names)
                handle.seek(0)
                while piece := await asyncio.to_thread(handle.read, FILE_CHUNK):
                    await response.write(piece)
        await response.write_eof()
        return response

    async def report_page(self, request: web.Request, problems: list[str] | None = None) -> web.StreamResponse:
        officer = request[OFFICER]
        async with self._sessions() as session:
            places = [p for p in await self._places(session, officer) if p["kind"] != AreaKind.VILLAGE]
        today = self._clock().astimezone(LOCAL_TZ).date()
        form = dict(request.query) if problems is None else dict(await request.post())
        return self._render(
            request,
            "dashboard/report.html",
            status=400 if problems else 200,
            places=places,
            quarters=quarter_choices(today),
            form=form,
            problems=problems or [],
        )

    async def report(self, request: web.Request) -> web.StreamResponse:
        officer = request[OFFICER]
        asked = read_report(await request.post(), officer)
        if not isinstance(asked, ReportRequest):
            return await self.report_page(request, asked.keys)
        now = self._clock()
        async with self._sessions() as session:
            area = await session.get(Area, asked.area_code)
            if area is None:
                return _message("forbidden", 403)
            figures = await report_figures(session, self._catalog, area, asked.quarter, now)
            authority = await authority_name(session, area)
        async with self._sessions.begin() as session:
            detail = {"quarter": str(asked.quarter), "format": asked.document}
            await audit(session, officer.person_id, "report_created", area.code, now=now, **detail)
        buffer = io.BytesIO()
        if asked.document == "docx":
            await asyncio.to_thread(write_report_docx, self._catalog, figures, authority, buffer)
        else:
            await asyncio.to_thread(write_report_xlsx, self._catalog, figures, buffer)
        return web.Response(
            body=buffer.getvalue(),
            content_type=CONTENT_TYPES[asked.document],
            headers=_attachment(f"bao-cao-{area.code}-{asked.quarter}.{asked.document}"),
        )

    async def broadcast_page(
        self, request: web.Request, problems: list[str] | None = None, form: dict[str, str] | None = None
    ) -> web.StreamResponse:
        officer = request[OFFICER]
        async with self._sessions() as session:
            places = [p for p in await self._places(session, officer) if p["kind"] != AreaKind.PROVINCE]
        return self._render(
            request,
            "dashboard/broadcast.html",
            status=400 if problems else 200,
            places=places,
            who=[(key, self._catalog.label(f"broadcast.who_{key}")) for key in broadcast_service.WHO_CHOICES],
            modules=[(m.id, m.title) for m in self._catalog.modules.values()],
            form=form if form is not None else dict(request.query),
            problems=problems or [],
            preview=None,
        )

    async def broadcast_preview(self, request: web.Request) -> web.StreamResponse:
        """The text as the first recipient reads it and the count per channel; the draft is stored, not sent."""
        officer = request[OFFICER]
        form = {k: str(v) for k, v in (await request.post()).items()}
        now = self._clock()
        asked = read_broadcast(form, officer, self._catalog, now)
        if not isinstance(asked, BroadcastRequest):
            return await self.broadcast_page(request, asked.keys, form)
        draft = None
        async with self._sessions.begin() as session:
            seen = await broadcast_service.preview(
                session, self._catalog, asked.audience, asked.template, self._windows, now
            )
            if seen.total and not seen.too_long:
                draft = await broadcast_service.create_draft(
                    session, officer.person_id, asked.audience, asked.template, now, asked.send_at, asked.every_year
                )
        if draft is None:  # (one connection on SQLite: the form is shown once the transaction is over)
            return await self.broadcast_page(request, ["too_long" if seen.too_long else "nobody"], form)
        async with self._sessions() as session:
            places = [p for p in await self._places(session, officer) if p["kind"] != AreaKind.PROVINCE]
        return self._render(
            request,
            "dashboard/broadcast.html",
            places=places,
            who=[],
            modules=[],
            form=form,
            problems=[],
            preview={
                "broadcast": draft.id,
                "sample": seen.sample,
                "total": seen.total,
                "by_channel": seen.by_channel,
                "out_of_window": seen.out_of_window,
                "send_at": asked.send_at.astimezone(LOCAL_TZ) if asked.send_at else None,
                "every_year": asked.every_year,
                "moved": asked.moved,
            },
        )

    async def broadcast_confirm(self, request: web.Request) -> web.StreamResponse:
        officer = request[OFFICER]
        form = await request.post()
        try:
            broadcast_id = int(str(form.get("broadcast", "")))
        except ValueError:
            return _message("forbidden", 403)
        now = self._clock()
        async with self._sessions.begin() as session:
            draft = await session.get(Broadcast, broadcast_id)
            if draft is None or draft.author_id != officer.person_id or not officer.may_see(draft.area_code):
                return _message("forbidden", 403)
            if form.get("action") != "send":
                if draft.status == BroadcastStatus.DRAFT:
                    await session.delete(draft)
                return web.Response(status=303, headers={"Location": f"/dashboard/broadcast?area={draft.area_code}"})
            confirmed = await broadcast_service.confirm(session, broadcast_id, now)
        running = broadcast_scheduler.current()
        if confirmed and running is not None:  # else the leader's next tick schedules it
            await running.schedule(broadcast_id)
        return _message("broadcast_sent" if confirmed else "broadcast_already", 200)

    async def stylesheet(self, _request: web.Request) -> web.StreamResponse:
        css = files("bot").joinpath("static", "dashboard.css").read_text(encoding="utf-8")
        response = web.Response(text=css, content_type="text/css")
        response.headers["Cache-Control"] = "max-age=3600"
        return response

    # --- helpers --------------------------------------------------------------------------------

    async def _places(self, session: AsyncSession, officer: Officer) -> list[dict[str, Any]]:
        """The officer's areas as a tree (depth, code, name, kind), for menus."""
        tree = [(depth, area) for depth, area in await area_tree(session) if officer.may_see(area.code)]
        top = min((depth for depth, _ in tree), default=0)
        return [{"depth": depth - top, "code": a.code, "name": a.name, "kind": a.kind} for depth, a in tree]

    def _render(self, request: web.Request, template: str, status: int = 200, **values: Any) -> web.Response:
        officer = request[OFFICER]
        html = render(template, officer=officer, csrf=officer.csrf, **values)
        return web.Response(text=html, content_type="text/html", status=status)


def _message(kind: str, status: int) -> web.Response:
    return web.Response(text=render("dashboard/message.html", kind=kind), content_type="text/html", status=status)


def _attachment(filename: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{filename}"'}


async def _security_headers(_request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
