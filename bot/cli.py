"""The ``hocvuso`` command."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import ConfigError, Settings
from bot.progress import ProgressBar
from bot.reports.periods import Quarter
from content import read_content
from flows.catalog import ContentInvalid, check_content
from flows.community import AREA_COLUMNS, AreaKind
from flows.types import EventKind
from storage.clock import LOCAL_TZ, utc_now
from storage.db import make_sessionmaker
from storage.migrate import SchemaOutdated, open_database
from storage.models import Area, Role


class Refused(Exception):
    """An operator error: the message is printed and the command exits with 1."""


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(Settings.from_env(), args)
    except (ContentInvalid, SchemaOutdated, ConfigError, Refused) as exc:
        print(exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hocvuso", description="Bình dân học vụ số assistant")
    commands = parser.add_subparsers(metavar="COMMAND")

    run = commands.add_parser("run", help="serve the web chat, the Telegram webhook and /healthz")
    run.add_argument("--host", help="address to listen on (default: HOCVUSO_HOST or 127.0.0.1)")
    run.add_argument("--port", type=int, help="port (default: HOCVUSO_PORT or 8080)")
    run.set_defaults(func=_run)

    chat = commands.add_parser("chat", help="chat with the bot in this terminal")
    chat.add_argument("--user", default="local", help="who is chatting (default: local)")
    chat.set_defaults(func=_chat)

    db = commands.add_parser("db", help="database commands").add_subparsers(metavar="ACTION")
    db.add_parser("upgrade", help="apply schema migrations").set_defaults(func=_db_upgrade)

    content = commands.add_parser("content", help="content commands").add_subparsers(metavar="ACTION")
    check = content.add_parser("check", help="validate content files")
    check.add_argument("path", nargs="?", type=Path, help="content folder (default: the configured one)")
    check.set_defaults(func=_content_check)

    match = commands.add_parser("match", help="show where free text is routed (top three, with scores)")
    match.add_argument("text", help="a message as a resident would type it")
    match.add_argument("--explain", action="store_true", help="also list the words each destination matched")
    match.set_defaults(func=_match)

    export = commands.add_parser("export", help="export the participation log (CSV or XLSX), people pseudonymous")
    export.add_argument("--out", required=True, type=Path, help="file to write: .csv (UTF-8 with BOM) or .xlsx")
    export.add_argument("--from", dest="since", type=_day, help="first day, YYYY-MM-DD (Vietnam time)")
    export.add_argument("--to", dest="until", type=_day, help="last day, YYYY-MM-DD (included)")
    export.add_argument("--area", help="this area and the areas under it (default: everywhere)")
    export.add_argument("--module", help="one module id (see content/modules)")
    export.add_argument("--kind", choices=[kind.value for kind in EventKind], help="one event kind")
    export.add_argument(
        "--names", action="store_true", help="add the names people chose to give (recorded in the audit log)"
    )
    export.set_defaults(func=_export)

    report = commands.add_parser("report", help="the quarterly report: XLSX tables and a DOCX draft")
    report.add_argument("--quarter", required=True, type=_quarter, help="e.g. 2026Q2")
    report.add_argument("--area", help="a commune or province code (default: the only commune)")
    report.add_argument("--out-dir", type=Path, default=Path("."), help="where to write the files (default: here)")
    report.set_defaults(func=_report)

    login = commands.add_parser("login", help="a one-time link to the dashboard for an officer (10 minutes)")
    login.add_argument("person_id", type=int, help="the officer's person id (see `hocvuso roles list`)")
    login.set_defaults(func=_login)

    areas = commands.add_parser("areas", help="the provinces, communes and villages residents choose from")
    area_actions = areas.add_subparsers(metavar="ACTION")
    imported = area_actions.add_parser(
        "import", help=f"add or update areas from a CSV file ({','.join(AREA_COLUMNS)}); all or nothing"
    )
    imported.add_argument("file", type=Path, help="UTF-8 CSV, comma or semicolon separated")
    imported.set_defaults(func=_areas_import)
    area_actions.add_parser("list", help="the areas as a tree, with official counts").set_defaults(func=_areas_list)

    officer = commands.add_parser("officer", help="officers of a commune or province").add_subparsers(metavar="ACTION")
    officer_add = officer.add_parser("add", help="an invite code that makes its holder an officer of an area")
    officer_add.add_argument("--area", required=True, help="a commune or province code")
    officer_add.set_defaults(func=_invite, role=Role.OFFICER.value)

    invite = commands.add_parser("invite", help="an invite code for a volunteer or an officer of an area")
    invite.add_argument("--role", required=True, choices=[role.value for role in Role])
    invite.add_argument("--area", required=True, help="an area code (see `hocvuso areas list`)")
    invite.set_defaults(func=_invite)

    roles = commands.add_parser("roles", help="who holds which role").add_subparsers(metavar="ACTION")
    roles_list = roles.add_parser("list", help="active roles: id, person, role, area, since")
    roles_list.add_argument("--area", help="only roles over this area and the areas under it")
    roles_list.set_defaults(func=_roles_list)
    roles_revoke = roles.add_parser("revoke", help="end a role (it stays in the history)")
    roles_revoke.add_argument("grant_id", type=int, help="the id shown by `hocvuso roles list`")
    roles_revoke.set_defaults(func=_roles_revoke)

    metrics = commands.add_parser("metrics", help="progress per area, computed from the participation log")
    metrics.add_argument("--area", help="this area and the areas under it (default: all)")
    metrics.add_argument("--year", type=int, help="the year whose targets are shown (default: this year)")
    metrics.set_defaults(func=_metrics)

    zalo = commands.add_parser("zalo", help="the Zalo Official Account").add_subparsers(metavar="ACTION")
    auth = zalo.add_parser("auth", help="authorise the OA: print the consent link, then store the tokens from its code")
    given = auth.add_mutually_exclusive_group()
    given.add_argument("--code", help="the `code` Zalo added to the redirect address after the admin agreed")
    given.add_argument("--refresh-token", help="start from a refresh token made elsewhere (it is spent at once)")
    auth.set_defaults(func=_zalo_auth)
    return parser


def _run(settings: Settings, args: argparse.Namespace) -> int:
    from bot.server import serve

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    server = serve(dataclasses.replace(settings, **overrides))
    try:
        import uvloop  # libuv's event loop: about a third more webhooks a second than asyncio's own
    except ImportError:  # not built for Windows
        asyncio.run(server)
    else:
        uvloop.run(server)
    return 0


def _chat(settings: Settings, args: argparse.Namespace) -> int:
    from bot.app import open_app
    from bot.channels.console import run_console

    async def chat() -> None:
        async with open_app(settings) as app:
            await run_console(app, args.user)

    asyncio.run(chat())
    return 0


def _db_upgrade(settings: Settings, _args: argparse.Namespace) -> int:
    async def run() -> None:
        async with open_database(settings.database_url, auto_upgrade=True):
            pass

    asyncio.run(run())
    print("database is up to date")
    return 0


def _content_check(settings: Settings, args: argparse.Namespace) -> int:
    root = args.path or settings.content_dir
    errors = check_content(read_content(root))
    for error in errors:
        print(error, file=sys.stderr)
    if errors:
        print(f"{len(errors)} problem(s) in {root}", file=sys.stderr)
        return 1
    print(f"content OK: {root}")
    return 0


def _match(settings: Settings, args: argparse.Namespace) -> int:
    from flows.catalog import load_catalog
    from flows.explain import describe

    print(describe(load_catalog(read_content(settings.content_dir)), args.text, explain=args.explain))
    return 0


def _day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date: write it as YYYY-MM-DD") from exc


def _quarter(text: str) -> Quarter:
    try:
        return Quarter.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _export(settings: Settings, args: argparse.Namespace) -> int:
    from bot.export import ExportFormat, LogFilter, count_rows, export_file
    from flows.catalog import load_catalog
    from storage.roles import audit

    try:
        export_format = ExportFormat(args.out.suffix.lower().lstrip("."))
    except ValueError as exc:
        raise Refused(f"{args.out}: the file must end in .csv or .xlsx") from exc
    catalog = load_catalog(read_content(settings.content_dir))
    if (
        args.module
        and args.module not in catalog.modules
        and args.module not in {i.id for i in catalog.community.field_visit}
    ):
        raise Refused(f"no module '{args.module}': see content/modules")
    area_codes = None if args.area is None else (args.area,)
    filters = LogFilter(since=args.since, until=args.until, area_codes=area_codes, module=args.module, kind=args.kind)

    async def run() -> int:
        async with _database(settings) as sessions:
            async with sessions.begin() as session:
                if args.area is not None and await session.get(Area, args.area) is None:
                    raise Refused(f"no area '{args.area}': see `hocvuso areas list`")
                detail = {"format": export_format.value, "names": args.names, "filters": filters.describe()}
                await audit(session, None, "log_exported", args.area, channel="cli", **detail)
            bar = ProgressBar(await count_rows(sessions, filters), sys.stderr) if sys.stderr.isatty() else None
            try:
                count = await export_file(sessions, catalog, args.out, filters, args.names, export_format, bar)
            except OSError as exc:  # disk full, no permission...: export_file left nothing half-written
                kept = " (the file already there is unchanged)" if args.out.exists() else ""
                raise Refused(f"{args.out}: the export could not be written: {exc.strerror or exc}{kept}") from exc
            finally:
                if bar is not None:
                    bar.close()
            return count

    count = asyncio.run(run())
    print(f"{count} rows written to {args.out}")
    return 0


def _report(settings: Settings, args: argparse.Namespace) -> int:
    from bot.reports.document import write_report_docx
    from bot.reports.figures import authority_name, report_figures
    from bot.reports.workbook import write_report_xlsx
    from flows.catalog import load_catalog
    from storage.areas import communes
    from storage.roles import audit

    catalog = load_catalog(read_content(settings.content_dir))
    quarter: Quarter = args.quarter

    async def run() -> tuple[Area, list[Path]]:
        async with _database(settings) as sessions:
            async with sessions() as session:
                if args.area is None:
                    found = await communes(session)
                    if len(found) != 1:
                        names = ", ".join(c.code for c in found) or "none"
                        raise Refused(f"choose the commune with --area (communes: {names})")
                    area = found[0]
                else:
                    area = await session.get(Area, args.area)
                    if area is None:
                        raise Refused(f"no area '{args.area}': see `hocvuso areas list`")
                if area.kind == AreaKind.VILLAGE:
                    raise Refused(f"'{area.code}' is a village: a report is for a commune or a province")
                figures = await report_figures(session, catalog, area, quarter, utc_now())
                authority = await authority_name(session, area)
            async with sessions.begin() as session:
                await audit(
                    session, None, "report_created", area.code, channel="cli", quarter=str(quarter), format="xlsx+docx"
                )
        args.out_dir.mkdir(parents=True, exist_ok=True)
        writers = {
            "xlsx": lambda handle: write_report_xlsx(catalog, figures, handle),
            "docx": lambda handle: write_report_docx(catalog, figures, authority, handle),
        }
        written = []
        for suffix, write in writers.items():
            out = args.out_dir / f"bao-cao-{area.code}-{quarter}.{suffix}"
            partial = out.with_name(f".{out.name}.partial")
            with partial.open("wb") as handle:
                write(handle)
            partial.replace(out)
            written.append(out)
        return area, written

    area, written = asyncio.run(run())
    print(
        f"Report for {area.name} [{area.code}], {quarter} (figures {quarter.start:%d/%m/%Y} to {quarter.end:%d/%m/%Y}):"
    )
    for path in written:
        print(f"    {path}")
    return 0


def _login(settings: Settings, args: argparse.Namespace) -> int:
    from bot.dashboard.links import issue_login_link

    async def run() -> tuple[str, dt.datetime] | None:
        async with _database(settings) as sessions, sessions.begin() as session:
            return await issue_login_link(session, args.person_id, settings.base_url, utc_now(), None)

    issued = asyncio.run(run())
    if issued is None:
        raise Refused(f"person {args.person_id} is not an officer: see `hocvuso roles list`")
    url, expires = issued
    print(f"Dashboard login link for person {args.person_id}, one use, until {_local(expires)} (Vietnam time):")
    print(f"\n    {url}\n")
    print("Open it in the officer's browser. Whoever opens it first is logged in as that officer.")
    return 0


def _zalo_auth(settings: Settings, args: argparse.Namespace) -> int:
    import secrets

    import aiohttp

    from bot.channels.zalo_oauth import TokenError, ZaloTokens, code_verifier

    if not settings.zalo_oa_enabled:
        raise Refused("set ZALO_OA_APP_ID, ZALO_OA_APP_SECRET and ZALO_OA_SECRET_KEY first (see the README)")

    async def run() -> str:
        async with _database(settings) as sessions, aiohttp.ClientSession() as http:
            tokens = ZaloTokens(
                sessions, http, settings.zalo_oa_app_id, settings.zalo_oa_app_secret, settings.zalo_oauth_url
            )
            verifier = await code_verifier(sessions)
            try:
                if args.code:
                    expires = await tokens.authorise(args.code.strip(), verifier)
                elif args.refresh_token:
                    expires = await tokens.adopt(args.refresh_token.strip())
                else:
                    if not settings.zalo_oa_redirect_uri:
                        raise Refused("set ZALO_OA_REDIRECT_URI to the app's Official Account Callback Url")
                    url = tokens.permission_url(settings.zalo_oa_redirect_uri, verifier, secrets.token_hex(8))
                    return (
                        "Open this link as the OA's admin and agree:\n\n"
                        f"    {url}\n\n"
                        "Zalo then opens the callback address with ?code=...: run\n"
                        "    hocvuso zalo auth --code THAT_CODE\n"
                        "within 10 minutes."
                    )
            except (TokenError, aiohttp.ClientError, TimeoutError) as exc:
                raise Refused(f"Zalo did not give tokens: {exc}") from exc
        return (
            f"Zalo OA authorised: tokens stored; the access token is renewed by itself (now until {_local(expires)})."
        )

    print(asyncio.run(run()))
    return 0


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """The database alone (without the rest of the bot), upgraded or checked as at the bot's start."""
    async with open_database(settings.database_url, settings.auto_upgrade) as engine:
        yield make_sessionmaker(engine)


def _local(moment: dt.datetime) -> str:
    return moment.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M")


def _areas_import(settings: Settings, args: argparse.Namespace) -> int:
    from storage.areas import area_kinds, read_area_csv, upsert_areas

    if not args.file.is_file():
        raise Refused(f"{args.file}: no such file")

    async def run() -> int:
        async with _database(settings) as sessions, sessions.begin() as session:
            specs, problems = read_area_csv(args.file, await area_kinds(session))
            if problems:
                for problem in problems:
                    print(f"{args.file}:{problem.row}: {problem.message}", file=sys.stderr)
                print(f"{len(problems)} problem(s) in {args.file}; nothing was imported", file=sys.stderr)
                return 1
            inserted, updated = await upsert_areas(session, specs, utc_now())
        print(f"{inserted} area(s) added, {updated} updated, {len(specs) - inserted - updated} unchanged")
        return 0

    return asyncio.run(run())


def _counts(households: int | None, adults: int | None) -> str:
    shown = [f"{value} {name}" for value, name in ((households, "households"), (adults, "adults")) if value is not None]
    return ", ".join(shown) or "no official counts"


def _areas_list(settings: Settings, _args: argparse.Namespace) -> int:
    from storage.areas import area_tree

    async def run() -> list[tuple[int, Area]]:
        async with _database(settings) as sessions, sessions() as session:
            return await area_tree(session)

    tree = asyncio.run(run())
    if not tree:
        print("no areas yet: `hocvuso areas import FILE.csv` adds them (or the bot adds content/areas.yaml at start)")
        return 0
    totals: dict[str, list[int]] = {}  # villages' households and adults under each area
    for _, area in reversed(tree):
        own = totals.setdefault(area.code, [0, 0])
        if area.kind == AreaKind.VILLAGE:
            own[:] = [area.households or 0, area.adults or 0]
        if area.parent_code is not None:
            parent = totals.setdefault(area.parent_code, [0, 0])
            parent[0] += own[0]
            parent[1] += own[1]
    for depth, area in tree:
        if area.kind == AreaKind.VILLAGE or area.households is not None or area.adults is not None:
            counts = _counts(area.households, area.adults)
        else:
            counts = f"{_counts(*totals[area.code])} in its villages"
        print(f"{'  ' * depth}{area.code}  {area.name} [{area.kind}]: {counts}")
    return 0


def _invite(settings: Settings, args: argparse.Namespace) -> int:
    from flows.catalog import load_catalog
    from storage.areas import seed_areas
    from storage.roles import create_invite

    role = Role(args.role)
    catalog = load_catalog(read_content(settings.content_dir))
    hours = catalog.community.invite_valid_hours

    async def run() -> tuple[Area, str, dt.datetime]:
        now = utc_now()
        async with _database(settings) as sessions, sessions.begin() as session:
            if await session.get(Area, args.area) is None and args.area in {a.code for a in catalog.areas}:
                await seed_areas(session, catalog.areas, now)  # a fresh database: the content's areas first
            area = await session.get(Area, args.area)
            if area is None:
                raise Refused(f"no area '{args.area}': see `hocvuso areas list`")
            if role is Role.OFFICER and area.kind == AreaKind.VILLAGE:
                raise Refused(f"'{area.code}' is a village: an officer is for a commune or a province")
            code = await create_invite(session, role, area.code, None, now, hours)
        return area, code, now + dt.timedelta(hours=hours)

    area, code, expires = asyncio.run(run())
    title = f"{role.value.capitalize()} invite for {area.name} [{area.code}]"
    print(f"{title}, one use, until {_local(expires)} (Vietnam time):")
    print(f"\n    {code}\n")
    print(f"The {role.value} sends this to the bot, in the web chat or on Telegram, to take the role:")
    print(f"\n    /ma {code}\n")
    print("Give it to that person only: whoever sends it first gets the role. It cannot be shown again.")
    return 0


def _roles_list(settings: Settings, args: argparse.Namespace) -> int:
    from storage.areas import descendants
    from storage.roles import active_grants_within

    async def run() -> list[tuple[int, int, str, str, dt.datetime]]:
        async with _database(settings) as sessions, sessions() as session:
            within = None
            if args.area is not None:
                within = await descendants(session, [args.area])
                if not within:
                    raise Refused(f"no area '{args.area}': see `hocvuso areas list`")
            grants = await active_grants_within(session, within)
            return [(g.id, g.person_id, g.role, g.area_code, g.granted_at) for g in grants]

    rows = asyncio.run(run())
    if not rows:
        print("no active roles")
        return 0
    print(f"{'id':>6}  {'person':>8}  {'role':<9}  {'area':<24}  since")
    for grant_id, person_id, role, area_code, since in rows:
        print(f"{grant_id:>6}  {person_id:>8}  {role:<9}  {area_code:<24}  {_local(since)}")
    return 0


def _roles_revoke(settings: Settings, args: argparse.Namespace) -> int:
    from storage.roles import revoke

    async def run() -> bool:
        async with _database(settings) as sessions, sessions.begin() as session:
            return await revoke(session, args.grant_id, None, utc_now())

    if not asyncio.run(run()):
        raise Refused(f"no active role with id {args.grant_id}: see `hocvuso roles list`")
    print(f"role {args.grant_id} revoked")
    return 0


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def _metrics(settings: Settings, args: argparse.Namespace) -> int:
    from flows.catalog import load_catalog
    from storage.metrics import AreaMetrics, area_metrics

    catalog = load_catalog(read_content(settings.content_dir))
    year = args.year or utc_now().astimezone(LOCAL_TZ).year

    async def run() -> list[AreaMetrics]:
        async with _database(settings) as sessions, sessions() as session:
            if args.area is not None and await session.get(Area, args.area) is None:
                raise Refused(f"no area '{args.area}': see `hocvuso areas list`")
            roots = None if args.area is None else [args.area]
            return await area_metrics(session, catalog.community, roots, year=year)

    rows = asyncio.run(run())
    if not rows:
        print("no areas yet: `hocvuso areas import FILE.csv` adds them")
        return 0
    depth: dict[str | None, int] = {}
    print(f"{'area':<32} {'reached':>8} {'adults done':>14} {'households':>10} {'Gia đình số':>16}")
    for row in rows:
        depth[row.code] = depth.get(row.parent_code, -1) + 1
        adults = f"{row.adults_completed}/{row.adults if row.adults is not None else '?'}"
        homes = f"{row.households_gia_dinh_so}/{row.households if row.households is not None else '?'}"
        name = f"{'  ' * depth[row.code]}{row.name}"[:32]
        print(f"{name:<32} {row.people_reached:>8} {adults:>14} {row.households_registered:>10} {homes:>16}")
        for target in row.targets:
            planned = f", {year} target {_percent(target.target)}" if target.target is not None else ""
            reported = " (self-reported, survey)" if target.self_reported else ""
            print(f"{'':<4}{target.label}{reported}: {_percent(target.percent)}{planned}")
    print(
        f"\n'adults done': completed {', '.join(catalog.community.gia_dinh_so.required_modules)}; "
        "'households': registered in the bot; '?': no official count"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
