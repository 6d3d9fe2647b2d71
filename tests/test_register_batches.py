"""Questions answered together (Register.decide_many, Register.find_patrons): exactly the answers and
the audit trail of asking one by one, with each question's own error kept to itself."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial

import pytest
from register_helpers import BERGEN, OSLO, PIN, TRONDHEIM, add_patron, client, patron_actor, raw_rows, terminal

from gateway.register import Register, Settings
from gateway.register.crypto import KeyRing
from gateway.register.database import make_engine
from gateway.register.errors import InvalidInput, NotFound, PermissionDenied
from gateway.register.views import OPERATOR, DecisionRequest, Reason

NOW = datetime(2027, 6, 1, 10, tzinfo=UTC)


def _audit(reg, since: int) -> list[tuple]:
    return raw_rows(reg, "SELECT actor, library_isil, action, patron_id, card_number, outcome, detail "
                         "FROM audit_events WHERE id > :since ORDER BY id", since=since)


def _last_id(reg) -> int:
    return raw_rows(reg, "SELECT COALESCE(MAX(id), 0) FROM audit_events")[0][0]


def _people(reg):
    """Patrons in every state a kiosk can meet."""
    fine, blocked, lost, replaced, stranger, locked = (add_patron(reg, k, OSLO) for k in range(6))
    for p in (fine, blocked, lost, replaced, locked):
        reg.activate(OPERATOR, p.card, OSLO, door_agreement=True)
    reg.set_blocked(OPERATOR, blocked.card, True, "sperret")
    reg.report_lost(OPERATOR, lost.card)
    new = reg.replace_card(OPERATOR, replaced.card)
    trondheim = add_patron(reg, 6, TRONDHEIM)
    return fine, blocked, lost, replaced, new, stranger, trondheim


def test_decide_many_answers_and_audits_as_decide_one_by_one(reg):
    fine, blocked, lost, replaced, new, stranger, trondheim = _people(reg)
    kiosk, open_kiosk, door = terminal(OSLO, "oslo-kiosk"), terminal(OSLO, "oslo-open"), terminal(OSLO, "oslo-door")
    bergen = terminal(BERGEN, "bergen-open")
    questions = [
        DecisionRequest(open_kiosk, fine.card, pin_required=False),
        DecisionRequest(open_kiosk, f" {fine.card.lower()} ", pin_required=False),  # the same card, written loosely
        DecisionRequest(kiosk, fine.card),  # a PIN is required here
        DecisionRequest(door, fine.card, door=True),
        DecisionRequest(open_kiosk, blocked.card, pin_required=False),
        DecisionRequest(open_kiosk, lost.card, pin_required=False),
        DecisionRequest(door, lost.card, door=True),
        DecisionRequest(open_kiosk, replaced.card, pin_required=False),
        DecisionRequest(open_kiosk, new.current_card, pin_required=False),
        DecisionRequest(open_kiosk, stranger.card, pin_required=False, institution="2030000"),  # its own library
        DecisionRequest(open_kiosk, trondheim.card, pin_required=False),  # not activated at Oslo
        DecisionRequest(bergen, fine.card, pin_required=False),  # another library in the same batch
        DecisionRequest(open_kiosk, fine.card, pin_required=False, institution=BERGEN),  # wrong institution
        DecisionRequest(open_kiosk, "N000199999", pin_required=False),  # unknown
        DecisionRequest(open_kiosk, "not a card", pin_required=False),  # malformed
        DecisionRequest(kiosk, fine.card, PIN),  # with a PIN: decided on its own, in its place
        DecisionRequest(kiosk, fine.card, "7531"),
    ]
    mark = _last_id(reg)
    alone = [reg.decide(q.actor, q.card, q.pin, door=q.door, pin_required=q.pin_required,
                        institution=q.institution, now=NOW) for q in questions]
    audit_alone = _audit(reg, mark)
    mark = _last_id(reg)
    together = reg.decide_many(questions, now=NOW)
    audit_together = _audit(reg, mark)

    assert together == alone  # reasons, PIN flags, card state and the whole patron view
    assert sorted(audit_together, key=repr) == sorted(audit_alone, key=repr)
    assert [d.reason for d in together] == [
        Reason.GRANTED, Reason.GRANTED, Reason.PIN_MISSING, Reason.PIN_MISSING, Reason.PATRON_BLOCKED,
        Reason.CARD_LOST, Reason.CARD_LOST, Reason.CARD_REPLACED, Reason.GRANTED, Reason.GRANTED,
        Reason.NOT_ACTIVATED, Reason.NOT_ACTIVATED, Reason.WRONG_INSTITUTION, Reason.UNKNOWN_CARD,
        Reason.UNKNOWN_CARD, Reason.GRANTED, Reason.PIN_WRONG]
    assert together[0].patron.surname == fine.surname and together[10].patron.card == trondheim.card
    assert all(PIN not in str(v) and "7531" not in str(v) for row in audit_together for v in row), audit_together


def test_decide_many_of_nothing_and_of_an_unreachable_register(reg, keys_path):
    assert reg.decide_many([]) == []
    dead = Register(make_engine("postgresql+psycopg://postgres@127.0.0.1:1/x", connect_timeout=2),
                    KeyRing.load(keys_path), Settings(pin_hash_cost=10))
    try:
        kiosk = terminal(OSLO)
        decisions = dead.decide_many([DecisionRequest(kiosk, "N000100000", pin_required=False),
                                      DecisionRequest(kiosk, "nonsense", pin_required=False),
                                      DecisionRequest(kiosk, "N000100000", PIN)])
        assert [d.reason for d in decisions] == [Reason.REGISTER_UNAVAILABLE] * 3
        assert not any(d.granted or d.patron for d in decisions)
    finally:
        dead.engine.dispose()


def _outcome(call):
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - compared below
        return (type(exc), str(exc))


def test_find_patrons_answers_and_audits_as_find_patron_one_by_one(reg):
    fine, blocked, lost, replaced, new, stranger, trondheim = _people(reg)
    gone = add_patron(reg, 7, OSLO)
    reg.delete_patron(OPERATOR, gone.card)
    cards = [fine.card, f" {fine.card.lower()} ", lost.card, replaced.card, new.current_card, trondheim.card,
             "N000199999", "not a card", gone.card, blocked.card]
    for actor, see in ((client(OSLO), False), (client(BERGEN, "lookup", "see-national-id"), True), (OPERATOR, True),
                       (patron_actor(fine.card), False)):
        mark = _last_id(reg)
        alone = [_outcome(partial(reg.find_patron, actor, c, with_national_id=see)) for c in cards]
        audit_alone = _audit(reg, mark)
        mark = _last_id(reg)
        together = [v if not isinstance(v, Exception) else (type(v), str(v))
                    for v in reg.find_patrons(actor, cards, with_national_id=see)]
        assert together == alone, actor
        assert _audit(reg, mark) == audit_alone
    assert alone[0].card == fine.card and alone[6][0] is NotFound and alone[7][0] is InvalidInput
    assert alone[8][0] is NotFound and alone[9][0] is PermissionDenied  # a patron sees only themself


def test_find_patrons_shows_national_ids_only_with_the_permission(reg):
    fine = add_patron(reg, 0, OSLO)
    seer = client(OSLO, "lookup", "see-national-id")
    assert reg.find_patrons(seer, [fine.card], with_national_id=True)[0].national_id
    assert reg.find_patrons(client(OSLO, "lookup"), [fine.card])[0].national_id is None
    with pytest.raises(PermissionDenied):
        reg.find_patrons(client(OSLO, "lookup"), [fine.card], with_national_id=True)
    with pytest.raises(PermissionDenied):
        reg.find_patrons(client(OSLO, "create"), [fine.card])
