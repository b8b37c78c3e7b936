"""The channel pacer: evenly spaced, late slots made up, never over the limit in any second, replies before bulk."""

from __future__ import annotations

import asyncio
import itertools
import time

from bot.ratelimit import Pacer


async def test_no_second_holds_more_than_the_limit_and_urgent_goes_first() -> None:
    pacer = Pacer(100)
    loop = asyncio.get_running_loop()
    order: list[str] = []
    times: list[float] = []

    async def take(name: str, urgent: bool) -> None:
        await pacer.acquire(urgent)
        pacer.sent()
        order.append(name)
        times.append(loop.time())

    bulk = [asyncio.create_task(take(f"bulk{i}", False)) for i in range(30)]
    await asyncio.sleep(0.05)  # a few bulk slots have gone
    reply = asyncio.create_task(take("reply", True))
    await asyncio.gather(*bulk, reply)
    position = order.index("reply")
    assert 2 <= position <= 8  # right after the bulk slots already taken, not after the 30 waiting
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.005  # evenly spaced: a slot made up comes at least half a slot after the last
    assert times[-1] - times[0] >= 0.29


async def test_slots_missed_by_a_busy_loop_are_made_up_and_no_second_holds_more() -> None:
    pacer = Pacer(50)
    times: list[float] = []
    for n in range(110):
        await pacer.acquire()
        pacer.sent()
        times.append(time.monotonic())
        if n % 7 == 0:
            time.sleep(0.025)  # noqa: ASYNC251 (on purpose: the event loop is busy for longer than a slot)
    assert all(later - first >= 1.0 for first, later in zip(times, times[50:], strict=False))  # never 51 in 1 s
    assert (len(times) - 1) / (times[-1] - times[0]) >= 0.97 * 50


async def test_a_cancelled_waiter_gives_its_slot_away() -> None:
    pacer = Pacer(50)
    await pacer.acquire()
    pacer.sent()
    first = asyncio.create_task(pacer.acquire())
    second = asyncio.create_task(pacer.acquire())
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.wait_for(second, 1)
    assert second.done()
    assert first.cancelled()


async def test_a_slot_counts_until_its_call_starts_or_it_is_given_back() -> None:
    pacer = Pacer(50)
    for _ in range(50):  # a second's worth of slots, none of their calls started yet
        await pacer.acquire()
    late = asyncio.create_task(pacer.acquire())
    await asyncio.sleep(0.3)
    assert not late.done()  # whenever those calls start, they fall within the second of the next one
    pacer.unused()
    await asyncio.wait_for(late, 0.1)
