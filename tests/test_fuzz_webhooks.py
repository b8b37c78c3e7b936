"""Fuzzing the inbound endpoints: whatever arrives, the answer is 2xx or 4xx, never 5xx.

Updates are generated near Telegram's shape (right keys, wrong types and values: strings for ids,
huge numbers, NUL and lone surrogates, deep nesting), so that they get past the first checks. The
web chat's send endpoint and both Zalo webhooks (OA events signed correctly, so that they get past
the signature) get the same treatment. ``bench/`` is where the 10,000-per-endpoint run
lives; here a few hundred per endpoint, on both databases.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.app import open_app
from bot.channels import zalo_bot, zalo_oa
from bot.channels.telegram import SECRET_HEADER, TelegramChannel, make_bot
from bot.channels.web import COOKIE, WebChat, WebTransport
from bot.channels.zalo import ZaloChannels
from bot.channels.zalo_bot import ZaloBotApi, ZaloBotChannel
from bot.channels.zalo_oa import ZaloOAChannel
from bot.config import Settings
from bot.server import WEBHOOK_PATH, create_web_app
from content import CONTENT_DIR
from tests.telegram_emulator import TOKEN
from tests.zalo_emulator import APP_ID, OA_SECRET_KEY

SECRET = "fuzz-secret"
EXAMPLES = 150

odd_text = st.one_of(
    st.text(max_size=50),
    st.sampled_from(["", "\x00", "a\x00b", "/start", "/start@bot x", "1", "\ud800", "💥" * 100, "x" * 5000]),
)
odd_int = st.one_of(st.integers(), st.integers(min_value=2**63, max_value=2**80), st.sampled_from([0, -1]))
anything = st.recursive(
    st.one_of(st.none(), st.booleans(), odd_int, st.floats(allow_nan=False), odd_text),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)
chat = st.fixed_dictionaries(
    {"id": st.one_of(odd_int, odd_text, anything), "type": st.sampled_from(["private", "group", "x", 5])}
)
person = st.fixed_dictionaries({"id": odd_int, "is_bot": st.booleans(), "first_name": odd_text})
message = st.fixed_dictionaries(
    {"message_id": st.one_of(odd_int, anything), "date": st.one_of(odd_int, anything), "chat": chat},
    optional={"text": st.one_of(odd_text, anything), "from": person},
)
update = st.one_of(
    st.fixed_dictionaries({"update_id": odd_int}, optional={"message": st.one_of(message, anything)}),
    st.fixed_dictionaries(
        {
            "update_id": odd_int,
            "callback_query": st.fixed_dictionaries(
                {"id": st.one_of(odd_text, anything), "from": person, "chat_instance": odd_text},
                optional={"data": st.one_of(odd_text, anything), "message": message},
            ),
        }
    ),
    st.fixed_dictionaries(
        {"update_id": odd_int, "my_chat_member": st.one_of(anything, st.fixed_dictionaries({"chat": chat}))}
    ),
    anything,
)
zalo_id = st.one_of(odd_text, odd_int, anything)
oa_event = st.one_of(
    st.fixed_dictionaries(
        {
            "event_name": st.sampled_from(
                ["user_send_text", "user_send_image", "follow", "unfollow", "user_click_chatnow", "oa_send_text", "x"]
            ),
            "app_id": st.just(APP_ID),
            "timestamp": st.one_of(odd_text, odd_int, anything),
        },
        optional={
            "sender": st.one_of(st.fixed_dictionaries({"id": zalo_id}), anything),
            "message": st.one_of(
                st.fixed_dictionaries({"msg_id": zalo_id}, optional={"text": st.one_of(odd_text, anything)}), anything
            ),
            "follower": st.one_of(st.fixed_dictionaries({"id": zalo_id}), anything),
            "user_id": zalo_id,
        },
    ),
    anything,
)
bot_update = st.fixed_dictionaries(
    {
        "event_name": st.one_of(
            st.sampled_from(["message.text.received", "message.image.received", "message.sticker.received"]), odd_text
        ),
        "message": st.one_of(
            st.fixed_dictionaries(
                {
                    "from": st.one_of(st.fixed_dictionaries({"id": zalo_id, "is_bot": st.booleans()}), anything),
                    "chat": st.one_of(
                        st.fixed_dictionaries({"id": zalo_id, "chat_type": st.sampled_from(["PRIVATE", "GROUP", 5])}),
                        anything,
                    ),
                },
                optional={"text": st.one_of(odd_text, anything), "message_id": zalo_id, "date": zalo_id},
            ),
            anything,
        ),
    }
)
bot_body = st.one_of(bot_update, st.fixed_dictionaries({"ok": st.booleans(), "result": bot_update}), anything)
web_body = st.one_of(
    st.fixed_dictionaries(
        {"id": st.one_of(odd_text, anything)},
        optional={"text": st.one_of(odd_text, anything), "button": st.one_of(odd_text, anything), "start": anything},
    ),
    anything,
)


@pytest.fixture
async def client(tmp_path: Path, db_url: str) -> AsyncIterator[TestClient]:
    settings = Settings(data_dir=tmp_path, database_url=db_url, auto_upgrade=True, content_dir=CONTENT_DIR)
    async with open_app(settings) as app:
        bot = make_bot(TOKEN, "http://127.0.0.1:9/bot")  # never called: no sender runs
        channel = TelegramChannel(bot, app.dispatcher, SECRET, app.sessions)
        zalo = ZaloChannels(
            oa=ZaloOAChannel(app.dispatcher, app.sessions, APP_ID, OA_SECRET_KEY),
            bot=ZaloBotChannel(ZaloBotApi(None, "0:x", "http://127.0.0.1:9/bot"), app.dispatcher, SECRET),  # type: ignore[arg-type]
        )
        web = create_web_app(app, WebChat(app.catalog, app.dispatcher, app.sessions, WebTransport()), channel, zalo)
        async with TestClient(TestServer(web)) as test_client:
            test_client.app_under_test = app  # type: ignore[attr-defined]
            yield test_client


def encoded(value: Any) -> bytes:
    with contextlib.suppress(UnicodeEncodeError):
        return json.dumps(value).encode()
    return json.dumps(value).encode("utf-8", "surrogatepass")


def examples(strategy: st.SearchStrategy[Any], count: int = EXAMPLES) -> list[Any]:
    """``count`` generated values (posted afterwards from the async test; a failure names its body)."""
    found: list[Any] = []

    @settings(max_examples=count, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(value=strategy)
    def collect(value: Any) -> None:
        found.append(value)

    collect()
    return found


async def test_the_telegram_webhook_never_answers_5xx(client: TestClient) -> None:
    statuses = []
    for body in examples(update):
        response = await client.post(
            WEBHOOK_PATH, data=encoded(body), headers={SECRET_HEADER: SECRET, "Content-Type": "application/json"}
        )
        assert response.status < 500, (response.status, await response.text(), body)
        statuses.append(response.status)
    assert 400 in statuses
    assert 200 in statuses


async def test_the_web_chat_never_answers_5xx(client: TestClient) -> None:
    page = await client.get("/chat")
    token = page.cookies[COOKIE].value
    statuses = []
    for body in examples(web_body):
        response = await client.post(
            "/chat/api/send",
            data=encoded(body),
            headers={"X-Requested-With": "hocvuso", "Content-Type": "application/json"},
            cookies={COOKIE: token},
        )
        assert response.status < 500, (response.status, await response.text(), body)
        statuses.append(response.status)
    assert 400 in statuses


async def test_the_zalo_oa_webhook_never_answers_5xx(client: TestClient) -> None:
    statuses = []
    for event in examples(oa_event):
        body = encoded(event)
        stamp = event.get("timestamp", "") if isinstance(event, dict) else ""
        stamp = str(stamp) if isinstance(stamp, str | int) and not isinstance(stamp, bool) else ""
        text = body.decode("utf-8", "surrogatepass")
        mac = hashlib.sha256(f"{APP_ID}{text}{stamp}{OA_SECRET_KEY}".encode("utf-8", "surrogatepass")).hexdigest()
        response = await client.post(zalo_oa.WEBHOOK_PATH, data=body, headers={"X-ZEvent-Signature": f"mac={mac}"})
        assert response.status < 500, (response.status, await response.text(), event)
        statuses.append(response.status)
    assert 400 in statuses
    assert 200 in statuses


async def test_the_zalo_bot_webhook_never_answers_5xx(client: TestClient) -> None:
    statuses = []
    for body in examples(bot_body):
        response = await client.post(
            zalo_bot.WEBHOOK_PATH, data=encoded(body), headers={zalo_bot.SECRET_HEADER: SECRET}
        )
        assert response.status < 500, (response.status, await response.text(), body)
        statuses.append(response.status)
    assert 400 in statuses
    assert 200 in statuses
