"""Patrons: registration (one person, one patron), lookups, changes to personal data, blocks,
lost and replaced cards, deletion."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import bindparam, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.register import activation, actors, audit, crypto, fields, records, series, sessions
from gateway.register.actors import Actor
from gateway.register.context import Area
from gateway.register.errors import (
    CardInUse,
    CardOutsideSeries,
    DuplicatePatron,
    InvalidInput,
    InvalidNationalIdentityNumber,
    NotFound,
    PermissionDenied,
    RegisterError,
    RegisterUnavailable,
    SeriesExhausted,
    VersionConflict,
)
from gateway.register.fields import PatronChanges
from gateway.register.identifiers import InvalidIdentifier, card_number_to_int, normalise_card_number
from gateway.register.identity import InvalidNationalId, NationalId, parse_national_id
from gateway.register.models import Activation, Card, Library, NumberSeries, Patron, utcnow
from gateway.register.views import PatronView
from gateway.register.vocabulary import Action, CardStatus, ChangeKind

_cards = Card.__table__
_CARD_OWNERS = (select(_cards.c.number, _cards.c.patron_id, _cards.c.status)
                .where(_cards.c.number.in_(bindparam("numbers", expanding=True))))
_ERASED = ("surname", "given_name", "national_id_ciphertext", "national_id_index", "national_id_kind", "birth_date",
           "gender", "address_line1", "address_line2", "postal_code", "city", "country", "temp_address_line1",
           "temp_postal_code", "temp_city", "temp_address_until", "email", "phone", "preferred_contact", "pin_hash",
           "block_reason", "pin_locked_until")


def _national_id(text: str, allow_synthetic: bool) -> NationalId:
    try:
        return parse_national_id(text, allow_synthetic=allow_synthetic)
    except InvalidNationalId as exc:
        raise InvalidNationalIdentityNumber(f"invalid national identity number: {exc.reason}") from None


def update_in(s: Session, actor: Actor, patron: Patron, row: Card, changes: PatronChanges, *,
              expected_version: int | None = None) -> None:
    """Change personal data in the caller's transaction (see ``Patrons.update_patron``)."""
    actors.require_may_change(actor, patron)
    if expected_version is not None and expected_version != patron.version:
        raise VersionConflict(
            f"the patron was changed meanwhile (version {patron.version}, you edited {expected_version}); "
            "fetch it again")
    given = changes.given()
    if set(fields.CONTACT_FIELDS) & given.keys():
        merged = {k: given.get(k, getattr(patron, k)) for k in fields.CONTACT_FIELDS}
        for key, value in fields.check_contact(**merged).items():
            if key in given:
                setattr(patron, key, value)
    for key, value in given.items():
        if key == "gender":
            patron.gender = fields.gender(value)
        elif key in fields.TEXT_FIELDS:
            setattr(patron, key, fields.text(value, key, fields.TEXT_FIELDS[key],
                                             required=key in ("surname", "given_name")))
        elif key == "temp_postal_code":
            patron.temp_postal_code = fields.check_contact(postal_code=value)["postal_code"]
        elif key in ("birth_date", "temp_address_until"):
            if key == "birth_date":
                fields.check_birth_date(value)
            setattr(patron, key, value)
        elif key == "preferred_contact":
            patron.preferred_contact = fields.contact_channel(value)
        elif key == "secret_address":
            patron.secret_address = bool(value)
    if s.is_modified(patron):
        patron.updated_at = utcnow()
    s.flush()
    audit.record(s, actor, Action.PATRON_UPDATE, "ok", patron=patron, card=row.number, detail=",".join(sorted(given)))
    audit.change(s, patron, ChangeKind.UPDATED, actor)


@dataclass
class NewPatron:
    """A registration's fields, checked (``check_new_patron``); ``card`` None: the next free number of
    the library's series, set by ``insert_patron_in``."""

    nid: NationalId
    index: str
    card: str | None
    birth_date: date | None
    secret_address: bool
    preferred_contact: str | None
    pin_hash: str | None
    values: dict[str, str | None]  # names, address, gender and contact details as stored


def check_new_patron(
    nid: NationalId, index: str, *, surname: str, given_name: str, card: str | None = None,
    birth_date: date | None = None, gender: str | None = None, address_line1: str | None = None,
    address_line2: str | None = None, postal_code: str | None = None, city: str | None = None,
    country: str | None = None, email: str | None = None, phone: str | None = None, secret_address: bool = False,
    preferred_contact: str | None = None, pin_hash: str | None = None,
) -> NewPatron:
    """Check every field of a registration but the national id (parsed already): InvalidInput
    names the field. No database: a legacy import checks its rows with it before a batch begins."""
    contact = fields.check_contact(email=email, phone=phone, postal_code=postal_code, country=country)
    names = {"surname": fields.text(surname, "surname", fields.NAME_MAX, required=True),
             "given_name": fields.text(given_name, "given_name", fields.NAME_MAX, required=True)}
    others = {k: fields.text(v, k, fields.TEXT_FIELDS[k]) for k, v in
              {"address_line1": address_line1, "address_line2": address_line2, "city": city}.items()}
    others["gender"] = fields.gender(gender)
    fields.check_birth_date(birth_date)
    channel = fields.contact_channel(preferred_contact)
    number = fields.card(card) if card is not None else None
    return NewPatron(nid, index, number, birth_date, secret_address, channel, pin_hash,
                     {**names, **others, **contact})


def insert_patron_in(s: Session, keys: crypto.KeyRing, actor: Actor, lib: Library, new: NewPatron, *,
                     door_agreement: bool = False, checked: bool = False) -> Patron:
    """Register ``new`` at ``lib`` (its home library) in the caller's transaction: the rules (one
    person, one patron; a card from the library's own series, never used before), the audit event,
    the change, the activation. Raises DuplicatePatron, CardOutsideSeries, CardInUse, SeriesExhausted
    before it writes anything; IntegrityError at the flush when a concurrent registration won.

    ``checked``: the caller has made those three checks of ``new`` (its own card) in this
    transaction already, a batch at a time (the legacy import); the unique indexes still stand
    behind them (IntegrityError)."""
    if not checked:
        existing = s.scalar(select(Patron).where(Patron.national_id_index == new.index))
        if existing is not None:
            raise DuplicatePatron(records.known_card(existing) if actors.may_learn_card_of_national_id(actor)
                                  else None)
        if new.card is None:
            new.card = series.allocate_card(s, lib)
        else:
            series.check_card_in_series(s, lib, new.card)
    number = new.card
    assert number is not None  # allocated, or checked by the caller
    # The new patron's card and (empty) activations are built in memory, so that nothing below
    # loads them again; the activation's flush writes the patron, the card and the activation.
    patron = Patron(
        home_library_id=lib.id, national_id_ciphertext=keys.encrypt(new.nid.value), national_id_index=new.index,
        national_id_kind=new.nid.kind, birth_date=new.birth_date, pin_hash=new.pin_hash,
        secret_address=new.secret_address, preferred_contact=new.preferred_contact, **new.values,
        cards=[Card(number=number, library_id=lib.id)], activations=[],
    )
    s.add(patron)
    activation.activate_at(s, actor, patron, lib, quiet=True)  # the registration's audit and change say it
    audit.record(s, actor, Action.PATRON_REGISTER, "ok", patron=patron, card=number, library=lib.isil)
    audit.change(s, patron, ChangeKind.REGISTERED, actor, lib.isil)
    if door_agreement:
        activation.sign_door_agreement(s, actor, patron, lib, number)
    return patron


class Patrons(Area):
    """Registering, finding and changing patrons."""

    def register_patron(
        self, actor: Actor, library: str, *, national_id: str, surname: str, given_name: str,
        card: str | None = None, birth_date: date | None = None, gender: str | None = None,
        address_line1: str | None = None, address_line2: str | None = None, postal_code: str | None = None,
        city: str | None = None, country: str | None = None, email: str | None = None, phone: str | None = None,
        pin: str | None = None, secret_address: bool = False, preferred_contact: str | None = None,
        door_agreement: bool = False,
    ) -> PatronView:
        """Register a new patron at ``library``, which becomes the home library (and, with
        ``door_agreement``, where the meråpent agreement is signed): one transaction.

        Raises DuplicatePatron (naming the card only to an actor who may look up by national id),
        CardOutsideSeries, CardInUse, InvalidInput, PermissionDenied. Every refusal is audited
        against the patron it concerned, so that the patron sees the attempt in innsyn."""
        isil = fields.isil(library)
        index: str | None = None
        try:
            actors.require_library_actor(actor, isil)
            actors.require_may_create(actor)
            nid = _national_id(national_id, self.settings.allow_synthetic_ids)
            index = self.keys.lookup_hash(nid.value)
            new = check_new_patron(
                nid, index, surname=surname, given_name=given_name, card=card, birth_date=birth_date,
                gender=gender, address_line1=address_line1, address_line2=address_line2, postal_code=postal_code,
                city=city, country=country, email=email, phone=phone, secret_address=secret_address,
                preferred_contact=preferred_contact)
            if pin is not None:
                new.pin_hash = crypto.hash_secret(fields.pin(pin), self.settings.pin_hash_cost)
            try:
                with self._tx() as s:
                    lib = records.library(s, isil)
                    patron = insert_patron_in(s, self.keys, actor, lib, new, door_agreement=door_agreement)
                    s.refresh(patron)
                    return self._patron_view(patron)
            except IntegrityError:
                # A concurrent registration won the race: say which rule it broke.
                with self._tx() as s:
                    self._refuse_duplicate(s, actor, index)
                raise CardInUse(f"card {new.card} is already in use (card numbers are never reused)") from None
        except RegisterUnavailable:
            raise
        except RegisterError as exc:
            self._audit_refused_registration(actor, isil, index, card, exc)
            raise

    def _refuse_duplicate(self, s: Session, actor: Actor, index: str) -> None:
        existing = s.scalar(select(Patron).where(Patron.national_id_index == index))
        if existing is not None:
            raise DuplicatePatron(records.known_card(existing) if actors.may_learn_card_of_national_id(actor) else None)

    def _audit_refused_registration(self, actor: Actor, isil: str, index: str | None, card: str | None,
                                    exc: RegisterError) -> None:
        """Audit a refused registration against the patron it concerned: the person already
        registered under that national id, or the owner of the card number asked for."""
        try:
            number = normalise_card_number(card) if card else None
        except InvalidIdentifier:
            number = None
        try:
            with self._tx() as s:
                patron_id = s.scalar(select(Patron.id).where(Patron.national_id_index == index)) if index else None
                if patron_id is None and number is not None:
                    patron_id = s.scalar(select(Card.patron_id).where(Card.number == number))
                audit.record(s, actor, Action.PATRON_REGISTER, exc.code, patron=patron_id, card=number, library=isil)
        except RegisterUnavailable:
            pass  # the refusal stands; the database went away meanwhile

    def find_patron(self, actor: Actor, card: str, *, with_national_id: bool = False) -> PatronView:
        """Look a patron up by card number (any authenticated library may); audited."""
        found = self.register.find_patrons(actor, [card], with_national_id=with_national_id)[0]
        if isinstance(found, RegisterError):
            raise found
        return found

    def find_patrons(self, actor: Actor, cards: list[str], *, with_national_id: bool = False,
                     request_ids: list[str | None] | None = None) -> list[PatronView | RegisterError]:
        """Patrons by card number, many at once (library systems looking patrons up in parallel): for
        each card its view, or the error that refuses it (malformed, not in the register, another
        patron's card for a patron); each view audited. Four queries and one transaction, whatever the
        number of cards; ``find_patron`` is the same for one. ``request_ids``: one per card, the
        request each card was asked in (its audit row carries it; `Actor.asking`)."""
        actors.require_may_look_up(actor, with_national_id=with_national_id)
        asking = [actor.asking(rid) for rid in request_ids] if request_ids is not None else [actor] * len(cards)
        out: list[PatronView | RegisterError | None] = [None] * len(cards)
        asked: list[tuple[int, str]] = []
        for i, card in enumerate(cards):
            try:
                asked.append((i, fields.card(card)))
            except InvalidInput as exc:
                out[i] = exc
        found: list[tuple[int, int, str]] = []  # index, patron id, number
        audits: list[tuple[int, dict[str, object]]] = []  # in the order of the cards asked, as one by one
        with self._core_tx() as conn:
            owners = {row.number: row for row in conn.execute(_CARD_OWNERS, {"numbers": list({n for _, n in asked})})}
            for i, number in asked:
                row = owners.get(number)
                if row is None or row.status == CardStatus.DELETED:
                    out[i] = NotFound(f"card {number} is not in the register")
                    audits.append((i, audit.row(asking[i], Action.PATRON_LOOKUP, "not_found", card=number)))
                else:
                    found.append((i, row.patron_id, number))
            views = self._load_views(conn, [(patron_id, number) for _, patron_id, number in found],
                                     with_national_id=with_national_id)
            for (i, patron_id, number), view in zip(found, views, strict=True):
                if not actors.is_own(actor, (c.number for c in view.cards)):
                    out[i] = PermissionDenied("a patron may see only their own data")
                    audits.append((i, audit.row(asking[i], Action.PATRON_LOOKUP, "permission_denied", patron=patron_id,
                                                card=number)))
                    continue
                out[i] = view
                audits.append((i, audit.row(asking[i], Action.PATRON_LOOKUP, "ok", patron=patron_id, card=number,
                                            detail="national id shown" if with_national_id else None)))
            if audits:
                conn.execute(audit.INSERT, [row for _, row in sorted(audits, key=lambda a: a[0])])
        return out  # type: ignore[return-value]

    def find_patron_by_national_id(self, actor: Actor, national_id: str, *,
                                   with_national_id: bool = False) -> PatronView:
        """Look a patron up by national id; needs the ``lookup-national-id`` permission. A refused
        lookup is audited against the patron it asked about, so the patron sees the attempt."""
        index = self.keys.lookup_hash(_national_id(national_id, self.settings.allow_synthetic_ids).value)
        action = Action.PATRON_LOOKUP_NATIONAL_ID
        try:
            actors.require_may_look_up_by_national_id(actor, with_national_id=with_national_id)
        except PermissionDenied:
            with self._tx() as s:
                audit.record(s, actor, action, "permission_denied",
                             patron=s.scalar(select(Patron.id).where(Patron.national_id_index == index)))
            raise
        with self._tx() as s:
            patron_id = s.scalar(select(Patron.id).where(Patron.national_id_index == index))
            if patron_id is None:
                audit.record(s, actor, action, "not_found")
            else:
                view = self._load_view(s, patron_id, with_national_id=with_national_id)
                audit.record(s, actor, action, "ok", patron=patron_id, card=view.card)
        if patron_id is None:  # raised after the commit, so the failed lookup stays audited
            raise NotFound("no patron is registered with this national identity number")
        return view

    def update_patron(self, actor: Actor, card: str, changes: PatronChanges, *,
                      expected_version: int | None = None) -> PatronView:
        """Change a patron's personal data. ``expected_version`` (from the view the caller edited)
        makes a concurrent change by another library a VersionConflict instead of a silent overwrite."""
        actors.require_client_may(actor, "update", "this client may not change patrons")
        with self._tx() as s:
            patron, row = records.patron_of(s, card, lock=True)
            update_in(s, actor, patron, row, changes, expected_version=expected_version)
            return self._patron_view(patron, row)

    def set_blocked(self, actor: Actor, card: str, blocked: bool, reason: str | None = None) -> PatronView:
        reason = fields.text(reason, "reason", 200, required=blocked)
        with self._tx() as s:
            patron, row = records.patron_of(s, card, lock=True)
            if not actors.may_block_unaffiliated(actor):
                actors.require_may_change(actor, patron)
            if patron.blocked != blocked or patron.block_reason != reason:
                patron.blocked, patron.block_reason, patron.updated_at = blocked, reason if blocked else None, utcnow()
                audit.change(s, patron, ChangeKind.BLOCKED if blocked else ChangeKind.UNBLOCKED, actor)
            if blocked and actor.kind == "operator":  # the operator blocks for misuse: out of Min side too
                sessions.end_in(s, patron.id)
            s.flush()
            audit.record(s, actor, Action.PATRON_BLOCK if blocked else Action.PATRON_UNBLOCK, "ok", patron=patron,
                         card=row.number)
            return self._patron_view(patron, row)

    def report_lost(self, actor: Actor, card: str) -> PatronView:
        with self._tx() as s:
            patron, row = records.patron_of(s, card, lock=True)
            actors.require_may_change(actor, patron)
            if row.status == CardStatus.ACTIVE:
                row.status, row.status_changed_at = CardStatus.LOST, utcnow()
                audit.change(s, patron, ChangeKind.CARD_LOST, actor)
                sessions.end_in(s, patron.id)
            audit.record(s, actor, Action.CARD_LOST, "ok", patron=patron, card=row.number)
            s.flush()
            return self._patron_view(patron, row)

    def replace_card(self, actor: Actor, card: str, *, new_card: str | None = None) -> PatronView:
        """Give the patron a new card number; the old one never authenticates again."""
        with self._tx() as s:
            patron, row = records.patron_of(s, card, lock=True)
            actors.require_may_change(actor, patron)
            lib: Library | None
            if actor.kind != "operator":
                lib = records.library(s, actor.library_isil or "")
                number = series.allocate_card(s, lib) if new_card is None else fields.card(new_card)
            elif new_card is not None:
                # The operator may hand out a number from any library's series: that library issues it.
                number = fields.card(new_card)
                value = card_number_to_int(number)
                lib = s.scalar(select(Library).join(NumberSeries, NumberSeries.library_id == Library.id).where(
                    NumberSeries.first_number <= value, NumberSeries.last_number >= value))
                if lib is None:
                    raise CardOutsideSeries(f"card {number} is not inside any reserved number series")
            else:
                # The home library's series first; else the series of the library that issued the old card.
                home, issuer = patron.home_library, s.get(Library, row.library_id)
                try:
                    lib, number = home, series.allocate_card(s, home)
                except SeriesExhausted:
                    if issuer is None or issuer.id == home.id:
                        raise
                    lib, number = issuer, series.allocate_card(s, issuer)
            assert lib is not None
            if new_card is not None:
                series.check_card_in_series(s, lib, number)
            for old in patron.cards:
                if old.status == CardStatus.ACTIVE:
                    old.status, old.status_changed_at = CardStatus.REPLACED, utcnow()
            sessions.end_in(s, patron.id)
            new = Card(number=number, patron_id=patron.id, library_id=lib.id)
            s.add(new)
            patron.cards.append(new)
            s.flush()
            audit.record(s, actor, Action.CARD_REPLACE, "ok", patron=patron, card=number,
                         detail=f"replaces {row.number}")
            audit.change(s, patron, ChangeKind.CARD_REPLACED, actor)
            return self._patron_view(patron, new)

    def delete_patron(self, actor: Actor, card: str) -> str:
        """Erase the patron's personal data; the card numbers stay reserved forever. Home library or operator."""
        actors.require_client_may(actor, "delete", "this client may not delete patrons")
        with self._tx() as s:
            patron, row = records.patron_of(s, card, lock=True)
            actors.require_may_delete(actor, patron.home_library.isil)
            # every library the patron was affiliated with hears of the deletion
            for act in patron.activations:
                audit.change(s, patron, ChangeKind.DELETED, actor, act.library.isil)
            if not patron.activations:
                audit.change(s, patron, ChangeKind.DELETED, actor)
            for column in _ERASED:
                setattr(patron, column, None)
            patron.secret_address = patron.blocked = False
            patron.deleted_at = patron.updated_at = utcnow()
            for c in patron.cards:
                c.status, c.status_changed_at = CardStatus.DELETED, utcnow()
            s.execute(delete(Activation).where(Activation.patron_id == patron.id))
            sessions.forget_in(s, patron.id)
            audit.record(s, actor, Action.PATRON_DELETE, "ok", patron=patron, card=row.number)
            return row.number
