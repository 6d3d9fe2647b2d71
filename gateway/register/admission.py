"""The patron decision as a use case: read the facts about a card at a library, check the PIN (the
claim, hash and settle of gateway.register.pins), ask the table (gateway.register.decisions),
activate where the library does so at first use or the patron asks at a kiosk, audit, and answer
with the patron's view. One function for SIP2 23, 63, 25 and doors, and NCIP card + PIN."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.register import activation, actors, audit, decisions, fields, memory, pins, records
from gateway.register.actors import Actor
from gateway.register.context import Area
from gateway.register.errors import (
    AuthenticationFailed,
    InvalidInput,
    NotFound,
    PinLocked,
    RegisterUnavailable,
)
from gateway.register.identifiers import InvalidIdentifier, normalise_card_number
from gateway.register.models import Activation, Card, Library, Patron, utcnow
from gateway.register.settings import OSLO
from gateway.register.views import Decision, DecisionRequest, PatronView, SelfActivation
from gateway.register.vocabulary import RETIRED, Action, CardStatus, PinCheck, Reason

_patrons, _cards, _libraries, _activations = (Patron.__table__, Card.__table__, Library.__table__,
                                              Activation.__table__)
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
_UNKNOWN, _UNAVAILABLE = memory.UNKNOWN_DECISION, memory.UNAVAILABLE_DECISION


@dataclass(frozen=True)
class _Facts:
    """A card, its patron and the patron's activation at one library, as the decision needs them."""

    row: Any
    library: Any  # id, door_min_age, auto_activation, self_activation of the deciding library (None if unknown)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.row, name)


@dataclass
class _SelfActivationAsk:
    """A decision that may self-activate (SIP2 25), and what it found out about the library."""

    rules_version: str | None
    library_allows: bool = True


def _reason(facts: _Facts, pin_result: PinCheck | None, door: bool, pin_required: bool, now: datetime) -> Reason:
    """The decision table (gateway.register.decisions) asked about these facts."""
    lib = facts.library
    return decisions.decide(decisions.Facts(
        card_status=facts.status, pin=pin_result, door=door, pin_required=pin_required, blocked=bool(facts.blocked),
        activated=facts.activation_id is not None, auto_activation=bool(lib is not None and lib.auto_activation),
        door_agreement=facts.door_agreement_at is not None, door_revoked=facts.door_revoked_at is not None,
        birth_date=facts.birth_date, door_min_age=lib.door_min_age if lib is not None else 0,
        today=now.astimezone(OSLO).date()))


def _action(door: bool) -> Action:
    return Action.DOOR if door else Action.PATRON_CHECK


class Admission(Area):
    """Decisions: may this card (and PIN) be used here, now?"""

    def decide(
        self, actor: Actor, card: str, pin: str | None, *, door: bool = False, pin_required: bool = True,
        institution: str | None = None, now: datetime | None = None,
    ) -> Decision:
        """May this card (and PIN) be used at the actor's library now? One function for SIP2 23, 63,
        25 and the door, and for NCIP lookups by card + PIN. Every decision is audited with its reason."""
        try:
            return self._decide(actor, card, pin, door, pin_required, institution, now or utcnow())
        except RegisterUnavailable:
            return _UNAVAILABLE

    def self_activate(self, actor: Actor, card: str, pin: str | None, *,
                      rules_version: str | None = None) -> SelfActivation:
        """SIP2 25: the patron activates the card at the terminal's library after accepting the rules
        on screen. One decision and one PIN attempt: when the PIN is right and the card is not yet
        activated there, it is activated in the same transaction, if the library allows it."""
        rules_version = fields.version(rules_version, "rules version")
        asked = _SelfActivationAsk(rules_version)
        try:
            decision = self._decide(actor, card, pin, False, True, None, utcnow(), asked)
        except RegisterUnavailable:
            decision = _UNAVAILABLE
        return SelfActivation(decision, asked.library_allows)

    def decide_many(self, requests: list[DecisionRequest], *, now: datetime | None = None) -> list[Decision]:
        """``decide`` for many requests at once (busy kiosks and doors asking without a PIN): the same
        decisions and the same audit events as one by one, read with a handful of queries and written
        in one transaction. A request with a PIN is decided on its own (its hash takes its time)."""
        now = now or utcnow()
        out: list[Decision | None] = [None] * len(requests)
        audits: list[dict[str, Any]] = []
        todo: list[tuple[int, DecisionRequest, str, Action]] = []  # index, request, card number, action
        for i, r in enumerate(requests):
            if r.pin:
                out[i] = self.decide(r.actor, r.card, r.pin, door=r.door, pin_required=r.pin_required,
                                     institution=r.institution, now=now)
                continue
            checked = memory.precheck(r, now)  # a malformed card, another library: no facts needed
            if not isinstance(checked, str):
                out[i] = checked[0]
                audits.append(checked[1])
                continue
            todo.append((i, r, checked, _action(r.door)))
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
                    found = facts.get((isil, number))
                    if found is None or found.status == CardStatus.DELETED:
                        out[i] = _UNKNOWN
                        audits.append(audit.row(r.actor, action, Reason.UNKNOWN_CARD, card=number, at=now))
                        continue
                    known = _Facts(found, libraries[isil])
                    reason = _reason(known, None, r.door, r.pin_required, now)  # never an activation: no PIN
                    audits.append(audit.row(r.actor, action, reason, patron=known.patron_id, card=number, at=now))
                    concluded.append((i, reason, known))
                if audits:
                    conn.execute(audit.INSERT, audits)
                views = self._load_views(conn, [(f.patron_id, f.number) for _, _, f in concluded])
        except RegisterUnavailable:
            return [d if d is not None and requests[i].pin else _UNAVAILABLE for i, d in enumerate(out)]
        for (i, reason, f), view in zip(concluded, views, strict=True):
            out[i] = Decision(reason, view, False, False, f.status in RETIRED)
        return out  # type: ignore[return-value]

    def _decide(self, actor: Actor, card: str, pin: str | None, door: bool, pin_required: bool,
                institution: str | None, now: datetime, self_activation: _SelfActivationAsk | None = None) -> Decision:
        """Without a PIN: one transaction. With one: claim the attempt, hash outside any transaction,
        then settle, conclude, audit and read the view back: the same path, the same cost, for an
        unknown card, a wrong PIN and a locked one (gateway.register.pins)."""
        action = _action(door)
        try:
            number: str | None = normalise_card_number(card)
        except InvalidIdentifier:
            number = None
        if number is not None and not actors.acts_for(actor, institution):
            with self._tx() as s:
                audit.record(s, actor, action, Reason.WRONG_INSTITUTION, card=number)
            return Decision(Reason.WRONG_INSTITUTION, None, False, False, False)
        if not pin:
            with self._tx() as s:
                facts = self._decision_facts(s, number, actor.library_isil) if number is not None else None
                if facts is not None:
                    return self._conclude(s, actor, action, facts, None, door, pin_required, now)
                audit.record(s, actor, action, Reason.UNKNOWN_CARD, card=number)
                return _UNKNOWN

        def read(s: Session) -> tuple[_Facts | None, int | None, str | None, bool]:
            found = self._decision_facts(s, number, actor.library_isil) if number is not None else None
            if found is None:
                return None, None, None, False
            return found, found.patron_id, found.pin_hash, found.status == CardStatus.ACTIVE

        facts, claimed = self._claim_pin(read, now)
        matched = pins.compare(pin, claimed, self._decoy_hash)
        with self._tx() as s:
            result = self._settle_pin(s, claimed, matched, pin, now)
            if facts is not None:
                return self._conclude(s, actor, action, facts, result, door, pin_required, now, self_activation)
            audit.record(s, actor, action, Reason.UNKNOWN_CARD, card=number)
            self._load_views(s.connection(), [(pins.NO_PATRON, None)], missing_ok=True)  # the reads a known card costs
            return _UNKNOWN

    def _decision_facts(self, s: Session, number: str, isil: str | None) -> _Facts | None:
        """What the decision needs about a card at a library, in two small queries (None: unknown card)."""
        conn = s.connection()
        row = conn.execute(_DECISION_CARD, {"number": number, "isil": isil}).first()
        if row is None or row.status == CardStatus.DELETED:
            return None
        library = conn.execute(_DECISION_LIBRARY, {"isil": isil}).first()
        return _Facts(row, library)

    def _conclude(self, s: Session, actor: Actor, action: Action, facts: _Facts, pin_result: PinCheck | None,
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
                audit.record(s, actor, Action.PATRON_ACTIVATE, "self_activation_off", patron=facts.patron_id,
                             card=facts.number)
            else:
                records.lock_patron(s, facts.patron_id)  # two simultaneous 25s activate once
                patron = s.get(Patron, facts.patron_id)
                assert patron is not None
                lib = s.get(Library, facts.library.id)
                assert lib is not None
                activation.activate_at(s, actor, patron, lib, rules_version=self_activation.rules_version)
                again = self._decision_facts(s, facts.number, actor.library_isil)
                assert again is not None
                facts = again
                reason = _reason(facts, pin_result, door, pin_required, now)
        if reason is Reason.GRANTED:
            if facts.activation_id is None:  # first authenticated use at an auto-activation library
                # lock first, so two simultaneous first uses activate once and both say so right
                records.lock_patron(s, facts.patron_id)
                patron, lib = s.get(Patron, facts.patron_id), s.get(Library, facts.library.id)
                assert patron is not None and lib is not None
                try:
                    with s.begin_nested():
                        activated_now = activation.activate_at(s, actor, patron, lib)
                except IntegrityError:
                    activated_now = False  # activated by someone else at the same moment
        audit.record(s, actor, action, reason, patron=facts.patron_id, card=facts.number)
        view = self._load_view(s, facts.patron_id, facts.number)
        return Decision(reason, view, checked, valid, facts.status in RETIRED, activated_now)

    def authenticate_patron(self, actor: Actor, card: str, pin: str, *,
                            with_national_id: bool = False) -> PatronView:
        """Look a patron up by card + PIN: the patron decision at the actor's library (lockout shared with
        SIP2; automatic activation applies). Not being activated there, or being blocked, still
        authenticates. Raises AuthenticationFailed alike for an unknown card, a wrong PIN, a patron
        without a PIN and a lost card; PinLocked when the PIN is locked."""
        actors.require_may_look_up(actor, with_national_id=with_national_id)
        decision = self.decide(actor, card, pin, pin_required=True)
        if decision.reason is Reason.REGISTER_UNAVAILABLE:
            raise RegisterUnavailable("the register database does not answer; try again shortly")
        if decision.reason is Reason.PIN_LOCKED:
            raise PinLocked("too many wrong PINs in a row: the PIN is locked for a while")
        if not decision.pin_valid or decision.patron is None:
            raise AuthenticationFailed("card number or PIN is invalid")
        if with_national_id:
            return self.register.find_patron(actor, decision.patron.card, with_national_id=True)
        return decision.patron

    def block_card(self, actor: Actor, card: str, reason: str | None, *, institution: str | None = None) -> Decision:
        """SIP2 01 (card retained, or tampering at the terminal): block the card's patron. A request for
        another library (``institution``) blocks nothing: WRONG_INSTITUTION; an unknown card is
        UNKNOWN_CARD; otherwise PATRON_BLOCKED with the patron as now. Audited like every decision."""
        def refused(why: Reason) -> Decision:
            audit.refusal(self.store, actor, Action.PATRON_BLOCK, why)
            return Decision(why, None, False, False, False)

        try:
            if not actors.acts_for(actor, institution):
                return refused(Reason.WRONG_INSTITUTION)
            cleaned = "".join(ch for ch in (reason or "") if unicodedata.category(ch) not in ("Cc", "Cs"))
            text_ = " ".join(cleaned.split())[:200] or f"SIP2 01 from terminal {actor.name}"[:200]
            try:
                view = self.register.set_blocked(actor, card, True, text_)
            except (NotFound, InvalidInput):
                return refused(Reason.UNKNOWN_CARD)
            return Decision(Reason.PATRON_BLOCKED, view, False, False, view.card_status in RETIRED)
        except RegisterUnavailable:
            return _UNAVAILABLE
