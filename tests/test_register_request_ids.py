"""Every audit event records the request it was part of (issue 11, item 4): the request's log line
carries the same id and names no patron, and the trail leads from the id to the patron."""

from __future__ import annotations

from register_helpers import OSLO, PIN, add_patron, client, raw_rows, terminal

from gateway.register import Register
from gateway.register.errors import AuthenticationFailed
from gateway.register.views import OPERATOR, DecisionRequest


def test_lookups_decisions_and_changes_carry_their_request_id(reg: Register) -> None:
    card = add_patron(reg).card
    reg.find_patron(client(OSLO).asking("ncip-1"), card)
    reg.decide(terminal(OSLO).asking("sip2-1"), card, PIN)
    reg.decide_many([DecisionRequest(terminal(OSLO).asking(f"sip2-batch-{i}"), card, None, pin_required=False)
                     for i in range(3)] + [DecisionRequest(terminal(OSLO).asking("sip2-unknown"), "N000199999")])
    reg.set_blocked(client(OSLO).asking("ncip-2"), card, True, "unpaid")
    rows = raw_rows(reg, "SELECT request_id, action, outcome FROM audit_events WHERE request_id IS NOT NULL "
                         "ORDER BY id")
    assert rows == [("ncip-1", "patron_lookup", "ok"), ("sip2-1", "patron_check", "granted"),
                    ("sip2-batch-0", "patron_check", "granted"), ("sip2-batch-1", "patron_check", "granted"),
                    ("sip2-batch-2", "patron_check", "granted"), ("sip2-unknown", "patron_check", "unknown_card"),
                    ("ncip-2", "patron_block", "ok")]
    assert reg.audit_events(card)[-1].request_id == "ncip-2"


def test_the_request_id_is_not_part_of_who_asks(reg: Register) -> None:
    assert terminal(OSLO).asking("a") == terminal(OSLO)
    assert terminal(OSLO).asking("x" * 100).request_id == "x" * 32
    assert terminal(OSLO).asking(None).request_id is None


def test_logins_carry_their_request_id(reg: Register) -> None:
    card = add_patron(reg).card
    reg.add_terminal(OPERATOR, "kiosk-9", "right-password", OSLO, "kiosk")
    assert reg.terminal_login("kiosk-9", "wrong", source="10.0.0.9", encrypted=False,
                              request_id="sip2-login-1").terminal is None
    try:
        reg.web_login(card, "0000", request_id="web-login-1")
    except AuthenticationFailed:
        pass
    rows = raw_rows(reg, "SELECT request_id, action, outcome FROM audit_events WHERE request_id LIKE '%login%' "
                         "ORDER BY id")
    assert rows == [("sip2-login-1", "sip2_login", "bad_login"), ("web-login-1", "pin_verify", "wrong")]
