"""The Zalo Bot Platform channel against a local emulator of its Bot API (tests/zalo_emulator.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from bot.app import App
from bot.channels.web import WebChat, WebTransport
from bot.channels.zalo import ZaloChannels
from bot.channels.zalo_bot import SECRET_HEADER, WEBHOOK_PATH, ZaloBotApi, ZaloBotChannel, ZaloBotTransport
from bot.ratelimit import RateLimits
from bot.server import create_web_app
from bot.transport import Rejected, RetryLater
from flows.types import Reply
from storage.models import OutboxMessage
from tests.helpers import as_numbers
from tests.test_telegram import table_counts, wait_until
from tests.test_zalo_oa import completions
from tests.zalo_emulator import BOT_ID, BOT_TOKEN, ZaloBotEmulator

SECRET = "zalo-bot-secret"


@pytest.fixture
async def emulator() -> AsyncIterator[tuple[ZaloBotEmulator, str]]:
    emulator = ZaloBotEmulator()
    server = TestServer(emulator.app())
    await server.start_server()
    yield emulator, f"http://127.0.0.1:{server.port}/bot"
    await server.close()


@contextlib.asynccontextmanager
async def harness(app: App, base: str) -> AsyncIterator[tuple[ZaloBotChannel, TestClient]]:
    async with aiohttp.ClientSession() as http:
        api = ZaloBotApi(http, BOT_TOKEN, base)
        channel = ZaloBotChannel(api, app.dispatcher, SECRET)
        await channel.identify()
        app.sender.add_transport(ZaloBotTransport(api, app.catalog, RateLimits()))
        web_app = create_web_app(
            app, WebChat(app.catalog, app.dispatcher, app.sessions, WebTransport()), None, ZaloChannels(bot=channel)
        )
        sender = asyncio.create_task(app.sender.run(poll_seconds=0.05))
        try:
            async with TestClient(TestServer(web_app)) as client:
                yield channel, client
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender


@pytest.mark.parametrize("wrapped", [True, False], ids=["wrapped", "bare"])
async def test_a_module_done_over_the_webhook_with_redeliveries_is_one_completion(app, emulator, wrapped) -> None:
    emu, base = emulator
    emu.wrap_updates = wrapped
    chat = "6ede9afa66b88fe6d6a9"
    typed = ["xin chao", "1", "1", "cai vneid ntn", *as_numbers(app.catalog, "vneid")]
    async with harness(app, base) as (_, client):
        for text in typed:
            update = emu.text_update(chat, text)
            for _ in range(2):
                response = await client.post(WEBHOOK_PATH, json=update, headers={SECRET_HEADER: SECRET})
                assert response.status == 200
        done_step = next(s for s in app.catalog.modules["vneid"].steps if s.complete)
        await wait_until(lambda: any(done_step.text.strip() in t for t in emu.texts_to(chat)))
    assert await completions(app, "zalo_bot") == 1
    texts = emu.texts_to(chat)
    assert app.catalog.say("consent_prompt").splitlines()[0] in texts[0]
    assert "1️⃣" in texts[0]
    assert all(0 < len(t) <= 2000 for t in texts)


@pytest.mark.parametrize("secret", [None, "", "wrong", SECRET + "x"])
async def test_a_forged_secret_is_rejected_and_nothing_is_stored(app, emulator, secret: str | None) -> None:
    emu, base = emulator
    async with harness(app, base) as (_, client):
        before = await table_counts(app)
        headers = {} if secret is None else {SECRET_HEADER: secret}
        response = await client.post(WEBHOOK_PATH, json=emu.text_update("5", "xin chao"), headers=headers)
        assert response.status == 403
        assert await table_counts(app) == before


def _message(**fields: Any) -> dict[str, Any]:
    message = {"from": {"id": "u1"}, "chat": {"id": "u1", "chat_type": "PRIVATE"}, "text": "x", "message_id": "m1"}
    return {"event_name": "message.text.received", "message": {**message, **fields}}


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"\xff\xfe\x00",
        b"[]",
        b'{"ok": true, "result": {}}',
        b'{"event_name": 5}',
        b'{"event_name": "message.text.received"}',
        b'{"event_name": "message.text.received", "message": []}',
        *(
            json.dumps(_message(**fields)).encode()
            for fields in ({"from": None}, {"chat": {"id": {}}}, {"text": 7}, {"message_id": ""}, {"chat": "x"})
        ),
    ],
)
async def test_malformed_updates_get_400_never_500(app, emulator, body: bytes) -> None:
    _, base = emulator
    async with harness(app, base) as (_, client):
        before = await table_counts(app)
        response = await client.post(WEBHOOK_PATH, data=body, headers={SECRET_HEADER: SECRET})
        assert response.status == 400
        assert await table_counts(app) == before


async def test_own_echoes_groups_and_unknown_events_are_ignored(app, emulator) -> None:
    emu, base = emulator
    async with harness(app, base) as (_, client):
        before = await table_counts(app)
        ignored = [
            _message(**{"from": {"id": BOT_ID, "is_bot": False}}),  # the bot's own id (learnt with getMe)
            _message(**{"from": {"id": "u1", "is_bot": True}}),
            _message(chat={"id": "g1", "chat_type": "GROUP"}),
            {"event_name": "bot.something.new", "data": {}},
        ]
        for update in ignored:
            response = await client.post(WEBHOOK_PATH, json=update, headers={SECRET_HEADER: SECRET})
            assert response.status == 200
        assert await table_counts(app) == before
        assert emu.sent == []


async def test_polling_one_update_per_call_408_when_idle_and_echoes_ignored(app, emulator) -> None:
    emu, base = emulator
    emu.echo = True  # the platform hands the bot its own messages back
    emu.poll_wait = 0.2
    async with harness(app, base) as (channel, _):
        poller = asyncio.create_task(channel.poll())
        try:
            emu.push(emu.text_update("p1", "xin chao"))
            await wait_until(lambda: len(emu.texts_to("p1")) == 1)
            await asyncio.sleep(0.6)  # several idle polls (408) and the echo of our own reply
            emu.push(emu.text_update("p1", "1"))
            await wait_until(lambda: len(emu.texts_to("p1")) == 2)
            await asyncio.sleep(0.4)
            assert len(emu.texts_to("p1")) == 2
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
    assert app.catalog.say("consent_thanks") in emu.texts_to("p1")[1]


async def test_long_text_is_split_and_platform_errors_are_retried_or_failed(app, emulator) -> None:
    emu, base = emulator
    async with aiohttp.ClientSession() as http:
        transport = ZaloBotTransport(ZaloBotApi(http, BOT_TOKEN, base), app.catalog, RateLimits())
        await transport.send("t1", Reply(text="Câu một dài. " * 400))
        assert len(emu.texts_to("t1")) == 3
        assert all(len(t) <= 2000 for t in emu.texts_to("t1"))
        emu.fail_next_with_403 = 1
        with pytest.raises(RetryLater):
            await transport.send("t1", Reply(text="x"))
        emu.quota_left = 0
        with pytest.raises(RetryLater, match="429"):
            await transport.send("t1", Reply(text="x"))
        emu.quota_left = None
        with pytest.raises(Rejected):
            await transport.send("t1", Reply(text=""))


async def test_start_sets_the_webhook_with_its_secret_or_polls_without_a_public_url(app, emulator) -> None:
    emu, base = emulator
    async with aiohttp.ClientSession() as http:
        channels = ZaloChannels(bot=ZaloBotChannel(ZaloBotApi(http, BOT_TOKEN, base), app.dispatcher, SECRET))
        assert await channels.start("https://xa.example.vn") == []
        assert emu.webhook == {"url": "https://xa.example.vn" + WEBHOOK_PATH, "secret_token": SECRET}
        polls = await channels.start("")
        assert emu.webhook == {}
        assert len(polls) == 1
        polls[0].close()


async def test_a_reply_that_fails_for_good_is_visible_with_its_reason(app, emulator) -> None:
    emu, base = emulator
    async with harness(app, base) as (_, client):
        emu.token = "changed"  # every call now answers 401: retried with backoff, never dropped
        response = await client.post(
            WEBHOOK_PATH, json=emu.text_update("f1", "xin chao"), headers={SECRET_HEADER: SECRET}
        )
        assert response.status == 200
        await asyncio.sleep(0.5)
    async with app.sessions() as session:
        row = await session.scalar(select(OutboxMessage).where(OutboxMessage.recipient == "f1"))
    assert row is not None
    assert row.status == "pending"
    assert "401" in (row.last_error or "")
