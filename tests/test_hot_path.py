"""The hot path (issue 13, gateway.hot_path) over SIP2: answers from memory are the register's
answers, every one audited (behind, in batches); changes are honoured; doors without a PIN answer
alike for every card; the audit queue's bound holds with the database cut; offline is offline."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import ncip_gateway_helpers as ncip
import pytest
import pytest_twisted
from db_proxy import DatabaseProxy
from register_helpers import nid
from sip2_server_helpers import (
    BERGEN_PATRON,
    BLOCKED,
    CHILD,
    KARI,
    LOCKED,
    LOST,
    NO_AGREEMENT,
    PIN,
    REPLACED,
    REVOKED,
    SECRET,
    UNKNOWN,
    Server,
    Servers,
    fields,
    open_register,
    over_tcp,
)

from gateway.register.views import OPERATOR

CARDS = [KARI, NO_AGREEMENT, CHILD, REVOKED, BLOCKED, LOST, REPLACED, "N000100026", LOCKED, SECRET, BERGEN_PATRON,
         UNKNOWN, "junk card", ""]
LOGINS = ["kiosk1", "door1", "ils1", "kiosk-nopin", "kiosk-bergen", "kiosk-trondheim"]


def _ask(server: Server, login: str, code: str, card: str, ao: str | None = None) -> Message_:
    c = server.login(login)
    try:
        institution = f"AO{ao}|" if ao is not None else "AONO-2030000|" if "bergen" not in login else "AONO-2120100|"
        return fields(c.ask(f"{code}01220250301    101500{institution}AA{card}|"))
    finally:
        c.close()


Message_ = Any


def _without_dates(message: Any) -> tuple:
    fixed = {k: v for k, v in message.fixed.items() if k != "transaction_date"}
    return message.code, tuple(sorted(fixed.items())), message.fields


def _trail(server: Server, since: int) -> Counter:
    return Counter((e.actor, e.library_isil, e.action, e.card_number, e.outcome) for e in server.audit()
                   if e.id > since)


@over_tcp
def test_answers_from_memory_are_the_registers_and_audited_alike(servers: Servers) -> None:
    hot = servers.start(hot={"cache_size": 1000})
    cold = servers.start(register=hot.register)  # the same register, no memory: every request asks it
    hot.settle()
    start = max((e.id for e in hot.audit()), default=0)
    asked = [(login, code, card) for login in LOGINS for code in ("23", "63") for card in CARDS]
    from_memory = [_without_dates(_ask(hot, *q)) for q in asked]
    again = [_without_dates(_ask(hot, *q)) for q in asked]  # now every fact is in memory
    mid = max(e.id for e in hot.audit())
    from_register = [_without_dates(_ask(cold, *q)) for q in asked]
    assert from_memory == from_register, [(q, a, b) for q, a, b in zip(asked, from_memory, from_register, strict=True)
                                          if a != b][:3]
    assert again == from_register
    # every request audited once, alike: asked twice through the memory, once through the register
    register_trail = _trail(cold, mid)
    assert register_trail and _trail(hot, start) == register_trail + register_trail + register_trail
    hits = hot.factory.hot.metrics.memory_answers("hit")._value.get()  # noqa: SLF001
    assert hits >= len([q for q in asked if q[0] != "door1"]) - 10, hits


@over_tcp
def test_a_change_through_the_register_is_honoured_within_a_second(servers: Servers) -> None:
    sip = servers.start(hot={"cache_size": 1000})
    sip.settle()
    assert fields(_ask_raw(sip, "kiosk-nopin", KARI)).get("AF") != "" and _granted(sip, KARI)
    sip.register.set_blocked(OPERATOR, KARI, True, "test")
    changed = time.monotonic()
    while _granted(sip, KARI):
        assert time.monotonic() - changed < 1.0, "a block was not honoured within 1 s"
        time.sleep(0.02)
    sip.register.set_blocked(OPERATOR, KARI, False)
    assert not _granted(sip, NO_AGREEMENT + "X")  # an unknown card, remembered as unknown
    sip.register.update_library(OPERATOR, "NO-2030000", door_min_age=16)  # a library: everything forgotten
    changed = time.monotonic()
    while not _granted(sip, KARI):
        assert time.monotonic() - changed < 1.0, "an unblock was not honoured within 1 s"
        time.sleep(0.02)


def _ask_raw(server: Server, login: str, card: str) -> bytes:
    c = server.login(login)
    try:
        return c.ask(f"2301220250301    101500AONO-2030000|AA{card}|")
    finally:
        c.close()


def _granted(server: Server, card: str) -> bool:
    return fields(_ask_raw(server, "kiosk-nopin", card)).fixed["patron_status"][0] == " "


@over_tcp
def test_a_door_without_pin_answers_alike_for_every_card_and_audits_the_real_reason(servers: Servers) -> None:
    sip = servers.start(hot={"cache_size": 1000})
    sip.settle()
    start = max((e.id for e in sip.audit()), default=0)
    cards = [KARI, UNKNOWN, LOST, BLOCKED, "N000100099"]
    answers = {_without_dates(fields(_ask_raw(sip, "door1", card))) for card in cards for _ in range(3)}
    assert len({(a[0], a[1], tuple(f for f in a[2] if f[0] != "AA")) for a in answers}) == 1, answers
    trail = [(e.card_number, e.outcome) for e in sip.audit() if e.id > start and e.action == "door"]
    assert Counter(trail) == Counter({(KARI, "pin_missing"): 3, (UNKNOWN, "unknown_card"): 3,
                                      (LOST, "card_lost"): 3, (BLOCKED, "pin_missing"): 3,
                                      ("N000100099", "unknown_card"): 3}), trail


@over_tcp
def test_with_a_pin_the_register_decides_as_before(servers: Servers) -> None:
    sip = servers.start(hot={"cache_size": 1000})
    sip.settle()
    c = sip.login("kiosk1")
    granted = fields(c.ask(f"2301220250301    101500AONO-2030000|AA{KARI}|AD{PIN}|"))
    wrong = fields(c.ask(f"2301220250301    101500AONO-2030000|AA{KARI}|AD9999|"))
    c.close()
    assert granted.get("CQ") == "Y" and wrong.get("CQ") == "N"
    assert [e.outcome for e in sip.audit() if e.card_number == KARI][-2:] == ["granted", "pin_wrong"]


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
@over_tcp
def test_the_audit_queue_bound_holds_with_the_database_cut(servers: Servers, database_url: str, keys_path,
                                                          register) -> None:
    from sip2_server_helpers import populate

    populate(register)
    proxy = DatabaseProxy(database_url)
    try:
        reg = open_register(proxy.url, keys_path)
        sip = servers.start(register=reg, hot={"cache_size": 1000, "audit_queue_max": 50})
        sip.settle()
        hot = sip.factory.hot
        c = sip.login("kiosk-nopin")
        for _ in range(3):  # the facts in memory
            c.ask(f"2301220250301    101500AONO-2030000|AA{KARI}|")
        sip.settle()
        before = len([e for e in register.audit_events(limit=10_000) if e.card_number == KARI])
        proxy.hang()
        granted, unavailable, highest = 0, 0, 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.5:
            answer = fields(c.ask(f"2301220250301    101500AONO-2030000|AA{KARI}|"))
            if answer.fixed["patron_status"][0] == " ":
                granted += 1
            else:
                unavailable += 1
            highest = max(highest, hot.unwritten)
        assert highest <= 50 and granted <= 50 and unavailable > 0, (highest, granted, unavailable)
        proxy.down()
        proxy.up()
        deadline = time.monotonic() + 10
        while len([e for e in register.audit_events(limit=10_000) if e.card_number == KARI]) < before + granted:
            assert time.monotonic() < deadline, "the queued audit rows were not written once the database was back"
            time.sleep(0.1)
        c.close()
    finally:
        proxy.close()


# ---------------------------------------------------------------------- NCIP LookupUser by card
@pytest_twisted.ensureDeferred
async def test_ncip_lookups_from_memory_are_the_registers_and_audited_alike(reg) -> None:
    tokens = ncip.setup_examples(reg)
    reg.register_patron(OPERATOR, "NO-2030000", card="N000100077", national_id=nid(5), surname="Skjult",
                        given_name="Siri", address_line1="Hemmelig vei 1", secret_address=True)
    reg.report_lost(OPERATOR, reg.register_patron(OPERATOR, "NO-2030000", national_id=nid(6), surname="Mist",
                                                  given_name="Mona").card)
    hot, cold = ncip.serve(reg, tokens, hot={"cache_size": 1000}), ncip.serve(reg, tokens)
    try:
        await hot.settle()
        asked = [(ncip.lookup_user(card, types=types, **extra), client)
                 for card in (ncip.KARI, "N000100077", "N000100001", "N000999999", "bogus!", " n000123456 ")
                 for types in (ncip.ALL_TYPES, ("Name Information",), ("User Id",))
                 for client, extra in (("oslo", {}), ("oslo-full", {}), ("oslo-create", {}), ("bergen", {}),
                                       ("lier", {"agency": "NO-2120100"}))]
        asked += [(ncip.lookup_user(ncip.KARI, agency=None, token=tokens["oslo"]), None),  # token in the header
                  (ncip.lookup_user(ncip.KARI), "nobody"), (b"<junk", "oslo")]
        tokens["nobody"] = "not-a-token"

        async def answers(gateway: ncip.Gateway) -> list[tuple[int, bytes]]:
            out = []
            for body, client in asked:
                response = await gateway.request(b"POST", body, client=client)
                out.append((response.code, response.body))
            return out

        mark = max((e.id for e in reg.audit_events(limit=1)), default=0)
        first = await answers(hot)
        second = await answers(hot)  # now from memory
        await hot.settle()
        middle = max(e.id for e in reg.audit_events(limit=1))
        from_register = await answers(cold)
        assert first == second == from_register, [(a, b) for a, b in zip(first, from_register, strict=True)
                                                  if a != b][:2]
        assert hot.hot.metrics.memory_answers("hit")._value.get() > 0  # noqa: SLF001

        def trail(since: int, until: int | None) -> Counter:
            events = reg.audit_events(limit=100_000)
            return Counter((e.actor, e.action, e.card_number, e.outcome, e.detail) for e in events
                           if e.id > since and (until is None or e.id <= until))

        register_trail = trail(middle, None)
        assert register_trail and trail(mark, middle) == register_trail + register_trail
    finally:
        await hot.close()
        await cold.close()


@pytest_twisted.ensureDeferred
async def test_a_disabled_client_is_refused_from_memory_within_a_second(reg) -> None:
    tokens = ncip.setup_examples(reg)
    gateway = ncip.serve(reg, tokens, hot={"cache_size": 1000})
    try:
        await gateway.settle()
        assert (await gateway.post(ncip.lookup_user(ncip.KARI))).problem is None
        reg.update_client(OPERATOR, "oslo", enabled=False)
        changed = time.monotonic()
        while (await gateway.post(ncip.lookup_user(ncip.KARI))).problem is None:
            assert time.monotonic() - changed < 1.0, "a disabled client was still answered after 1 s"
    finally:
        await gateway.close()


@over_tcp
def test_an_answer_made_before_is_sent_again_with_this_seconds_date_and_a_right_checksum(servers: Servers) -> None:
    from protocols.sip2 import parse

    sip = servers.start(hot={"cache_size": 1000})
    sip.settle()
    c = sip.login("kiosk-nopin")
    frames = []
    for seq in (1, 2, 3):
        frames.append(c.ask(f"2301220250301    101500AONO-2030000|AA{KARI}|", seq=seq))
        time.sleep(0.6)  # the third answer is at least a second after the first
    c.close()
    answers = [parse(f, "utf-8") for f in frames]  # raises ChecksumError on a wrong checksum
    assert [a.sequence for a in answers] == [1, 2, 3] and all(a.checksum_basis == "bytes" for a in answers)
    assert answers[0].fixed["transaction_date"] != answers[2].fixed["transaction_date"]
    assert len({_without_dates(a) for a in answers}) == 1  # the same answer, date aside


@over_tcp
def test_a_change_made_through_this_gateway_is_honoured_by_its_very_next_answer(servers: Servers) -> None:
    sip = servers.start(hot={"cache_size": 1000})
    sip.settle()
    kiosk = sip.login("kiosk-nopin")
    ask = f"2301220250301    101500AONO-2030000|AA{KARI}|"
    assert fields(kiosk.ask(ask)).get("AF") == "Lånekortet er gyldig."  # in memory now
    ils = sip.login("ils1")
    assert fields(ils.ask(f"01N20250301    101500AONO-2030000|ALtest|AA{KARI}|")).get("BL") == "Y"  # 01: block it
    assert fields(kiosk.ask(ask)).get("AF") == "Lånekortet er sperret. Kontakt biblioteket."  # no second's wait
    kiosk.close()
    ils.close()


@over_tcp
def test_a_terminal_disabled_while_connected_is_closed(servers: Servers) -> None:
    sip = servers.start(hot={"cache_size": 1000})
    sip.settle()
    kiosk, other = sip.login("kiosk-nopin"), sip.login("kiosk1")
    assert fields(kiosk.ask(f"2301220250301    101500AONO-2030000|AA{KARI}|")).get("BL") == "Y"
    sip.register.update_terminal(OPERATOR, "kiosk-nopin", enabled=False)
    assert kiosk.closed(timeout=2.0), "a disabled terminal kept its connection"
    assert fields(other.ask(f"2301220250301    101500AONO-2030000|AA{KARI}|")).get("BL") == "Y"  # the others stay
    other.close()
