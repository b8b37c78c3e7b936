"""Telegram with python-telegram-bot pointed at a local Bot API emulator (no network)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select
from telegram import Bot

from bot.app import App, open_app
from bot.channels.telegram import SECRET_HEADER, TEXT_LIMIT, TelegramChannel, TelegramTransport, make_bot, message_text
from bot.channels.telegram_http import AiohttpRequest
from bot.channels.text import split_text
from bot.channels.web import WebChat, WebTransport
from bot.community.consent import AGREE, DECLINE
from bot.config import Settings
from bot.ratelimit import RateLimits
from bot.server import WEBHOOK_PATH, create_web_app
from bot.transport import RetryLater
from content import CONTENT_DIR
from flows.types import Button, Inbound, InboundKind, Reply
from storage.models import ChannelIdentity, OutboxMessage, ParticipationEvent, ProcessedInbound
from tests.chat import reference_replies
from tests.helpers import T0
from tests.telegram_emulator import TOKEN, TelegramEmulator

SECRET = "s3cret-token_for-tests"
UNLIMITED = RateLimits()


async def wait_until(predicate: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.02)


@pytest.fixture
async def emulator() -> AsyncIterator[tuple[TelegramEmulator, str]]:
    emulator = TelegramEmulator()
    server = TestServer(emulator.app())
    await server.start_server()
    yield emulator, f"http://127.0.0.1:{server.port}/bot"
    await server.close()


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'tg.db'}",
        auto_upgrade=True,
        content_dir=CONTENT_DIR,
    )
    async with open_app(settings) as app:
        yield app


class Harness:
    """The bot wired to the emulator: transport in the sender, channel for webhook/polling."""

    def __init__(self, app: App, bot: Bot, limits: RateLimits) -> None:
        self.app = app
        self.bot = bot
        self.channel = TelegramChannel(bot, app.dispatcher, SECRET, app.sessions)
        app.sender.add_transport(TelegramTransport(bot, limits, CONTENT_DIR / "images"))
        self.tasks: list[asyncio.Task[Any]] = []

    def start_sender(self) -> None:
        self.tasks.append(asyncio.create_task(self.app.sender.run(poll_seconds=0.05)))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@contextlib.asynccontextmanager
async def harness(app: App, base_url: str, limits: RateLimits = UNLIMITED) -> AsyncIterator[Harness]:
    bot = make_bot(TOKEN, base_url)
    await bot.initialize()
    h = Harness(app, bot, limits)
    try:
        yield h
    finally:
        await h.stop()
        await bot.shutdown()


@contextlib.asynccontextmanager
async def webhook_client(h: Harness) -> AsyncIterator[TestClient]:
    web_transport = WebTransport()
    web_app = create_web_app(h.app, WebChat(h.app.catalog, h.app.dispatcher, h.app.sessions, web_transport), h.channel)
    async with TestClient(TestServer(web_app)) as client:
        yield client


async def expected_texts(app: App, inbounds: list[Inbound], scratch: Path) -> list[str]:
    """What the bot says to one new chat for these inbounds, in order (worked out on a scratch database)."""
    return [message_text(r) for r in await reference_replies(app.catalog, inbounds, scratch / "expected.db")]


async def table_counts(app: App) -> tuple[int, ...]:
    async with app.sessions() as session:
        return tuple(
            [
                await session.scalar(select(func.count()).select_from(model))
                for model in (ProcessedInbound, ChannelIdentity, ParticipationEvent, OutboxMessage)
            ]
        )


async def test_polling_buttons_and_callback_answers(emulator, app: App, tmp_path: Path) -> None:
    emu, base_url = emulator
    async with harness(app, base_url) as h:
        h.start_sender()
        h.tasks.append(asyncio.create_task(h.channel.poll()))
        emu.queue_update(emu.make_text_update(42, "/start"))
        await wait_until(lambda: len(emu.sent) == 1)
        consent = emu.sent[0]
        assert consent.text == (await expected_texts(app, [Inbound(InboundKind.START, T0)], tmp_path))[0]
        assert [row[0]["callback_data"] for row in consent.buttons] == [AGREE, DECLINE]
        taps = [emu.make_button_update(42, AGREE), emu.make_button_update(42, "x:1")]  # agree, the first village
        for tap in taps:
            emu.queue_update(tap)
        await wait_until(lambda: len(emu.sent) == 3)
        menu = emu.sent[-1]
        ids = [row[0]["callback_data"] for row in menu.buttons]
        assert ids[0] == "mod:vneid"
        assert all(len(row) == 1 for row in menu.buttons)
        tap = emu.make_button_update(42, "mod:vneid")
        emu.queue_update(tap)
        await wait_until(lambda: len(emu.sent) == 4)
        assert emu.sent[-1].text.startswith(app.catalog.step("vneid", "intro").text.strip())
        answered = [t["callback_query"]["id"] for t in [*taps, tap]]
        await wait_until(lambda: emu.answered == answered)


async def test_webhook_commits_then_sends_and_ignores_redelivery(emulator, app: App) -> None:
    emu, base_url = emulator
    async with harness(app, base_url) as h, webhook_client(h) as client:
        h.start_sender()
        update = emu.make_text_update(7, "/start")
        for _ in range(3):  # Telegram retries: the same update_id three times
            response = await client.post(WEBHOOK_PATH, json=update, headers={SECRET_HEADER: SECRET})
            assert response.status == 200
        await wait_until(lambda: len(emu.sent) >= 1)
        await asyncio.sleep(0.3)
        assert len(emu.sent) == 1
        assert (await table_counts(app))[0] == 1


@pytest.mark.parametrize("secret", [None, "", "wrong", SECRET + "x"])
async def test_a_forged_secret_is_rejected_and_nothing_is_stored(emulator, app: App, secret: str | None) -> None:
    emu, base_url = emulator
    async with harness(app, base_url) as h, webhook_client(h) as client:
        before = await table_counts(app)
        headers = {} if secret is None else {SECRET_HEADER: secret}
        response = await client.post(WEBHOOK_PATH, json=emu.make_text_update(9, "/start"), headers=headers)
        assert response.status == 403
        assert await table_counts(app) == before


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'"text"',
        b'{"update_id": "12"}',
        b'{"update_id": 12, "message": "boom"}',
        b'{"update_id": 12, "message": {"chat": 5}}',
        b'{"update_id": 12, "callback_query": {"id": 1}}',
        '{"update_id": 1, "message": {"text": "\ud800"}}'.encode("utf-8", "surrogatepass"),
        b"\xff\xfe\x00",
    ],
)
async def test_malformed_webhooks_get_400_never_500(emulator, app: App, body: bytes) -> None:
    _, base_url = emulator
    async with harness(app, base_url) as h, webhook_client(h) as client:
        before = await table_counts(app)
        response = await client.post(WEBHOOK_PATH, data=body, headers={SECRET_HEADER: SECRET})
        assert response.status == 400
        assert await table_counts(app) == before


async def test_429_storm_waits_and_delivers_everything_once_in_order(emulator, app: App, tmp_path: Path) -> None:
    emu, base_url = emulator
    emu.fail_next_with_429 = 3
    emu.retry_after = 1
    async with harness(app, base_url) as h, webhook_client(h) as client:
        h.start_sender()
        updates = [
            emu.make_text_update(5, "/start"),
            emu.make_button_update(5, AGREE),
            emu.make_text_update(5, "cai vneid ntn"),
        ]
        for update in updates:
            assert (await client.post(WEBHOOK_PATH, json=update, headers={SECRET_HEADER: SECRET})).status == 200
        inbounds = [
            Inbound(InboundKind.START, T0),
            Inbound(InboundKind.BUTTON, T0, button_id=AGREE),
            Inbound(InboundKind.TEXT, T0, text="cai vneid ntn"),
        ]
        expected = await expected_texts(app, inbounds, tmp_path)
        await wait_until(lambda: len(emu.sent) == len(expected), seconds=30)
        await asyncio.sleep(0.3)
        assert emu.texts_to(5) == expected
        assert emu.too_many_requests == 3


async def test_a_blocked_user_is_marked_unreachable_and_not_retried(emulator, app: App) -> None:
    emu, base_url = emulator
    async with harness(app, base_url) as h, webhook_client(h) as client:
        headers = {SECRET_HEADER: SECRET}
        for update in (emu.make_text_update(13, "/start"), emu.make_button_update(13, AGREE)):
            assert (await client.post(WEBHOOK_PATH, json=update, headers=headers)).status == 200
        await app.sender.drain()
        delivered = len(emu.sent)
        emu.blocked.add(13)
        assert (await client.post(WEBHOOK_PATH, json=emu.make_text_update(13, "menu"), headers=headers)).status == 200
        assert await app.sender.drain() == 1
        assert await app.sender.drain() == 0
        async with app.sessions() as session:
            status, error = (
                await session.execute(
                    select(OutboxMessage.status, OutboxMessage.last_error).order_by(OutboxMessage.id.desc()).limit(1)
                )
            ).one()
            identity = await session.scalar(select(ChannelIdentity))
        assert status == "unreachable"
        assert "blocked" in error
        assert identity.unreachable_since is not None
        assert len(emu.sent) == delivered


def test_long_text_is_split_at_sentence_ends_under_the_limit() -> None:
    sentence = "Bạn mở ứng dụng VNeID và làm theo hướng dẫn trên màn hình. "
    text = sentence * 200
    pieces = split_text(text, TEXT_LIMIT)
    assert len(pieces) > 2
    assert all(len(p) <= 4096 for p in pieces)
    assert all(p.endswith(".") for p in pieces)
    assert " ".join(pieces) == text.strip()
    assert split_text("ngắn", TEXT_LIMIT) == ["ngắn"]
    assert split_text("x" * 5000, TEXT_LIMIT) == ["x" * 4096, "x" * 904]


async def test_a_long_reply_arrives_in_pieces_telegram_accepts(emulator, app: App) -> None:
    emu, base_url = emulator
    async with harness(app, base_url) as h:
        reply = Reply(text="Câu rất dài. " * 700, buttons=(Button("b1", "Tiếp tục"),))
        await h.app.sender._transports["telegram"].send("77", reply)
        assert len(emu.sent) == 3
        assert all(len(s.text) <= 4096 for s in emu.sent)
        assert [bool(s.buttons) for s in emu.sent] == [False, False, True]


async def test_step_images_go_by_url_or_as_an_uploaded_file(emulator, app: App, tmp_path: Path) -> None:
    emu, base_url = emulator
    (tmp_path / "buoc1.png").write_bytes(b"\x89PNG" + bytes(1000))
    async with harness(app, base_url) as h:
        transport = TelegramTransport(h.bot, UNLIMITED, tmp_path)
        await transport.send("78", Reply(text="Bước 1", image="buoc1.png"))
        await transport.send("78", Reply(text="Bước 2", image="https://example.gov.vn/b2.png"))
    assert emu.texts_to(78) == [
        "[photo <file 1004 bytes>]",
        "Bước 1",
        "[photo https://example.gov.vn/b2.png]",
        "Bước 2",
    ]


async def test_timeouts_and_bad_gateways_are_retried_later(emulator) -> None:
    emu, base_url = emulator
    bot = Bot(TOKEN, base_url=base_url, request=AiohttpRequest(connections=2, read_timeout=0.2))
    await bot.initialize()
    transport = TelegramTransport(bot, UNLIMITED, CONTENT_DIR / "images")
    try:
        emu.fail_next_with_5xx = 1
        with pytest.raises(RetryLater, match="Bad Gateway"):
            await transport.send("79", Reply(text="Xin chào"))
        emu.delay = 0.5
        with pytest.raises(RetryLater, match="TimedOut"):
            await transport.send("79", Reply(text="Xin chào"))
        emu.delay = 0.0
        await transport.send("79", Reply(text="Xin chào"))
    finally:
        await bot.shutdown()
    assert emu.texts_to(79)[-1] == "Xin chào"


async def test_a_thousand_residents_five_turns_ten_percent_redelivered(emulator, app: App, tmp_path: Path) -> None:
    """Every update gets its replies exactly once, in order, per chat."""
    emu, base_url = emulator
    rng = random.Random(7)
    residents = 1000
    turns = [
        lambda chat: emu.make_text_update(chat, "/start"),
        lambda chat: emu.make_button_update(chat, AGREE),
        lambda chat: emu.make_text_update(chat, "cai vneid ntn"),  # at the village question: goes to VNeID
        lambda chat: emu.make_button_update(chat, "not_installed"),
        lambda chat: emu.make_text_update(chat, "ket roi"),
        lambda chat: emu.make_text_update(chat, "menu"),
    ]
    inbounds = [
        Inbound(InboundKind.START, T0),
        Inbound(InboundKind.BUTTON, T0, button_id=AGREE),
        Inbound(InboundKind.TEXT, T0, text="cai vneid ntn"),
        Inbound(InboundKind.BUTTON, T0, button_id="not_installed"),
        Inbound(InboundKind.TEXT, T0, text="ket roi"),
        Inbound(InboundKind.TEXT, T0, text="menu"),
    ]
    expected = await expected_texts(app, inbounds, tmp_path)
    async with harness(app, base_url) as h, webhook_client(h) as client:
        h.start_sender()
        gate = asyncio.Semaphore(40)

        async def resident(chat: int) -> int:
            posts = 0
            for make in turns:
                update = make(chat)
                for _ in range(2 if rng.random() < 0.1 else 1):
                    async with gate:
                        response = await client.post(WEBHOOK_PATH, json=update, headers={SECRET_HEADER: SECRET})
                    assert response.status == 200
                    posts += 1
            return posts

        posts = sum(await asyncio.gather(*(resident(10_000 + i) for i in range(residents))))
        assert posts > residents * len(turns) * 1.05
        await wait_until(lambda: len(emu.sent) >= residents * len(expected), seconds=120)
        await asyncio.sleep(0.5)
    by_chat = emu.by_chat()
    assert len(by_chat) == residents
    wrong = {chat: texts for chat, texts in by_chat.items() if texts != expected}
    assert wrong == {}


async def test_blocking_and_unblocking_the_bot_is_recorded(emulator, app: App) -> None:
    emu, base_url = emulator
    async with harness(app, base_url) as h, webhook_client(h) as client:
        headers = {SECRET_HEADER: SECRET}
        for update in (emu.make_text_update(21, "/start"), emu.make_button_update(21, AGREE)):
            assert (await client.post(WEBHOOK_PATH, json=update, headers=headers)).status == 200

        async def unreachable_since():
            async with app.sessions() as session:
                return await session.scalar(select(ChannelIdentity.unreachable_since))

        assert await unreachable_since() is None
        blocked = emu.make_member_update(21, "kicked")
        assert (await client.post(WEBHOOK_PATH, json=blocked, headers=headers)).status == 200
        assert await unreachable_since() is not None
        unblocked = emu.make_member_update(21, "member")
        assert (await client.post(WEBHOOK_PATH, json=unblocked, headers=headers)).status == 200
        assert await unreachable_since() is None
