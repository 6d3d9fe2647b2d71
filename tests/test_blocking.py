"""How the adapters call the blocking register (gateway/register_calls.py): every caller gets its own
answer or its own error, a hung database costs callers a timeout and never piles up work, and PIN
hashing is never stuck behind (or holding up) a batch."""

from __future__ import annotations

import threading

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from gateway.blocking import RegisterCalls


def _settle(d: defer.Deferred) -> defer.Deferred:
    """The result, or the failure's exception type, as a value."""
    return d.addCallbacks(lambda v: ("ok", v), lambda f: ("error", f.type))


@pytest_twisted.ensureDeferred
async def test_each_caller_gets_its_own_answer_or_its_own_error():
    calls = RegisterCalls(reactor, timeout=5)

    def one(x: int) -> int:
        if x == 3:
            raise KeyError(x)
        return x * 10

    def many(items: list[int]) -> list[object]:
        return [ValueError(i) if i == 7 else -i for i in items]

    ds = [calls.call(one, i) for i in range(6)] + [calls.call_many(many, i) for i in range(6, 10)]
    results = await defer.gatherResults([_settle(d) for d in ds])
    assert results == [("ok", 0), ("ok", 10), ("ok", 20), ("error", KeyError), ("ok", 40), ("ok", 50),
                       ("ok", -6), ("error", ValueError), ("ok", -8), ("ok", -9)]
    assert calls.in_flight == 0


@pytest_twisted.ensureDeferred
async def test_a_batch_function_that_fails_fails_only_its_own_items():
    calls = RegisterCalls(reactor, timeout=5)

    def broken(items: list[int]) -> list[int]:
        raise ZeroDivisionError("bug")

    def short(items: list[int]) -> list[int]:
        return items[:-1]  # a bug: one outcome missing

    ds = [calls.call_many(broken, 1), calls.call(lambda: "fine"), calls.call_many(broken, 2),
          calls.call_many(short, 3), calls.call_many(short, 4)]
    assert await defer.gatherResults([_settle(d) for d in ds]) == [
        ("error", ZeroDivisionError), ("ok", "fine"), ("error", ZeroDivisionError),
        ("error", RuntimeError), ("error", RuntimeError)]


@pytest_twisted.ensureDeferred
async def test_a_hung_register_costs_a_timeout_and_queued_work_is_dropped():
    calls = RegisterCalls(reactor, timeout=0.3, max_jobs=1)
    release, started = threading.Event(), []

    def hang() -> str:
        started.append("hang")
        release.wait(10)
        return "late"

    def quick(name: str) -> str:
        started.append(name)
        return name

    try:
        hung = _settle(calls.call(hang))
        await task.deferLater(reactor, 0.05, lambda: None)  # the hung call holds the only batch job
        queued = [_settle(calls.call(quick, f"q{i}")) for i in range(3)]
        alone = await _settle(calls.call_alone(quick, "pin"))  # a PIN hash is not stuck behind the batch
        assert alone == ("ok", "pin")
        assert await hung == ("error", defer.TimeoutError)
        assert await defer.gatherResults(queued) == [("error", defer.TimeoutError)] * 3
    finally:
        release.set()
    await task.deferLater(reactor, 0.2, lambda: None)
    assert started == ["hang", "pin"]  # the calls that timed out while queued never ran
    assert await _settle(calls.call(quick, "after")) == ("ok", "after")  # service resumes by itself
    assert calls.in_flight == 0


@pytest.mark.parametrize("max_jobs", [1, 2])
@pytest_twisted.ensureDeferred
async def test_many_callers_at_once_are_all_answered(max_jobs):
    calls = RegisterCalls(reactor, timeout=5, max_batch=16, max_jobs=max_jobs)
    sizes: list[int] = []

    def squares(items: list[int]) -> list[int]:
        sizes.append(len(items))
        return [i * i for i in items]

    ds = [calls.call_many(squares, i) for i in range(500)]
    assert await defer.gatherResults(ds) == [i * i for i in range(500)]
    assert max(sizes) == 16 and sum(sizes) == 500  # together, but never more than max_batch at once
    assert calls.jobs == 0 and calls.in_flight == 0


@pytest_twisted.ensureDeferred
async def test_a_hung_register_takes_the_pool_offline_and_a_probe_brings_it_back():
    """No answer for ``offline_after`` s: every caller is answered RegisterUnavailable at once, new
    calls too; the caller under way commits nothing (its caller was answered); a probe that
    succeeds brings the pool back online."""
    from gateway.register.errors import RegisterUnavailable
    from gateway.register.store import check_deadline

    hung, healthy = threading.Event(), threading.Event()
    committed: list[int] = []
    states: list[bool] = []

    def stuck(x: int) -> int:
        hung.wait(10)
        check_deadline()  # what the register does just before a commit
        committed.append(x)
        return x

    def probe() -> None:
        if not healthy.is_set():
            raise OSError("still hung")

    calls = RegisterCalls(reactor, timeout=5, offline_after=0.4, probe=probe)
    calls.listeners.append(states.append)
    running = _settle(calls.call(stuck, 1))
    queued = _settle(calls.call(stuck, 2))
    started = reactor.seconds()
    assert await running == ("error", RegisterUnavailable)
    assert await queued == ("error", RegisterUnavailable)
    assert reactor.seconds() - started < 2 and not calls.online and states == [False]
    assert await _settle(calls.call(lambda: 3)) == ("error", RegisterUnavailable)  # at once, never run
    hung.set()
    healthy.set()
    for _ in range(100):
        if calls.online:
            break
        await task.deferLater(reactor, 0.05, lambda: None)
    assert calls.online and states == [False, True]
    assert await _settle(calls.call(lambda: 4)) == ("ok", 4)
    assert committed == []  # the hung call's caller was answered: it never commits


@pytest_twisted.ensureDeferred
async def test_waiting_for_the_sqlite_write_lock_is_not_hanging():
    waits = [1]
    release = threading.Event()
    calls = RegisterCalls(reactor, timeout=5, offline_after=0.3, lock_waits=lambda: waits[0])
    d = _settle(calls.call(lambda: release.wait(10) and "done"))
    await task.deferLater(reactor, 1.0, lambda: None)
    assert calls.online  # a second in the lock queue is a busy register, not a hung one
    release.set()
    assert await d == ("ok", "done")
