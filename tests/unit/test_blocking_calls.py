"""``BlockingCalls``: the API's worker threads. A call's answer, or its exception,
comes back to the awaiting coroutine with the caller's context; threads start on
demand up to the bound; ``close`` lets the calls under way finish."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest

from services.api.threads import BlockingCalls

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def test_a_call_answers_on_a_worker_thread_with_the_callers_context() -> None:
    calls = BlockingCalls()
    calls.open()

    def where(x: int) -> tuple[int, str, str]:
        return x * 2, threading.current_thread().name, request_id.get()

    async def scenario() -> tuple[int, str, str]:
        request_id.set("req-7")
        return await calls.run(where, 21)

    try:
        doubled, thread, seen = asyncio.run(scenario())
    finally:
        calls.close()
    assert doubled == 42
    assert thread.startswith("hub-api_")
    assert thread != threading.current_thread().name
    assert seen == "req-7"


def test_an_exception_reaches_the_caller_and_the_thread_serves_on() -> None:
    calls = BlockingCalls(max_workers=1)
    calls.open()

    def fail() -> None:
        raise LookupError("no such case")

    async def scenario() -> int:
        with pytest.raises(LookupError, match="no such case"):
            await calls.run(fail)
        return await calls.run(len, "abc")

    try:
        assert asyncio.run(scenario()) == 3
    finally:
        calls.close()


def test_threads_start_on_demand_up_to_the_bound() -> None:
    calls = BlockingCalls(max_workers=3)
    calls.open()
    started = threading.Barrier(3, timeout=5)
    seen: set[str] = set()

    def held() -> None:
        seen.add(threading.current_thread().name)
        started.wait()  # three at once: only three threads can get here together
        time.sleep(0.05)

    async def scenario() -> None:
        await asyncio.gather(*(calls.run(held) for _ in range(3)))
        await asyncio.gather(*(calls.run(time.sleep, 0.01) for _ in range(6)))

    try:
        asyncio.run(scenario())
        assert len(calls._threads) == 3
        assert len(seen) == 3
    finally:
        calls.close()
    assert calls._threads == []


def test_an_idle_app_holds_no_thread_and_a_closed_one_none() -> None:
    before = {t.name for t in threading.enumerate()}
    calls = BlockingCalls()
    calls.open()
    assert calls._threads == []

    async def scenario() -> None:
        await calls.run(time.sleep, 0)

    asyncio.run(scenario())
    calls.close()
    after = {t.name for t in threading.enumerate() if t.name.startswith("hub-api_")}
    assert after <= before


def test_close_waits_for_the_calls_under_way() -> None:
    calls = BlockingCalls()
    calls.open()
    finished: list[str] = []
    begun = threading.Event()

    def slow() -> None:
        begun.set()
        time.sleep(0.2)
        finished.append("slow")

    async def scenario() -> None:
        task = asyncio.ensure_future(calls.run(slow))
        await asyncio.sleep(0)  # the call is queued
        await asyncio.to_thread(begun.wait, 5)
        task.cancel()  # the caller goes; the call under way still finishes

    asyncio.run(scenario())
    calls.close()
    assert finished == ["slow"]


def test_a_call_whose_caller_gave_up_before_it_started_is_not_run() -> None:
    calls = BlockingCalls(max_workers=1)
    calls.open()
    ran: list[str] = []
    release = threading.Event()

    async def scenario() -> None:
        blocker = asyncio.ensure_future(calls.run(release.wait, 5))
        await asyncio.sleep(0.05)  # the only thread is held
        queued = asyncio.ensure_future(calls.run(ran.append, "queued"))
        await asyncio.sleep(0.01)
        queued.cancel()
        release.set()
        await blocker
        await calls.run(time.sleep, 0)  # the queue has been worked through

    try:
        asyncio.run(scenario())
    finally:
        calls.close()
    assert ran == []


def test_a_call_before_the_lifespan_opened_the_pool_is_refused() -> None:
    calls = BlockingCalls()
    with pytest.raises(RuntimeError, match="lifespan"):
        asyncio.run(calls.run(len, "x"))
