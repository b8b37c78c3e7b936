"""The Zalo OA channel against a local emulator of the OA API and OAuth v4 (tests/zalo_emulator.py)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select, update

from bot.app import App, open_app
from bot.channels import zalo_oauth
from bot.channels.web import WebChat, WebTransport
from bot.channels.zalo import ZaloChannels
from bot.channels.zalo_oa import WEBHOOK_PATH, ZaloOAChannel, ZaloOATransport
from bot.channels.zalo_oauth import REFRESH_AHEAD, TokenError, ZaloTokens, code_challenge, code_verifier
from bot.config import ZALO_OA_LIMITS, Settings
from bot.server import create_web_app
from flows.types import Button, EventKind, Reply
from storage.clock import utc_now
from storage.models import ChannelIdentity, OAuthToken, OutboxMessage, ParticipationEvent, Priority
from storage.repo import Outgoing, enqueue
from tests.helpers import FakeClock, as_numbers
from tests.test_telegram import table_counts, wait_until
from tests.zalo_emulator import APP_ID, APP_SECRET, OA_ID, OA_SECRET_KEY, ZaloOAEmulator, oa_event, signed

WEEK = dt.timedelta(days=7)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(utc_now().replace(microsecond=0))


@pytest.fixture
async def zalo(clock: FakeClock) -> AsyncIterator[tuple[ZaloOAEmulator, str]]:
    emulator = ZaloOAEmulator(clock=clock)
    server = TestServer(emulator.app())
    await server.start_server()
    yield emulator, f"http://127.0.0.1:{server.port}"
    await server.close()


class Harness:
    """The bot wired to the emulator: tokens, the transport in the sender, the webhook on a test server."""

    def __init__(self, app: App, http: aiohttp.ClientSession, base: str, clock: FakeClock, buttons: bool) -> None:
        self.app = app
        self.tokens = ZaloTokens(app.sessions, http, APP_ID, APP_SECRET, base, clock=clock)
        self.transport = ZaloOATransport(http, self.tokens, app.catalog, base, ZALO_OA_LIMITS, WEEK, buttons=buttons)
        self.channel = ZaloOAChannel(app.dispatcher, app.sessions, APP_ID, OA_SECRET_KEY, OA_ID)
        app.sender.add_transport(self.transport)
        self.client: TestClient | None = None

    async def post(self, event: dict[str, Any], **sign: str) -> int:
        body, headers = signed(event, **sign)
        assert self.client is not None
        response = await self.client.post(WEBHOOK_PATH, data=body, headers=headers)
        return response.status


@contextlib.asynccontextmanager
async def harness(app: App, zalo: tuple[ZaloOAEmulator, str], clock: FakeClock, buttons: bool = False):
    emulator, base = zalo
    async with aiohttp.ClientSession() as http:
        h = Harness(app, http, base, clock, buttons)
        _, refresh = emulator.issue_pair()
        await h.tokens.adopt(refresh)
        emulator.refreshes = 0  # count the bot's own refreshes from here
        web_app = create_web_app(
            app, WebChat(app.catalog, app.dispatcher, app.sessions, WebTransport()), None, ZaloChannels(oa=h.channel)
        )
        sender = asyncio.create_task(app.sender.run(poll_seconds=0.05))
        try:
            async with TestClient(TestServer(web_app)) as client:
                h.client = client
                yield h
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender


async def completions(app: App, channel: str) -> int:
    async with app.sessions() as session:
        return await session.scalar(
            select(func.count()).where(
                ParticipationEvent.kind == EventKind.COMPLETED, ParticipationEvent.channel == channel
            )
        )


async def test_a_module_done_through_the_oa_with_retried_events_is_one_completion(app, zalo, clock) -> None:
    emulator, _ = zalo
    user = "2468458835296197922"
    typed = ["xin chao", "1", "1", "cai vneid ntn", *as_numbers(app.catalog, "vneid")]
    async with harness(app, zalo, clock) as h:
        for text in typed:
            event = oa_event("user_send_text", user, text=text)
            for _ in range(2):  # Zalo retries when the answer is slow: same msg_id
                assert await h.post(event) == 200
        done_step = next(s for s in app.catalog.modules["vneid"].steps if s.complete)
        await wait_until(lambda: any(done_step.text.strip() in t for t in emulator.texts_to(user)))
    assert await completions(app, "zalo_oa") == 1
    first = emulator.texts_to(user)[0]
    assert app.catalog.say("consent_prompt").splitlines()[0] in first
    assert "1️⃣" in first  # text only: options are numbered
    assert all(not s.buttons for s in emulator.sent)
    assert all(len(t) <= 2000 for t in emulator.texts_to(user))


@pytest.mark.parametrize(
    "forgery",
    ["missing", "wrong key", "oa id not configured", "body changed", "timestamp changed", "garbage"],
)
async def test_forged_signatures_are_rejected_and_nothing_is_stored(app, zalo, clock, forgery: str) -> None:
    async with harness(app, zalo, clock) as h:
        h.channel = ZaloOAChannel(app.dispatcher, app.sessions, APP_ID, OA_SECRET_KEY)  # not used by the server
        before = await table_counts(app)
        event = oa_event("user_send_text", "777", text="xin chao")
        body, headers = signed(event)
        if forgery == "missing":
            headers.pop("X-ZEvent-Signature")
        elif forgery == "wrong key":
            body, headers = signed(event, key="not-the-key")
        elif forgery == "oa id not configured":
            body, headers = signed(event, signer="999")
        elif forgery == "body changed":
            body = body.replace(b"xin chao", b"xin chao!")
        elif forgery == "timestamp changed":
            body = json.dumps({**event, "timestamp": "1"}).encode()
        else:
            headers["X-ZEvent-Signature"] = "mac=" + "0" * 64
        assert h.client is not None
        response = await h.client.post(WEBHOOK_PATH, data=body, headers=headers)
        assert response.status == 401
        assert await table_counts(app) == before


async def test_a_signature_with_the_oa_id_is_accepted_when_it_is_configured(app, zalo, clock) -> None:
    emulator, _ = zalo
    async with harness(app, zalo, clock) as h:
        assert await h.post(oa_event("user_send_text", "778", text="xin chao"), signer=OA_ID) == 200
        await wait_until(lambda: len(emulator.texts_to("778")) == 1)


async def test_the_consoles_unsigned_check_gets_200_and_stores_nothing(app, zalo, clock) -> None:
    async with harness(app, zalo, clock) as h:
        before = await table_counts(app)
        assert h.client is not None
        response = await h.client.post(WEBHOOK_PATH, json={"test": True})
        assert response.status == 200
        assert await table_counts(app) == before


@pytest.mark.parametrize(
    "event",
    [
        [],
        {"timestamp": "1"},
        {"event_name": 5, "timestamp": "1"},
        {"event_name": "user_send_text", "timestamp": "1"},
        {"event_name": "user_send_text", "timestamp": "1", "sender": {"id": {}}, "message": {"msg_id": "a"}},
        {"event_name": "user_send_text", "timestamp": "1", "sender": {"id": "1"}, "message": {"text": "x"}},
        {
            "event_name": "user_send_text",
            "timestamp": "1",
            "sender": {"id": "1"},
            "message": {"msg_id": "a", "text": 5},
        },
        {"event_name": "user_send_text", "timestamp": "1", "sender": {"id": "1"}, "message": {"msg_id": "a" * 500}},
        {"event_name": "user_send_text", "timestamp": "1", "sender": {"id": "1\x00"}, "message": {"msg_id": "a"}},
        {"event_name": "follow", "timestamp": "1", "follower": "x"},
        {"event_name": "user_click_chatnow", "timestamp": "1"},
    ],
)
async def test_signed_but_malformed_events_get_400_never_500(app, zalo, clock, event: Any) -> None:
    async with harness(app, zalo, clock) as h:
        before = await table_counts(app)
        body = json.dumps(event).encode()
        stamp = str(event.get("timestamp", "")) if isinstance(event, dict) else ""
        mac = hashlib.sha256(APP_ID.encode() + body + stamp.encode() + OA_SECRET_KEY.encode()).hexdigest()
        assert h.client is not None
        response = await h.client.post(WEBHOOK_PATH, data=body, headers={"X-ZEvent-Signature": f"mac={mac}"})
        assert response.status == 400
        assert await table_counts(app) == before


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe\x00", '{"a": "\ud800"}'.encode("utf-8", "surrogatepass")])
async def test_bodies_that_are_not_json_get_400(app, zalo, clock, body: bytes) -> None:
    async with harness(app, zalo, clock) as h:
        assert h.client is not None
        response = await h.client.post(WEBHOOK_PATH, data=body, headers={"X-ZEvent-Signature": "mac=00"})
        assert response.status == 400


async def test_follow_greets_unfollow_marks_unreachable_and_echoes_are_ignored(app, zalo, clock) -> None:
    emulator, _ = zalo
    async with harness(app, zalo, clock) as h:
        assert await h.post(oa_event("follow", "880")) == 200
        await wait_until(lambda: len(emulator.texts_to("880")) == 1)
        assert app.catalog.say("consent_prompt").splitlines()[0] in emulator.texts_to("880")[0]
        for text in ["1", "1"]:  # agree, village
            assert await h.post(oa_event("user_send_text", "880", text=text)) == 200
        await wait_until(lambda: len(emulator.texts_to("880")) >= 3)
        count = len(emulator.sent)
        echo = {**oa_event("user_send_text", "880", text="x"), "event_name": "oa_send_text"}
        assert await h.post(echo) == 200
        assert await h.post(oa_event("user_send_image", "880")) == 200
        await wait_until(lambda: len(emulator.sent) == count + 1)
        assert app.catalog.say("unsupported_message") in emulator.sent[-1].text
        assert await h.post(oa_event("unfollow", "880")) == 200
        async with app.sessions() as session:
            identity = await session.scalar(select(ChannelIdentity).where(ChannelIdentity.external_id == "880"))
            assert identity is not None
            assert identity.unreachable_since is not None


async def test_an_expiring_token_is_refreshed_once_and_the_old_pair_retired(app, zalo, clock) -> None:
    emulator, _ = zalo
    async with harness(app, zalo, clock) as h:
        first = await h.tokens.access_token()
        clock.advance(90000 - REFRESH_AHEAD.total_seconds() + 60)  # inside the refresh margin, not yet expired
        await asyncio.gather(*(h.transport.send("901", Reply(text=f"tin {n}")) for n in range(5)))
        assert emulator.refreshes == 1  # five concurrent sends, one refresh
        assert {s.access_token for s in emulator.sent} == {await h.tokens.access_token()} != {first}
    async with app.sessions() as session:
        rows = (await session.scalars(select(OAuthToken).order_by(OAuthToken.id))).all()
    assert [bool(r.retired_at) for r in rows] == [True, True, False][-len(rows) :]
    assert all(r.refresh_token == "" and r.access_token == "" for r in rows if r.retired_at)
    assert emulator.refresh_valid(rows[-1].refresh_token)


async def test_a_token_zalo_calls_invalid_is_refreshed_and_the_message_sent(app, zalo, clock) -> None:
    emulator, _ = zalo
    async with harness(app, zalo, clock) as h:
        revoked = await h.tokens.access_token()
        emulator._access.pop(revoked)  # -216 from now on
        await h.transport.send("902", Reply(text="Xin chào"))
        assert emulator.texts_to("902") == ["Xin chào"]
        assert emulator.refreshes == 1


async def test_a_crash_between_refresh_and_save_leaves_a_usable_token(
    app, zalo, clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator, base = zalo
    async with harness(app, zalo, clock) as h:
        before = await h.tokens.access_token()
        clock.advance(90000 - REFRESH_AHEAD.total_seconds() + 60)

        async def crash(*_args: Any, **_kwargs: Any) -> Any:
            raise SystemExit("killed after Zalo answered, before the commit")

        monkeypatch.setattr(zalo_oauth, "store_token", crash)
        with pytest.raises(SystemExit):
            await h.tokens.access_token()
        monkeypatch.undo()
        assert emulator.refreshes == 1  # Zalo rotated the pair; we never saved it
        async with aiohttp.ClientSession() as http:  # the restarted process
            tokens = ZaloTokens(app.sessions, http, APP_ID, APP_SECRET, base, clock=clock)
            transport = ZaloOATransport(http, tokens, app.catalog, base, ZALO_OA_LIMITS, WEEK)
            await transport.send("903", Reply(text="vẫn gửi được"))
            assert emulator.texts_to("903") == ["vẫn gửi được"]
            assert emulator.sent[-1].access_token == before
            calls = emulator.token_calls
            await transport.send("903", Reply(text="lần nữa"))  # the failed refresh is not retried at once
            assert emulator.token_calls == calls
            clock.advance(REFRESH_AHEAD.total_seconds())  # the kept token has expired: say what to do
            with pytest.raises(TokenError, match="hocvuso zalo auth"):
                await tokens.access_token()


async def test_a_crash_after_saving_the_new_pair_uses_it_after_restart(app, zalo, clock) -> None:
    emulator, base = zalo
    async with harness(app, zalo, clock) as h:
        stale = await h.tokens.access_token()
        fresh = await h.tokens.refresh(stale)
    async with aiohttp.ClientSession() as http:
        tokens = ZaloTokens(app.sessions, http, APP_ID, APP_SECRET, base, clock=clock)
        assert await tokens.access_token() == fresh != stale
        transport = ZaloOATransport(http, tokens, app.catalog, base, ZALO_OA_LIMITS, WEEK)
        await transport.send("904", Reply(text="ok"))
    assert emulator.sent[-1].access_token == fresh


async def agree(h: Harness, emulator: ZaloOAEmulator, users: list[str]) -> None:
    """Each user writes and agrees (only then are they known, with a last message time)."""
    for user in users:
        for text in ["xin chao", "1"]:
            assert await h.post(oa_event("user_send_text", user, text=text)) == 200
    await wait_until(lambda: all(len(emulator.texts_to(user)) == 2 for user in users))


async def queue_bulk(app: App, recipients: list[str], text: str = "Thông báo của xã") -> None:
    async with app.sessions.begin() as session:
        await enqueue(
            session,
            [Outgoing("zalo_oa", r, None, Reply(text=text).to_dict(), Priority.BULK) for r in recipients],
            utc_now(),
        )


async def statuses(app: App) -> dict[str, list[str]]:
    async with app.sessions() as session:
        rows = (
            await session.execute(
                select(OutboxMessage.recipient, OutboxMessage.status, OutboxMessage.last_error)
                .where(OutboxMessage.priority == Priority.BULK)
                .order_by(OutboxMessage.id)
            )
        ).all()
    found: dict[str, list[str]] = {}
    for recipient, status, _ in rows:
        found.setdefault(status, []).append(recipient)
    return found


async def settled(app: App, expected: dict[str, list[str]], seconds: float = 20.0) -> None:
    """Wait until the bulk rows' statuses are ``expected``."""
    deadline = asyncio.get_running_loop().time() + seconds
    while (found := await statuses(app)) != expected:
        assert asyncio.get_running_loop().time() < deadline, found
        await asyncio.sleep(0.05)


async def test_outside_the_window_the_api_is_not_called_and_the_message_is_out_of_window(app, zalo, clock) -> None:
    emulator, _ = zalo
    async with harness(app, zalo, clock) as h:
        await agree(h, emulator, ["a1", "a2", "a3"])
        async with app.sessions.begin() as session:  # a2 last wrote eight days ago
            await session.execute(
                update(ChannelIdentity)
                .where(ChannelIdentity.external_id == "a2")
                .values(last_inbound_at=utc_now() - dt.timedelta(days=8))
            )
        # a3 still in our window but Zalo counts differently: its -230 also ends as "out of window"
        emulator.last_interaction["a3"] = clock() - dt.timedelta(days=8)
        calls = emulator.calls
        await queue_bulk(app, ["a1", "a2", "a3"])
        app.sender.wake()
        await wait_until(lambda: emulator.calls >= calls + 2)
        await asyncio.sleep(0.2)
        assert emulator.calls == calls + 2  # a1 and a3: a2 was never sent
    assert await statuses(app) == {"sent": ["a1"], "out_window": ["a2", "a3"]}


async def test_a_person_who_never_wrote_is_out_of_window(app, zalo, clock) -> None:
    emulator, _ = zalo
    async with harness(app, zalo, clock):
        await queue_bulk(app, ["never"])
        app.sender.wake()
        await settled(app, {"out_window": ["never"]})
    assert emulator.calls == 0


async def test_rate_limit_errors_back_off_and_nothing_is_lost(app, zalo, clock) -> None:
    emulator, _ = zalo
    async with harness(app, zalo, clock) as h:
        users = [f"r{n}" for n in range(4)]
        await agree(h, emulator, users)
        emulator.per_minute = 2
        emulator._recent.clear()
        await queue_bulk(app, users)
        app.sender.wake()
        await wait_until(lambda: emulator.rate_limited >= 1)
        await asyncio.sleep(0.3)
    found = await statuses(app)
    assert len(found.get("sent", [])) == 2
    assert len(found.get("pending", [])) == 2  # waiting out the pause, not dropped
    async with app.sessions() as session:
        errors = (
            await session.scalars(select(OutboxMessage.last_error).where(OutboxMessage.status == "pending"))
        ).all()
    assert all(errors)
    assert any("-32" in e for e in errors)


async def test_blocked_users_are_unreachable_and_bad_gateways_retried(app, zalo, clock) -> None:
    emulator, _ = zalo
    async with harness(app, zalo, clock) as h:
        await agree(h, emulator, ["b1", "b2"])
        emulator.blocked.add("b1")
        emulator.fail_next_with_5xx = 1
        await queue_bulk(app, ["b1", "b2"])
        app.sender.wake()
        await settled(app, {"unreachable": ["b1"], "sent": ["b2"]})
    assert emulator.texts_to("b2")[-1] == "Thông báo của xã"


async def test_buttons_when_enabled_and_numbered_text_when_zalo_refuses_them(app, zalo, clock) -> None:
    emulator, _ = zalo
    async with harness(app, zalo, clock, buttons=True) as h:
        assert await h.post(oa_event("user_send_text", "btn", text="xin chao")) == 200
        await wait_until(lambda: len(emulator.texts_to("btn")) == 1)
        consent = emulator.sent[-1]
        assert [b["title"][:2] for b in consent.buttons] == ["1.", "2."]
        assert all(b["type"] == "oa.query.hide" and b["payload"].startswith("#b:") for b in consent.buttons)
        assert "1️⃣" not in consent.text
        assert await h.post(oa_event("user_send_text", "btn", text=consent.buttons[0]["payload"])) == 200  # a tap
        await wait_until(lambda: len(emulator.texts_to("btn")) == 2)
        assert app.catalog.say("consent_thanks").splitlines()[0] in emulator.sent[-1].text
        emulator.accept_buttons = False
        two = Reply(text="Chọn", buttons=(Button("a", "Có"), Button("b", "Không")))
        await h.transport.send("btn", two)
        assert h.transport.buttons is False
        assert "1️⃣" in emulator.sent[-1].text
        assert not emulator.sent[-1].buttons


async def test_zalo_auth_stores_the_first_pair_from_the_code(cli, db_url, zalo, monkeypatch, tmp_path) -> None:
    emulator, base = zalo
    for name, value in {
        "ZALO_OA_APP_ID": APP_ID,
        "ZALO_OA_APP_SECRET": APP_SECRET,
        "ZALO_OA_SECRET_KEY": OA_SECRET_KEY,
        "ZALO_OAUTH_URL": base,
        "ZALO_OA_REDIRECT_URI": "https://xa.example.vn/zalo/callback",
    }.items():
        monkeypatch.setenv(name, value)
    code, out, _ = await cli("zalo", "auth")
    assert code == 0
    assert "/v4/oa/permission?app_id=" + APP_ID in out
    settings = Settings.from_env()
    async with open_app(settings) as app:
        verifier = await code_verifier(app.sessions)
    assert f"code_challenge={code_challenge(verifier)}" in out
    code, _, err = await cli("zalo", "auth", "--code", emulator.issue_code("wrong challenge"))
    assert code == 1
    assert "Zalo did not give tokens" in err
    code, out, _ = await cli("zalo", "auth", "--code", emulator.issue_code(code_challenge(verifier)))
    assert code == 0, out
    async with open_app(settings) as app, app.sessions() as session:
        stored = await session.scalar(select(OAuthToken).where(OAuthToken.retired_at.is_(None)))
    assert stored is not None
    assert emulator.access_valid(stored.access_token)
