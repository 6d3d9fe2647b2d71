"""Concurrent use: two gateway processes registering at the same moment never hand out a card number
twice nor register one person twice (issue 2, item 4); simultaneous decisions auto-activate once."""

from __future__ import annotations

import multiprocessing
import queue
from collections import Counter
from itertools import zip_longest

import pytest
from register_helpers import (
    OSLO,
    PIN,
    TRONDHEIM,
    add_patron,
    at_once,
    concurrent_registrations,
    nid,
    raw_rows,
    terminal,
)

from gateway.register.views import OPERATOR, PinCheck, Reason

PROCESSES = 3
SHARED = 6  # national ids every process submits
OWN = 15  # national ids only one process submits
CONTESTED_CARD = "N000100900"  # every process tries to give this explicit number to a different person


def _jobs(i: int) -> list[tuple[str, str, str | None]]:
    shared = [(f"shared{k}", nid(k), None) for k in range(SHARED)]
    shared = shared[i:] + shared[:i]  # each process meets the others' ids at a different moment
    own = [(f"own{i}-{k}", nid(SHARED + i * OWN + k), None) for k in range(OWN)]
    contested = [(f"explicit{i}", nid(SHARED + PROCESSES * OWN + i), CONTESTED_CARD)]
    jobs = [job for pair in zip_longest(shared, own) for job in pair if job is not None]
    jobs[1:1] = contested
    return jobs


def test_processes_registering_at_the_same_moment(reg, database_url, keys_path):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    procs = [ctx.Process(target=concurrent_registrations,
                         args=(database_url, str(keys_path), barrier, results, _jobs(i)), daemon=True)
             for i in range(PROCESSES)]
    for p in procs:
        p.start()
    outcomes: list[tuple[str, str, str | None]] = []
    try:
        for _ in procs:
            _pid, out = results.get(timeout=60)
            outcomes.extend(out)
    except queue.Empty:
        pytest.fail("a registering process did not report within 60 s")
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()

    crashes = [o for o in outcomes if o[1] in ("crash", "refused")]
    assert not crashes, "\n".join(o[2] or "" for o in crashes)
    assert len(outcomes) == sum(len(_jobs(i)) for i in range(PROCESSES))

    # no card number was handed out twice
    handed_out = [card for _, outcome, card in outcomes if outcome == "ok"]
    assert len(handed_out) == len(set(handed_out))

    # every person is registered exactly once; the losers were told the winner's card
    winners: dict[str, str] = {}
    for label, outcome, card in outcomes:
        if outcome == "ok":
            assert label not in winners, f"{label} registered twice"
            winners[label] = card
    for k in range(SHARED):
        label = f"shared{k}"
        assert label in winners
        losers = [o for o in outcomes if o[0] == label and o[1] != "ok"]
        assert [(o[1], o[2]) for o in losers] == [("duplicate", winners[label])] * (PROCESSES - 1)
    for i in range(PROCESSES):
        assert all(f"own{i}-{k}" in winners for k in range(OWN))

    # exactly one process got the contested explicit number, the others a clean CardInUse
    explicit = [o for o in outcomes if o[0].startswith("explicit")]
    assert Counter(o[1] for o in explicit) == {"ok": 1, "card_in_use": PROCESSES - 1}
    assert [o[2] for o in explicit if o[1] == "ok"] == [CONTESTED_CARD]

    # and the database agrees
    people = SHARED + PROCESSES * OWN + 1
    assert reg.counts()["patrons"] == people
    cards = [number for (number,) in raw_rows(reg, "SELECT number FROM cards")]
    assert sorted(cards) == sorted(handed_out)
    allocated = sorted(c for c in cards if c != CONTESTED_CARD)
    assert allocated == [f"N{100000 + k:09d}" for k in range(people - 1)]  # no gaps, no repeats
    for k in range(SHARED):
        assert reg.find_patron_by_national_id(OPERATOR, nid(k)).card == winners[f"shared{k}"]


def test_simultaneous_first_use_auto_activates_once(reg):
    p = add_patron(reg, 0, OSLO)
    threads = 6
    decisions = at_once(threads, lambda i: reg.decide(terminal(TRONDHEIM, f"tr-kiosk-{i}"), p.card, PIN))
    assert [d.reason for d in decisions] == [Reason.GRANTED] * threads
    assert sum(d.activated_now for d in decisions) == 1
    view = reg.find_patron(OPERATOR, p.card)
    assert [a.library_isil for a in view.activations].count(TRONDHEIM) == 1


def test_simultaneous_wrong_pins_all_count(reg):
    """The failure counter is incremented in the database, so parallel guesses cannot slip past the lockout."""
    p = add_patron(reg, 0, OSLO)
    threads = 5  # exactly pin_max_failures
    at_once(threads, lambda i: reg.decide(terminal(OSLO, f"kiosk-{i}"), p.card, f"000{i}"))
    assert reg.verify_pin(OPERATOR, p.card, PIN) is PinCheck.LOCKED
