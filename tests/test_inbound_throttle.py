"""The per-sender inbound throttle: a flood is slowed alone, its latest message answered, one notice."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from bot.app import App
from bot.channels.telegram import SECRET_HEADER
from bot.inbound_throttle import InboundThrottle
from bot.server import WEBHOOK_PATH
from storage.models import ProcessedInbound
from tests.test_telegram import SECRET, app, emulator, harness, wait_until, webhook_client  # noqa: F401

FLOODER = 4242


class Notices:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def __call__(self, channel: str, sender_id: str) -> None:
        self.sent.append((channel, sender_id))


async def test_a_burst_goes_at_once_then_the_rate_holds() -> None:
    throttle = InboundThrottle(Notices(), rate=20.0, burst=3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert [await throttle.admit("t", "1") for _ in range(3)] == [True, True, True]
    assert loop.time() - started < 0.02
    assert await throttle.admit("t", "1")  # waited for its token
    assert loop.time() - started >= 0.04


async def test_a_newer_event_supersedes_the_waiting_one_and_the_sender_is_told_once() -> None:
    notices = Notices()
    throttle = InboundThrottle(notices, rate=10.0, burst=2)
    assert await throttle.admit("t", "1")
    assert await throttle.admit("t", "1")
    waiting = [asyncio.create_task(throttle.admit("t", "1")) for _ in range(5)]
    results = await asyncio.gather(*waiting)
    assert results == [False, False, False, False, True]  # only the latest goes on
    assert throttle.dropped == 4
    assert notices.sent == [("t", "1")]


async def test_a_calm_sender_is_told_again_on_a_later_flood() -> None:
    notices = Notices()
    throttle = InboundThrottle(notices, rate=50.0, burst=1)
    for _ in range(2):
        assert await throttle.admit("t", "1")
        assert await asyncio.gather(throttle.admit("t", "1"), throttle.admit("t", "1")) == [False, True]
        await asyncio.sleep(0.05)  # the bucket fills up again: a new episode
    assert notices.sent == [("t", "1"), ("t", "1")]


async def test_others_never_wait_for_a_flooding_sender() -> None:
    throttle = InboundThrottle(Notices(), rate=1.0, burst=1)
    assert await throttle.admit("t", "flood")
    held = asyncio.create_task(throttle.admit("t", "flood"))  # waits about a second
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert all([await throttle.admit("t", str(i)) for i in range(100)])
    assert loop.time() - started < 0.05
    assert not held.done()
    held.cancel()


async def test_a_cancelled_waiter_frees_its_place() -> None:
    throttle = InboundThrottle(Notices(), rate=20.0, burst=1)
    assert await throttle.admit("t", "1")
    held = asyncio.create_task(throttle.admit("t", "1"))
    await asyncio.sleep(0.01)
    held.cancel()
    await asyncio.sleep(0)
    assert await asyncio.wait_for(throttle.admit("t", "1"), 1)  # neither superseding a dead waiter nor stuck


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.floats(min_value=0, max_value=0.02)), min_size=1, max_size=40))
def test_any_arrival_pattern_answers_each_senders_latest_event(arrivals: list[tuple[str, float]]) -> None:
    """Whatever the timing, every sender's last event is processed and nothing waits forever."""

    async def scenario() -> None:
        throttle = InboundThrottle(Notices(), rate=200.0, burst=2)
        tasks: list[tuple[str, asyncio.Task[bool]]] = []
        for sender, pause in arrivals:
            tasks.append((sender, asyncio.create_task(throttle.admit("t", sender))))
            await asyncio.sleep(pause)
        results = await asyncio.wait_for(asyncio.gather(*(task for _, task in tasks)), 5)
        for sender in {s for s, _ in arrivals}:
            last = max(i for i, (s, _) in enumerate(tasks) if s == sender)
            assert results[last] is True
        assert throttle.dropped == results.count(False)

    asyncio.run(scenario())


async def test_a_resident_flooding_100_messages_a_second_gets_one_notice_and_their_last_answer(
    emulator,  # noqa: F811
    app: App,  # noqa: F811
    tmp_path: Path,
) -> None:
    emu, base_url = emulator
    async with harness(app, base_url) as h, webhook_client(h) as client:
        h.start_sender()
        floods = [emu.make_text_update(FLOODER, f"tin {i}") for i in range(99)]
        latest = emu.make_text_update(FLOODER, "menu")

        async def post(update: dict) -> None:
            response = await client.post(WEBHOOK_PATH, json=update, headers={SECRET_HEADER: SECRET})
            assert response.status == 200

        async def flood() -> None:
            posts = []
            for update in floods:
                posts.append(asyncio.create_task(post(update)))
                await asyncio.sleep(0.01)
            posts.append(asyncio.create_task(post(latest)))
            await asyncio.gather(*posts)

        async def neighbour(chat: int) -> list[float]:
            waits = []
            for turn in ["/start", "1", "2", "menu"]:
                started = asyncio.get_running_loop().time()
                seen = len(emu.texts_to(chat))
                await post(emu.make_text_update(chat, turn))
                await wait_until(lambda chat=chat, seen=seen: len(emu.texts_to(chat)) > seen)
                waits.append(asyncio.get_running_loop().time() - started)
            return waits

        _, *waits = await asyncio.gather(flood(), *(neighbour(7000 + i) for i in range(10)))
        await asyncio.sleep(0.5)
    notice = app.catalog.say("too_fast")
    flooder = emu.texts_to(FLOODER)
    assert flooder.count(notice) == 1
    async with app.sessions() as session:
        processed = set(await session.scalars(select(ProcessedInbound.event_id)))
    assert str(latest["update_id"]) in processed  # the latest message was answered
    flooded = processed & {str(u["update_id"]) for u in [*floods, latest]}
    assert 30 <= len(flooded) < 60  # the burst, then about 5 a second: the rest was dropped
    assert max(w for per in waits for w in per) < 2.0  # neighbours are not held up
    assert all(len(emu.texts_to(7000 + i)) == 4 for i in range(10))
