"""The coalescer shared by the queue client, result writes and the task store's group commit."""

from __future__ import annotations

import asyncio

import pytest

from sytq.coalesce import Coalescer


class Recorder:
    """A send function that records its batches and answers each item with item * 10."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    async def send(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(items)
        await asyncio.sleep(0.01)  # the round trip, during which new items pile up
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]


async def test_callers_arriving_during_a_round_trip_share_the_next_one() -> None:
    recorder = Recorder()
    coalescer: Coalescer[int, int] = Coalescer(recorder.send)
    first = asyncio.create_task(coalescer.submit(1))
    await asyncio.sleep(0)  # the first batch is in flight
    rest = [asyncio.create_task(coalescer.submit(i)) for i in range(2, 7)]
    assert await first == 10
    assert await asyncio.gather(*rest) == [20, 30, 40, 50, 60]
    assert recorder.batches == [[1], [2, 3, 4, 5, 6]]


async def test_an_error_result_goes_to_its_own_caller_only() -> None:
    coalescer: Coalescer[int, int] = Coalescer(Recorder().send)
    outcomes = await asyncio.gather(*(coalescer.submit(i) for i in (1, -2, 3)), return_exceptions=True)
    assert outcomes[0] == 10 and outcomes[2] == 30
    assert isinstance(outcomes[1], ValueError) and str(outcomes[1]) == "bad -2"


async def test_a_failed_send_fails_its_batch_and_the_next_batch_still_goes() -> None:
    calls: list[list[int]] = []

    async def send(items: list[int]) -> list[int]:
        calls.append(items)
        await asyncio.sleep(0.01)
        if len(calls) == 1:
            raise ConnectionError("down")
        return items

    coalescer: Coalescer[int, int] = Coalescer(send)
    first = asyncio.create_task(coalescer.submit(1))
    await asyncio.sleep(0)
    second = asyncio.create_task(coalescer.submit(2))
    with pytest.raises(ConnectionError, match="down"):
        await first
    assert await second == 2
    assert calls == [[1], [2]]


async def test_batches_are_capped_and_keep_arrival_order() -> None:
    recorder = Recorder()
    coalescer: Coalescer[int, int] = Coalescer(recorder.send, max_batch=2)
    assert await asyncio.gather(*(coalescer.submit(i) for i in range(5))) == [0, 10, 20, 30, 40]
    assert recorder.batches == [[0, 1], [2, 3], [4]]


async def test_a_send_answering_the_wrong_count_fails_every_caller_instead_of_hanging() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:-1]

    coalescer: Coalescer[int, int] = Coalescer(short)
    outcomes = await asyncio.gather(coalescer.submit(1), coalescer.submit(2), return_exceptions=True)
    assert all(isinstance(o, RuntimeError) and "1 results for a batch of 2" in str(o) for o in outcomes)


def test_a_coalescer_works_again_from_a_new_event_loop() -> None:
    recorder = Recorder()
    coalescer: Coalescer[int, int] = Coalescer(recorder.send)
    assert asyncio.run(coalescer.submit(1)) == 10
    assert asyncio.run(coalescer.submit(2)) == 20


async def test_parallel_senders_send_a_second_batch_while_the_first_is_in_flight() -> None:
    in_flight = 0
    most_in_flight = 0
    batches: list[list[int]] = []

    async def send(items: list[int]) -> list[int]:
        nonlocal in_flight, most_in_flight
        batches.append(items)
        in_flight += 1
        most_in_flight = max(most_in_flight, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return [i * 10 for i in items]

    coalescer: Coalescer[int, int] = Coalescer(send, senders=2)
    first = asyncio.create_task(coalescer.submit(1))
    await asyncio.sleep(0)  # the first batch is in flight
    second = asyncio.create_task(coalescer.submit(2))
    await asyncio.sleep(0.005)
    third = [asyncio.create_task(coalescer.submit(i)) for i in (3, 4)]
    assert await asyncio.gather(first, second, *third) == [10, 20, 30, 40]
    assert most_in_flight == 2
    assert batches[:2] == [[1], [2]]  # the second did not wait for the first round trip
    assert sorted(i for batch in batches for i in batch) == [1, 2, 3, 4]


async def test_one_sender_never_has_two_batches_in_flight() -> None:
    recorder = Recorder()
    coalescer: Coalescer[int, int] = Coalescer(recorder.send)
    first = asyncio.create_task(coalescer.submit(1))
    await asyncio.sleep(0)
    second = asyncio.create_task(coalescer.submit(2))
    await asyncio.sleep(0.001)
    third = asyncio.create_task(coalescer.submit(3))
    assert await asyncio.gather(first, second, third) == [10, 20, 30]
    assert recorder.batches == [[1], [2, 3]]


async def test_submit_soon_answers_through_futures_and_shares_round_trips_with_submit() -> None:
    recorder = Recorder()
    coalescer: Coalescer[int, int] = Coalescer(recorder.send)
    first = coalescer.submit_soon(1)
    await asyncio.sleep(0)  # the first batch is in flight
    later = [coalescer.submit_soon(2), coalescer.submit_soon(-3), asyncio.ensure_future(coalescer.submit(4))]
    assert await first == 10
    outcomes = await asyncio.gather(*later, return_exceptions=True)
    assert outcomes[0] == 20 and outcomes[2] == 40
    assert isinstance(outcomes[1], ValueError) and str(outcomes[1]) == "bad -3"
    assert recorder.batches == [[1], [2, -3, 4]]
    # Once the sender has finished, the next item starts a new one.
    assert await coalescer.submit_soon(5) == 50
    assert recorder.batches[-1] == [5]
