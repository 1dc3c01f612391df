"""The FIFO cap on concurrent provider calls."""

from __future__ import annotations

import asyncio

from sytq.llm.slots import CallSlots


async def test_at_most_limit_holders_and_waiters_served_in_arrival_order() -> None:
    slots = CallSlots(2)
    order: list[int] = []
    holding = 0
    most = 0

    async def call(i: int) -> None:
        nonlocal holding, most
        async with slots:
            order.append(i)
            holding += 1
            most = max(most, holding)
            await asyncio.sleep(0.01)
            holding -= 1

    await asyncio.gather(*(call(i) for i in range(10)))
    assert most == 2
    assert order == list(range(10))
    assert slots.in_use == 0 and slots.waiting == 0


async def test_a_cancelled_waiter_gives_up_its_place_and_no_slot_is_lost() -> None:
    slots = CallSlots(1)
    await slots.acquire()
    cancelled = asyncio.create_task(slots.acquire())
    second = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    assert slots.waiting == 2
    cancelled.cancel()
    await asyncio.sleep(0)
    slots.release()  # goes past the cancelled waiter to the second one
    await asyncio.wait_for(second, 1)
    assert slots.in_use == 1
    slots.release()
    await asyncio.wait_for(slots.acquire(), 1)  # the slot came back


async def test_cancelled_after_being_handed_a_slot_passes_it_on() -> None:
    slots = CallSlots(1)
    await slots.acquire()
    first = asyncio.create_task(slots.acquire())
    second = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    slots.release()  # handed to `first`, which has not run yet
    first.cancel()  # ... and is cancelled before it resumes
    await asyncio.gather(first, return_exceptions=True)
    await asyncio.wait_for(second, 1)  # the slot went on to `second`
    assert slots.in_use == 1
