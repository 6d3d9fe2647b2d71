"""Decision facts in memory (issue 13): what a decision or a lookup without a PIN needs, kept by
each gateway process so that the answer is computed without the database.

``DecisionMemory`` remembers, per card number, the card's patron as a `PatronView` (no national
id, not even its masked part) or that the card is not in the register; per library the two
settings the decision reads; per API client token (its hash) the client. It is bounded
(``register.cache_size`` cards, least recently used first out) and it follows the change feed:
``follow`` forgets every patron and card a committed change names, and everything when the
settings generation moved (a library, terminal or API client changed: gateway.register.generation).

A fill (``remember``) carries the ``epoch`` the memory had when its facts were asked for: when the
memory followed news since then, the facts may predate a change it has already forgotten, so they
are not kept. Nothing here touches the database or knows about threads: the gateway calls it from
its reactor thread only (gateway.hot_path), and the register's readers fill it (gateway.register.recall).

``decide`` is the patron decision of gateway.register.admission for a request without a PIN, asked
of the same table (gateway.register.decisions) with the same facts, giving the same decision and
the same audit row; None when a fact is not in memory.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

from gateway.register import actors, audit, decisions
from gateway.register.identifiers import InvalidIdentifier, normalise_card_number
from gateway.register.settings import OSLO
from gateway.register.views import ClientView, Decision, DecisionRequest, PatronView
from gateway.register.vocabulary import RETIRED, Action, Reason


@dataclass(frozen=True, slots=True)
class LibraryFacts:
    """What a decision reads of the deciding library."""

    door_min_age: int
    auto_activation: bool


@dataclass(frozen=True, slots=True)
class CardFacts:
    """A card as decisions see it: its patron (id and view), or not in the register (both None; a
    deleted patron's card too)."""

    patron_id: int | None
    view: PatronView | None
    # The decisions taken on these facts: (library, door, PIN required, day) -> decision. Facts are
    # forgotten, never changed, so a decision taken on them holds as long as they are remembered.
    decided: dict[tuple[Any, ...], Decision] = field(default_factory=dict, compare=False, repr=False)
    # Answers built from these facts by an adapter (an NCIP LookupUserResponse, by what it was asked).
    answers: dict[tuple[Any, ...], bytes] = field(default_factory=dict, compare=False, repr=False)


NOT_IN_REGISTER = CardFacts(None, None)
#: A library asked about that is not in the register (a terminal's library is, normally).
NO_LIBRARY: LibraryFacts | None = None
#: What `DecisionMemory.client` answers for a token it does not hold.
MISSING: Any = object()

# The decisions that name no patron (one object each: an answer made from one can be kept).
UNKNOWN_DECISION = Decision(Reason.UNKNOWN_CARD, None, False, False, False)
WRONG_INSTITUTION_DECISION = Decision(Reason.WRONG_INSTITUTION, None, False, False, False)
UNAVAILABLE_DECISION = Decision(Reason.REGISTER_UNAVAILABLE, None, False, False, False)


class Facts(Protocol):
    """Where ``decide`` finds its facts: the memory, or a `Recollection` just read."""

    def card(self, number: str) -> CardFacts | None: ...
    def library(self, isil: str | None) -> LibraryFacts | None: ...
    def has_library(self, isil: str | None) -> bool: ...


@dataclass(frozen=True)
class Recollection:
    """Facts read from the register for some cards and libraries (gateway.register.recall)."""

    cards: dict[str, CardFacts] = field(default_factory=dict)
    libraries: dict[str | None, LibraryFacts | None] = field(default_factory=dict)

    def card(self, number: str) -> CardFacts | None:
        return self.cards.get(number)

    def library(self, isil: str | None) -> LibraryFacts | None:
        return self.libraries.get(isil)

    def has_library(self, isil: str | None) -> bool:
        return isil in self.libraries


@dataclass(frozen=True)
class News:
    """What the change feed said since the memory's position: the patrons and cards changed, and the
    settings generation now. ``overflow``: more changed than was read; forget everything."""

    position: int
    generation: int
    patrons: frozenset[int] = frozenset()
    cards: frozenset[str] = frozenset()
    overflow: bool = False


class DecisionMemory:
    """Bounded memory of decision facts; see the module docstring."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.epoch = 0  # raised whenever something may have been forgotten
        self.position: int | None = None  # the last change id followed; None until the first news
        self.generation: int | None = None
        self._cards: OrderedDict[str, CardFacts] = OrderedDict()
        self._by_patron: dict[int, set[str]] = {}
        self._libraries: dict[str | None, LibraryFacts | None] = {}
        self._clients: OrderedDict[str, ClientView | None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._cards)

    # ------------------------------------------------------------------ reading
    def card(self, number: str) -> CardFacts | None:
        """The card's facts, or None when not remembered (the card becomes the most recently used)."""
        found = self._cards.get(number)
        if found is not None:
            self._cards.move_to_end(number)
        return found

    def library(self, isil: str | None) -> LibraryFacts | None:
        return self._libraries.get(isil)

    def has_library(self, isil: str | None) -> bool:
        return isil in self._libraries

    def client(self, token_hash: str) -> ClientView | None | Any:
        """The API client holding the token with this hash, None for none (or disabled), or
        ``MISSING`` when not remembered."""
        return self._clients.get(token_hash, MISSING)

    # ------------------------------------------------------------------ filling
    def remember(self, facts: Recollection, epoch: int) -> bool:
        """Keep what was read, unless the memory followed news since it was asked for (``epoch``)."""
        if epoch != self.epoch or self.size <= 0:
            return False
        self._libraries.update(facts.libraries)
        for number, card in facts.cards.items():
            self._put(number, card)
        return True

    def remember_client(self, token_hash: str, client: ClientView | None, epoch: int) -> None:
        if epoch != self.epoch or self.size <= 0:
            return
        self._clients[token_hash] = client
        self._clients.move_to_end(token_hash)
        while len(self._clients) > 1000:
            self._clients.popitem(last=False)

    def _put(self, number: str, card: CardFacts) -> None:
        old = self._cards.pop(number, None)
        if old is not None and old.patron_id is not None:
            self._unindex(old.patron_id, number)
        self._cards[number] = card
        if card.patron_id is not None:
            self._by_patron.setdefault(card.patron_id, set()).add(number)
        while len(self._cards) > self.size:
            gone, facts = self._cards.popitem(last=False)
            if facts.patron_id is not None:
                self._unindex(facts.patron_id, gone)

    def _unindex(self, patron_id: int, number: str) -> None:
        numbers = self._by_patron.get(patron_id)
        if numbers is not None:
            numbers.discard(number)
            if not numbers:
                del self._by_patron[patron_id]

    # ------------------------------------------------------------------ forgetting
    def follow(self, news: News) -> bool:
        """Forget what the news names; everything when the settings moved or too much changed.
        Whether the settings moved (a library, terminal or API client changed)."""
        moved = self.generation is not None and news.generation != self.generation
        if news.overflow or moved:
            self.forget_all()
        elif news.patrons or news.cards:
            self.forget(news.patrons, news.cards)
        self.position, self.generation = news.position, news.generation
        return moved

    def forget(self, patrons: Iterable[int], cards: Iterable[str]) -> None:
        """Forget these patrons (every card of theirs) and cards; a fill asked for before is not kept."""
        for patron_id in patrons:
            for number in self._by_patron.pop(patron_id, ()):
                self._cards.pop(number, None)
        for number in cards:
            facts = self._cards.pop(number, None)
            if facts is not None and facts.patron_id is not None:
                self._unindex(facts.patron_id, number)
        self.epoch += 1

    def forget_all(self) -> None:
        self._cards.clear()
        self._by_patron.clear()
        self._libraries.clear()
        self._clients.clear()
        self.epoch += 1


# ---------------------------------------------------------------------- the decision, from facts
def action_of(request: DecisionRequest) -> Action:
    return Action.DOOR if request.door else Action.PATRON_CHECK


def precheck(request: DecisionRequest, now: datetime) -> tuple[Decision, dict[str, Any]] | str:
    """What is decided before any fact about the card: a malformed number (unknown card) and a
    request for another library; else the normalised card number."""
    action = action_of(request)
    try:
        number = normalise_card_number(request.card)
    except InvalidIdentifier:
        return UNKNOWN_DECISION, audit.row(request.actor, action, Reason.UNKNOWN_CARD, at=now)
    if not actors.acts_for(request.actor, request.institution):
        return WRONG_INSTITUTION_DECISION, audit.row(request.actor, action, Reason.WRONG_INSTITUTION, card=number,
                                                     at=now)
    return number


def decide(facts: Facts, request: DecisionRequest, now: datetime,
           number: str | None = None) -> tuple[Decision, dict[str, Any]] | None:
    """The decision without a PIN and its audit row, as `Admission.decide_many` makes them; None when
    ``facts`` lack the card or the library. ``number``: the card number `precheck` gave, if asked already."""
    if number is None:
        checked = precheck(request, now)
        if not isinstance(checked, str):
            return checked
        number = checked
    isil = request.actor.library_isil
    card = facts.card(number)
    if card is None or not facts.has_library(isil):
        return None
    action = action_of(request)
    view = card.view
    if view is None:
        return UNKNOWN_DECISION, audit.row(request.actor, action, Reason.UNKNOWN_CARD, card=number, at=now)
    today = _oslo_day(now)
    key = (isil, request.door, request.pin_required, today)
    decision = card.decided.get(key)
    if decision is None:
        library = facts.library(isil)
        here = view.activation_at(isil) if isil is not None else None
        reason = decisions.decide(decisions.Facts(
            card_status=view.card_status, pin=None, door=request.door, pin_required=request.pin_required,
            blocked=view.blocked, activated=here is not None,
            auto_activation=library is not None and library.auto_activation,
            door_agreement=here is not None and here.door_agreement_at is not None,
            door_revoked=here is not None and here.door_revoked_at is not None,
            birth_date=view.birth_date, door_min_age=library.door_min_age if library is not None else 0,
            today=today))
        decision = Decision(reason, view, False, False, view.card_status in RETIRED)
        if len(card.decided) < 8:
            card.decided[key] = decision
    row = audit.row(request.actor, action, decision.reason, patron=card.patron_id, card=number, at=now)
    return decision, row


_day: tuple[int, date] = (-1, date.min)


def _oslo_day(now: datetime) -> date:
    """The day in Europe/Oslo (ages count by it), worked out once a minute."""
    global _day
    minute = int(now.timestamp()) // 60
    if _day[0] != minute:
        _day = (minute, now.astimezone(OSLO).date())
    return _day[1]


__all__ = ["MISSING", "NOT_IN_REGISTER", "CardFacts", "DecisionMemory", "LibraryFacts", "News", "Recollection",
           "decide", "precheck"]
