"""The change feed per library (issue 12, item 1): a library's API client (permission ``changes``)
reads its own patrons' changes, in commit order, gapless and resumable, each with the patron as the
client may see them now; a deletion is a tombstone that reaches every library the patron was
affiliated with. The register side: ``Register.library_changes`` (gateway.register.feed), the change
writing in commit order (gateway.register.changelog)."""

from __future__ import annotations

import multiprocessing
import threading
import time
from datetime import date
from typing import Any

import pytest
from register_helpers import BERGEN, OSLO, PIN, TRONDHEIM, add_patron, client, nid, patron_actor, raw_rows, terminal
from sqlalchemy import text

from gateway.register import Register
from gateway.register.errors import InvalidInput, PermissionDenied
from gateway.register.views import DEFAULT_CLIENT_PERMISSIONS, OPERATOR, PERMISSIONS, Actor, FeedPage
from gateway.register.vocabulary import ChangeKind

TOMBSTONE_KEYS = {"cursor", "time", "kind", "card"}


def feed_client(isil: str, *more: str) -> Actor:
    return client(isil, "changes", *more, name=f"sync-{isil}")


def read_all(reg: Register, actor: Actor, after: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """Follow ``next`` until ``more`` is False."""
    out: list[dict[str, Any]] = []
    while True:
        page = reg.library_changes(actor, after, limit)
        out += page.changes
        if page.changes:
            assert page.next == page.changes[-1]["cursor"]
        elif after is not None:
            assert page.next == after  # nothing new: ask after the same place again
        after = page.next
        if not page.more:
            return out


def kinds(changes: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(c["kind"], c["card"]) for c in changes]


# ---------------------------------------------------------------------- affiliation
def test_a_library_sees_only_the_changes_of_its_own_patrons(reg):
    p = add_patron(reg, 0, OSLO)
    q = add_patron(reg, 1, BERGEN)
    reg.update_patron(OPERATOR, p.card, email="p@example.no")
    reg.update_patron(OPERATOR, q.card, email="q@example.no")
    assert kinds(read_all(reg, feed_client(OSLO))) == [("registered", p.card), ("updated", p.card)]
    assert kinds(read_all(reg, feed_client(BERGEN))) == [("registered", q.card), ("updated", q.card)]
    assert read_all(reg, feed_client(TRONDHEIM)) == []  # never affiliated: never appears
    # the operator's global view is unchanged: every change, with its id
    assert [(c.kind, c.card_number) for c in reg.changes()] == [
        ("registered", p.card), ("registered", q.card), ("updated", p.card), ("updated", q.card)]


def test_a_patron_activated_later_shows_up_with_the_full_record(reg):
    p = add_patron(reg, 0, OSLO, email="kari@example.no", address_line1="Storgata 1", postal_code="0155",
                   city="Oslo", phone="+4791234567")
    reg.update_patron(OPERATOR, p.card, email="kari.n@example.no")
    reg.set_blocked(OPERATOR, p.card, True, "unpaid")
    bergen = feed_client(BERGEN)
    assert read_all(reg, bergen) == []
    reg.activate(client(BERGEN), p.card, BERGEN)
    first, *rest = read_all(reg, bergen)
    assert rest == []
    assert first["kind"] == "activated" and first["library"] == BERGEN and first["card"] == p.card
    record = first["patron"]
    assert record["surname"] == "Nordmann0" and record["email"] == "kari.n@example.no"
    assert record["address_line1"] == "Storgata 1" and record["city"] == "Oslo" and record["blocked"] is True
    assert {a["library_isil"] for a in record["activations"]} == {OSLO, BERGEN}
    # Oslo, the home library, sees the activation at Bergen too
    assert [c["kind"] for c in read_all(reg, feed_client(OSLO))] == ["registered", "updated", "blocked", "activated"]


def test_the_patron_is_given_as_it_is_now_with_the_keys_of_patron_show(reg):
    p = add_patron(reg, 0, OSLO)
    reg.update_patron(OPERATOR, p.card, email="later@example.no")
    changes = read_all(reg, feed_client(OSLO))
    assert [c["patron"]["email"] for c in changes] == ["later@example.no"] * 2  # now, not then
    view = reg.find_patron(OPERATOR, p.card)
    from gateway.register.views import jsonable

    assert set(changes[0]["patron"]) == set(jsonable(view))  # the keys of `nlr patron show --json`
    assert changes[0]["patron"]["version"] == view.version
    for c in changes:
        assert c["time"].endswith("Z") and "+" not in c["time"]
        assert c["patron"]["created_at"].endswith("Z")
        assert set(c) == {"cursor", "time", "kind", "card", "library", "patron"} or "library" not in c


def test_every_change_kind_reaches_the_home_library(reg):
    p = add_patron(reg, 0, OSLO)  # registered
    reg.update_patron(OPERATOR, p.card, email="kari@example.no")  # updated
    reg.activate(OPERATOR, p.card, BERGEN, door_agreement=True)  # activated, door_agreement
    reg.revoke_door(OPERATOR, p.card, BERGEN)  # door_revoked
    reg.revoke_door(OPERATOR, p.card, BERGEN, revoked=False)  # door_restored
    reg.set_blocked(OPERATOR, p.card, True, "misuse")  # blocked
    reg.set_blocked(OPERATOR, p.card, False)  # unblocked
    reg.set_pin(OPERATOR, p.card, "8642")  # pin_changed
    reg.report_lost(OPERATOR, p.card)  # card_lost
    new = reg.replace_card(OPERATOR, p.card)  # card_replaced
    reg.set_home_library(OPERATOR, new.card, TRONDHEIM)  # activated (Trondheim), home_library
    reg.delete_patron(OPERATOR, new.card)  # deleted
    seen = read_all(reg, feed_client(OSLO))
    assert [c["kind"] for c in seen] == [
        "registered", "updated", "activated", "door_agreement", "door_revoked", "door_restored", "blocked",
        "unblocked", "pin_changed", "card_lost", "card_replaced", "activated", "home_library", "deleted"]
    assert {c["kind"] for c in seen} == {str(k) for k in ChangeKind}
    assert [c.get("library") for c in seen[2:6]] == [BERGEN] * 4
    # Bergen sees the patron from its activation on; Trondheim from its own
    assert [c["kind"] for c in read_all(reg, feed_client(BERGEN))] == [c["kind"] for c in seen[2:]]
    assert [c["kind"] for c in read_all(reg, feed_client(TRONDHEIM))] == ["activated", "home_library", "deleted"]


# ---------------------------------------------------------------------- deletion
def test_a_deletion_is_a_tombstone_to_every_library_the_patron_was_affiliated_with(reg):
    p = add_patron(reg, 0, OSLO, email="kari@example.no")
    reg.activate(OPERATOR, p.card, BERGEN)
    other = add_patron(reg, 1, OSLO)
    assert reg.delete_patron(OPERATOR, p.card) == p.card
    for isil in (OSLO, BERGEN):
        seen = read_all(reg, feed_client(isil))
        tombstones = [c for c in seen if c["kind"] == "deleted"]
        assert len(tombstones) == 1, isil
        assert set(tombstones[0]) == TOMBSTONE_KEYS and tombstones[0]["card"] == p.card
        # the changes before it no longer carry the person either: the patron is gone now
        assert all(c["patron"] is None for c in seen if c["card"] == p.card and c["kind"] != "deleted")
    assert read_all(reg, feed_client(TRONDHEIM)) == []
    assert [c["kind"] for c in read_all(reg, feed_client(BERGEN))] == ["activated", "deleted"]
    assert all(c["card"] != other.card for c in read_all(reg, feed_client(BERGEN)))


def test_a_deletion_by_the_home_library_reaches_a_library_the_patron_was_activated_at(reg):
    p = add_patron(reg, 0, OSLO)
    reg.activate(OPERATOR, p.card, TRONDHEIM)
    reg.delete_patron(client(OSLO, "delete"), p.card)
    for isil in (OSLO, TRONDHEIM):
        tombstones = [c for c in read_all(reg, feed_client(isil)) if c["kind"] == "deleted"]
        assert [(set(c), c["card"]) for c in tombstones] == [(TOMBSTONE_KEYS, p.card)], isil


# ---------------------------------------------------------------------- what the client may see
def test_the_national_id_only_with_see_national_id(reg):
    add_patron(reg, 0, OSLO)
    plain = read_all(reg, feed_client(OSLO))[0]["patron"]
    assert plain["national_id"] is None and plain["national_id_masked"]
    full = read_all(reg, feed_client(OSLO, "see-national-id"))[0]["patron"]
    assert full["national_id"] == nid(0, date(1985, 3, 14))  # add_patron's birth date
    assert full["national_id_masked"] == plain["national_id_masked"]


def test_a_secret_address_never(reg):
    add_patron(reg, 0, OSLO, secret_address=True, address_line1="Hemmelig vei 1", postal_code="0155",
               city="Oslo", country="NO")
    for actor in (feed_client(OSLO), feed_client(OSLO, "see-national-id", "lookup-national-id")):
        record = read_all(reg, actor)[0]["patron"]
        assert record["secret_address"] is True
        assert all(record[k] is None for k in ("address_line1", "address_line2", "postal_code", "city", "country",
                                                "temp_address_line1", "temp_postal_code", "temp_city"))
        assert "Hemmelig" not in repr(record)


def test_a_replacement_names_the_previous_card(reg):
    p = add_patron(reg, 0, OSLO)
    second = reg.replace_card(OPERATOR, p.card)
    reg.report_lost(OPERATOR, second.card)
    third = reg.replace_card(OPERATOR, second.card)
    seen = read_all(reg, feed_client(OSLO))
    replaced = [c for c in seen if c["kind"] == "card_replaced"]
    assert [(c["previous_card"], c["card"]) for c in replaced] == [(p.card, second.card), (second.card, third.card)]
    assert all("previous_card" not in c for c in seen if c["kind"] != "card_replaced")
    assert [c["card"] for c in seen if c["kind"] == "card_lost"] == [second.card]
    assert all(c["patron"]["current_card"] == third.card for c in seen)


# ---------------------------------------------------------------------- paging and resumption
def test_following_next_from_any_point_sees_the_rest_exactly_once(reg):
    patrons = [add_patron(reg, k, OSLO if k % 2 else BERGEN) for k in range(6)]
    for p in patrons:
        reg.activate(OPERATOR, p.card, OSLO)  # Bergen's patrons become Oslo's too (Oslo's: no change)
        reg.update_patron(OPERATOR, p.card, email=f"{p.card.lower()}@example.no")
    everything = read_all(reg, feed_client(OSLO))
    cursors = [c["cursor"] for c in everything]
    assert len(everything) == 6 * 2 and len(set(cursors)) == len(cursors)
    for limit in (1, 2, 5, 1000):
        for start in range(len(everything) + 1):
            after = cursors[start - 1] if start else None
            assert read_all(reg, feed_client(OSLO), after, limit) == everything[start:], (limit, start)
    page = reg.library_changes(feed_client(OSLO), None)  # the default limit: 100
    assert isinstance(page, FeedPage) and page.changes == everything and not page.more
    page = reg.library_changes(feed_client(OSLO), None, 4)
    assert len(page.changes) == 4 and page.more and page.next == cursors[3]
    end = reg.library_changes(feed_client(OSLO), cursors[-1])
    assert end == FeedPage([], cursors[-1], False)
    assert reg.library_changes(feed_client(OSLO), None, "3").changes == everything[:3]  # a limit as text
    # a page then a new change: the next page has it, and nothing else
    reg.update_patron(OPERATOR, patrons[1].card, city="Oslo")
    later = reg.library_changes(feed_client(OSLO), cursors[-1])
    assert [(c["kind"], c["card"]) for c in later.changes] == [("updated", patrons[1].card)] and not later.more


@pytest.mark.parametrize("after", ["", "abc", "-1", "1.5", " 1", "1" * 19, "0x10", "１", "0", "1", "A" * 32])
def test_a_bad_cursor_is_invalid_input(reg, after):
    with pytest.raises(InvalidInput, match="cursor"):
        reg.library_changes(feed_client(OSLO), after)


def test_a_cursor_is_opaque_and_only_this_feeds(reg):
    """A cursor says nothing about the register (not how many changes it made in between) and is
    good only for the feed that gave it: altered, another library's, or beyond the newest change
    (a register restored from a backup) is refused, never a page that silently skips."""
    p = add_patron(reg, 0, OSLO)
    for k in range(5):
        add_patron(reg, k + 1, BERGEN)  # changes Oslo never sees
    reg.update_patron(OPERATOR, p.card, city="Oslo")
    (first, second) = read_all(reg, feed_client(OSLO))
    assert len(first["cursor"]) == len(second["cursor"]) == 32 and not first["cursor"].isdigit()
    assert reg.library_changes(feed_client(OSLO), first["cursor"]).changes == [second]
    assert reg.library_changes(feed_client(OSLO), first["cursor"]).next == second["cursor"]  # the same each time
    cursor = first["cursor"]
    altered = cursor[:10] + ("B" if cursor[10] != "B" else "C") + cursor[11:]
    for refused in (altered, cursor[::-1]):
        with pytest.raises(InvalidInput, match="not a cursor of this feed"):
            reg.library_changes(feed_client(OSLO), refused)
    with pytest.raises(InvalidInput, match="not a cursor of this feed"):
        reg.library_changes(feed_client(BERGEN), cursor)  # Oslo's cursor, in Bergen's feed
    with reg.engine.begin() as conn:  # the newest change gone, as in a register restored to before it
        conn.execute(text("DELETE FROM change_audience WHERE change_id = (SELECT MAX(id) FROM changes)"))
        conn.execute(text("DELETE FROM changes WHERE id = (SELECT MAX(id) FROM changes)"))
    with pytest.raises(InvalidInput, match="beyond the newest change"):
        reg.library_changes(feed_client(OSLO), second["cursor"])


@pytest.mark.parametrize("limit", [0, -1, 1001, "0", "1001", "ten", "", True, 2.5, None])
def test_a_bad_limit_is_invalid_input(reg, limit):
    with pytest.raises(InvalidInput, match="limit"):
        reg.library_changes(feed_client(OSLO), None, limit)


def test_the_feed_needs_the_permission_changes(reg):
    p = add_patron(reg, 0, OSLO)
    assert "changes" in PERMISSIONS and "changes" not in DEFAULT_CLIENT_PERMISSIONS
    for actor in (client(OSLO), client(OSLO, *PERMISSIONS[:-1]), OPERATOR, terminal(OSLO),
                  patron_actor(p.card), Actor("client", "nowhere", None, frozenset({"changes"}))):
        with pytest.raises(PermissionDenied):
            reg.library_changes(actor, None)
    account = reg.add_client(OPERATOR, "sync", OSLO, ["changes"])
    assert account.client.permissions == ("changes",)
    assert reg.authenticate_client(account.token).permissions == ("changes",)
    actor = reg.authenticate_client(account.token).actor()
    assert [c["kind"] for c in reg.library_changes(actor, None).changes] == ["registered"]


def test_a_refused_change_writes_nothing_to_the_feed(reg):
    """Changes queued inside a savepoint that is rolled back (a library change refused after a right
    PIN) are dropped with it; the PIN attempt, committed, writes no change."""
    from gateway.register.fields import PatronChanges
    from gateway.register.updates import LibraryChange

    p = add_patron(reg, 0, OSLO)
    before = read_all(reg, feed_client(OSLO))
    bad = LibraryChange(changes=PatronChanges(email="not an address"), activate=True, new_pin="8642")
    with pytest.raises(InvalidInput):
        reg.change_patron(client(BERGEN), p.card, bad, pin=PIN)
    assert read_all(reg, feed_client(OSLO)) == before and read_all(reg, feed_client(BERGEN)) == []
    assert len(reg.changes()) == len(before)


# ---------------------------------------------------------------------- many writers at once
WRITER_KINDS = ["registered", "updated", "blocked", "unblocked", "activated", "updated"]


def _write_patron(reg: Register, k: int, label: str) -> tuple[str, list[str]]:
    """One writer's patron: registered at Oslo, then changed; every third deleted. Returns its card
    and the kinds in the order they were committed."""
    p = reg.register_patron(OPERATOR, OSLO, national_id=nid(k), surname=label, given_name="Samtidig")
    reg.update_patron(OPERATOR, p.card, email=f"{p.card.lower()}@example.no")
    reg.set_blocked(OPERATOR, p.card, True, "test")
    reg.set_blocked(OPERATOR, p.card, False)
    reg.activate(OPERATOR, p.card, BERGEN)
    reg.update_patron(OPERATOR, p.card, city="Bergen")
    done = list(WRITER_KINDS)
    if k % 3 == 0:
        reg.delete_patron(OPERATOR, p.card)
        done.append("deleted")
    return p.card, done


def feed_writer_process(url: str, keys_path: str, first: int, count: int, barrier: Any, results: Any) -> None:
    """A child process of the concurrency test: its own engine and Register, writing patrons
    ``first`` … ``first + count - 1``; puts [(card, kinds), …] or a traceback on ``results``."""
    import traceback
    from pathlib import Path

    from register_helpers import TEST_SETTINGS

    from gateway.register.crypto import KeyRing
    from gateway.register.database import make_engine

    engine = make_engine(url)
    try:
        reg = Register(engine, KeyRing.load(Path(keys_path)), TEST_SETTINGS)
        barrier.wait(timeout=60)
        results.put([_write_patron(reg, k, f"proc{first}") for k in range(first, first + count)])
    except Exception:  # noqa: BLE001 - the test reports it
        results.put(traceback.format_exc())
    finally:
        engine.dispose()


def test_a_reader_sees_every_change_once_in_commit_order_while_many_write(reg, database_url, keys_path):
    """Four threads and two processes commit changes while two readers (Oslo, Bergen) page with
    ``next`` in a loop: at the end each has seen every change of its patrons exactly once, and each
    patron's changes in the order they were committed."""
    threads, per_thread, processes, per_process = 4, 6, 2, 5
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(processes + threads + 1), ctx.Queue()
    children = [ctx.Process(target=feed_writer_process,
                            args=(database_url, str(keys_path), 100 + 20 * i, per_process, barrier, results))
                for i in range(processes)]
    for child in children:
        child.start()
    written: list[tuple[str, list[str]]] = []
    failures: list[str] = []

    def thread_writer(i: int) -> None:
        try:
            barrier.wait(timeout=60)
            for k in range(i * per_thread, (i + 1) * per_thread):
                written.append(_write_patron(reg, k, f"thread{i}"))
        except Exception as exc:  # noqa: BLE001
            failures.append(repr(exc))

    writers = [threading.Thread(target=thread_writer, args=(i,)) for i in range(threads)]
    for w in writers:
        w.start()
    seen: dict[str, list[dict[str, Any]]] = {OSLO: [], BERGEN: []}
    cursor: dict[str, str | None] = {OSLO: None, BERGEN: None}
    barrier.wait(timeout=60)
    pages = 0

    def read_once() -> None:
        nonlocal pages
        for isil in (OSLO, BERGEN):
            page = reg.library_changes(feed_client(isil), cursor[isil], 7)
            seen[isil] += page.changes
            cursor[isil] = page.next
            pages += 1

    deadline = time.monotonic() + 120
    while any(w.is_alive() for w in writers) or any(c.is_alive() for c in children):
        read_once()
        assert time.monotonic() < deadline, "the writers did not finish"
    for w in writers:
        w.join()
    for child in children:
        child.join(timeout=30)
    for _ in children:
        out = results.get(timeout=30)
        if isinstance(out, str):
            failures.append(out)
        else:
            written += out
    assert not failures, failures
    for _ in range(200):  # the rest, to the end
        read_once()
    assert len(written) == threads * per_thread + processes * per_process

    # every change of the library's audience, read in one go at the end: what the reader must have seen
    for isil in (OSLO, BERGEN):
        everything = read_all(reg, feed_client(isil))
        assert [c["cursor"] for c in seen[isil]] == [c["cursor"] for c in everything], isil
        assert len({c["cursor"] for c in seen[isil]}) == len(seen[isil])
    audience = raw_rows(reg, "SELECT COUNT(*) FROM change_audience a JOIN libraries l ON l.id = a.library_id "
                             "WHERE l.isil = :isil", isil=OSLO)[0][0]
    assert audience == len(seen[OSLO])
    by_card: dict[str, dict[str, list[str]]] = {OSLO: {}, BERGEN: {}}
    for isil in (OSLO, BERGEN):
        for c in seen[isil]:
            by_card[isil].setdefault(c["card"], []).append(c["kind"])
    assert by_card[OSLO] == dict(written)
    assert by_card[BERGEN] == {card: done[done.index("activated"):] for card, done in written}
    assert pages > 2
