"""Deadlines hold: a register call whose caller was answered with a timeout commits nothing, alone
or in a batch (issue 8, item 6: 124 of 2,400 CreateUsers were registered although every answer
said Temporary Processing Failure)."""

from __future__ import annotations

import time

import pytest
import pytest_twisted
from register_helpers import OSLO, nid, terminal
from twisted.internet import defer, reactor

from gateway.blocking import RegisterCalls
from gateway.register.errors import RegisterUnavailable
from gateway.register.store import deadline
from gateway.register.views import OPERATOR, DecisionRequest


def _settle(d: defer.Deferred) -> defer.Deferred:
    return d.addCallbacks(lambda v: ("ok", v), lambda f: ("error", f.type))


def test_a_transaction_past_its_deadline_rolls_back(reg):
    with deadline(time.monotonic() - 0.001), pytest.raises(RegisterUnavailable):
        reg.register_patron(OPERATOR, OSLO, national_id=nid(1), surname="Sen", given_name="Kari")
    with deadline(time.monotonic() + 30):
        view = reg.register_patron(OPERATOR, OSLO, national_id=nid(2), surname="Tidsnok", given_name="Per")
    assert [p["card"] for p in reg.series_conflicts()] == []
    assert reg.counts()["patrons"] == 1
    assert reg.find_patron(OPERATOR, view.card).surname == "Tidsnok"


@pytest_twisted.ensureDeferred
async def test_a_call_answered_with_a_timeout_commits_nothing(reg):
    calls = RegisterCalls(reactor, timeout=0.4)

    def slow_registration(k: int) -> object:
        time.sleep(0.45)  # a database that answers slowly: the caller has been told "failed" by now
        return reg.register_patron(OPERATOR, OSLO, national_id=nid(k), surname="Treg", given_name="Kari")

    outcomes = await defer.gatherResults([_settle(calls.call_alone(slow_registration, k)) for k in (3, 4)]
                                         + [_settle(calls.call(slow_registration, 5))])
    assert [kind for kind, _ in outcomes] == ["error", "error", "error"]
    await _until_idle(calls)
    assert reg.counts()["patrons"] == 0
    assert [e.action for e in reg.audit_events() if e.action == "patron_register"] == []


@pytest_twisted.ensureDeferred
async def test_a_batch_past_the_deadline_of_its_callers_audits_nothing(reg):
    reg.register_patron(OPERATOR, OSLO, national_id=nid(6), surname="Dør", given_name="Ola", card="N000100006")
    before = len(reg.audit_events(limit=1000))
    calls = RegisterCalls(reactor, timeout=0.4)
    real = reg.decide_many

    def slow_decide_many(requests: list[DecisionRequest]) -> list[object]:
        time.sleep(0.45)
        return real(requests)

    kiosk = terminal(OSLO)
    ds = [_settle(calls.call_many(slow_decide_many, DecisionRequest(kiosk, "N000100006", pin_required=False)))
          for _ in range(3)]
    outcomes = await defer.gatherResults(ds)
    assert [kind for kind, _ in outcomes] == ["error"] * 3
    await _until_idle(calls)
    assert len(reg.audit_events(limit=1000)) == before


async def _until_idle(calls: RegisterCalls) -> None:
    """Wait until the thread jobs have finished (their results are dropped: the callers have theirs)."""
    from twisted.internet import task

    for _ in range(200):
        if calls.jobs == 0:
            break
        await task.deferLater(reactor, 0.02, lambda: None)
    await task.deferLater(reactor, 0.3, lambda: None)  # a call_alone job is not counted in ``jobs``
