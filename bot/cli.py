"""The ``hocvuso`` command."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from pathlib import Path

from bot.app import SchemaOutdated, open_app
from bot.config import ConfigError, Settings
from content import read_content
from flows.catalog import ContentInvalid, check_content
from storage.db import create_engine
from storage.migrate import upgrade


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(Settings.from_env(), args)
    except (ContentInvalid, SchemaOutdated, ConfigError) as exc:
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

    export = commands.add_parser("export", help="export the participation log")
    export.add_argument("--out", required=True, type=Path, help="file to write (.csv)")
    export.set_defaults(func=_export)
    return parser


def _run(settings: Settings, args: argparse.Namespace) -> int:
    from bot.server import serve

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    asyncio.run(serve(dataclasses.replace(settings, **overrides)))
    return 0


def _chat(settings: Settings, args: argparse.Namespace) -> int:
    from bot.channels.console import run_console

    async def chat() -> None:
        async with open_app(settings) as app:
            await run_console(app, args.user)

    asyncio.run(chat())
    return 0


def _db_upgrade(settings: Settings, _args: argparse.Namespace) -> int:
    async def run() -> None:
        engine = create_engine(settings.database_url)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

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


def _export(settings: Settings, args: argparse.Namespace) -> int:
    from bot.export import export_csv

    async def run() -> int:
        async with open_app(settings) as app:
            return await export_csv(app.sessions, app.catalog, args.out)

    count = asyncio.run(run())
    print(f"{count} rows written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
