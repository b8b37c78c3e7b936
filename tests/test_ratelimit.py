"""The channel pacer: evenly spaced, never over the limit in any second, replies before bulk."""

from __future__ import annotations

import asyncio
import itertools

from bot.ratelimit import Pacer


async def test_no_second_holds_more_than_the_limit_and_urgent_goes_first() -> None:
    pacer = Pacer(0.01)  # 100 a second
    loop = asyncio.get_running_loop()
    order: list[str] = []
    times: list[float] = []

    async def take(name: str, urgent: bool) -> None:
        await pacer.acquire(urgent)
        order.append(name)
        times.append(loop.time())

    bulk = [asyncio.create_task(take(f"bulk{i}", False)) for i in range(30)]
    await asyncio.sleep(0.05)  # a few bulk slots have gone
    reply = asyncio.create_task(take("reply", True))
    await asyncio.gather(*bulk, reply)
    position = order.index("reply")
    assert 2 <= position <= 8  # right after the bulk slots already taken, not after the 30 waiting
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.0099  # evenly spaced: never two in one slot
    assert times[-1] - times[0] >= 0.29


async def test_a_cancelled_waiter_gives_its_slot_away() -> None:
    pacer = Pacer(0.02)
    await pacer.acquire()
    first = asyncio.create_task(pacer.acquire())
    second = asyncio.create_task(pacer.acquire())
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.wait_for(second, 1)
    assert second.done()
    assert first.cancelled()
