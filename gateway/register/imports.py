"""A library's legacy import, and the quarantine of the rows it could not import (issue 12, item 2).

Every row is imported or quarantined with a reason (``QuarantineReason``); nothing is dropped and
nothing registered is overwritten. A row is registered by the same code as any registration
(``patrons.check_new_patron``, ``patrons.insert_patron_in``), so every rule holds, and the register's
refusal is the reason: DuplicatePatron → person_registered, CardOutsideSeries → card_outside_series,
CardInUse → card_in_use.

Batches: the rows are taken ``batch_size`` at a time, each batch one transaction (a savepoint per
row), so an interrupted import keeps the batches committed before it and loses nothing else.

A row whose card is registered to the same person already (the keyed index of the national id) is
that person's record in the library's old system: nothing is registered or overwritten, and the
patron becomes the library's own, activated there through the channel ``import`` (audited, an
``activated`` change in the library's feed) and counted as ``activated``. A Bergen patron who
borrows in Oslo is in Oslo's old system with the Bergen card; that number is Bergen's and inside
Bergen's series, so it is no conflict of Oslo's to clean up (a number outside its own issuer's series
is reported to the issuer by ``series conflicts`` already). A patron affiliated with the library
otherwise (registered or activated there by a library system, a kiosk, the operator) is counted as
``already_affiliated``.

Re-runs and resumption: a row is known again by its identity, not by its place in the file:
- imported: its card is registered to the same person and the patron's activation at the library
  came through the channel ``import`` (a registration or activation by an earlier run), and is
  counted as ``already_imported``;
- quarantined: by its *row key*, an HMAC (the register's lookup key) of the library, the row's
  values and how many identical rows came before it in the file; unique per library, so the same
  row is never quarantined twice, wherever it stands in the file, and resolving or discarding it
  keeps it known.
So the same file twice imports nothing new and quarantines nothing twice, and an interrupted run
resumes by being run again.

What the quarantine keeps: the row's values as the file gave them (names, address, contact, birth
date), erased when the entry is resolved or discarded; the national id only as patrons keep it
(encrypted, and the keyed index when it is valid; an invalid one encrypted only); a PIN only as its
scrypt hash (an invalid PIN not at all). The detail never repeats a national id or a PIN, and a
card that is not a card number is kept only as its shape in the detail (``11 digits``): swapped
columns put a national id or a PIN there.

A concurrent run of the same file (PostgreSQL) is met by the unique indexes: a registration, an
activation or a quarantine entry the other run committed first makes the row count as done already.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from itertools import islice

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.register import activation, actors, audit, crypto, fields, records, series
from gateway.register.actors import Actor
from gateway.register.context import Area
from gateway.register.errors import (
    CardInUse,
    CardOutsideSeries,
    DuplicatePatron,
    InvalidInput,
    InvalidNationalIdentityNumber,
    NotFound,
)
from gateway.register.identity import InvalidNationalId, NationalId, mask_national_id, parse_national_id
from gateway.register.legacy import (
    VALUE_MAX,
    ImportRow,
    ImportSummary,
    QuarantineReason as Why,
    QuarantineStatus,
    QuarantineView,
)
from gateway.register.models import Activation, Card, Library, Patron, QuarantineEntry, utcnow
from gateway.register.patrons import NewPatron, check_new_patron, insert_patron_in
from gateway.register.vocabulary import Action, ChangeKind, Channel

BATCH_SIZE = 200  # rows per transaction: on SQLite the write lock is held this long (about 0.1 s)
#: The channel of an activation made by an import (a registration or a patron registered already):
#: how a re-run knows which rows an earlier run did (``already_imported``).
IMPORT_CHANNEL = Channel.IMPORT.value


# The columns of a file and the checks the register makes of each (to name the field it refuses).
_TEXT = {"surname": ("surname", True), "given_name": ("given_name", True), "address": ("address_line1", False),
         "address2": ("address_line2", False), "city": ("city", False)}
_CONTACT = {"postal_code": "postal_code", "phone": "phone", "email": "email"}
_KEPT = ("surname", "given_name", "birth_date", "address", "address2", "postal_code", "city", "phone", "email")


def _value(row: ImportRow, column: str) -> str | None:
    value = row.values.get(column)
    return value.strip() if value is not None and value.strip() else None


def _birth_date(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        born = date.fromisoformat(text)
    except ValueError:
        raise InvalidInput("birth date must be a date in the form YYYY-MM-DD") from None
    fields.check_birth_date(born)
    return born


def _shape(text: str) -> str:
    """What a value that is not a card number looks like, without the value (it may be a national id
    or a PIN in the wrong column)."""
    if text.isdigit():
        return f"{len(text)} digits"
    if text[:1] in "Nn" and text[1:].isdigit():
        return f"N and {len(text) - 1} digits"
    return f"{len(text)} characters"


def _check_field(column: str, value: str | None) -> None:
    """The register's check of one column; InvalidInput when it refuses the value."""
    if column in _TEXT:
        name, required = _TEXT[column]
        fields.text(value, name, fields.TEXT_FIELDS[name], required=required)
    elif column in _CONTACT:
        fields.check_contact(**{_CONTACT[column]: value})
    elif column == "birth_date":
        _birth_date(value)
    elif column == "pin" and value is not None:
        fields.pin(value)


@dataclass
class _Row:
    """A row on its way: what was made of it before the database is asked."""

    row: ImportRow
    key: str
    card_text: str | None
    card: str | None = None  # normalised, when it is a card number
    nid: NationalId | None = None
    index: str | None = None
    reason: Why | None = None
    detail: str | None = None
    new: NewPatron | None = None
    pin: str | None = None  # valid, to be hashed
    pin_hash: str | None = None
    patron_id: int | None = None  # the patron a quarantined row concerns (audited against it)
    outcome: str = ""  # imported, activated, already_imported, already_affiliated, quarantined, already_quarantined

    def quarantine(self, reason: Why, detail: str | None = None, patron_id: int | None = None) -> None:
        self.reason, self.detail, self.patron_id = reason, detail, patron_id


@dataclass
class _Facts:
    """What a batch's registrations are checked against (``Imports._facts``)."""

    people: dict[str, int]  # national id index -> the patron registered with it
    owners: dict[str, tuple[int, str | None]]  # card -> its patron and their national id index
    spans: list[tuple[int, int]]  # the library's series


class _DryRun(Exception):
    """Raised at the end of a dry run's batch, so that its transaction rolls back."""


class Imports(Area):
    """The legacy import and its quarantine."""

    # ------------------------------------------------------------------ the import
    def import_rows(self, actor: Actor, library: str, rows: Iterable[ImportRow], *, dry_run: bool = False,
                    batch_size: int = BATCH_SIZE, progress: Callable[[int], object] | None = None) -> ImportSummary:
        """Import a library's legacy patrons (see the module docstring); ``progress(n)`` after each
        batch of ``n`` rows. Raises NotFound (library), PermissionDenied, RegisterUnavailable.

        Returns the summary: imported, already imported, quarantined by reason, seconds."""
        actors.require_operator(actor)
        isil = fields.isil(library)
        with self._tx() as s:
            lib_id = records.library(s, isil).id
        started = time.perf_counter()
        summary = ImportSummary(isil, dry_run=dry_run)
        seen_cards: set[str] = set()
        seen_people: set[str] = set()
        seen_rows: dict[str, int] = {}
        it = iter(rows)
        with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as hashers:
            while True:
                batch = [self._prepare(isil, row, seen_cards, seen_people, seen_rows)
                         for row in islice(it, batch_size)]
                if not batch:
                    break
                self._import_batch(actor, lib_id, batch, hashers, dry_run=dry_run)
                for r in batch:
                    if r.outcome == "quarantined":
                        assert r.reason is not None
                        summary.quarantined[r.reason.value] = summary.quarantined.get(r.reason.value, 0) + 1
                    elif r.outcome:
                        setattr(summary, r.outcome, getattr(summary, r.outcome) + 1)
                summary.rows += len(batch)
                if progress is not None:
                    progress(len(batch))
        summary.seconds = time.perf_counter() - started
        if not dry_run:
            with self._tx() as s:
                audit.record(s, actor, Action.IMPORT, "ok", library=isil, detail=(
                    f"{summary.rows} rows: {summary.imported} imported, {summary.activated} registered already and "
                    f"activated here, {summary.already_imported} already, {summary.already_affiliated} the "
                    "library's already, "
                    f"{summary.quarantined_total} quarantined, {summary.already_quarantined} already quarantined"))
        return summary

    def _prepare(self, isil: str, row: ImportRow, seen_cards: set[str], seen_people: set[str],
                 seen_rows: dict[str, int]) -> _Row:
        """Everything that needs no database: the row's key, its card and person, duplicates in the
        file, and the register's checks of every other field."""
        canonical = json.dumps([isil, sorted((k, v or "") for k, v in row.values.items())], ensure_ascii=False)
        occurrence = seen_rows.get(canonical, 0)
        seen_rows[canonical] = occurrence + 1
        r = _Row(row, self.keys.lookup_hash(f"legacy-import\0{canonical}\0{occurrence}"), _value(row, "card"))
        if r.card_text is not None:
            try:
                r.card = fields.card(r.card_text)
            except InvalidInput:
                pass
        national_id = _value(row, "national_id")
        if national_id is not None:
            try:
                r.nid = parse_national_id(national_id, allow_synthetic=self.settings.allow_synthetic_ids)
                r.index = self.keys.lookup_hash(r.nid.value)
            except InvalidNationalId:
                pass
        duplicate = (r.card is not None and r.card in seen_cards) or (r.index is not None and r.index in seen_people)
        if r.card is not None:
            seen_cards.add(r.card)
        if r.index is not None:
            seen_people.add(r.index)
        if r.card is None:
            r.quarantine(Why.BAD_CARD, "no card number" if r.card_text is None else
                         f"not a card number ({_shape(r.card_text)}; a card number is N and 9 digits)")
        elif r.index is None:
            r.quarantine(Why.INVALID_NATIONAL_ID, "no national identity number" if national_id is None
                         else "not a valid national identity number")
        elif duplicate:
            r.quarantine(Why.DUPLICATE_IN_FILE, "the same card or person is in an earlier row of the file")
        for column in ("surname", "given_name", "birth_date", "address", "address2", "postal_code", "city",
                       "phone", "email", "pin"):
            try:
                _check_field(column, _value(row, column))
            except InvalidInput as exc:
                if r.reason is None:
                    r.quarantine(Why.INVALID_FIELD, f"{column}: {exc}")
                continue
            if column == "pin":
                r.pin = _value(row, "pin")
        if r.reason is None:
            assert r.nid is not None and r.index is not None
            try:
                r.new = check_new_patron(
                    r.nid, r.index, card=r.card, surname=_value(row, "surname") or "",
                    given_name=_value(row, "given_name") or "", birth_date=_birth_date(_value(row, "birth_date")),
                    address_line1=_value(row, "address"), address_line2=_value(row, "address2"),
                    postal_code=_value(row, "postal_code"), city=_value(row, "city"), email=_value(row, "email"),
                    phone=_value(row, "phone"))
            except InvalidInput as exc:  # a rule the checks above do not name
                r.quarantine(Why.INVALID_FIELD, str(exc))
        return r

    def _import_batch(self, actor: Actor, lib_id: int, batch: list[_Row], hashers: ThreadPoolExecutor, *,
                      dry_run: bool) -> None:
        # What earlier runs did (read first, so that no PIN is hashed for a row done already).
        with self._read() as conn:
            known = self._known_rows(conn, lib_id, batch)
            owners = dict(conn.execute(select(Card.number, Patron.national_id_index).join(
                Patron, Patron.id == Card.patron_id).where(Card.number.in_([r.card for r in batch if r.card]))).all())
        for r in batch:
            if r.key in known:
                r.outcome = "already_quarantined"
        # A row the file refused (a duplicate) stays refused, wherever the batches fall; a row of a
        # person whose card it is registers nothing, so its PIN is not hashed.
        hashing = [r for r in batch if not r.outcome and r.pin is not None and r.reason is None
                   and not (r.card is not None and r.index is not None and owners.get(r.card) == r.index)]
        if dry_run:
            for r in hashing:
                r.pin_hash = "dry-run"
        else:
            cost = self.settings.pin_hash_cost
            for r, hashed in zip(hashing, hashers.map(lambda r: crypto.hash_secret(r.pin or "", cost), hashing),
                                 strict=True):
                r.pin_hash = hashed
        try:
            with self._tx() as s:
                lib = s.get(Library, lib_id)
                assert lib is not None
                known = self._known_rows(s, lib_id, batch)  # a concurrent run of the same file meanwhile
                facts = self._facts(s, lib, [r for r in batch if not r.outcome and r.reason is None])
                for r in batch:
                    if r.outcome:
                        continue
                    if r.key in known:
                        r.outcome = "already_quarantined"
                        continue
                    if r.reason is None:
                        self._register(s, actor, lib, r, facts)
                    if r.reason is not None:
                        self._quarantine(s, actor, lib, r)
                        known.add(r.key)
                if dry_run:
                    raise _DryRun
        except _DryRun:
            pass

    @staticmethod
    def _known_rows(conn: Connection | Session, lib_id: int, batch: list[_Row]) -> set[str]:
        """The keys of the batch's rows quarantined already (committed: a concurrent run's entries
        not yet committed are met by the unique index, ``_quarantine``)."""
        return set(conn.scalars(select(QuarantineEntry.row_key).where(
            QuarantineEntry.library_id == lib_id, QuarantineEntry.row_key.in_([r.key for r in batch]))))

    def _facts(self, s: Session, lib: Library, rows: list[_Row]) -> _Facts:
        """What the registration checks of each row, read for the whole batch in its transaction:
        the patrons holding the rows' national ids, the owners of their cards, the library's series."""
        indexes = [r.index for r in rows if r.index is not None]
        cards = [r.card for r in rows if r.card is not None]
        people: dict[str, int] = {}
        owners: dict[str, tuple[int, str | None]] = {}
        if indexes:
            people = {index: patron_id for index, patron_id in s.execute(
                select(Patron.national_id_index, Patron.id).where(Patron.national_id_index.in_(indexes)))
                if index is not None}
        if cards:
            owners = {number: (patron_id, index) for number, patron_id, index in s.execute(
                select(Card.number, Card.patron_id, Patron.national_id_index)
                .join(Patron, Patron.id == Card.patron_id).where(Card.number.in_(cards)))}
        return _Facts(people, owners, series.spans_of(s, lib))

    def _register(self, s: Session, actor: Actor, lib: Library, r: _Row, facts: _Facts) -> None:
        """Register the row by the registration's own code, or say why not (``r.reason``). The
        registration's checks (one person, one patron; a card of the library's series, never used)
        are made of the batch's facts, in its order; a row they refuse is not tried."""
        assert r.new is not None and r.card is not None and r.index is not None
        refused: type[Exception]
        person, owner = facts.people.get(r.index), facts.owners.get(r.card)
        if owner is not None and owner[1] == r.index:
            self._known_person(s, actor, lib, r, owner[0])
            return
        if person is not None:
            refused = DuplicatePatron
        elif not series.inside(facts.spans, r.card):
            refused = CardOutsideSeries
        elif owner is not None:
            refused = CardInUse
        else:
            r.new.pin_hash = r.pin_hash
            try:
                with s.begin_nested():
                    patron = insert_patron_in(s, self.keys, actor, lib, r.new, checked=True)
                    for act in patron.activations:  # the registration's activation at the library
                        act.channel = IMPORT_CHANNEL
                r.outcome = "imported"
                return
            except InvalidInput as exc:
                r.quarantine(Why.INVALID_FIELD, str(exc))
                return
            except (DuplicatePatron, CardOutsideSeries, CardInUse, IntegrityError) as exc:
                refused = type(exc)  # IntegrityError: a concurrent registration won; the facts below tell
            found = s.execute(select(Card.patron_id, Patron.national_id_index).join(
                Patron, Patron.id == Card.patron_id).where(Card.number == r.card)).first()
            owner = (found.patron_id, found.national_id_index) if found is not None else None
            person = s.scalar(select(Patron.id).where(Patron.national_id_index == r.index))
        if owner is not None and owner[1] == r.index:
            self._known_person(s, actor, lib, r, owner[0])
        elif issubclass(refused, DuplicatePatron) or (issubclass(refused, IntegrityError) and person is not None):
            r.quarantine(Why.PERSON_REGISTERED, "this person is registered under another card", person)
        elif issubclass(refused, CardOutsideSeries):
            r.quarantine(Why.CARD_OUTSIDE_SERIES, f"the card is not inside a number series reserved by {lib.isil}"
                         + (" (and is another patron's)" if owner is not None else ""),
                         owner[0] if owner is not None else None)
        else:
            r.quarantine(Why.CARD_IN_USE, "the card is another patron's (card numbers are never reused)",
                         owner[0] if owner is not None else None)

    def _known_person(self, s: Session, actor: Actor, lib: Library, r: _Row, patron_id: int) -> None:
        """The row's card is registered to its person already: done by an earlier run, the library's
        patron already, or activated at the library now (see the module docstring)."""
        channel = s.scalar(select(Activation.channel).where(Activation.patron_id == patron_id,
                                                            Activation.library_id == lib.id))
        if channel is not None:
            r.outcome = "already_imported" if channel == IMPORT_CHANNEL else "already_affiliated"
            return
        patron = s.get(Patron, patron_id)
        assert patron is not None
        try:
            with s.begin_nested():
                act = Activation(library_id=lib.id, channel=IMPORT_CHANNEL, rules_version=lib.rules_version)
                patron.activations.append(act)
                s.flush()
                audit.record(s, actor, Action.PATRON_ACTIVATE, "ok", patron=patron, card=records.current_card(patron),
                             library=lib.isil, detail=f"legacy import, row {r.row.number}: registered already")
                audit.change(s, patron, ChangeKind.ACTIVATED, actor, lib.isil)
        except IntegrityError:  # a concurrent writer (another run of the file) activated the patron first
            s.expire(patron, ["activations"])
            channel = s.scalar(select(Activation.channel).where(Activation.patron_id == patron_id,
                                                                Activation.library_id == lib.id))
            r.outcome = "already_affiliated" if channel not in (None, IMPORT_CHANNEL) else "already_imported"
            return
        r.outcome = "activated"

    def _quarantine(self, s: Session, actor: Actor, lib: Library, r: _Row) -> None:
        assert r.reason is not None
        national_id = _value(r.row, "national_id")
        kept = {k: v[:VALUE_MAX] for k in _KEPT if (v := _value(r.row, k)) is not None}
        entry = QuarantineEntry(
            library_id=lib.id, row_number=r.row.number, row_key=r.key,
            card=r.card, reason=r.reason.value,  # a card that is not one: only its shape, in the detail
            detail=(r.detail or "")[:300] or None, status=QuarantineStatus.OPEN.value,
            national_id_ciphertext=self.keys.encrypt(national_id[:VALUE_MAX]) if national_id else None,
            national_id_index=r.index, pin_hash=r.pin_hash, data=json.dumps(kept, ensure_ascii=False))
        try:
            with s.begin_nested():
                s.add(entry)
                s.flush()
                audit.record(s, actor, Action.IMPORT_QUARANTINE, r.reason.value, patron=r.patron_id, card=r.card,
                             library=lib.isil, detail=f"quarantine {entry.id}, row {r.row.number}")
        except IntegrityError:  # quarantined by a concurrent run of the same file meanwhile
            r.outcome = "already_quarantined"
            return
        r.outcome = "quarantined"

    # ------------------------------------------------------------------ the quarantine
    def list_quarantine(self, library: str | None = None, *, status: str | None = None,
                        limit: int = 1000) -> list[QuarantineView]:
        """Quarantined rows, oldest first (without the rows' personal data)."""
        with self._tx() as s:
            query = select(QuarantineEntry).order_by(QuarantineEntry.id).limit(limit)
            if library is not None:
                query = query.where(QuarantineEntry.library_id == records.library(s, library).id)
            if status is not None:
                query = query.where(QuarantineEntry.status == QuarantineStatus(status).value)
            return [self._view(e) for e in s.scalars(query)]

    def count_quarantine(self, library: str | None = None, *, status: str | None = None) -> int:
        with self._tx() as s:
            query = select(QuarantineEntry.id)
            if library is not None:
                query = query.where(QuarantineEntry.library_id == records.library(s, library).id)
            if status is not None:
                query = query.where(QuarantineEntry.status == QuarantineStatus(status).value)
            return len(s.scalars(query).all())

    def show_quarantine(self, actor: Actor, entry_id: int) -> QuarantineView:
        """One quarantined row with what the file said (the national id masked); audited."""
        actors.require_operator(actor)
        with self._tx() as s:
            entry = self._entry(s, entry_id)
            audit.record(s, actor, Action.QUARANTINE_SHOW, "ok", patron=self._concerned(s, entry), card=entry.card,
                         library=entry.library.isil, detail=f"quarantine {entry.id}")
            return self._view(entry, full=True)

    def resolve_quarantine(self, actor: Actor, entry_id: int, *, new_card: bool = False, attach: str | None = None,
                           discard_reason: str | None = None) -> QuarantineView:
        """Resolve an open entry one way: register the row with the next free card of the library's
        series (``new_card``), attach it to the patron registered already with card ``attach`` (the
        same person: activated at the library; nothing of theirs is changed), or discard it with a
        reason. The row's personal data is erased from the quarantine then; audited.

        Raises NotFound, InvalidInput (not open, not the same person, no valid national id, a field
        the register refuses), DuplicatePatron, SeriesExhausted."""
        actors.require_operator(actor)
        if sum((new_card, attach is not None, discard_reason is not None)) != 1:
            raise InvalidInput("resolve one way: a new card, attach to a card, or discard with a reason")
        reason_text = fields.text(discard_reason, "reason", 200, required=True) if discard_reason is not None else None
        try:
            with self._tx() as s:
                entry = self._entry(s, entry_id, lock=True)
                if entry.status != QuarantineStatus.OPEN:
                    raise InvalidInput(f"quarantine entry {entry.id} is {entry.status} already")
                lib = entry.library
                patron: Patron | None = None
                if new_card:
                    patron = insert_patron_in(s, self.keys, actor, lib, self._new_patron(entry))
                    number = records.known_card(patron)
                    entry.status, entry.resolution = QuarantineStatus.RESOLVED.value, f"registered with card {number}"
                    outcome = "new_card"
                elif attach is not None:
                    patron, row = records.patron_of(s, attach, lock=True)
                    if entry.national_id_index is None or patron.national_id_index != entry.national_id_index:
                        raise InvalidInput(f"the quarantined row is not the person registered with card {row.number}")
                    activation.activate_at(s, actor, patron, lib)
                    number = row.number
                    entry.status, entry.resolution = QuarantineStatus.RESOLVED.value, f"attached to card {number}"
                    outcome = "attached"
                else:
                    number = None
                    entry.status, entry.resolution = QuarantineStatus.DISCARDED.value, f"discarded: {reason_text}"
                    outcome = "discarded"
                entry.resolved_at = utcnow()
                concerned = patron.id if patron is not None else self._concerned(s, entry)
                entry.data = entry.national_id_ciphertext = entry.national_id_index = entry.pin_hash = None
                if entry.reason == Why.BAD_CARD.value:
                    entry.card = None  # not a card number: it may be a national id or a PIN (older entries)
                s.flush()
                audit.record(s, actor, Action.QUARANTINE_RESOLVE, outcome, patron=concerned,
                             card=number or entry.card, library=lib.isil,
                             detail=f"quarantine {entry.id} ({entry.reason}): {entry.resolution}")
                return self._view(entry)
        except IntegrityError:
            raise CardInUse("a concurrent registration took the card or the person; try again") from None

    def _entry(self, s: Session, entry_id: int, *, lock: bool = False) -> QuarantineEntry:
        query = select(QuarantineEntry).where(QuarantineEntry.id == entry_id)
        if lock and self.store.postgres:
            query = query.with_for_update(of=QuarantineEntry)
        entry = s.scalar(query)
        if entry is None:
            raise NotFound(f"quarantine entry {entry_id} does not exist")
        return entry

    def _concerned(self, s: Session, entry: QuarantineEntry) -> int | None:
        """The patron a quarantined row concerns: the person registered already, or the card's owner."""
        if entry.national_id_index is not None:
            found = s.scalar(select(Patron.id).where(Patron.national_id_index == entry.national_id_index))
            if found is not None:
                return found
        if entry.card is not None:
            return s.scalar(select(Card.patron_id).where(Card.number == entry.card))
        return None

    def _new_patron(self, entry: QuarantineEntry) -> NewPatron:
        if entry.national_id_ciphertext is None:
            raise InvalidInput("the row has no national identity number: discard it, or register the patron anew")
        try:
            nid = parse_national_id(self.keys.decrypt(entry.national_id_ciphertext),
                                    allow_synthetic=self.settings.allow_synthetic_ids)
        except InvalidNationalId as exc:
            raise InvalidNationalIdentityNumber(f"invalid national identity number: {exc.reason}") from None
        data: dict[str, str] = json.loads(entry.data or "{}")
        new = check_new_patron(
            nid, self.keys.lookup_hash(nid.value), surname=data.get("surname", ""),
            given_name=data.get("given_name", ""), birth_date=_birth_date(data.get("birth_date")),
            address_line1=data.get("address"), address_line2=data.get("address2"),
            postal_code=data.get("postal_code"), city=data.get("city"), email=data.get("email"),
            phone=data.get("phone"))
        new.pin_hash = entry.pin_hash
        return new

    def _view(self, e: QuarantineEntry, *, full: bool = False) -> QuarantineView:
        masked: str | None = None
        values: dict[str, str] | None = None
        if full:
            if e.national_id_ciphertext is not None:
                plain = self.keys.decrypt(e.national_id_ciphertext)
                masked = mask_national_id(plain) if e.national_id_index is not None else f"(invalid, {len(plain)} "\
                    "characters)"
            values = json.loads(e.data) if e.data else None
        return QuarantineView(e.id, e.library.isil, e.row_number, e.card, e.reason, e.detail, e.status, e.created_at,
                              e.resolved_at, e.resolution, masked, e.pin_hash is not None, values)

