"""The register: every operation on libraries, series, patrons, terminals and clients.

Each public method is one operation. It enforces the rules of PRODUCT §2, writes an audit event
(who, which library, what, which patron, outcome) and, for patron changes, an entry in the changes
feed, all in one transaction. Methods block (database, scrypt): the Twisted adapters call them in
a thread pool.
"""

from __future__ import annotations

import ipaddress
import time
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, object_session

from gateway.register import crypto, pins
from gateway.register.store import Store
from gateway.register.errors import (
    AlreadyExists,
    AuthenticationFailed,
    CardInUse,
    CardOutsideSeries,
    DuplicatePatron,
    InvalidInput,
    InvalidNationalIdentityNumber,
    NotAffiliated,
    NotFound,
    PermissionDenied,
    PinLocked,
    RegisterError,
    RegisterUnavailable,
    SeriesExhausted,
    SeriesOverlap,
    VersionConflict,
)
from gateway.register.identifiers import (
    InvalidIdentifier,
    card_number_from_int,
    card_number_to_int,
    normalise_card_number,
    normalise_email,
    normalise_isil,
    normalise_phone,
    normalise_postal_code,
    validate_pin,
)
from gateway.register.identity import InvalidNationalId, mask_national_id, parse_national_id
from gateway.register.models import (
    Activation,
    APIClient,
    AuditEvent,
    Card,
    Change,
    Library,
    NumberSeries,
    Patron,
    SIPTerminal,
    utcnow,
)
from gateway.register.views import (
    CONTACT_CHANNELS,
    DEFAULT_CLIENT_PERMISSIONS,
    ENCODINGS,
    PERMISSIONS,
    PROFILES,
    ActivationView,
    Actor,
    AuditView,
    CardView,
    ChangeView,
    ClientView,
    Decision,
    DecisionRequest,
    LibraryView,
    PatronView,
    UNKNOWN_TERMINAL,
    PinCheck,
    Reason,
    SelfActivation,
    SeriesView,
    TerminalLogin,
    TerminalView,
    jsonable,
)

OSLO = ZoneInfo("Europe/Oslo")
MAX_CARD = 999_999_999
NAME_MAX = 200
# Patron fields a library may change with update_patron(), and how each is checked.
_TEXT_FIELDS = {
    "surname": NAME_MAX, "given_name": NAME_MAX, "address_line1": 200, "address_line2": 200,
    "city": 100, "temp_address_line1": 200, "temp_city": 100, "gender": 16,
}


@dataclass(frozen=True)
class Settings:
    agency_id: str = "NLR"
    allow_synthetic_ids: bool = False
    pin_max_failures: int = 5
    pin_lock_minutes: int = 15
    pin_hash_cost: int = 14  # keep equal to gateway.config.RegisterConfig


# The hot paths' statements, built once from the tables and bound per call: building a statement
# costs more than running it, and plain Core skips the ORM's execution layer.
_patrons, _cards, _libraries, _activations = (Patron.__table__, Card.__table__, Library.__table__,
                                              Activation.__table__)
_CARD_OWNERS = (select(_cards.c.number, _cards.c.patron_id, _cards.c.status)
                .where(_cards.c.number.in_(bindparam("numbers", expanding=True))))
_VIEW_PATRON_SELECT = (select(_patrons, _libraries.c.isil.label("home_isil"))
                       .join(_libraries, _libraries.c.id == _patrons.c.home_library_id))
_VIEW_PATRON = _VIEW_PATRON_SELECT.where(_patrons.c.id == bindparam("patron_id"))
_VIEW_PATRONS = _VIEW_PATRON_SELECT.where(_patrons.c.id.in_(bindparam("patron_ids", expanding=True)))
_VIEW_CARDS_SELECT = (select(_cards.c.patron_id, _cards.c.number, _cards.c.status, _libraries.c.isil, _cards.c.issued_at)
                      .join(_libraries, _libraries.c.id == _cards.c.library_id)
                      .order_by(_cards.c.issued_at, _cards.c.number))
_VIEW_CARDS = _VIEW_CARDS_SELECT.where(_cards.c.patron_id == bindparam("patron_id"))
_VIEW_CARDS_MANY = _VIEW_CARDS_SELECT.where(_cards.c.patron_id.in_(bindparam("patron_ids", expanding=True)))
_VIEW_ACTIVATIONS_SELECT = (select(_activations, _libraries.c.isil.label("isil"), _libraries.c.name.label("name"))
                            .join(_libraries, _libraries.c.id == _activations.c.library_id)
                            .order_by(_activations.c.activated_at, _activations.c.id))
_VIEW_ACTIVATIONS = _VIEW_ACTIVATIONS_SELECT.where(_activations.c.patron_id == bindparam("patron_id"))
_VIEW_ACTIVATIONS_MANY = _VIEW_ACTIVATIONS_SELECT.where(
    _activations.c.patron_id.in_(bindparam("patron_ids", expanding=True)))
_DECISION_SELECT = (
    select(_cards.c.number, _cards.c.status, _cards.c.patron_id, _patrons.c.pin_hash, _patrons.c.pin_locked_until,
           _patrons.c.blocked, _patrons.c.birth_date, _activations.c.id.label("activation_id"),
           _activations.c.door_agreement_at, _activations.c.door_revoked_at)
    .join(_patrons, _patrons.c.id == _cards.c.patron_id)
    .outerjoin(_activations, (_activations.c.patron_id == _patrons.c.id) & (
        _activations.c.library_id == select(_libraries.c.id).where(_libraries.c.isil == bindparam("isil"))
        .scalar_subquery()))
)
_DECISION_CARD = _DECISION_SELECT.where(_cards.c.number == bindparam("number"))
_DECISION_CARDS = _DECISION_SELECT.where(_cards.c.number.in_(bindparam("numbers", expanding=True)))
_DECISION_LIBRARY = (select(_libraries.c.id, _libraries.c.door_min_age, _libraries.c.auto_activation,
                             _libraries.c.self_activation)
                     .where(_libraries.c.isil == bindparam("isil")))
_AUDIT = insert(AuditEvent.__table__)
_terminals = SIPTerminal.__table__
_TERMINAL_BY_LOGIN = (select(_terminals, _libraries.c.isil)
                      .join(_libraries, _libraries.c.id == _terminals.c.library_id)
                      .where(_terminals.c.login == bindparam("login")))


@dataclass
class _SelfActivationAsk:
    """A decision that may self-activate (SIP2 25), and what it found out about the library."""

    rules_version: str | None
    library_allows: bool = True
_CLIENT_BY_TOKEN = (select(APIClient.__table__.c.name, APIClient.__table__.c.permissions, APIClient.__table__.c.enabled,
                           _libraries.c.isil)
                    .join(_libraries, _libraries.c.id == APIClient.__table__.c.library_id)
                    .where(APIClient.__table__.c.token_hash == bindparam("token_hash")))


@dataclass(frozen=True)
class _Facts:
    """A card, its patron and the patron's activation at one library, as the decision needs them."""

    row: Any
    library: Any  # id, door_min_age, auto_activation of the deciding library (None if unknown)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.row, name)


def _reason(facts: _Facts, pin_result: PinCheck | None, door: bool, pin_required: bool, now: datetime) -> Reason:
    """The door decision of sip2.md A.4 from the facts about a known card: the first rule that
    refuses, in the order of the table, else GRANTED."""
    checked = pin_result is not None
    valid = pin_result is PinCheck.OK
    if facts.status in ("lost", "replaced"):
        return Reason.CARD_LOST if facts.status == "lost" else Reason.CARD_REPLACED
    if pin_result is PinCheck.LOCKED:
        return Reason.PIN_LOCKED
    if checked and not valid:
        return Reason.PIN_WRONG
    if not checked and (door or pin_required):
        return Reason.PIN_MISSING
    if facts.blocked:
        return Reason.PATRON_BLOCKED
    if facts.activation_id is None and not (facts.library is not None and facts.library.auto_activation and valid):
        return Reason.NOT_ACTIVATED
    if door and facts.door_agreement_at is None:
        return Reason.DOOR_NO_AGREEMENT
    if door and facts.door_revoked_at is not None:
        return Reason.DOOR_REVOKED
    if door and facts.library.door_min_age > 0 and (
            facts.birth_date is None or age_on(facts.birth_date, now.astimezone(OSLO).date()) < facts.library.door_min_age):
        return Reason.DOOR_UNDERAGE
    return Reason.GRANTED


def _audit_row(actor: Actor, action: str, outcome: str, *, patron: Any = None, card: str | None = None,
               library: str | None = None, detail: str | None = None, at: datetime | None = None) -> dict[str, Any]:
    """One audit event as the insert takes it (``patron``: a Patron or its id)."""
    return {
        "at": at or utcnow(), "actor": actor.label[:120], "library_isil": library or actor.library_isil, "action": action,
        "patron_id": patron.id if isinstance(patron, Patron) else patron, "card_number": card, "outcome": outcome,
        "detail": detail[:300] if detail else None,
    }


def _acts_for(actor: Actor, institution: str | None) -> bool:
    """Whether a request naming ``institution`` (SIP2 AO; ISIL or bare library number) is for the
    actor's own library. No institution named, or an actor bound to no library: yes."""
    if institution is None or actor.library_isil is None:
        return True
    try:
        return normalise_isil(institution) == actor.library_isil
    except InvalidIdentifier:
        return institution.strip() == actor.library_isil


def _bad(message: str) -> InvalidInput:
    return InvalidInput(message)


def _card(text_: str) -> str:
    try:
        return normalise_card_number(text_)
    except InvalidIdentifier as exc:
        raise InvalidInput(str(exc)) from None


def _isil(text_: str) -> str:
    try:
        return normalise_isil(text_)
    except InvalidIdentifier as exc:
        raise InvalidInput(str(exc)) from None


def _pin(text_: str) -> str:
    try:
        return validate_pin(text_)
    except InvalidIdentifier as exc:
        raise InvalidInput(str(exc)) from None


def _text(value: str | None, field: str, limit: int, *, required: bool = False) -> str | None:
    if value is None or not value.strip():
        if required:
            raise _bad(f"{field.replace('_', ' ')} is required")
        return None
    value = " ".join(value.split())
    if len(value) > limit:
        raise _bad(f"{field.replace('_', ' ')} is longer than {limit} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
        raise _bad(f"{field.replace('_', ' ')} contains a control character")
    return value


def _version(value: str | None, field: str) -> str | None:
    """A rules or agreement version as a library names it: 1 to 40 characters (None: not given)."""
    if value is None:
        return None
    if not value.strip() or len(value.strip()) > 40:
        raise _bad(f"{field} must be 1 to 40 characters")
    return _text(value, field, 40)


def _contact_channel(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    channel = value.strip().lower()
    if channel not in CONTACT_CHANNELS:
        raise _bad(f"preferred contact must be one of {', '.join(CONTACT_CHANNELS)}")
    return channel


def age_on(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


class Register:
    def __init__(self, engine: Engine, keys: crypto.KeyRing, settings: Settings | None = None) -> None:
        self.engine = engine
        self.keys = keys
        self.settings = settings or Settings()
        self.store = Store(engine)
        self._postgres = self.store.postgres
        # A hash to spend time on when a login is unknown, so timing does not tell.
        self._decoy_hash = crypto.hash_secret("decoy", self.settings.pin_hash_cost)
        self._tx = self.store.session
        self._core_tx = self.store.core
        self._read = self.store.read

    def ping(self) -> None:
        self.store.ping()

    def _audit(
        self, s: Session, actor: Actor, action: str, outcome: str, *,
        patron: Patron | int | None = None, card: str | None = None, library: str | None = None, detail: str | None = None,
    ) -> None:
        s.connection().execute(_AUDIT, _audit_row(actor, action, outcome, patron=patron, card=card, library=library,
                                                  detail=detail))

    def audit_refusal(self, actor: Actor, action: str, outcome: str, *, card: str | None = None, detail: str | None = None) -> None:
        """Record a refused request that never reached a patron (bad login, unknown card, …)."""
        with self._tx() as s:
            self._audit(s, actor, action, outcome, card=card, detail=detail)

    def _change(self, s: Session, patron: Patron, kind: str, actor: Actor, library: str | None = None) -> None:
        """A change feed entry; ``library``: the library the change concerns (the actor's by default)."""
        s.add(Change(patron_id=patron.id, card_number=self._known_card(patron), library_isil=library or actor.library_isil,
                     kind=kind))

    def _library(self, s: Session, isil: str) -> Library:
        isil = _isil(isil)
        library = s.scalar(select(Library).where(Library.isil == isil))
        if library is None:
            raise NotFound(f"library {isil} is not in the register (add it with `nlr library add`)")
        return library

    def _card_row(self, s: Session, card: str, *, lock: bool = False) -> Card:
        number = _card(card)
        row = s.get(Card, number)
        if row is None or row.status == "deleted":
            raise NotFound(f"card {number} is not in the register")
        if lock and self._postgres:
            s.execute(select(Patron.id).where(Patron.id == row.patron_id).with_for_update())
        return row

    def _patron(self, s: Session, card: str, *, lock: bool = False) -> tuple[Patron, Card]:
        row = self._card_row(s, card, lock=lock)
        return row.patron, row

    @staticmethod
    def _current_card(patron: Patron) -> str | None:
        return next((c.number for c in reversed(patron.cards) if c.status == "active"), None)

    @classmethod
    def _known_card(cls, patron: Patron) -> str:
        """The card a library knows the patron by: the active one, else the newest (e.g. reported lost)."""
        return cls._current_card(patron) or next(
            (c.number for c in reversed(patron.cards) if c.status != "deleted"), "?")

    def _is_affiliated(self, patron: Patron, isil: str | None) -> bool:
        return isil is not None and any(a.library.isil == isil for a in patron.activations)

    def _require_may_change(self, actor: Actor, patron: Patron) -> None:
        if actor.kind == "operator":
            return
        if actor.kind == "patron":
            raise PermissionDenied("a patron may change only the home library on the self-service page")
        if not self._is_affiliated(patron, actor.library_isil):
            raise NotAffiliated(f"library {actor.library_isil} is not affiliated with this patron; activate the card there first")

    def _require_library_actor(self, actor: Actor, isil: str) -> None:
        if actor.kind != "operator" and actor.library_isil != isil:
            raise PermissionDenied(f"{actor.label} acts for {actor.library_isil}, not {isil}")

    def _require_operator(self, actor: Actor) -> None:
        if actor.kind != "operator":
            raise PermissionDenied("only the operator may do this")

    # ------------------------------------------------------------------ views
    def _library_view(self, lib: Library) -> LibraryView:
        return LibraryView(lib.isil, lib.name, lib.door_min_age, lib.self_activation, lib.auto_activation,
                           lib.rules_version, lib.door_agreement_version)

    def _patron_view(self, patron: Patron, card: Card | None = None, *, with_national_id: bool = False) -> PatronView:
        session = object_session(patron)
        assert session is not None
        return self._load_view(session, patron.id, card.number if card is not None else None, with_national_id=with_national_id)

    def _load_view(self, s: Session, patron_id: int, number: str | None = None, *, with_national_id: bool = False) -> PatronView:
        """The patron as stored now, read with three plain queries (the hot path of every lookup).
        ``number`` is the card asked about; by default the patron's active card."""
        s.flush()  # plain Core reads below do not autoflush the session's pending changes
        conn = s.connection()  # "= :id", not _load_views' expanding IN: ~10% faster for one patron
        p = conn.execute(_VIEW_PATRON, {"patron_id": patron_id}).one()
        cards = conn.execute(_VIEW_CARDS, {"patron_id": patron_id}).all()
        acts = conn.execute(_VIEW_ACTIVATIONS, {"patron_id": patron_id}).all()
        return self._assemble_view(p, cards, acts, number, with_national_id)

    def _load_views(self, conn: Connection, wanted: list[tuple[int, str | None]], *,
                    with_national_id: bool = False, missing_ok: bool = False) -> list[PatronView]:
        """Many patrons at once, as ``_load_view`` reads one: three queries for all of them.
        ``wanted`` holds (patron id, card asked about) pairs; a patron may appear more than once."""
        ids = list({patron_id for patron_id, _ in wanted})
        if not ids:
            return []
        patrons = {p.id: p for p in conn.execute(_VIEW_PATRONS, {"patron_ids": ids})}
        cards: dict[int, list[Any]] = {i: [] for i in ids}
        for c in conn.execute(_VIEW_CARDS_MANY, {"patron_ids": ids}):
            cards[c.patron_id].append(c)
        acts: dict[int, list[Any]] = {i: [] for i in ids}
        for a in conn.execute(_VIEW_ACTIVATIONS_MANY, {"patron_ids": ids}):
            acts[a.patron_id].append(a)
        return [self._assemble_view(patrons[i], cards[i], acts[i], number, with_national_id) for i, number in wanted
                if not missing_ok or i in patrons]

    def _assemble_view(self, p: Any, cards: list[Any], acts: list[Any], number: str | None,
                       with_national_id: bool) -> PatronView:
        nid_plain = self.keys.decrypt(p.national_id_ciphertext) if p.national_id_ciphertext else None
        masked = mask_national_id(nid_plain) if nid_plain else ""  # stored ids were validated on the way in
        current = next((c.number for c in reversed(cards) if c.status == "active"), None)
        asked = next((c for c in cards if c.number == (number or current)), cards[-1] if cards else None)
        return PatronView(
            card=asked.number if asked else "", card_status=asked.status if asked else "deleted", current_card=current,
            surname=p.surname or "", given_name=p.given_name or "", national_id_masked=masked,
            birth_date=p.birth_date, gender=p.gender,
            address_line1=p.address_line1, address_line2=p.address_line2, postal_code=p.postal_code,
            city=p.city, country=p.country, temp_address_line1=p.temp_address_line1,
            temp_postal_code=p.temp_postal_code, temp_city=p.temp_city,
            temp_address_until=p.temp_address_until, email=p.email, phone=p.phone,
            preferred_contact=p.preferred_contact, secret_address=p.secret_address,
            home_library_isil=p.home_isil, blocked=p.blocked, block_reason=p.block_reason,
            has_pin=p.pin_hash is not None, pin_locked_until=p.pin_locked_until, version=p.version,
            created_at=p.created_at, updated_at=p.updated_at,
            activations=tuple(
                ActivationView(a.isil, a.name, a.activated_at, a.channel, a.rules_version,
                               a.library_id == p.home_library_id, a.door_agreement_at,
                               a.door_agreement_version, a.door_revoked_at)
                for a in acts
            ),
            cards=tuple(CardView(c.number, c.status, c.isil, c.issued_at) for c in cards),
            national_id=nid_plain if with_national_id else None,
        )

    # ------------------------------------------------------------------ libraries
    def add_library(
        self, actor: Actor, isil: str, name: str, *, door_min_age: int = 18, self_activation: bool = False,
        auto_activation: bool = False, rules_version: str = "1",
    ) -> LibraryView:
        self._require_operator(actor)
        isil = _isil(isil)
        name = _text(name, "name", 200, required=True)
        self._check_library_settings(door_min_age, rules_version)
        try:
            with self._tx() as s:
                lib = Library(isil=isil, name=name, door_min_age=door_min_age, self_activation=self_activation,
                              auto_activation=auto_activation, rules_version=_version(rules_version, "rules version"),
                              door_agreement_version="1")
                s.add(lib)
                s.flush()
                self._audit(s, actor, "library_add", "ok", library=isil)
                return self._library_view(lib)
        except IntegrityError:
            raise AlreadyExists(f"library {isil} is already in the register") from None

    @staticmethod
    def _check_library_settings(door_min_age: int | None, rules_version: str | None) -> None:
        if door_min_age is not None and not 0 <= door_min_age <= 120:
            raise _bad("door minimum age must be between 0 and 120")
        _version(rules_version, "rules version")

    def update_library(self, actor: Actor, isil: str, **settings: Any) -> LibraryView:
        """Change a library's settings: name, door_min_age, self_activation, auto_activation,
        rules_version, door_agreement_version. The library itself or the operator may."""
        allowed = {"name", "door_min_age", "self_activation", "auto_activation", "rules_version", "door_agreement_version"}
        unknown = set(settings) - allowed
        if unknown:
            raise _bad(f"unknown library setting {sorted(unknown)[0]}")
        self._check_library_settings(settings.get("door_min_age"), settings.get("rules_version"))
        _version(settings.get("door_agreement_version"), "door agreement version")
        with self._tx() as s:
            lib = self._library(s, isil)
            self._require_library_actor(actor, lib.isil)
            for key, value in settings.items():
                if value is not None:
                    if key == "name":
                        value = _text(value, key, 200, required=True)
                    elif key in ("rules_version", "door_agreement_version"):
                        value = _version(value, key.replace("_", " "))
                    setattr(lib, key, value)
            self._audit(s, actor, "library_settings", "ok", library=lib.isil,
                        detail=",".join(sorted(k for k, v in settings.items() if v is not None)))
            return self._library_view(lib)

    def list_libraries(self) -> list[LibraryView]:
        with self._tx() as s:
            return [self._library_view(lib) for lib in s.scalars(select(Library).order_by(Library.isil))]

    def get_library(self, isil: str) -> LibraryView:
        with self._tx() as s:
            return self._library_view(self._library(s, isil))

    # ------------------------------------------------------------------ number series
    def reserve_series(
        self, actor: Actor, isil: str, *, count: int | None = None, first: str | None = None, last: str | None = None,
    ) -> SeriesView:
        """Reserve a range of card numbers for a library: the next free ``count`` numbers, or first..last."""
        self._require_operator(actor)
        if (count is None) == (first is None and last is None) or (first is None) != (last is None):
            raise _bad("give either a count or both a first and a last card number")
        with self._tx() as s:
            lib = self._library(s, isil)
            self.store.lock_series(s)
            taken = s.execute(select(NumberSeries.first_number, NumberSeries.last_number).order_by(NumberSeries.first_number)).all()
            if count is not None:
                if not 1 <= count <= MAX_CARD:
                    raise _bad(f"count must be between 1 and {MAX_CARD}")
                low = 1
                for a, b in taken:
                    if a - low >= count:
                        break
                    low = max(low, b + 1)
                high = low + count - 1
                if high > MAX_CARD:
                    raise SeriesExhausted(f"no free range of {count} card numbers is left")
            else:
                low, high = card_number_to_int(_card(first)), card_number_to_int(_card(last))
                if low > high:
                    raise _bad("the first card number must not be after the last")
                for a, b in taken:
                    if a <= high and low <= b:
                        raise SeriesOverlap(
                            f"{card_number_from_int(low)}-{card_number_from_int(high)} overlaps the reserved series "
                            f"{card_number_from_int(a)}-{card_number_from_int(b)}"
                        )
            series = NumberSeries(library_id=lib.id, first_number=low, last_number=high, next_number=low)
            s.add(series)
            s.flush()
            self._audit(s, actor, "series_reserve", "ok", library=lib.isil,
                        detail=f"{card_number_from_int(low)}-{card_number_from_int(high)}")
            return self._series_view(s, series, lib)

    def _series_view(self, s: Session, series: NumberSeries, lib: Library) -> SeriesView:
        low, high = card_number_from_int(series.first_number), card_number_from_int(series.last_number)
        used = s.scalar(select(func.count()).select_from(Card).where(Card.number.between(low, high))) or 0
        nxt = card_number_from_int(series.next_number) if series.next_number <= series.last_number else None
        return SeriesView(lib.isil, low, high, nxt, series.last_number - series.first_number + 1, used)

    def list_series(self, isil: str | None = None) -> list[SeriesView]:
        with self._tx() as s:
            query = select(NumberSeries, Library).join(Library).order_by(NumberSeries.first_number)
            if isil is not None:
                query = query.where(Library.id == self._library(s, isil).id)
            return [self._series_view(s, series, lib) for series, lib in s.execute(query)]

    def series_conflicts(self) -> list[dict[str, str]]:
        """Card numbers in use outside a series of the library that issued them (legacy data)."""
        with self._tx() as s:
            spans: dict[int, list[tuple[int, int]]] = {}
            for ser in s.scalars(select(NumberSeries)):
                spans.setdefault(ser.library_id, []).append((ser.first_number, ser.last_number))
            out = []
            for number, lib_id, isil in s.execute(select(Card.number, Card.library_id, Library.isil).join(Library)):
                value = card_number_to_int(number)
                if not any(a <= value <= b for a, b in spans.get(lib_id, [])):
                    out.append({"card": number, "library": isil})
            return out

    def _allocate_card(self, s: Session, lib: Library) -> str:
        query = select(NumberSeries).where(
            NumberSeries.library_id == lib.id, NumberSeries.next_number <= NumberSeries.last_number
        ).order_by(NumberSeries.first_number)
        if self._postgres:
            query = query.with_for_update()
        for series in s.scalars(query):
            while series.next_number <= series.last_number:
                candidate = card_number_from_int(series.next_number)
                series.next_number += 1
                if s.get(Card, candidate) is None:
                    return candidate
        raise SeriesExhausted(f"library {lib.isil} has no free card numbers left; reserve a new series")

    def _check_card_in_series(self, s: Session, lib: Library, number: str) -> None:
        value = card_number_to_int(number)
        inside = s.scalar(select(func.count()).select_from(NumberSeries).where(
            NumberSeries.library_id == lib.id, NumberSeries.first_number <= value, NumberSeries.last_number >= value))
        if not inside:
            raise CardOutsideSeries(f"card {number} is not inside a number series reserved by {lib.isil}")
        if s.get(Card, number) is not None:
            raise CardInUse(f"card {number} is already in use (card numbers are never reused)")

    # ------------------------------------------------------------------ patrons
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
        isil = _isil(library)
        index: str | None = None
        try:
            self._require_library_actor(actor, isil)
            if not actor.may("create"):
                raise PermissionDenied("this client may not register patrons")
            try:
                nid = parse_national_id(national_id, allow_synthetic=self.settings.allow_synthetic_ids)
            except InvalidNationalId as exc:
                raise InvalidNationalIdentityNumber(f"invalid national identity number: {exc.reason}") from None
            index = self.keys.lookup_hash(nid.value)
            contact = self._check_contact(email=email, phone=phone, postal_code=postal_code, country=country)
            names = {"surname": _text(surname, "surname", NAME_MAX, required=True),
                     "given_name": _text(given_name, "given_name", NAME_MAX, required=True)}
            others = {k: _text(v, k, _TEXT_FIELDS[k]) for k, v in
                      {"address_line1": address_line1, "address_line2": address_line2, "city": city,
                       "gender": gender}.items()}
            self._check_birth_date(birth_date)
            preferred_contact = _contact_channel(preferred_contact)
            pin_hash = crypto.hash_secret(_pin(pin), self.settings.pin_hash_cost) if pin is not None else None
            number = _card(card) if card is not None else None
            try:
                with self._tx() as s:
                    lib = self._library(s, isil)
                    self._refuse_duplicate(s, actor, index)
                    if number is None:
                        number = self._allocate_card(s, lib)
                    else:
                        self._check_card_in_series(s, lib, number)
                    patron = Patron(
                        home_library_id=lib.id, national_id_ciphertext=self.keys.encrypt(nid.value),
                        national_id_index=index, national_id_kind=nid.kind, birth_date=birth_date,
                        pin_hash=pin_hash, secret_address=secret_address, preferred_contact=preferred_contact,
                        **names, **others, **contact,
                    )
                    s.add(patron)
                    s.flush()
                    s.add(Card(number=number, patron_id=patron.id, library_id=lib.id))
                    s.flush()
                    s.refresh(patron)
                    self._audit(s, actor, "patron_register", "ok", patron=patron, card=number, library=isil)
                    self._change(s, patron, "registered", actor, isil)
                    self._activate(s, actor, patron, lib, quiet=True)
                    if door_agreement:
                        self._sign_door_agreement(s, actor, patron, lib, number)
                    return self._patron_view(patron)
            except IntegrityError:
                # A concurrent registration won the race: say which rule it broke.
                with self._tx() as s:
                    self._refuse_duplicate(s, actor, index)
                raise CardInUse(f"card {number} is already in use (card numbers are never reused)") from None
        except RegisterUnavailable:
            raise
        except RegisterError as exc:
            self._audit_refused_registration(actor, isil, index, card, exc)
            raise

    def _refuse_duplicate(self, s: Session, actor: Actor, index: str) -> None:
        existing = s.scalar(select(Patron).where(Patron.national_id_index == index))
        if existing is not None:
            raise DuplicatePatron(self._known_card(existing) if actor.may("lookup-national-id") else None)

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
                self._audit(s, actor, "patron_register", exc.code, patron=patron_id, card=number, library=isil)
        except RegisterUnavailable:
            pass  # the refusal stands; the database went away meanwhile

    @staticmethod
    def _check_birth_date(birth_date: date | None) -> None:
        if birth_date is not None and not (date(1850, 1, 1) <= birth_date <= datetime.now(OSLO).date()):
            raise _bad("birth date must be a real date in the past")

    @staticmethod
    def _check_contact(**given: str | None) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        country = (given.get("country") or "NO").strip().upper()
        if len(country) != 2 or not country.isalpha():
            raise _bad("country must be a two-letter code such as NO")
        checks = {"email": normalise_email, "phone": normalise_phone,
                  "postal_code": lambda v: normalise_postal_code(v, country)}
        for key, value in given.items():
            if key == "country":
                out["country"] = country if value else None
                continue
            if value is None or not value.strip():
                out[key] = None
                continue
            try:
                out[key] = checks[key](value)
            except InvalidIdentifier as exc:
                raise InvalidInput(str(exc)) from None
        return out

    def find_patron(self, actor: Actor, card: str, *, with_national_id: bool = False) -> PatronView:
        """Look a patron up by card number (any authenticated library may); audited."""
        found = self.find_patrons(actor, [card], with_national_id=with_national_id)[0]
        if isinstance(found, RegisterError):
            raise found
        return found

    def find_patrons(self, actor: Actor, cards: list[str], *, with_national_id: bool = False) -> list[PatronView | RegisterError]:
        """Patrons by card number, many at once (library systems looking patrons up in parallel): for
        each card its view, or the error that refuses it (malformed, not in the register, another
        patron's card for a patron); each view audited. Four queries and one transaction, whatever the
        number of cards; ``find_patron`` is the same for one."""
        if actor.kind == "client" and not actor.may("lookup"):
            raise PermissionDenied("this client may not look patrons up")
        if with_national_id and not actor.may("see-national-id"):
            raise PermissionDenied("this client may not see national identity numbers")
        out: list[PatronView | RegisterError | None] = [None] * len(cards)
        asked: list[tuple[int, str]] = []
        for i, card in enumerate(cards):
            try:
                asked.append((i, _card(card)))
            except InvalidInput as exc:
                out[i] = exc
        found: list[tuple[int, int, str]] = []  # index, patron id, number
        with self._core_tx() as conn:
            owners = {row.number: row for row in conn.execute(_CARD_OWNERS, {"numbers": list({n for _, n in asked})})}
            for i, number in asked:
                row = owners.get(number)
                if row is None or row.status == "deleted":
                    out[i] = NotFound(f"card {number} is not in the register")
                else:
                    found.append((i, row.patron_id, number))
            views = self._load_views(conn, [(patron_id, number) for _, patron_id, number in found],
                                     with_national_id=with_national_id)
            audits = []
            for (i, patron_id, number), view in zip(found, views):
                if actor.kind == "patron" and actor.name not in {c.number for c in view.cards}:
                    out[i] = PermissionDenied("a patron may see only their own data")
                    continue
                out[i] = view
                audits.append(_audit_row(actor, "patron_lookup", "ok", patron=patron_id, card=number,
                                         detail="national id shown" if with_national_id else None))
            if audits:
                conn.execute(_AUDIT, audits)
        return out  # type: ignore[return-value]

    def find_patron_by_national_id(self, actor: Actor, national_id: str, *, with_national_id: bool = False) -> PatronView:
        """Look a patron up by national id; needs the ``lookup-national-id`` permission."""
        if not actor.may("lookup-national-id"):
            raise PermissionDenied("looking patrons up by national identity number needs the lookup-national-id permission")
        if with_national_id and not actor.may("see-national-id"):
            raise PermissionDenied("this client may not see national identity numbers")
        try:
            nid = parse_national_id(national_id, allow_synthetic=self.settings.allow_synthetic_ids)
        except InvalidNationalId as exc:
            raise InvalidNationalIdentityNumber(f"invalid national identity number: {exc.reason}") from None
        with self._tx() as s:
            patron_id = s.scalar(select(Patron.id).where(Patron.national_id_index == self.keys.lookup_hash(nid.value)))
            if patron_id is None:
                self._audit(s, actor, "patron_lookup_national_id", "not_found")
            else:
                view = self._load_view(s, patron_id, with_national_id=with_national_id)
                self._audit(s, actor, "patron_lookup_national_id", "ok", patron=patron_id, card=view.card)
        if patron_id is None:  # raised after the commit, so the failed lookup stays audited
            raise NotFound("no patron is registered with this national identity number")
        return view

    def update_patron(self, actor: Actor, card: str, *, expected_version: int | None = None, **changes: Any) -> PatronView:
        """Change a patron's personal data. ``expected_version`` (from the view the caller edited)
        makes a concurrent change by another library a VersionConflict instead of a silent overwrite.
        A value of None leaves a field alone; an empty string clears it."""
        allowed = set(_TEXT_FIELDS) | {"postal_code", "country", "email", "phone", "temp_postal_code",
                                       "temp_address_until", "birth_date", "secret_address", "preferred_contact"}
        unknown = set(changes) - allowed
        if unknown:
            raise _bad(f"unknown patron field {sorted(unknown)[0]}")
        if actor.kind == "client" and not actor.may("update"):
            raise PermissionDenied("this client may not change patrons")
        changes = {k: v for k, v in changes.items() if v is not None}
        with self._tx() as s:
            patron, row = self._patron(s, card, lock=True)
            self._require_may_change(actor, patron)
            if expected_version is not None and expected_version != patron.version:
                raise VersionConflict(
                    f"the patron was changed meanwhile (version {patron.version}, you edited {expected_version}); fetch it again"
                )
            contact_keys = {"email", "phone", "postal_code", "country"}
            if contact_keys & changes.keys():
                merged = {k: changes.get(k, getattr(patron, k)) for k in contact_keys}
                for key, value in self._check_contact(**merged).items():
                    if key in changes:
                        setattr(patron, key, value)
            for key, value in changes.items():
                if key in _TEXT_FIELDS:
                    setattr(patron, key, _text(value, key, _TEXT_FIELDS[key], required=key in ("surname", "given_name")))
                elif key == "temp_postal_code":
                    patron.temp_postal_code = self._check_contact(postal_code=value)["postal_code"]
                elif key in ("birth_date", "temp_address_until"):
                    if key == "birth_date":
                        self._check_birth_date(value)
                    setattr(patron, key, value)
                elif key == "preferred_contact":
                    patron.preferred_contact = _contact_channel(value)
                elif key == "secret_address":
                    patron.secret_address = bool(value)
            if s.is_modified(patron):
                patron.updated_at = utcnow()
            s.flush()
            self._audit(s, actor, "patron_update", "ok", patron=patron, card=row.number, detail=",".join(sorted(changes)))
            self._change(s, patron, "updated", actor)
            return self._patron_view(patron, row)

    # ------------------------------------------------------------------ PINs
    def set_pin(self, actor: Actor, card: str, pin: str) -> None:
        pin_hash = crypto.hash_secret(_pin(pin), self.settings.pin_hash_cost)
        with self._tx() as s:
            patron, row = self._patron(s, card)
            if actor.kind == "client" and not actor.may("update"):
                raise PermissionDenied("this client may not change patrons")
            self._require_may_change(actor, patron)
            s.execute(update(Patron).where(Patron.id == patron.id).values(
                pin_hash=pin_hash, pin_failures=0, pin_locked_until=None, updated_at=utcnow()
            ).execution_options(synchronize_session=False))
            self._audit(s, actor, "pin_set", "ok", patron=patron, card=row.number)
            self._change(s, patron, "pin_changed", actor)

    def verify_pin(self, actor: Actor, card: str, pin: str) -> PinCheck:
        """Check a PIN with the lockout shared by every channel (gateway.register.pins). Raises
        NotFound for an unknown card, after the same work as any other answer. A lost or replaced
        card is always WRONG."""
        now = utcnow()
        try:
            number: str | None = normalise_card_number(card)
        except InvalidIdentifier:
            number = None
        for attempt in range(pins.BUSY_RETRIES + 1):
            with self._tx() as s:
                row = s.get(Card, number) if number is not None else None
                patron = row.patron if row is not None and row.status != "deleted" else None
                claimed = pins.claim(s.connection(), patron.id if patron else None,
                                     stored=patron.pin_hash if patron else None,
                                     card_active=row is not None and row.status == "active", now=now,
                                     max_failures=self.settings.pin_max_failures)
            if not claimed.busy or attempt == pins.BUSY_RETRIES:
                break
            time.sleep(pins.BUSY_WAIT_SECONDS)
        matched = pins.compare(pin, claimed, self._decoy_hash)
        with self._tx() as s:
            result = self._settle_pin(s, claimed, matched, pin, now)
            self._audit(s, actor, "pin_verify", result.value if patron else "unknown_card", card=number,
                        patron=patron.id if patron else None)
        if patron is None:
            raise NotFound(f"card {number} is not in the register" if number else "the card number is not valid")
        return result

    def _settle_pin(self, s: Session, claimed: pins.Claim, matched: bool, pin: str, now: datetime) -> PinCheck:
        cfg = self.settings
        return pins.settle(s.connection(), claimed, matched, pin, now=now, max_failures=cfg.pin_max_failures,
                           lock_minutes=cfg.pin_lock_minutes, hash_cost=cfg.pin_hash_cost)

    # ------------------------------------------------------------------ activation and doors
    def activate(
        self, actor: Actor, card: str, library: str, *, door_agreement: bool = False, rules_version: str | None = None,
    ) -> PatronView:
        """Activate the card at ``library`` (idempotent); optionally record the meråpent agreement.

        A library may activate a card at itself (first visit); the operator anywhere.
        """
        isil = _isil(library)
        self._require_library_actor(actor, isil)
        rules_version = _version(rules_version, "rules version")
        with self._tx() as s:
            lib = self._library(s, isil)
            patron, row = self._patron(s, card, lock=True)
            self._activate_card(s, actor, patron, row, lib, door_agreement=door_agreement, rules_version=rules_version)
            s.flush()
            s.refresh(patron)
            return self._patron_view(patron, row)

    def _activate_card(self, s: Session, actor: Actor, patron: Patron, row: Card, lib: Library, *,
                       door_agreement: bool, rules_version: str | None = None) -> None:
        if row.status != "active":
            raise InvalidInput(f"card {row.number} is {row.status}; use the patron's current card")
        self._activate(s, actor, patron, lib, rules_version=rules_version)
        if door_agreement:
            self._sign_door_agreement(s, actor, patron, lib, row.number)

    def _sign_door_agreement(self, s: Session, actor: Actor, patron: Patron, lib: Library, number: str) -> None:
        act = next(a for a in patron.activations if a.library_id == lib.id)
        if act.door_agreement_at is None or act.door_revoked_at is not None:
            act.door_agreement_at, act.door_agreement_version, act.door_revoked_at = (
                utcnow(), lib.door_agreement_version, None)
            self._audit(s, actor, "door_agreement", "signed", patron=patron, card=number, library=lib.isil)
            self._change(s, patron, "door_agreement", actor, lib.isil)

    def _activate(self, s: Session, actor: Actor, patron: Patron, lib: Library, *, rules_version: str | None = None,
                  channel: str | None = None, quiet: bool = False) -> str:
        """Activate at ``lib`` unless done already; ``quiet``: as part of the registration, whose
        own audit event and change say it."""
        if any(a.library_id == lib.id for a in patron.activations):
            return "already"
        act = Activation(patron_id=patron.id, library_id=lib.id, channel=channel or actor.channel,
                         rules_version=rules_version or lib.rules_version)
        s.add(act)
        patron.activations.append(act)
        s.flush()
        if not quiet:
            self._audit(s, actor, "patron_activate", "ok", patron=patron, card=self._current_card(patron),
                        library=lib.isil)
            self._change(s, patron, "activated", actor, lib.isil)
        return "activated"

    def revoke_door(self, actor: Actor, card: str, library: str, *, revoked: bool = True) -> PatronView:
        """The library withdraws (or restores) the patron's door access at itself."""
        isil = _isil(library)
        self._require_library_actor(actor, isil)
        with self._tx() as s:
            lib = self._library(s, isil)
            patron, row = self._patron(s, card, lock=True)
            act = next((a for a in patron.activations if a.library_id == lib.id), None)
            if act is None:
                raise NotAffiliated(f"the card is not activated at {isil}")
            act.door_revoked_at = utcnow() if revoked else None
            self._audit(s, actor, "door_revoke" if revoked else "door_restore", "ok", patron=patron, card=row.number, library=isil)
            self._change(s, patron, "door_revoked" if revoked else "door_restored", actor, isil)
            return self._patron_view(patron, row)

    def set_home_library(self, actor: Actor, card: str, library: str) -> PatronView:
        """Move the patron's home library; the patron, an affiliated library or the operator may."""
        with self._tx() as s:
            lib = self._library(s, library)
            patron, row = self._patron(s, card, lock=True)
            if actor.kind == "patron":
                if actor.name != row.number and actor.name not in {c.number for c in patron.cards}:
                    raise PermissionDenied("a patron may change only their own home library")
            else:
                self._require_may_change(actor, patron)
            self._activate(s, actor, patron, lib)
            patron.home_library_id = lib.id
            patron.updated_at = utcnow()
            s.flush()
            s.refresh(patron)
            self._audit(s, actor, "home_library", "ok", patron=patron, card=row.number, library=lib.isil)
            self._change(s, patron, "home_library", actor, lib.isil)
            return self._patron_view(patron, row)

    def set_blocked(self, actor: Actor, card: str, blocked: bool, reason: str | None = None) -> PatronView:
        reason = _text(reason, "reason", 200, required=blocked)
        with self._tx() as s:
            patron, row = self._patron(s, card, lock=True)
            if actor.kind != "terminal":  # a kiosk may block a card it holds (SIP2 01)
                self._require_may_change(actor, patron)
            if patron.blocked != blocked or patron.block_reason != reason:
                patron.blocked, patron.block_reason, patron.updated_at = blocked, reason if blocked else None, utcnow()
                self._change(s, patron, "blocked" if blocked else "unblocked", actor)
            s.flush()
            self._audit(s, actor, "patron_block" if blocked else "patron_unblock", "ok", patron=patron, card=row.number)
            return self._patron_view(patron, row)

    def report_lost(self, actor: Actor, card: str) -> PatronView:
        with self._tx() as s:
            patron, row = self._patron(s, card, lock=True)
            self._require_may_change(actor, patron)
            if row.status == "active":
                row.status, row.status_changed_at = "lost", utcnow()
                self._change(s, patron, "card_lost", actor)
            self._audit(s, actor, "card_lost", "ok", patron=patron, card=row.number)
            s.flush()
            return self._patron_view(patron, row)

    def replace_card(self, actor: Actor, card: str, *, new_card: str | None = None) -> PatronView:
        """Give the patron a new card number; the old one never authenticates again."""
        with self._tx() as s:
            patron, row = self._patron(s, card, lock=True)
            self._require_may_change(actor, patron)
            if actor.kind != "operator":
                lib = self._library(s, actor.library_isil)
                number = self._allocate_card(s, lib) if new_card is None else _card(new_card)
            elif new_card is not None:
                # The operator may hand out a number from any library's series: that library issues it.
                number = _card(new_card)
                value = card_number_to_int(number)
                lib = s.scalar(select(Library).join(NumberSeries, NumberSeries.library_id == Library.id).where(
                    NumberSeries.first_number <= value, NumberSeries.last_number >= value))
                if lib is None:
                    raise CardOutsideSeries(f"card {number} is not inside any reserved number series")
            else:
                # The home library's series first; else the series of the library that issued the old card.
                home, issuer = s.get(Library, patron.home_library_id), s.get(Library, row.library_id)
                try:
                    lib, number = home, self._allocate_card(s, home)
                except SeriesExhausted:
                    if issuer is None or issuer.id == home.id:
                        raise
                    lib, number = issuer, self._allocate_card(s, issuer)
            if new_card is not None:
                self._check_card_in_series(s, lib, number)
            for old in patron.cards:
                if old.status == "active":
                    old.status, old.status_changed_at = "replaced", utcnow()
            new = Card(number=number, patron_id=patron.id, library_id=lib.id)
            s.add(new)
            patron.cards.append(new)
            s.flush()
            self._audit(s, actor, "card_replace", "ok", patron=patron, card=number, detail=f"replaces {row.number}")
            self._change(s, patron, "card_replaced", actor)
            return self._patron_view(patron, new)

    def delete_patron(self, actor: Actor, card: str) -> str:
        """Erase the patron's personal data; the card numbers stay reserved forever. Home library or operator."""
        if actor.kind == "client" and not actor.may("delete"):
            raise PermissionDenied("this client may not delete patrons")
        with self._tx() as s:
            patron, row = self._patron(s, card, lock=True)
            if actor.kind != "operator" and patron.home_library.isil != actor.library_isil:
                raise PermissionDenied("only the patron's home library or the operator may delete a patron")
            self._change(s, patron, "deleted", actor)
            for column in ("surname", "given_name", "national_id_ciphertext", "national_id_index", "national_id_kind",
                           "birth_date", "gender", "address_line1", "address_line2", "postal_code", "city", "country",
                           "temp_address_line1", "temp_postal_code", "temp_city", "temp_address_until", "email", "phone",
                           "preferred_contact", "pin_hash", "block_reason", "pin_locked_until"):
                setattr(patron, column, None)
            patron.secret_address = patron.blocked = False
            patron.deleted_at = patron.updated_at = utcnow()
            for c in patron.cards:
                c.status, c.status_changed_at = "deleted", utcnow()
            s.execute(delete(Activation).where(Activation.patron_id == patron.id))
            self._audit(s, actor, "patron_delete", "ok", patron=patron, card=row.number)
            return row.number

    def export_patron(self, actor: Actor, card: str) -> dict[str, Any]:
        """Everything the register holds about a patron (innsyn), national id and audit trail included."""
        with self._tx() as s:
            patron, row = self._patron(s, card)
            if actor.kind == "patron" and actor.name not in {c.number for c in patron.cards}:
                raise PermissionDenied("a patron may see only their own data")
            if actor.kind not in ("patron", "operator"):
                raise PermissionDenied("only the patron or the operator may export a patron")
            self._audit(s, actor, "patron_export", "ok", patron=patron, card=row.number)
            s.flush()
            view = self._patron_view(patron, with_national_id=True)
            events = s.scalars(select(AuditEvent).where(AuditEvent.patron_id == patron.id).order_by(AuditEvent.id))
            changes = s.scalars(select(Change).where(Change.patron_id == patron.id).order_by(Change.id))
            out = jsonable(view)
            out.pop("card_status", None)
            out.pop("has_pin", None)
            out["pin"] = "set (stored only as a slow hash)" if view.has_pin else "not set"
            out["audit"] = [jsonable(self._audit_view(e)) for e in events]
            out["changes"] = [jsonable(self._change_view(c)) for c in changes]
            out["exported_at"] = utcnow().isoformat()
            out["note"] = "The register stores nothing about loans, reservations or fines."
            return out

    # ------------------------------------------------------------------ the patron decision (sip2.md A.4)
    def decide(
        self, actor: Actor, card: str, pin: str | None, *, door: bool = False, pin_required: bool = True,
        institution: str | None = None, now: datetime | None = None,
    ) -> Decision:
        """May this card (and PIN) be used at the actor's library now? One function for SIP2 23, 63,
        25 and the door, and for NCIP lookups by card + PIN. Every decision is audited with its reason."""
        try:
            return self._decide(actor, card, pin, door, pin_required, institution, now or utcnow())
        except RegisterUnavailable:
            return Decision(Reason.REGISTER_UNAVAILABLE, None, False, False, False)

    def self_activate(self, actor: Actor, card: str, pin: str | None, *,
                      rules_version: str | None = None) -> SelfActivation:
        """SIP2 25: the patron activates the card at the terminal's library after accepting the rules
        on screen. One decision and one PIN attempt: when the PIN is right and the card is not yet
        activated there, it is activated in the same transaction, if the library allows it."""
        rules_version = _version(rules_version, "rules version")
        asked = _SelfActivationAsk(rules_version)
        try:
            decision = self._decide(actor, card, pin, False, True, None, utcnow(), asked)
        except RegisterUnavailable:
            decision = Decision(Reason.REGISTER_UNAVAILABLE, None, False, False, False)
        return SelfActivation(decision, asked.library_allows)

    def decide_many(self, requests: list[DecisionRequest], *, now: datetime | None = None) -> list[Decision]:
        """``decide`` for many requests at once (busy kiosks and doors asking without a PIN): the same
        decisions and the same audit events as one by one, read with a handful of queries and written
        in one transaction. A request with a PIN is decided on its own (its hash takes its time)."""
        now = now or utcnow()
        out: list[Decision | None] = [None] * len(requests)
        audits: list[dict[str, Any]] = []
        todo: list[tuple[int, DecisionRequest, str, str]] = []  # index, request, card number, action
        for i, r in enumerate(requests):
            if r.pin:
                out[i] = self.decide(r.actor, r.card, r.pin, door=r.door, pin_required=r.pin_required,
                                     institution=r.institution, now=now)
                continue
            action = "door" if r.door else "patron_check"
            try:
                number = normalise_card_number(r.card)
            except InvalidIdentifier:
                out[i] = Decision(Reason.UNKNOWN_CARD, None, False, False, False)
                audits.append(_audit_row(r.actor, action, Reason.UNKNOWN_CARD.value, at=now))
                continue
            if not _acts_for(r.actor, r.institution):
                out[i] = Decision(Reason.WRONG_INSTITUTION, None, False, False, False)
                audits.append(_audit_row(r.actor, action, Reason.WRONG_INSTITUTION.value, card=number, at=now))
                continue
            todo.append((i, r, number, action))
        concluded: list[tuple[int, Reason, _Facts]] = []
        try:
            with self._core_tx() as conn:
                facts: dict[tuple[str | None, str], Any] = {}
                libraries: dict[str | None, Any] = {}
                for isil in {r.actor.library_isil for _, r, _, _ in todo}:
                    numbers = list({n for _, r, n, _ in todo if r.actor.library_isil == isil})
                    for row in conn.execute(_DECISION_CARDS, {"numbers": numbers, "isil": isil}):
                        facts[(isil, row.number)] = row
                    libraries[isil] = conn.execute(_DECISION_LIBRARY, {"isil": isil}).first()
                for i, r, number, action in todo:
                    isil = r.actor.library_isil
                    row = facts.get((isil, number))
                    if row is None or row.status == "deleted":
                        out[i] = Decision(Reason.UNKNOWN_CARD, None, False, False, False)
                        audits.append(_audit_row(r.actor, action, Reason.UNKNOWN_CARD.value, card=number, at=now))
                        continue
                    known = _Facts(row, libraries[isil])
                    reason = _reason(known, None, r.door, r.pin_required, now)  # never an activation: no PIN
                    audits.append(_audit_row(r.actor, action, reason.value, patron=known.patron_id, card=number, at=now))
                    concluded.append((i, reason, known))
                if audits:
                    conn.execute(_AUDIT, audits)
                views = self._load_views(conn, [(f.patron_id, f.number) for _, _, f in concluded])
        except RegisterUnavailable:
            unavailable = Decision(Reason.REGISTER_UNAVAILABLE, None, False, False, False)
            return [d if d is not None and requests[i].pin else unavailable for i, d in enumerate(out)]
        for (i, reason, f), view in zip(concluded, views):
            out[i] = Decision(reason, view, False, False, f.status in ("lost", "replaced"))
        return out  # type: ignore[return-value]

    def _decide(self, actor: Actor, card: str, pin: str | None, door: bool, pin_required: bool,
                institution: str | None, now: datetime, self_activation: _SelfActivationAsk | None = None) -> Decision:
        """Without a PIN: one transaction. With one: claim the attempt, hash outside any transaction,
        then settle, conclude, audit and read the view back: the same path, the same cost, for an
        unknown card, a wrong PIN and a locked one (gateway.register.pins)."""
        action = "door" if door else "patron_check"
        try:
            number: str | None = normalise_card_number(card)
        except InvalidIdentifier:
            number = None
        if number is not None and not _acts_for(actor, institution):
            with self._tx() as s:
                self._audit(s, actor, action, Reason.WRONG_INSTITUTION.value, card=number)
            return Decision(Reason.WRONG_INSTITUTION, None, False, False, False)
        if not pin:
            with self._tx() as s:
                facts = self._decision_facts(s, number, actor.library_isil) if number is not None else None
                if facts is not None:
                    return self._conclude(s, actor, action, facts, None, door, pin_required, now)
                self._audit(s, actor, action, Reason.UNKNOWN_CARD.value, card=number)
                return Decision(Reason.UNKNOWN_CARD, None, False, False, False)
        for attempt in range(pins.BUSY_RETRIES + 1):
            with self._tx() as s:
                facts = self._decision_facts(s, number, actor.library_isil) if number is not None else None
                claimed = pins.claim(s.connection(), facts.patron_id if facts else None,
                                     stored=facts.pin_hash if facts else None,
                                     card_active=facts is not None and facts.status == "active", now=now,
                                     max_failures=self.settings.pin_max_failures)
            if not claimed.busy or attempt == pins.BUSY_RETRIES:
                break
            time.sleep(pins.BUSY_WAIT_SECONDS)
        matched = pins.compare(pin, claimed, self._decoy_hash)
        with self._tx() as s:
            result = self._settle_pin(s, claimed, matched, pin, now)
            if facts is not None:
                return self._conclude(s, actor, action, facts, result, door, pin_required, now, self_activation)
            self._audit(s, actor, action, Reason.UNKNOWN_CARD.value, card=number)
            self._load_views(s.connection(), [(pins.NO_PATRON, None)], missing_ok=True)  # the reads a known card costs
            return Decision(Reason.UNKNOWN_CARD, None, False, False, False)

    def _decision_facts(self, s: Session, number: str, isil: str | None) -> Any:
        """What the decision needs about a card at a library, in two small queries (None: unknown card)."""
        conn = s.connection()
        row = conn.execute(_DECISION_CARD, {"number": number, "isil": isil}).first()
        if row is None or row.status == "deleted":
            return None
        library = conn.execute(_DECISION_LIBRARY, {"isil": isil}).first()
        return _Facts(row, library)

    def _conclude(self, s: Session, actor: Actor, action: str, facts: _Facts, pin_result: PinCheck | None,
                  door: bool, pin_required: bool, now: datetime,
                  self_activation: _SelfActivationAsk | None = None) -> Decision:
        """The rest of the decision, its audit event and the view, in the caller's transaction."""
        checked = pin_result is not None
        valid = pin_result is PinCheck.OK
        activated_now = False
        reason = _reason(facts, pin_result, door, pin_required, now)
        if self_activation is not None and reason is Reason.NOT_ACTIVATED and valid:
            if not facts.library.self_activation:
                self_activation.library_allows = False
                self._audit(s, actor, "patron_activate", "self_activation_off", patron=facts.patron_id,
                            card=facts.number)
            else:
                if self._postgres:  # two simultaneous 25s activate once
                    s.execute(select(Patron.id).where(Patron.id == facts.patron_id).with_for_update())
                patron = s.get(Patron, facts.patron_id)
                assert patron is not None
                lib = s.get(Library, facts.library.id)
                assert lib is not None
                self._activate(s, actor, patron, lib, rules_version=self_activation.rules_version)
                facts = self._decision_facts(s, facts.number, actor.library_isil)
                reason = _reason(facts, pin_result, door, pin_required, now)
        if reason is Reason.GRANTED:
            if facts.activation_id is None:  # first authenticated use at an auto-activation library
                if self._postgres:  # lock first, so two simultaneous first uses activate once and both say so right
                    s.execute(select(Patron.id).where(Patron.id == facts.patron_id).with_for_update())
                try:
                    with s.begin_nested():
                        outcome = self._activate(s, actor, s.get(Patron, facts.patron_id), s.get(Library, facts.library.id))
                    activated_now = outcome == "activated"
                except IntegrityError:
                    activated_now = False  # activated by someone else at the same moment
        self._audit(s, actor, action, reason.value, patron=facts.patron_id, card=facts.number)
        view = self._load_view(s, facts.patron_id, facts.number)
        return Decision(reason, view, checked, valid, facts.status in ("lost", "replaced"), activated_now)

    # ------------------------------------------------------------------ terminals
    def _terminal_view(self, t: SIPTerminal) -> TerminalView:
        nets = tuple(n for n in t.allowed_networks.split(",") if n)
        return TerminalView(t.login, t.library.isil, t.profile, t.encoding, t.terminator, nets, t.tls_only, t.pin_required, t.enabled)

    def add_terminal(
        self, actor: Actor, login: str, password: str, library: str, profile: str, *, encoding: str = "utf-8",
        terminator: str = "CR", allowed_networks: list[str] | None = None, tls_only: bool = False, pin_required: bool = True,
    ) -> TerminalView:
        self._require_operator(actor)
        login = (login or "").strip()
        if not login or len(login) > 64 or any(ch in login for ch in "|\r\n") or not login.isprintable():
            raise _bad("terminal login must be 1 to 64 printable characters without | or line breaks")
        if profile not in PROFILES:
            raise _bad(f"profile must be one of {', '.join(PROFILES)}")
        if encoding not in ENCODINGS:
            raise _bad(f"encoding must be one of {', '.join(ENCODINGS)}")
        if terminator not in ("CR", "CRLF"):
            raise _bad("terminator must be CR or CRLF")
        if not 6 <= len(password) <= 128:
            raise _bad("terminal password must be 6 to 128 characters")
        nets = self._check_networks(allowed_networks or [])
        pw_hash = crypto.hash_secret(password, self.settings.pin_hash_cost)
        try:
            with self._tx() as s:
                lib = self._library(s, library)
                t = SIPTerminal(login=login, password_hash=pw_hash, library_id=lib.id, profile=profile, encoding=encoding,
                                terminator=terminator, allowed_networks=",".join(nets), tls_only=tls_only,
                                pin_required=pin_required if profile != "door" else True)
                s.add(t)
                s.flush()
                self._audit(s, actor, "terminal_add", "ok", library=lib.isil, detail=login)
                return self._terminal_view(t)
        except IntegrityError:
            raise AlreadyExists(f"terminal {login} exists already") from None

    @staticmethod
    def _check_networks(networks: list[str]) -> list[str]:
        out = []
        for net in networks:
            try:
                out.append(str(ipaddress.ip_network(net.strip(), strict=False)))
            except ValueError:
                raise _bad(f"{net!r} is not a network in CIDR form, e.g. 10.1.2.0/24") from None
        return out

    def update_terminal(self, actor: Actor, login: str, *, enabled: bool | None = None, password: str | None = None) -> TerminalView:
        self._require_operator(actor)
        if password is not None and not 6 <= len(password) <= 128:
            raise _bad("terminal password must be 6 to 128 characters")
        with self._tx() as s:
            t = s.scalar(select(SIPTerminal).where(SIPTerminal.login == login))
            if t is None:
                raise NotFound(f"terminal {login} does not exist")
            if enabled is not None:
                t.enabled = enabled
            if password is not None:
                t.password_hash = crypto.hash_secret(password, self.settings.pin_hash_cost)
            self._audit(s, actor, "terminal_update", "ok", library=t.library.isil, detail=login)
            return self._terminal_view(t)

    def list_terminals(self) -> list[TerminalView]:
        with self._tx() as s:
            return [self._terminal_view(t) for t in s.scalars(select(SIPTerminal).order_by(SIPTerminal.login))]

    def authenticate_terminal(self, login: str, password: str) -> TerminalView | None:
        """The terminal, if the login and password match an enabled account; None otherwise."""
        known, ok = self._check_terminal(login, password)
        return known if ok and known is not None and known.enabled else None

    def _check_terminal(self, login: str, password: str) -> tuple[TerminalView | None, bool]:
        """(the terminal of this login, if there is one; whether the password is its password),
        at the cost of one hash either way."""
        with self._read() as conn:
            t = conn.execute(_TERMINAL_BY_LOGIN, {"login": login}).first()
        if t is None:
            crypto.verify_secret(password, self._decoy_hash)
            return None, False
        nets = tuple(n for n in t.allowed_networks.split(",") if n)
        view = TerminalView(t.login, t.isil, t.profile, t.encoding, t.terminator, nets, t.tls_only, t.pin_required,
                            t.enabled)
        return view, crypto.verify_secret(password, t.password_hash)

    # ------------------------------------------------------------------ API clients
    def _client_view(self, c: APIClient) -> ClientView:
        return ClientView(c.name, c.library.isil, tuple(p for p in c.permissions.split(",") if p), c.enabled)

    @staticmethod
    def _check_permissions(permissions: list[str] | None) -> list[str]:
        perms = list(DEFAULT_CLIENT_PERMISSIONS) if permissions is None else [p.strip() for p in permissions if p.strip()]
        bad = [p for p in perms if p not in PERMISSIONS]
        if bad:
            raise _bad(f"unknown permission {bad[0]!r}; known: {', '.join(PERMISSIONS)}")
        return sorted(set(perms), key=PERMISSIONS.index)

    def add_client(self, actor: Actor, name: str, library: str, permissions: list[str] | None = None) -> tuple[ClientView, str]:
        """Create an API client; returns the view and the token, shown this once and stored hashed."""
        self._require_operator(actor)
        name = (name or "").strip()
        if not name or len(name) > 100 or not name.isprintable():
            raise _bad("client name must be 1 to 100 printable characters")
        perms = self._check_permissions(permissions)
        token = crypto.new_token()
        try:
            with self._tx() as s:
                lib = self._library(s, library)
                c = APIClient(name=name, token_hash=crypto.token_hash(token), library_id=lib.id, permissions=",".join(perms))
                s.add(c)
                s.flush()
                self._audit(s, actor, "client_add", "ok", library=lib.isil, detail=name)
                return self._client_view(c), token
        except IntegrityError:
            raise AlreadyExists(f"client {name} exists already") from None

    def update_client(
        self, actor: Actor, name: str, *, enabled: bool | None = None, permissions: list[str] | None = None,
        rotate_token: bool = False,
    ) -> tuple[ClientView, str | None]:
        self._require_operator(actor)
        perms = self._check_permissions(permissions) if permissions is not None else None
        token = crypto.new_token() if rotate_token else None
        with self._tx() as s:
            c = s.scalar(select(APIClient).where(APIClient.name == name))
            if c is None:
                raise NotFound(f"client {name} does not exist")
            if enabled is not None:
                c.enabled = enabled
            if perms is not None:
                c.permissions = ",".join(perms)
            if token is not None:
                c.token_hash = crypto.token_hash(token)
            self._audit(s, actor, "client_update", "ok", library=c.library.isil, detail=name)
            return self._client_view(c), token

    def list_clients(self) -> list[ClientView]:
        with self._tx() as s:
            return [self._client_view(c) for c in s.scalars(select(APIClient).order_by(APIClient.name))]

    def authenticate_client(self, token: str) -> ClientView | None:
        """The enabled client holding this token, or None. Asked on every NCIP request: one plain
        query, no transaction of its own (a read needs none)."""
        with self._read() as conn:
            row = conn.execute(_CLIENT_BY_TOKEN, {"token_hash": crypto.token_hash(token)}).first()
        if row is None or not row.enabled:
            return None
        return ClientView(row.name, row.isil, tuple(p for p in row.permissions.split(",") if p), True)

    # ------------------------------------------------------------------ audit, changes, keys
    @staticmethod
    def _audit_view(e: AuditEvent) -> AuditView:
        return AuditView(e.id, e.at, e.actor, e.library_isil, e.action, e.card_number, e.outcome, e.detail)

    @staticmethod
    def _change_view(c: Change) -> ChangeView:
        return ChangeView(c.id, c.at, c.card_number, c.library_isil, c.kind)

    def audit_events(self, card: str | None = None, *, limit: int = 100) -> list[AuditView]:
        with self._tx() as s:
            query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
            if card is not None:
                # A deleted patron's trail is kept (and shown): the card row stays forever.
                row = s.get(Card, _card(card))
                if row is None:
                    raise NotFound(f"card {_card(card)} is not in the register")
                query = query.where(AuditEvent.patron_id == row.patron_id)
            return [self._audit_view(e) for e in reversed(list(s.scalars(query)))]

    def changes(self, since: int = 0, *, limit: int = 1000) -> list[ChangeView]:
        with self._tx() as s:
            query = select(Change).where(Change.id > since).order_by(Change.id).limit(limit)
            return [self._change_view(c) for c in s.scalars(query)]

    def reencrypt(self, batch_size: int = 500) -> int:
        """Re-encrypt every national id not sealed with the active key, in small transactions, so
        the gateway keeps serving meanwhile. Returns how many rows were re-encrypted."""
        active, done, last_id = self.keys.active_key_id, 0, 0
        while True:
            with self._tx() as s:
                rows = s.execute(
                    select(Patron.id, Patron.national_id_ciphertext)
                    .where(Patron.id > last_id, Patron.national_id_ciphertext.is_not(None))
                    .order_by(Patron.id).limit(batch_size)
                ).all()
                if not rows:
                    return done
                for patron_id, cipher in rows:
                    if crypto.KeyRing.key_id_of(cipher) != active:
                        s.execute(update(Patron).where(Patron.id == patron_id, Patron.national_id_ciphertext == cipher)
                                  .values(national_id_ciphertext=self.keys.encrypt(self.keys.decrypt(cipher)))
                                  .execution_options(synchronize_session=False))
                        done += 1
                last_id = rows[-1][0]

    def key_usage(self) -> dict[int, int]:
        with self._tx() as s:
            counts: dict[int, int] = {}
            for (cipher,) in s.execute(select(Patron.national_id_ciphertext).where(Patron.national_id_ciphertext.is_not(None))):
                kid = crypto.KeyRing.key_id_of(cipher)
                counts[kid] = counts.get(kid, 0) + 1
            return counts

    def counts(self) -> dict[str, int]:
        with self._tx() as s:
            return {
                "libraries": s.scalar(select(func.count()).select_from(Library)) or 0,
                "patrons": s.scalar(select(func.count()).select_from(Patron).where(Patron.deleted_at.is_(None))) or 0,
                "cards": s.scalar(select(func.count()).select_from(Card)) or 0,
            }

    # ------------------------------------------------------------------ library systems (NCIP, ncip.md A.3)
    def authenticate_patron(self, actor: Actor, card: str, pin: str, *, with_national_id: bool = False) -> PatronView:
        """Look a patron up by card + PIN: the patron decision at the actor's library (lockout shared with
        SIP2; automatic activation applies). Not being activated there, or being blocked, still
        authenticates. Raises AuthenticationFailed alike for an unknown card, a wrong PIN, a patron
        without a PIN and a lost card; PinLocked when the PIN is locked."""
        if actor.kind == "client" and not actor.may("lookup"):
            raise PermissionDenied("this client may not look patrons up")
        if with_national_id and not actor.may("see-national-id"):
            raise PermissionDenied("this client may not see national identity numbers")
        decision = self.decide(actor, card, pin, pin_required=True)
        if decision.reason is Reason.REGISTER_UNAVAILABLE:
            raise RegisterUnavailable("the register database does not answer; try again shortly")
        if decision.reason is Reason.PIN_LOCKED:
            raise PinLocked("too many wrong PINs in a row: the PIN is locked for a while")
        if not decision.pin_valid or decision.patron is None:
            raise AuthenticationFailed("card number or PIN is invalid")
        if with_national_id:
            return self.find_patron(actor, decision.patron.card, with_national_id=True)
        return decision.patron

    def check_pin(self, actor: Actor, card: str, pin: str) -> None:
        """Raise AuthenticationFailed (unknown card, wrong PIN, no PIN, lost card: one answer, same
        time) or PinLocked unless ``pin`` is the card's PIN; lockout shared with every channel."""
        try:
            result = self.verify_pin(actor, card, pin)
        except NotFound:
            raise AuthenticationFailed("card number or PIN is invalid") from None
        if result is PinCheck.LOCKED:
            raise PinLocked("too many wrong PINs in a row: the PIN is locked for a while")
        if result is not PinCheck.OK:
            raise AuthenticationFailed("card number or PIN is invalid")

    def change_patron(
        self, actor: Actor, card: str, *, pin: str | None = None, new_pin: str | None = None, activate: bool = False,
        door_agreement: bool = False, revoke_door: bool = False, home_library: str | None = None, **changes: Any,
    ) -> str:
        """A library system's change to a patron, as one call (NCIP UpdateUser); returns the card number.

        In this order: ``pin`` (the patron's current PIN, when the patron is present) is checked; the card
        is activated at the actor's own library and the meråpent agreement recorded or revoked there
        (allowed at first visit); then personal data (as `update_patron`), the new PIN and the home
        library change, which need the actor's library to be affiliated with the patron."""
        if actor.kind == "client" and not actor.may("update"):
            raise PermissionDenied("this client may not change patrons")
        if actor.library_isil is None:
            raise PermissionDenied("only a library may change a patron this way")
        if not (activate or door_agreement or revoke_door or changes or new_pin is not None or home_library):
            raise _bad("nothing to change")
        number = _card(card)
        if new_pin is not None:
            _pin(new_pin)
        if pin is not None:
            self.check_pin(actor, number, pin)
        if activate or door_agreement:
            self.activate(actor, number, actor.library_isil, door_agreement=door_agreement)
        if revoke_door:
            self.revoke_door(actor, number, actor.library_isil)
        if changes:
            self.update_patron(actor, number, **changes)
        if new_pin is not None:
            self.set_pin(actor, number, new_pin)
        if home_library is not None:
            self.set_home_library(actor, number, home_library)
        return number

    # ------------------------------------------------------------------ SIP2 terminals (sip2.md A.1, A.3)
    def terminal_login(self, login: str, password: str, *, source: str | None, encrypted: bool) -> TerminalLogin:
        """SIP2 93: the terminal, if login and password match an enabled account that may connect from
        ``source`` (its allowed networks) over this transport (TLS only); else why not: ``bad_login``,
        ``disabled``, ``network`` or ``tls_required``. Refusals are audited, never the password, and
        never a login that names no terminal (a client that slipped a field may have sent its
        password there): that is ``unknown terminal``."""
        known, ok = self._check_terminal(login, password)
        outcome = "ok"
        if known is None or not ok:
            outcome = "bad_login"
        elif not known.enabled:
            outcome = "disabled"
        elif known.allowed_networks and not self._source_allowed(source, known.allowed_networks):
            outcome = "network"
        elif known.tls_only and not encrypted:
            outcome = "tls_required"
        if outcome == "ok":
            return TerminalLogin(known, outcome)
        who = Actor("terminal", known.login, known.library_isil) if known is not None else UNKNOWN_TERMINAL
        self.audit_refusal(who, "sip2_login", outcome, detail=f"from {source}" if source else None)
        return TerminalLogin(None, outcome)

    @staticmethod
    def _source_allowed(source: str | None, networks: tuple[str, ...]) -> bool:
        try:
            address = ipaddress.ip_address((source or "").split("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in ipaddress.ip_network(net, strict=False) for net in networks)

    def block_card(self, actor: Actor, card: str, reason: str | None, *, institution: str | None = None) -> Decision:
        """SIP2 01 (card retained, or tampering at the terminal): block the card's patron. A request for
        another library (``institution``) blocks nothing: WRONG_INSTITUTION; an unknown card is
        UNKNOWN_CARD; otherwise PATRON_BLOCKED with the patron as now. Audited like every decision."""
        def refused(why: Reason) -> Decision:
            self.audit_refusal(actor, "patron_block", why.value)
            return Decision(why, None, False, False, False)

        try:
            if not _acts_for(actor, institution):
                return refused(Reason.WRONG_INSTITUTION)
            cleaned = "".join(ch for ch in (reason or "") if unicodedata.category(ch) not in ("Cc", "Cs"))
            text_ = " ".join(cleaned.split())[:200] or f"SIP2 01 from terminal {actor.name}"[:200]
            try:
                view = self.set_blocked(actor, card, True, text_)
            except (NotFound, InvalidInput):
                return refused(Reason.UNKNOWN_CARD)
            return Decision(Reason.PATRON_BLOCKED, view, False, False, view.card_status in ("lost", "replaced"))
        except RegisterUnavailable:
            return Decision(Reason.REGISTER_UNAVAILABLE, None, False, False, False)

__all__ = ["Register", "Settings", "RegisterError", "age_on"]
