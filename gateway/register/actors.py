"""Who asks, and every rule of what they may do.

An actor is the operator, a SIP2 terminal, an NCIP client (a library system) or the patron on the
web page. Every "may" and "must" of the register is a function here, so that a reader finds all of
them in one place and every use case asks the same question the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from gateway.register.errors import NotAffiliated, PermissionDenied
from gateway.register.identifiers import InvalidIdentifier, normalise_isil
from gateway.register.vocabulary import Channel

if TYPE_CHECKING:
    from gateway.register.models import Patron

PERMISSIONS = ("lookup", "lookup-national-id", "create", "update", "delete", "see-national-id", "changes")
DEFAULT_CLIENT_PERMISSIONS = ("lookup", "create", "update")
_CHANNELS = {"operator": Channel.OPERATOR, "terminal": Channel.SIP2, "client": Channel.NCIP, "patron": Channel.WEB}


@dataclass(frozen=True)
class Actor:
    """Who asks: the operator, a SIP2 terminal, an NCIP client, or the patron on the web page."""

    kind: Literal["operator", "terminal", "client", "patron"]
    name: str
    library_isil: str | None = None
    permissions: frozenset[str] = frozenset()
    # The request this actor is asking in (its log line carries the same id), recorded with every
    # audit event of it; not part of who the actor is.
    request_id: str | None = field(default=None, compare=False)

    def asking(self, request_id: str | None) -> Actor:
        """The same actor, asking in the request ``request_id``."""
        # the constructor, not dataclasses.replace: this runs once per request (a third of the cost)
        return Actor(self.kind, self.name, self.library_isil, self.permissions,
                     request_id[:32] if request_id else None)

    @property
    def label(self) -> str:
        """How the audit trail names the actor: ``terminal:kiosk1``, or ``unknown terminal``."""
        return f"{self.kind}:{self.name}" if self.name else f"unknown {self.kind}"

    @property
    def channel(self) -> Channel:
        return _CHANNELS[self.kind]

    def may(self, permission: str) -> bool:
        return self.kind == "operator" or permission in self.permissions


OPERATOR = Actor("operator", "nlr")
UNKNOWN_TERMINAL = Actor("terminal", "")  # a failed SIP2 login naming no terminal


def require_operator(actor: Actor) -> None:
    if actor.kind != "operator":
        raise PermissionDenied("only the operator may do this")


def require_library_actor(actor: Actor, isil: str) -> None:
    """The library ``isil`` itself (its terminals and clients) or the operator."""
    if actor.kind != "operator" and actor.library_isil != isil:
        raise PermissionDenied(f"{actor.label} acts for {actor.library_isil}, not {isil}")


def require_client_may(actor: Actor, permission: str, refusal: str) -> None:
    """An API client needs the permission; terminals, patrons and the operator are judged elsewhere."""
    if actor.kind == "client" and not actor.may(permission):
        raise PermissionDenied(refusal)


def require_may_create(actor: Actor) -> None:
    if not actor.may("create"):
        raise PermissionDenied("this client may not register patrons")


def require_may_look_up(actor: Actor, *, with_national_id: bool) -> None:
    require_client_may(actor, "lookup", "this client may not look patrons up")
    if with_national_id and not actor.may("see-national-id"):
        raise PermissionDenied("this client may not see national identity numbers")


def require_may_look_up_by_national_id(actor: Actor, *, with_national_id: bool) -> None:
    if not actor.may("lookup-national-id"):
        raise PermissionDenied("looking patrons up by national identity number needs the lookup-national-id permission")
    if with_national_id and not actor.may("see-national-id"):
        raise PermissionDenied("this client may not see national identity numbers")


def may_learn_card_of_national_id(actor: Actor) -> bool:
    """Whether a refusal may name the card registered under a national id (a duplicate registration):
    only to who may look patrons up by national id, else CreateUser would be that lookup."""
    return actor.may("lookup-national-id")


def is_affiliated(patron: Patron, isil: str | None) -> bool:
    return isil is not None and any(a.library.isil == isil for a in patron.activations)


def require_may_change(actor: Actor, patron: Patron) -> None:
    """The operator; or a library the patron is affiliated with (home library or activated there)."""
    if actor.kind == "operator":
        return
    if actor.kind == "patron":
        raise PermissionDenied("a patron may change only the home library on the self-service page")
    if not is_affiliated(patron, actor.library_isil):
        raise NotAffiliated(f"library {actor.library_isil} is not affiliated with this patron; "
                            "activate the card there first")


def require_may_change_home_library(actor: Actor, patron: Patron, isil: str) -> None:
    """The patron themself (to a library the card is activated at), an affiliated library, or the operator."""
    if actor.kind == "patron":
        require_own(actor, (c.number for c in patron.cards), "a patron may change only their own home library")
        if not is_affiliated(patron, isil):
            raise NotAffiliated(f"the card is not activated at {isil}; choose one of the libraries it is activated at")
    else:
        require_may_change(actor, patron)


def is_own(actor: Actor, cards: Iterable[str]) -> bool:
    """Whether a patron actor holds one of these cards (always true for anyone else)."""
    return actor.kind != "patron" or actor.name in set(cards)


def require_own(actor: Actor, cards: Iterable[str], refusal: str = "a patron may see only their own data") -> None:
    if not is_own(actor, cards):
        raise PermissionDenied(refusal)


def require_may_delete(actor: Actor, home_isil: str) -> None:
    require_client_may(actor, "delete", "this client may not delete patrons")
    if actor.kind != "operator" and home_isil != actor.library_isil:
        raise PermissionDenied("only the patron's home library or the operator may delete a patron")


def require_may_export(actor: Actor, cards: Iterable[str]) -> None:
    """Innsyn: the patron themself or the operator."""
    require_own(actor, cards)
    if actor.kind not in ("patron", "operator"):
        raise PermissionDenied("only the patron or the operator may export a patron")


def may_block_unaffiliated(actor: Actor) -> bool:
    """A kiosk may block a card it holds (SIP2 01, retained or tampered with) at any library."""
    return actor.kind == "terminal"


def acts_for(actor: Actor, institution: str | None) -> bool:
    """Whether a request naming ``institution`` (SIP2 AO; ISIL or bare library number) is for the
    actor's own library. No institution named, or an actor bound to no library: yes."""
    if institution is None or actor.library_isil is None:
        return True
    try:
        return normalise_isil(institution) == actor.library_isil
    except InvalidIdentifier:
        return institution.strip() == actor.library_isil


def require_may_read_feed(actor: Actor) -> str:
    """The change feed of a library (its own patrons' changes): an API client of that library with
    the permission ``changes`` (not in the default set). Returns the library's ISIL."""
    if actor.kind != "client" or actor.library_isil is None:
        raise PermissionDenied("the change feed is read by a library's API client")
    if not actor.may("changes"):
        raise PermissionDenied("this client may not read the change feed (it needs the permission changes)")
    return actor.library_isil


def require_library_for_changes(actor: Actor) -> str:
    """A library system's change to a patron (NCIP UpdateUser) is made at the actor's library."""
    require_client_may(actor, "update", "this client may not change patrons")
    if actor.library_isil is None:
        raise PermissionDenied("only a library may change a patron this way")
    return actor.library_isil
