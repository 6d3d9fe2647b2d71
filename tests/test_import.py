"""The legacy import and its quarantine (issue 12, item 2), on SQLite and PostgreSQL: every
quarantine reason, re-runs, resumption after an interruption, --dry-run, resolving each way and its
audit, series conflicts per library, and the command line (unknown columns, the progress bar on a
terminal and not in a pipe)."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path
from typing import Any

import pytest
from register_helpers import BERGEN, OSLO, PIN, add_patron, client, nid, raw_rows
from test_cli import _command, _env, ok, run, usage_error, write_config

from gateway.legacy_file import LegacyFileError, open_legacy_file
from gateway.register import Register
from gateway.register.errors import DuplicatePatron, InvalidInput, NotFound
from gateway.register.imports import Imports
from gateway.register.legacy import COLUMNS, ImportRow
from gateway.register.views import OPERATOR
from gateway.register.vocabulary import PinCheck


def row(number: int, card: str, national_id: str, **values: str) -> ImportRow:
    base = {"card": card, "national_id": national_id, "surname": f"Legacy{number}", "given_name": "Kari",
            "birth_date": "1985-03-14", "postal_code": "0150", "city": "Oslo"}
    base.update(values)
    return ImportRow(number, base)


def every_reason_rows(reg: Register) -> list[ImportRow]:
    """Rows 1 and 9 import; each other row has one reason (the expected one in its surname)."""
    # owns the card of row 5, and is the person of row 6
    add_patron(reg, 10, OSLO, card="N000100050", national_id=nid(10))
    return [
        row(1, "N000100001", nid(0)),
        row(2, "XYZ", nid(1)),  # bad_card
        row(3, "N000100003", "12345678901"),  # invalid_national_id
        row(4, "N000200005", nid(2)),  # card_outside_series: a Bergen number
        row(5, "N000100050", nid(3)),  # card_in_use
        row(6, "N000100060", nid(10)),  # person_registered
        row(7, "N000100001", nid(4)),  # duplicate_in_file: the card of row 1
        row(8, "N000100070", nid(5), email="not-an-email"),  # invalid_field
        row(9, "N000100002", nid(6), pin=PIN),
        row(10, "N000100004", nid(6)),  # duplicate_in_file: the person of row 9
    ]


EXPECTED = {2: "bad_card", 3: "invalid_national_id", 4: "card_outside_series", 5: "card_in_use",
            6: "person_registered", 7: "duplicate_in_file", 8: "invalid_field", 10: "duplicate_in_file"}


def test_every_reason_is_quarantined_and_a_rerun_changes_nothing(reg: Register) -> None:
    rows = every_reason_rows(reg)
    first = reg.import_rows(OPERATOR, OSLO, rows, batch_size=4)
    assert (first.rows, first.imported, first.already_imported, first.already_quarantined) == (10, 2, 0, 0)
    assert first.quarantined == {"bad_card": 1, "invalid_national_id": 1, "card_outside_series": 1,
                                 "card_in_use": 1, "person_registered": 1, "duplicate_in_file": 2,
                                 "invalid_field": 1}
    listed = reg.list_quarantine(OSLO)
    assert {q.row: q.reason for q in listed} == EXPECTED
    assert all(q.status == "open" and q.library == OSLO for q in listed)
    assert next(q for q in listed if q.row == 8).detail.startswith("email: ")
    bad_card = next(q for q in listed if q.row == 2)
    assert bad_card.card is None
    assert bad_card.detail == "not a card number (3 characters; a card number is N and 9 digits)"
    # imported through the registration's code: home library, activation, PIN, audit, change
    p = reg.find_patron(OPERATOR, "N000100002")
    assert p.home_library_isil == OSLO and [a.library_isil for a in p.activations] == [OSLO]
    assert reg.verify_pin(OPERATOR, "N000100002", PIN) is PinCheck.OK
    assert not reg.find_patron(OPERATOR, "N000100001").has_pin
    assert reg.find_patron(OPERATOR, "N000100050").surname == "Nordmann10"  # nothing registered is overwritten
    assert [c.kind for c in reg.changes() if c.card_number == "N000100001"] == ["registered"]
    outcomes = raw_rows(reg, "SELECT outcome, patron_id FROM audit_events WHERE action = 'import_quarantine'")
    assert sorted(o for o, _ in outcomes) == sorted(EXPECTED.values())
    owner = raw_rows(reg, "SELECT patron_id FROM cards WHERE number = 'N000100050'")[0][0]
    assert ("card_in_use", owner) in outcomes and ("person_registered", owner) in outcomes  # seen in innsyn

    again = reg.import_rows(OPERATOR, OSLO, rows, batch_size=3)
    assert (again.imported, again.already_imported, again.already_quarantined, again.quarantined) == (0, 2, 8, {})
    assert len(reg.list_quarantine(OSLO)) == 8
    assert reg.counts()["patrons"] == 3


def test_the_quarantine_keeps_no_national_id_or_pin_in_clear(reg: Register) -> None:
    # outside every series; a PIN of 8 digits, as 4 turn up by chance in the stored hashes and times
    rows = every_reason_rows(reg) + [row(11, "N000900001", nid(7), pin="97531864")]
    reg.import_rows(OPERATOR, OSLO, rows)
    stored = raw_rows(reg, "SELECT * FROM quarantine")
    text = repr(stored)
    for national_id in [nid(k) for k in range(11)] + ["12345678901"]:
        assert national_id not in text
    assert "97531864" not in text
    (entry,) = [q for q in reg.list_quarantine(OSLO) if q.row == 11]
    shown = reg.show_quarantine(OPERATOR, entry.id)
    assert shown.has_pin and shown.national_id_masked and nid(7) not in shown.national_id_masked
    assert shown.values is not None and shown.values["surname"] == "Legacy11"
    pin_hash = raw_rows(reg, "SELECT pin_hash FROM quarantine WHERE id = :i", i=entry.id)[0][0]
    assert pin_hash.startswith("scrypt$")
    audits = raw_rows(reg, "SELECT detail FROM audit_events")
    assert not any(d and (nid(7) in d or "97531864" in d) for (d,) in audits)


def test_an_interrupted_import_resumes(reg: Register, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [row(i, f"N0001{i:05d}", nid(i)) for i in range(1, 11)]
    real = Imports._import_batch
    calls = {"n": 0}

    def crash_in_third(self: Imports, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as Ctrl-C, or a crash, between the second batch's commit and the third's
        real(self, *args, **kwargs)

    monkeypatch.setattr(Imports, "_import_batch", crash_in_third)
    with pytest.raises(KeyboardInterrupt):
        reg.import_rows(OPERATOR, OSLO, rows, batch_size=3)
    assert reg.counts()["patrons"] == 6  # two whole batches
    monkeypatch.setattr(Imports, "_import_batch", real)
    resumed = reg.import_rows(OPERATOR, OSLO, rows, batch_size=3)
    assert (resumed.imported, resumed.already_imported, resumed.quarantined) == (4, 6, {})
    assert reg.counts()["patrons"] == 10 and reg.list_quarantine() == []


def test_a_registration_the_batch_read_missed_is_still_quarantined(reg: Register,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch is checked against what it read of the register in its transaction (one query for
    its national ids, one for its cards); a registration that slipped in after that read (another
    writer on PostgreSQL) is caught by the unique indexes, and the row gets the reason the register
    then gives."""
    owner = add_patron(reg, 10, OSLO, card="N000100050", national_id=nid(10))
    real = Imports._facts

    def blind(self: Imports, s: Any, lib: Any, rows: Any) -> Any:
        facts = real(self, s, lib, rows)
        facts.people.clear()
        facts.owners.clear()
        return facts

    monkeypatch.setattr(Imports, "_facts", blind)
    summary = reg.import_rows(OPERATOR, OSLO, [
        row(1, "N000100050", nid(3)),  # card_in_use
        row(2, "N000100060", nid(10)),  # person_registered
        row(4, "N000100070", nid(4)),  # imported
    ])
    assert summary.imported == 1 and summary.quarantined == {"card_in_use": 1, "person_registered": 1}
    assert {q.row: q.reason for q in reg.list_quarantine(OSLO)} == {1: "card_in_use", 2: "person_registered"}
    assert reg.find_patron(OPERATOR, owner.card).surname == "Nordmann10"
    assert reg.find_patron(OPERATOR, "N000100070").surname == "Legacy4"


def test_dry_run_changes_nothing(reg: Register) -> None:
    rows = every_reason_rows(reg)
    before = (reg.counts(), reg.count_audit_events(), reg.count_changes())
    dry = reg.import_rows(OPERATOR, OSLO, rows, dry_run=True, batch_size=4)
    assert dry.dry_run and dry.imported == 2 and dry.quarantined_total == 8
    assert (reg.counts(), reg.count_audit_events(), reg.count_changes()) == before
    assert reg.list_quarantine() == []
    real = reg.import_rows(OPERATOR, OSLO, rows)
    assert (real.imported, real.quarantined) == (dry.imported, dry.quarantined)


def test_resolve_each_way_audited(reg: Register) -> None:
    oslo_patron = add_patron(reg, 10, OSLO, national_id=nid(10))
    rows = [row(1, "N000900001", nid(1), pin=PIN),  # card_outside_series → a new card
            row(2, "N000200010", nid(10)),  # person_registered (in Oslo) → attached at Bergen
            row(3, "XYZ", nid(2))]  # bad_card → discarded
    summary = reg.import_rows(OPERATOR, BERGEN, rows)
    assert summary.quarantined == {"card_outside_series": 1, "person_registered": 1, "bad_card": 1}
    ids = {q.row: q.id for q in reg.list_quarantine(BERGEN)}

    with pytest.raises(InvalidInput):  # row 1 is not that person
        reg.resolve_quarantine(OPERATOR, ids[1], attach=oslo_patron.card)
    new = reg.resolve_quarantine(OPERATOR, ids[1], new_card=True)
    assert new.status == "resolved" and new.resolution.startswith("registered with card N0002")
    card = new.resolution.rsplit(" ", 1)[1]
    p = reg.find_patron(OPERATOR, card)
    assert p.home_library_isil == BERGEN and p.surname == "Legacy1"
    assert reg.verify_pin(OPERATOR, card, PIN) is PinCheck.OK  # the quarantined PIN hash came along

    attached = reg.resolve_quarantine(OPERATOR, ids[2], attach=oslo_patron.card)
    assert attached.resolution == f"attached to card {oslo_patron.card}"
    p = reg.find_patron(OPERATOR, oslo_patron.card)
    assert p.home_library_isil == OSLO and {a.library_isil for a in p.activations} == {OSLO, BERGEN}
    assert p.surname == "Nordmann10"  # nothing overwritten

    with pytest.raises(InvalidInput):
        reg.resolve_quarantine(OPERATOR, ids[3], discard_reason="  ")
    discarded = reg.resolve_quarantine(OPERATOR, ids[3], discard_reason="card number lost in the old system")
    assert discarded.status == "discarded" and discarded.resolution == "discarded: card number lost in the old system"

    for entry_id in ids.values():
        with pytest.raises(InvalidInput):  # resolved once only
            reg.resolve_quarantine(OPERATOR, entry_id, discard_reason="again")
    with pytest.raises(NotFound):
        reg.resolve_quarantine(OPERATOR, 999_999, new_card=True)
    audited = raw_rows(reg, "SELECT outcome, card_number, detail FROM audit_events "
                            "WHERE action = 'quarantine_resolve' ORDER BY id")
    assert [o for o, _, _ in audited] == ["new_card", "attached", "discarded"]
    assert audited[0][1] == card and audited[1][1] == oslo_patron.card
    assert all(f"quarantine {ids[i]}" in d for i, (_, _, d) in zip((1, 2, 3), audited, strict=True))
    # the rows' personal data is gone from the quarantine once resolved
    assert raw_rows(reg, "SELECT data, national_id_ciphertext, national_id_index, pin_hash FROM quarantine") == \
        [(None, None, None, None)] * 3
    # and a re-run of the file quarantines nothing again
    again = reg.import_rows(OPERATOR, BERGEN, rows)
    assert (again.already_quarantined, again.quarantined, again.imported) == (3, {}, 0)


def test_new_card_refused_while_the_person_is_registered(reg: Register) -> None:
    add_patron(reg, 10, OSLO, national_id=nid(10))
    reg.import_rows(OPERATOR, BERGEN, [row(1, "N000200010", nid(10))])
    (entry,) = reg.list_quarantine()
    with pytest.raises(DuplicatePatron):
        reg.resolve_quarantine(OPERATOR, entry.id, new_card=True)
    assert reg.list_quarantine()[0].status == "open"


def test_series_conflicts_per_library(reg: Register) -> None:
    reg.import_rows(OPERATOR, OSLO, [row(1, "N000200005", nid(1))])
    reg.import_rows(OPERATOR, BERGEN, [row(1, "N000300007", nid(2))])
    oslo = reg.series_conflicts(OSLO)
    assert [(c["card"], c["library"], c["source"]) for c in oslo] == [("N000200005", OSLO, "quarantine")]
    assert [c["card"] for c in reg.series_conflicts(BERGEN)] == ["N000300007"]
    assert len(reg.series_conflicts()) == 2
    reg.resolve_quarantine(OPERATOR, oslo[0]["quarantine"], discard_reason="cleaned up")
    assert reg.series_conflicts(OSLO) == []


# ---------------------------------------------------------------------- the command line
def write_csv(path: Path, rows: list[ImportRow], columns: tuple[str, ...] = COLUMNS) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for r in rows:
            writer.writerow([r.values.get(c) or "" for c in columns])
    return path


@pytest.fixture
def config(reg: Register, database_url: str, keys_path: Path, tmp_path: Path) -> Path:
    return write_config(tmp_path / "nlr.yaml", database_url, keys_path)


def test_cli_import_quarantine_and_conflicts(reg: Register, config: Path, tmp_path: Path) -> None:
    rows = every_reason_rows(reg)
    file = write_csv(tmp_path / "legacy.csv", rows)
    dry = ok(run(config, "import", str(file), "--library", OSLO, "--dry-run", "--json", cwd=tmp_path)).json
    assert dry["dry_run"] and dry["imported"] == 2 and reg.list_quarantine() == []
    done = ok(run(config, "import", str(file), "--library", OSLO, cwd=tmp_path))
    assert "imported: 2" in done.out and "quarantined: 8 (bad_card 1, card_in_use 1" in done.out
    assert done.err == ""  # no progress bar in a pipe
    again = ok(run(config, "import", str(file), "--library", OSLO, "--json", cwd=tmp_path)).json
    assert (again["imported"], again["already_imported"], again["already_quarantined"]) == (0, 2, 8)
    listed = ok(run(config, "quarantine", "list", "--library", OSLO, "--json", cwd=tmp_path)).json
    assert {e["row"]: e["reason"] for e in listed} == EXPECTED
    assert set(listed[0]) == {"id", "library", "row", "card", "reason", "detail", "status"}
    outside = next(e for e in listed if e["reason"] == "card_outside_series")
    shown = ok(run(config, "quarantine", "show", str(outside["id"]), cwd=tmp_path)).out
    assert "card_outside_series" in shown and "Legacy4" in shown and nid(2) not in shown
    conflicts = ok(run(config, "series", "conflicts", "--library", OSLO, "--json", cwd=tmp_path)).json
    assert [c["card"] for c in conflicts] == ["N000200005"]
    usage_error(run(config, "quarantine", "resolve", str(outside["id"]), "--discard", cwd=tmp_path), "--reason")
    resolved = ok(run(config, "quarantine", "resolve", str(outside["id"]), "--new-card", cwd=tmp_path)).out
    assert "registered with card N0001" in resolved
    assert ok(run(config, "series", "conflicts", "--library", OSLO, cwd=tmp_path)).out.startswith("no card")


def test_cli_unknown_column_is_refused_before_anything(reg: Register, config: Path, tmp_path: Path) -> None:
    file = write_csv(tmp_path / "legacy.csv", [row(1, "N000100001", nid(0))], COLUMNS + ("loans",))
    err = usage_error(run(config, "import", str(file), "--library", OSLO, cwd=tmp_path), "column 13 of the header")
    assert "unknown column" in err
    objects = [{"card": "N000100001", "national_id": nid(0), "surname": "A", "given_name": "B"},
               {"card": "N000100002", "national_id": nid(1), "surname": "A", "given_name": "B", "fnr": "x"}]
    (tmp_path / "legacy.json").write_text(json.dumps(objects))
    usage_error(run(config, "import", str(tmp_path / "legacy.json"), "--library", OSLO, cwd=tmp_path),
                "unknown key number 5 in object 2")
    assert reg.counts()["patrons"] == 0 and reg.list_quarantine() == []
    assert not raw_rows(reg, "SELECT id FROM audit_events WHERE action LIKE 'import%'")


def test_cli_json_file(reg: Register, config: Path, tmp_path: Path) -> None:
    objects = [{"card": "N000100001", "national_id": nid(0), "surname": "A", "given_name": "B", "pin": PIN},
               {"card": "N000100002", "national_id": nid(1), "surname": "", "given_name": "B"}]
    (tmp_path / "legacy.json").write_text(json.dumps(objects))
    summary = ok(run(config, "import", str(tmp_path / "legacy.json"), "--library", OSLO, "--json",
                     cwd=tmp_path)).json
    assert summary["imported"] == 1 and summary["quarantined"] == {"invalid_field": 1}
    assert reg.verify_pin(OPERATOR, "N000100001", PIN) is PinCheck.OK


def test_cli_progress_bar_on_a_terminal_only(reg: Register, config: Path, tmp_path: Path) -> None:
    file = write_csv(tmp_path / "legacy.csv", [row(i, f"N0001{i:05d}", nid(i)) for i in range(1, 8)])
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal has a size
    proc = subprocess.Popen(_command(config, ["import", str(file), "--library", OSLO, "--batch-size", "2"]),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, cwd=tmp_path,
                            env=_env())
    os.close(slave)
    out, _ = proc.communicate(timeout=120)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert proc.returncode == 0, (out, seen)
    terminal = seen.decode("utf-8", "replace")
    assert f"import {OSLO}" in terminal and "7/7" in terminal and "rows" in terminal, terminal
    assert "imported: 7" in out.decode()
    assert "\r" not in out.decode()  # the bar is on the terminal (stderr), not in the summary
    assert sys.stdout is not None


# ---------------------------------------------------------------------- review of issue 12
def test_a_patron_registered_already_is_activated_at_the_importing_library(reg: Register) -> None:
    """Oslo's old system holds a Bergen patron who borrows in Oslo, with the Bergen card: the row is
    that patron's; the import activates them at Oslo (channel import, audited, in Oslo's feed) and a
    re-run counts it as already imported. A patron Oslo has already (registered there) is counted
    apart; neither is a series conflict of Oslo's."""
    bergen = add_patron(reg, 1, BERGEN)  # N0002…: Bergen's number, inside Bergen's series
    own = add_patron(reg, 2, OSLO)
    rows = [row(1, bergen.card, nid(1, date_of(bergen))), row(2, own.card, nid(2, date_of(own)))]
    first = reg.import_rows(OPERATOR, OSLO, rows)
    assert (first.imported, first.activated, first.already_imported, first.already_affiliated,
            first.quarantined) == (0, 1, 0, 1, {})
    p = reg.find_patron(OPERATOR, bergen.card)
    assert {a.library_isil: a.channel for a in p.activations}[OSLO] == "import"
    assert p.home_library_isil == BERGEN and p.surname == "Nordmann1"  # nothing overwritten
    feed = reg.library_changes(client(OSLO, "changes"), None).changes
    assert [(c["kind"], c["card"]) for c in feed if c["card"] == bergen.card] == [("activated", bergen.card)]
    assert feed[-1]["patron"]["surname"] == "Nordmann1"  # the full record, so Oslo's copy starts there
    audited = raw_rows(reg, "SELECT library_isil, detail FROM audit_events WHERE action = 'patron_activate'")
    assert audited == [(OSLO, "legacy import, row 1: registered already")]
    assert reg.series_conflicts(OSLO) == [] and reg.list_quarantine() == []
    again = reg.import_rows(OPERATOR, OSLO, rows)
    assert (again.imported, again.activated, again.already_imported, again.already_affiliated) == (0, 0, 1, 1)
    # rows the import registered count as already imported too, not as the library's otherwise
    fresh = reg.import_rows(OPERATOR, OSLO, [row(3, "N000100003", nid(3))])
    assert fresh.imported == 1
    assert reg.import_rows(OPERATOR, OSLO, [row(3, "N000100003", nid(3))]).already_imported == 1


def date_of(p: Any) -> Any:
    return p.birth_date


@pytest.mark.parametrize("batch_size", [1, 200])
def test_a_duplicate_row_is_quarantined_wherever_the_batches_fall(reg: Register, batch_size: int) -> None:
    rows = [row(1, "N000100001", nid(0), address="Gate 1"),
            row(2, "N000100001", nid(0), given_name="Second", address="Annen gate 2")]
    summary = reg.import_rows(OPERATOR, OSLO, rows, batch_size=batch_size)
    assert (summary.imported, summary.already_imported, summary.quarantined) == (1, 0, {"duplicate_in_file": 1})
    (entry,) = reg.list_quarantine(OSLO)
    assert entry.row == 2 and reg.show_quarantine(OPERATOR, entry.id).values["given_name"] == "Second"
    again = reg.import_rows(OPERATOR, OSLO, rows, batch_size=batch_size)
    assert (again.already_imported, again.already_quarantined, again.quarantined) == (1, 1, {})


def test_a_quarantine_entry_a_concurrent_run_wrote_first_counts_as_already_quarantined(
        reg: Register, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs of the same file at once (PostgreSQL): the other run's entries are not visible yet
    when a batch reads what is quarantined, and its insert meets the unique index: counted as
    already quarantined, never an error."""
    rows = [row(1, "N000100001", nid(0)), row(2, "N000100002", nid(1), email="no"), row(3, "XYZ", nid(2)),
            row(4, "N000100001", nid(3))]
    first = reg.import_rows(OPERATOR, OSLO, rows)
    assert (first.imported, first.quarantined_total) == (1, 3)
    monkeypatch.setattr(Imports, "_known_rows", lambda self, conn, lib_id, batch: set())
    second = reg.import_rows(OPERATOR, OSLO, rows)
    assert (second.imported, second.already_imported, second.quarantined, second.already_quarantined) == \
        (0, 1, {}, 3)
    assert len(reg.list_quarantine(OSLO)) == 3


def test_two_imports_of_the_same_file_at_once(reg: Register, database_url: str) -> None:
    # on SQLite the two runs take the one write lock in turns; on PostgreSQL they race row by row
    import threading
    rows = [row(i, f"N0001{i:05d}", nid(i), **({"email": "bad"} if i % 5 == 0 else {}))
            for i in range(1, 15)]
    rows += [row(20 + i, f"N0001{i:05d}", nid(i)) for i in range(1, 4)]  # duplicates in the file
    results: list[Any] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            results.append(reg.import_rows(OPERATOR, OSLO, rows, batch_size=2))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == [] and len(results) == 2
    assert sum(s.imported for s in results) == 12 and sum(s.quarantined_total for s in results) == 5
    for s in results:
        assert s.imported + s.already_imported + s.quarantined_total + s.already_quarantined == len(rows)
    assert reg.counts()["patrons"] == 12 and len(reg.list_quarantine(OSLO)) == 5


def test_a_national_id_in_the_card_column_is_never_kept(reg: Register, config: Path, tmp_path: Path) -> None:
    """Swapped columns put a national id (or a PIN) where the card should be: the entry keeps only
    its shape; a listing, the stored row and the audit trail never hold it."""
    swapped = nid(12)
    reg.import_rows(OPERATOR, OSLO, [row(1, swapped, "N000100300"), row(2, "97531864", nid(13))])
    entries = reg.list_quarantine(OSLO)
    assert [(q.card, q.detail) for q in entries] == [
        (None, "not a card number (11 digits; a card number is N and 9 digits)"),
        (None, "not a card number (8 digits; a card number is N and 9 digits)")]
    listed = ok(run(config, "quarantine", "list", "--library", OSLO, cwd=tmp_path)).out
    shown = ok(run(config, "quarantine", "show", str(entries[0].id), cwd=tmp_path)).out
    reg.resolve_quarantine(OPERATOR, entries[0].id, discard_reason="swapped columns")
    everything = repr(raw_rows(reg, "SELECT * FROM quarantine")) + repr(raw_rows(reg, "SELECT * FROM audit_events"))
    for secret in (swapped, "97531864"):
        assert secret not in listed and secret not in shown and secret not in everything


def test_the_next_free_card_skips_the_cards_of_open_quarantine_entries(reg: Register) -> None:
    """A legacy patron holds the card of their quarantined row: the register hands that number to
    nobody else, when it picks the next free card (a registration without a card, --new-card)."""
    reg.import_rows(OPERATOR, OSLO, [row(1, "N000100000", "12345678901"),  # invalid_national_id
                                     row(2, "N000100001", nid(1), email="no"),  # invalid_field
                                     row(3, "N000900001", nid(2))])  # card_outside_series
    assert add_patron(reg, 5, OSLO).card == "N000100002"
    outside = next(q for q in reg.list_quarantine(OSLO) if q.reason == "card_outside_series")
    assert reg.resolve_quarantine(OPERATOR, outside.id, new_card=True).resolution == "registered with card N000100003"
    field = next(q for q in reg.list_quarantine(OSLO) if q.reason == "invalid_field")
    with pytest.raises(InvalidInput):  # its e-mail is still refused; the number stays held meanwhile
        reg.resolve_quarantine(OPERATOR, field.id, new_card=True)
    assert add_patron(reg, 6, OSLO).card == "N000100004"


def csv_file(tmp_path: Path, text: str, name: str = "legacy.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def test_a_malformed_row_anywhere_is_refused_before_anything_is_imported(reg: Register, config: Path,
                                                                          tmp_path: Path) -> None:
    good = "".join(f"N0001{i:05d},{nid(i)},Legacy{i},Kari\n" for i in range(1, 6))
    file = csv_file(tmp_path, "card,national_id,surname,given_name\n" + good + "N000100099,x,y,z,extra\n")
    err = usage_error(run(config, "import", str(file), "--library", OSLO, "--batch-size", "1", cwd=tmp_path),
                      "row 6 has 5 values, the header 4 columns")
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert reg.counts()["patrons"] == 0 and reg.list_quarantine() == []


def test_rows_are_numbered_as_records_after_the_header(reg: Register, tmp_path: Path) -> None:
    file = csv_file(tmp_path, "card,national_id,surname,given_name\n\n\nBAD1,x,y,z\n\nN000100001,x,y,z\n")
    legacy = open_legacy_file(file)
    assert legacy.rows == 2 and [r.number for r in legacy] == [1, 2]
    reg.import_rows(OPERATOR, OSLO, legacy)
    assert [(q.row, q.reason) for q in reg.list_quarantine(OSLO)] == [(1, "bad_card"), (2, "invalid_national_id")]


@pytest.mark.parametrize("delimiter", [",", ";"])
def test_doubled_quotes_are_one_quote(tmp_path: Path, delimiter: str) -> None:
    d = delimiter
    text = (f"card{d}national_id{d}surname{d}given_name{d}address\n"
            f'N000100030{d}x{d}"O""Brien"{d}"Anne"{d}"Gate 1{d} 2. etasje"\n'
            f'N000100031{d}y{d}"Smith ""Jr"""{d}Bob{d}"Vei ""3"""\n')
    values = [r.values for r in open_legacy_file(csv_file(tmp_path, text))]
    assert [(v["surname"], v["given_name"], v["address"]) for v in values] == [
        ('O"Brien', "Anne", f"Gate 1{d} 2. etasje"), ('Smith "Jr"', "Bob", 'Vei "3"')]


def test_a_header_error_never_repeats_a_value_of_the_file(tmp_path: Path) -> None:
    with pytest.raises(LegacyFileError) as refused:
        open_legacy_file(csv_file(tmp_path, f"{nid(4)},N000100115,A,B\n"))
    assert nid(4) not in str(refused.value) and "column 1 of the header" in str(refused.value)
    assert "header line missing" in str(refused.value)
    with pytest.raises(LegacyFileError, match="'adress': did you mean 'address'"):  # a typo is named
        open_legacy_file(csv_file(tmp_path, "card,national_id,surname,given_name,adress\n"))


def test_cli_bad_library_or_missing_file_is_a_usage_error(reg: Register, config: Path, tmp_path: Path) -> None:
    file = write_csv(tmp_path / "legacy.csv", [row(1, "N000100001", nid(0))])
    usage_error(run(config, "import", str(file), "--library", "xx", cwd=tmp_path), "error: --library: ")
    usage_error(run(config, "changes", "--library", "garbage", cwd=tmp_path), "error: --library: ")
    err = usage_error(run(config, "import", str(tmp_path / "missing.csv"), "--library", OSLO, cwd=tmp_path),
                      "cannot read", "missing.csv", "legacy file")
    assert "config" not in err
    assert reg.counts()["patrons"] == 0
