"""What the register hands back to its callers: plain frozen values, never ORM objects."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, tzinfo
from enum import Enum
from typing import Any, NamedTuple

from gateway.register import fields
from gateway.register.actors import (
    DEFAULT_CLIENT_PERMISSIONS as DEFAULT_CLIENT_PERMISSIONS,
    OPERATOR as OPERATOR,
    PERMISSIONS as PERMISSIONS,
    UNKNOWN_TERMINAL as UNKNOWN_TERMINAL,
    Actor as Actor,
)
from gateway.register.vocabulary import PinCheck as PinCheck, Profile, Reason as Reason

PROFILES = tuple(Profile)
ENCODINGS = ("utf-8", "cp850", "latin-1")
CONTACT_CHANNELS = fields.CONTACT_CHANNELS


def jsonable(value: Any, tz: tzinfo | None = None) -> Any:
    """A view (or anything made of them) as JSON-ready data; with ``tz``, times as people read them:
    in that zone, to the second (``UTC``: ISO 8601 with ``Z``, as the change feed gives them)."""
    if hasattr(value, "__dataclass_fields__"):
        return {k: jsonable(v, tz) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {k: jsonable(v, tz) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, tz) for v in value]
    if isinstance(value, datetime):  # shown to people (``tz``): to the second; in UTC as ``…Z``
        if tz is None:
            return value.isoformat()
        text = value.astimezone(tz).isoformat(timespec="seconds")
        return text.removesuffix("+00:00") + "Z" if tz is UTC else text
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


@dataclass(frozen=True)
class LibraryView:
    isil: str
    name: str
    door_min_age: int
    self_activation: bool
    auto_activation: bool
    rules_version: str
    door_agreement_version: str


@dataclass(frozen=True)
class SeriesView:
    library_isil: str
    first: str
    last: str
    next_free: str | None
    size: int
    used: int

    @property
    def range(self) -> str:
        return f"{self.first}-{self.last}"


@dataclass(frozen=True)
class ActivationView:
    library_isil: str
    library_name: str
    activated_at: datetime
    channel: str
    rules_version: str
    home: bool
    door_agreement_at: datetime | None
    door_agreement_version: str | None
    door_revoked_at: datetime | None


@dataclass(frozen=True)
class CardView:
    number: str
    status: str
    library_isil: str
    issued_at: datetime
    library_name: str = ""  # the library that issued it
    status_changed_at: datetime | None = None  # when it was reported lost, replaced or deleted


@dataclass(frozen=True)
class PatronView:
    """A patron as one caller may see it. ``national_id`` is filled only when asked for explicitly."""

    card: str  # the card number asked about
    card_status: str  # status of that card: active, lost, replaced
    current_card: str | None  # the patron's active card
    surname: str
    given_name: str
    national_id_masked: str
    birth_date: date | None
    gender: str | None
    address_line1: str | None
    address_line2: str | None
    postal_code: str | None
    city: str | None
    country: str | None
    temp_address_line1: str | None
    temp_postal_code: str | None
    temp_city: str | None
    temp_address_until: date | None
    email: str | None
    phone: str | None
    preferred_contact: str | None
    secret_address: bool
    home_library_isil: str
    blocked: bool
    block_reason: str | None
    has_pin: bool
    pin_locked_until: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime
    activations: tuple[ActivationView, ...] = ()
    cards: tuple[CardView, ...] = ()
    national_id: str | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"{self.given_name} {self.surname}".strip()

    def activation_at(self, isil: str) -> ActivationView | None:
        return next((a for a in self.activations if a.library_isil == isil), None)


def without_secret_address(view: PatronView) -> PatronView:
    """The view with a secret address left out (``secret_address`` stays True, so a reader can say
    one is held): what anyone but the operator is given."""
    if not view.secret_address:
        return view
    return replace(view, address_line1=None, address_line2=None, postal_code=None, city=None, country=None,
                   temp_address_line1=None, temp_postal_code=None, temp_city=None, temp_address_until=None)


@dataclass(frozen=True)
class FeedPage:
    """One page of a library's change feed (``Register.library_changes``), as its JSON answer has
    it: ``changes`` (each a JSON-ready dict), the cursor to ask ``after`` next, and whether more
    changes were there already."""

    changes: list[dict[str, Any]]
    next: str
    more: bool


@dataclass(frozen=True)
class Decision:
    """The answer to "may this card (and PIN) be used at this terminal's library, now?"."""

    reason: Reason
    patron: PatronView | None  # the patron behind the card, when the card is known
    pin_checked: bool  # a PIN was given and compared
    pin_valid: bool  # the PIN given was right
    card_lost: bool  # the card is reported lost or replaced
    activated_now: bool = False  # automatic activation happened in this decision

    @property
    def granted(self) -> bool:
        return self.reason is Reason.GRANTED


@dataclass(frozen=True)
class SelfActivation:
    """The answer to SIP2 25: the decision after the attempt, and whether the library lets patrons
    activate themselves (False: the PIN was right, the card is not activated, ask the staff)."""

    decision: Decision
    library_allows: bool


@dataclass(frozen=True)
class DecisionRequest:
    """One question for ``Register.decide_many``: the arguments of ``Register.decide``."""

    actor: Actor
    card: str
    pin: str | None = None
    door: bool = False
    pin_required: bool = True
    institution: str | None = None


@dataclass(frozen=True)
class TerminalView:
    login: str
    library_isil: str
    profile: str
    encoding: str
    terminator: str
    allowed_networks: tuple[str, ...]
    tls_only: bool
    pin_required: bool
    enabled: bool


@dataclass(frozen=True)
class TerminalLogin:
    """The answer to SIP2 93: the terminal when logged in, else None and why (``bad_login``,
    ``disabled``, ``network``, ``tls_required``)."""

    terminal: TerminalView | None
    outcome: str


@dataclass(frozen=True)
class ClientView:
    name: str
    library_isil: str
    permissions: tuple[str, ...]
    enabled: bool

    def actor(self) -> Actor:
        return Actor("client", self.name, self.library_isil, frozenset(self.permissions))


class ClientAccount(NamedTuple):
    """An API client as created or changed, and its token: shown this once (None: unchanged)."""

    client: ClientView
    token: str | None


@dataclass(frozen=True)
class AuditView:
    id: int
    at: datetime
    actor: str
    library_isil: str | None
    action: str
    card_number: str | None
    outcome: str
    detail: str | None
    request_id: str | None = None


@dataclass(frozen=True)
class ChangeView:
    id: int
    at: datetime
    card_number: str
    library_isil: str | None
    kind: str


@dataclass(frozen=True)
class WebLogin:
    """A patron logged in on the self-service page: the new session id (the cookie's value, shown
    this once; the register keeps only its hash), the form token bound to it, and the card."""

    token: str = field(repr=False)
    csrf: str = field(repr=False)
    card: str


@dataclass(frozen=True)
class WebSession:
    """A live self-service session: the card that logged in, the form token, the patron as the page
    may show them (national id masked, a secret address left out), and when the session ends at the
    latest if it is not used."""

    card: str
    csrf: str = field(repr=False)
    patron: PatronView
    expires_at: datetime


@dataclass(frozen=True)
class TrailEntry:
    """One line of "who has looked at or changed my data": when, at which library, through which
    channel (``kiosk``, ``door``, ``ils``: a SIP2 terminal, ``who`` its login; ``ncip``: a library
    system, ``who`` its name; ``operator``; ``web``: the patron on the self-service page; ``unknown``),
    what (an Action value), the outcome, and the detail (the fields changed, a refusal's reason)."""

    at: datetime
    library_isil: str | None
    library_name: str | None
    channel: str
    who: str
    action: str
    outcome: str
    detail: str | None


@dataclass(frozen=True)
class TrailPage:
    """One page of a patron's trail, newest first."""

    entries: tuple[TrailEntry, ...]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))
