"""Decision facts in memory (issue 13, gateway.register.memory and recall): for random sequences of
changes and requests, a memory that follows the change feed answers every request without a PIN as
the register does (`Register.decide_many`), with the same audit row; doors asked without a PIN,
decided as their audit row is written, too. Plus the memory's own rules: bounded, a fill older than
what it forgot is not kept, the settings generation, no national id."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from register_helpers import BERGEN, OSLO, PIN, TRONDHEIM, add_patron, nid, raw_rows, terminal

from gateway.ncip.responder import user_view
from gateway.register import Register, memory
from gateway.register.errors import RegisterError
from gateway.register.memory import CardFacts, DecisionMemory, News, Recollection
from gateway.register.views import OPERATOR, Decision, DecisionRequest, PatronView, Reason, TerminalView
from gateway.sip2 import answers
from protocols.sip2 import Message

NOW = datetime(2027, 6, 1, 10, tzinfo=UTC)
LIBRARIES = (OSLO, BERGEN, TRONDHEIM)
PROFILES = {"kiosk": "kiosk", "door": "door", "ils": "ils"}


def _audit_since(reg: Register, mark: int) -> list[tuple]:
    return raw_rows(reg, "SELECT at, actor, library_isil, action, patron_id, card_number, outcome, detail, request_id "
                         "FROM audit_events WHERE id > :m ORDER BY id", m=mark)


def _last(reg: Register) -> int:
    return raw_rows(reg, "SELECT COALESCE(MAX(id), 0) FROM audit_events")[0][0]


def _seen(view: PatronView | None) -> PatronView | None:
    """What an answer can show of a view: all but the masked national id (never in memory) and the
    PIN's lock time (no answer without a PIN shows it; a wrong PIN elsewhere is no change)."""
    return None if view is None else dataclasses.replace(view, national_id_masked="", pin_locked_until=None)


def _answers(question: DecisionRequest, decision: Decision) -> tuple:
    """What a SIP2 terminal of each profile and an NCIP client are told."""
    request = Message("23", {"language": "000", "transaction_date": "20270601    120000"},
                      (("AA", question.card), ("AO", question.institution or "")))
    sip2 = tuple(answers.patron_answer(request, TerminalView(question.actor.name, question.actor.library_isil or "",
                                                             profile, "utf-8", "CR", (), False, question.pin_required,
                                                             True), decision, NOW) for profile in PROFILES)
    return sip2, user_view(decision.patron) if decision.patron is not None else None


def _follow(reg: Register, mind: DecisionMemory) -> None:
    mind.follow(reg.news(mind.position))


def _from_memory(reg: Register, mind: DecisionMemory, q: DecisionRequest) -> tuple[Decision, dict[str, Any]]:
    """The hot path's decision (gateway.hot_path): from memory, or read, remembered and decided."""
    decided = memory.decide(mind, q, NOW)
    if decided is None:
        checked = memory.precheck(q, NOW)
        assert isinstance(checked, str)
        epoch = mind.epoch
        (facts,) = reg.recall_many([(checked, q.actor.library_isil)])
        mind.remember(facts, epoch)
        decided = memory.decide(facts, q, NOW)
        assert decided is not None
    return decided


# The world a sequence acts on: six people, three libraries, a terminal of each library.
@pytest.fixture
def world(reg: Register) -> dict[str, Any]:
    people = [add_patron(reg, k, LIBRARIES[k % 3], birth=date(2012 - 4 * k, 6, 2)) for k in range(6)]
    reg.activate(OPERATOR, people[0].card, OSLO, door_agreement=True)
    reg.activate(OPERATOR, people[1].card, BERGEN)
    return {"cards": [p.card for p in people], "extra": ["N000100090", "N000200090"], "next": 6}


CHANGES = st.sampled_from(["block", "unblock", "lost", "replace", "activate", "agree", "revoke", "restore", "home",
                           "delete", "birth", "register", "library", "pin", "wrong_pin"])
REQUESTS = st.tuples(st.sampled_from(LIBRARIES), st.integers(0, 9), st.booleans(), st.booleans(),
                     st.sampled_from([None, None, "own", "2120100", "x"]))
STEPS = st.lists(st.one_of(st.tuples(st.just("change"), CHANGES, st.integers(0, 7), st.sampled_from(LIBRARIES)),
                           st.tuples(st.just("ask"), REQUESTS)), min_size=1, max_size=25)


def _change(reg: Register, world: dict[str, Any], kind: str, k: int, isil: str) -> None:
    cards = world["cards"]
    card = cards[k % len(cards)]
    try:
        match kind:
            case "block" | "unblock":
                reg.set_blocked(OPERATOR, card, kind == "block", "sperret" if kind == "block" else None)
            case "lost":
                reg.report_lost(OPERATOR, card)
            case "replace":
                cards.append(reg.replace_card(OPERATOR, card).current_card)
            case "activate" | "agree":
                reg.activate(OPERATOR, card, isil, door_agreement=kind == "agree")
            case "revoke" | "restore":
                reg.revoke_door(OPERATOR, card, isil, revoked=kind == "revoke")
            case "home":
                reg.set_home_library(OPERATOR, card, isil)
            case "delete":
                reg.delete_patron(OPERATOR, card)
            case "birth":
                reg.update_patron(OPERATOR, card, birth_date=date(1999 + k, 1, 1))
            case "register":  # a card the memory may have remembered as not in the register
                extra = world["extra"]
                if extra:
                    number = extra.pop()
                    home = OSLO if number.startswith("N0001") else BERGEN
                    n = world["next"] = world["next"] + 1
                    reg.register_patron(OPERATOR, home, card=number, national_id=nid(n), surname="Ny", given_name="Per",
                                        birth_date=date(1980, 1, 1))
                    cards.append(number)
            case "library":
                reg.update_library(OPERATOR, isil, door_min_age=(k * 3) % 20, auto_activation=k % 2 == 0)
            case "pin":
                reg.set_pin(OPERATOR, card, PIN)
            case "wrong_pin":
                reg.decide(terminal(isil), card, "0000")
    except RegisterError:  # a change the register refuses (a deleted card, say) changes nothing
        pass


def _question(world: dict[str, Any], isil: str, k: int, door: bool, pin_required: bool,
              institution: str | None) -> DecisionRequest:
    pool = [*world["cards"], "N000199998", "not-a-card", *world["extra"]]
    card = pool[k % len(pool)]
    return DecisionRequest(terminal(isil, "door-1" if door else "kiosk-1"), card, door=door, pin_required=pin_required,
                           institution=isil if institution == "own" else institution)


def test_the_memory_answers_and_audits_as_the_register(reg: Register, world: dict[str, Any]) -> None:
    mind = DecisionMemory(size=1000)
    _follow(reg, mind)

    # hypothesis inside the test: pytest-twisted would run a @given test in its reactor greenlet
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(steps=STEPS)
    def sequence(steps: list) -> None:
        for step in steps:
            if step[0] == "change":
                _change(reg, world, *step[1:])
                _follow(reg, mind)  # what gateway.hot_path does every 0.2 s
                continue
            q = _question(world, *step[1])
            decision, row = _from_memory(reg, mind, q)
            mark = _last(reg)
            (expected,) = reg.decide_many([q], now=NOW)
            (expected_row,) = _audit_since(reg, mark)
            assert (decision.reason, _seen(decision.patron), decision.card_lost) == \
                   (expected.reason, _seen(expected.patron), expected.card_lost), q
            assert _answers(q, decision) == _answers(q, dataclasses.replace(expected, patron=_seen(expected.patron)))
            mark = _last(reg)
            assert reg.write_audit([row]) == 1  # as the hot path writes it behind
            assert _audit_since(reg, mark) == [expected_row]
            if q.door:  # a door without a PIN, decided as its audit row is written
                mark = _last(reg)
                assert reg.write_audit([(q, NOW)]) == 1
                assert _audit_since(reg, mark) == [expected_row]

    sequence()


def test_a_fill_read_before_news_it_predates_is_not_kept(reg: Register) -> None:
    fine = add_patron(reg, 0, OSLO)
    mind = DecisionMemory(size=10)
    _follow(reg, mind)
    epoch = mind.epoch
    (stale,) = reg.recall_many([(fine.card, OSLO)])  # read, then the patron is blocked before it is kept
    reg.set_blocked(OPERATOR, fine.card, True, "sperret")
    _follow(reg, mind)
    assert not mind.remember(stale, epoch) and mind.card(fine.card) is None
    (fresh,) = reg.recall_many([(fine.card, OSLO)])
    assert mind.remember(fresh, mind.epoch)
    assert mind.card(fine.card).view.blocked


def test_every_change_to_a_patron_is_forgotten_by_its_cards_and_the_settings_by_their_generation(reg) -> None:
    fine, other = add_patron(reg, 0, OSLO), add_patron(reg, 1, OSLO)
    mind = DecisionMemory(size=10)
    _follow(reg, mind)
    facts = reg.recall_many([(fine.card, OSLO), (other.card, OSLO), ("N000100050", OSLO)])[0]  # one read for all
    assert mind.remember(facts, mind.epoch) and len(mind) == 3
    new = reg.replace_card(OPERATOR, fine.card).current_card
    _follow(reg, mind)
    assert mind.card(fine.card) is None and mind.card(other.card) is not None  # the other patron is kept
    assert mind.card("N000100050") is memory.NOT_IN_REGISTER and mind.has_library(OSLO)
    (facts,) = reg.recall_many([(new, OSLO)])
    assert mind.remember(facts, mind.epoch)
    reg.update_library(OPERATOR, OSLO, door_min_age=12)  # no patron changed: the generation moved
    _follow(reg, mind)
    assert len(mind) == 0 and not mind.has_library(OSLO)
    (facts,) = reg.recall_many([(new, OSLO)])
    assert facts.library(OSLO).door_min_age == 12


def test_the_memory_holds_no_national_id(reg: Register) -> None:
    fine = add_patron(reg, 0, OSLO)
    (facts,) = reg.recall_many([(fine.card, OSLO)])
    view = facts.card(fine.card).view
    assert view.national_id is None and view.national_id_masked == ""
    assert nid(0, date(1985, 3, 14)) not in repr(facts) and nid(0, date(1985, 3, 14))[6:] not in repr(facts)


def _view(card: str) -> PatronView:
    return PatronView(card, "active", card, "N", "K", "", None, None, None, None, None, None, None, None, None, None,
                      None, None, None, None, False, OSLO, False, None, False, None, 1, NOW, NOW)


def test_the_memory_is_bounded_least_recently_used_first_out() -> None:
    mind = DecisionMemory(size=3)
    mind.follow(News(0, 0))
    facts = Recollection({f"N00010000{i}": CardFacts(i, _view(f"N00010000{i}")) for i in range(3)}, {OSLO: None})
    assert mind.remember(facts, mind.epoch)
    assert mind.card("N000100000") is not None  # now the most recently used
    mind.remember(Recollection({"N000100009": memory.NOT_IN_REGISTER}), mind.epoch)
    assert len(mind) == 3 and mind.card("N000100001") is None and mind.card("N000100000") is not None
    mind.follow(News(1, 0, patrons=frozenset({0})))  # forgetting patron 0 forgets its card
    assert mind.card("N000100000") is None and len(mind) == 2
    mind.follow(News(2, 0, overflow=True))  # more changed than was read: everything
    assert len(mind) == 0
    assert not DecisionMemory(size=0).remember(facts, 0)  # register.cache_size 0: no memory


def test_a_door_without_pin_is_decided_as_its_audit_row_is_written(reg: Register) -> None:
    fine = add_patron(reg, 0, OSLO)
    reg.activate(OPERATOR, fine.card, OSLO, door_agreement=True)
    lost = add_patron(reg, 1, OSLO)
    reg.report_lost(OPERATOR, lost.card)
    door = terminal(OSLO, "door-1")
    queued: list[Any] = [(DecisionRequest(door, fine.card, door=True), NOW),
                         (DecisionRequest(door, "N000199990", door=True), NOW),
                         (DecisionRequest(door, lost.card, door=True), NOW),
                         (DecisionRequest(door, "junk", door=True), NOW)]
    mark = _last(reg)
    assert reg.write_audit(queued) == 4
    rows = _audit_since(reg, mark)
    assert [(r[3], r[4] is not None, r[6]) for r in rows] == [
        ("door", True, Reason.PIN_MISSING), ("door", False, Reason.UNKNOWN_CARD), ("door", True, Reason.CARD_LOST),
        ("door", False, Reason.UNKNOWN_CARD)]


def test_a_change_after_retention_emptied_the_feed_is_still_followed(reg: Register) -> None:
    """SQLite hands out ids again from 1 once every row is deleted: a position above the newest id
    then means the table started again, and the memory forgets everything rather than wait."""
    from register_helpers import raw_exec

    fine = add_patron(reg, 0, OSLO)
    for k in range(3):
        reg.set_blocked(OPERATOR, fine.card, k % 2 == 0, "sperret" if k % 2 == 0 else None)
    mind = DecisionMemory(size=10)
    _follow(reg, mind)
    assert mind.position and mind.position >= 3
    (facts,) = reg.recall_many([(fine.card, OSLO)])
    assert mind.remember(facts, mind.epoch) and mind.card(fine.card).view.blocked
    raw_exec(reg, "DELETE FROM change_audience")
    raw_exec(reg, "DELETE FROM changes")  # what retention does to a feed nobody changed for a year
    reg.set_blocked(OPERATOR, fine.card, False)
    _follow(reg, mind)
    assert mind.card(fine.card) is None  # forgotten: the next answer reads the unblocked patron
