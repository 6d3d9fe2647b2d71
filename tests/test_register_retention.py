"""Retention (issue 11, item 6): lookup and decision audit rows go after ``audit_days``, change
audit rows stay with the patron, change feed entries go after ``change_days``, Min side sessions go
once ended or outlived; in small batches while the gateway serves."""

from __future__ import annotations

from datetime import timedelta

from register_helpers import OSLO, PIN, add_patron, client, raw_rows, terminal

from gateway.register import Register
from gateway.register.models import utcnow
from gateway.register.retention import Retention


def _actions(reg: Register) -> list[str]:
    return [a for (a,) in raw_rows(reg, "SELECT action FROM audit_events ORDER BY id")]


def test_old_lookups_and_decisions_go_changes_stay(reg: Register) -> None:
    card = add_patron(reg).card
    reg.find_patron(client(OSLO), card)
    reg.decide(terminal(OSLO), card, PIN)
    reg.decide(terminal(OSLO), card, None, door=True, pin_required=False)
    reg.set_blocked(client(OSLO), card, True, "unpaid")
    before = _actions(reg)
    assert {"patron_lookup", "patron_check", "door"} <= set(before)
    # Nothing is old yet: nothing goes.
    run = reg.apply_retention(audit_days=365, change_days=365)
    assert (run.audit_rows, run.changes) == (0, 0) and _actions(reg) == before
    # A year and a day on, the lookups and decisions go; the registration and the block stay.
    later = utcnow() + timedelta(days=366)
    run = reg.apply_retention(audit_days=365, change_days=3650, now=later)
    assert run.audit_rows == 3
    assert _actions(reg) == [a for a in before if a not in ("patron_lookup", "patron_check", "door")]
    assert [c.kind for c in reg.changes()] == ["registered", "blocked"]
    run = reg.apply_retention(audit_days=365, change_days=365, now=later)
    assert run.changes == 2 and reg.changes() == []


def test_sessions_go_once_ended_or_outlived(reg: Register) -> None:
    card = add_patron(reg).card
    ended, live = reg.web_login(card, PIN).token, reg.web_login(card, PIN).token
    reg.web_logout(ended)
    assert reg.apply_retention().sessions == 1
    assert reg.web_session(live) is not None
    assert reg.apply_retention(now=utcnow() + timedelta(hours=9)).sessions == 1
    assert raw_rows(reg, "SELECT count(*) FROM web_sessions") == [(0,)]


def test_a_long_trail_goes_in_batches(reg: Register, monkeypatch) -> None:
    monkeypatch.setattr(Retention, "WINDOW", 4)
    card = add_patron(reg).card
    for _ in range(10):
        reg.find_patron(client(OSLO), card)
    later = utcnow() + timedelta(days=400)
    runs = []
    while True:
        run = reg.apply_retention(now=later)
        runs.append(run.audit_rows)
        if not run.more:
            break
        assert len(runs) < 10
    assert sum(runs) == 10 and max(runs) <= 4 and len(runs) >= 3
    assert "patron_lookup" not in _actions(reg) and "patron_register" in _actions(reg)
    # A row written after the walk is judged on a later run.
    reg.find_patron(client(OSLO), card)
    assert reg.apply_retention(now=later + timedelta(days=400)).audit_rows == 1


def test_settled_quarantine_entries_go_after_their_days_open_ones_stay(reg: Register) -> None:
    from gateway.register.legacy import ImportRow
    from gateway.register.views import OPERATOR

    bad = {"card": "N000100500", "national_id": "12345678901", "surname": "Feil", "given_name": "Nummer"}
    reg.import_rows(OPERATOR, OSLO, [ImportRow(1, bad), ImportRow(2, {**bad, "card": "N000100501"})])
    first, second = (e.id for e in reg.list_quarantine(OSLO))
    reg.resolve_quarantine(OPERATOR, first, discard_reason="a typo in the old system")
    assert reg.apply_retention(quarantine_days=30).quarantine == 0  # settled just now: kept for its days
    run = reg.apply_retention(quarantine_days=30, now=utcnow() + timedelta(days=31))
    assert run.quarantine == 1
    assert [e.id for e in reg.list_quarantine(OSLO)] == [second]  # the open one waits for someone to resolve it
    assert reg.apply_retention(quarantine_days=30, now=utcnow() + timedelta(days=3650)).quarantine == 0
