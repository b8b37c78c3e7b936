"""The ``hocvuso`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from bot.app import SchemaOutdated, open_app
from bot.config import Settings
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
    settings = Settings.from_env()
    try:
        return args.func(settings, args)
    except (ContentInvalid, SchemaOutdated) as exc:
        print(exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hocvuso", description="Bình dân học vụ số assistant")
    commands = parser.add_subparsers(metavar="COMMAND")

    chat = commands.add_parser("chat", help="chat with the bot in this terminal")
    chat.add_argument("--user", default="local", help="who is chatting (default: local)")
    chat.set_defaults(func=_chat)

    db = commands.add_parser("db", help="database commands").add_subparsers(metavar="ACTION")
    db.add_parser("upgrade", help="apply schema migrations").set_defaults(func=_db_upgrade)

    content = commands.add_parser("content", help="content commands").add_subparsers(metavar="ACTION")
    check = content.add_parser("check", help="validate content files")
    check.add_argument("path", nargs="?", type=Path, help="content folder (default: the configured one)")
    check.set_defaults(func=_content_check)

    export = commands.add_parser("export", help="export the participation log")
    export.add_argument("--out", required=True, type=Path, help="file to write (.csv)")
    export.set_defaults(func=_export)
    return parser


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
