"""The channel pacer: evenly spaced, never over the limit in any second, replies before bulk."""

from __future__ import annotations

import asyncio
import time

from bot.ratelimit import CATCH_UP_SECONDS, Pacer


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
    assert_paced(times, 0.01)
    assert times[-1] - times[0] >= 0.29 - CATCH_UP_SECONDS


def assert_paced(times: list[float], interval: float) -> None:
    """Any k + 1 consecutive acquisitions span at least k intervals, less the catch-up: so N + 1 of a
    limit of N a second never fit in one second."""
    for k in (1, 10, len(times) - 1):
        for first, last in zip(times, times[k:], strict=False):
            assert last - first >= k * interval - CATCH_UP_SECONDS - 1e-4, (k, last - first)


async def test_a_late_event_loop_is_made_up_for_without_exceeding_the_limit() -> None:
    pacer = Pacer(0.01)
    loop = asyncio.get_running_loop()
    times: list[float] = []
    stop = asyncio.Event()

    async def busy() -> None:  # other work holding the loop for 4 ms now and then: timers fire late
        while not stop.is_set():
            time.sleep(0.004)  # noqa: ASYNC251 - blocking the loop is the point
            await asyncio.sleep(0.003)

    async def take() -> None:
        await pacer.acquire()
        times.append(loop.time())

    blocker = asyncio.create_task(busy())
    await asyncio.gather(*(take() for _ in range(80)))
    stop.set()
    await blocker
    assert_paced(times, 0.01)


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
