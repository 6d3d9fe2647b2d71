"""Retention while serving (issue 11, item 6): rounds every minute, batches until nothing more is
due (at most ``max_batches``), nothing while the register is offline, a failed batch ends the round."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, task

from gateway.config import Config
from gateway.housekeeping import Housekeeping
from gateway.register.retention import RetentionRun


class _Calls:
    def __init__(self) -> None:
        self.online = True

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> defer.Deferred[Any]:
        return defer.maybeDeferred(fn, *args, **kwargs)


class _Register:
    def __init__(self, runs: list[Any]) -> None:
        self.runs, self.asked = runs, []

    def apply_retention(self, **kwargs: Any) -> RetentionRun:
        self.asked.append(kwargs)
        run = self.runs.pop(0)
        if isinstance(run, Exception):
            raise run
        return run


def _keeper(runs: list[Any]) -> tuple[Housekeeping, _Register, _Calls, task.Clock]:
    clock, calls, register = task.Clock(), _Calls(), _Register(runs)
    keeper = Housekeeping(register, calls, Config(), clock)  # type: ignore[arg-type]
    keeper.startService()
    return keeper, register, calls, clock


def test_a_round_batches_until_nothing_more_is_due() -> None:
    keeper, register, _calls, clock = _keeper([RetentionRun(2000, 0, 0, True), RetentionRun(5, 3, 1, False)])
    clock.advance(59)
    assert register.asked == []
    clock.advance(1)
    clock.advance(keeper.pause)
    assert len(register.asked) == 2
    assert register.asked[0] == {"audit_days": 365, "change_days": 365, "session_seconds": 28800,
                                 "quarantine_days": 365}
    keeper.stopService()


def test_nothing_while_offline_and_a_failure_ends_the_round() -> None:
    keeper, register, calls, clock = _keeper([RuntimeError("away"), RetentionRun(0, 0, 0, False)])
    calls.online = False
    clock.advance(60)
    assert register.asked == []
    calls.online = True
    clock.advance(60)
    assert len(register.asked) == 1  # the failure ended the round
    clock.advance(60)
    assert len(register.asked) == 2
    keeper.stopService()


def test_a_round_is_bounded() -> None:
    keeper, register, _calls, clock = _keeper([RetentionRun(1, 0, 0, True)] * 100)
    keeper.max_batches = 3
    clock.advance(60)
    for _ in range(5):
        clock.advance(keeper.pause)
    assert len(register.asked) == 3
    keeper.stopService()
