"""One NCIP message in, one NCIP message out (ncip.md Part A). Synchronous: it runs in the thread pool.

bytes → `protocols.ncip` → one `Register` call → `protocols.ncip` → bytes. No Twisted and no SQL here,
and no rules: the register decides, this module only translates requests, views and refusals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from gateway.register import Register, audit, crypto
from gateway.register.errors import (
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
)
from gateway.register.fields import PatronChanges
from gateway.register.identifiers import InvalidIdentifier, normalise_card_number, normalise_isil
from gateway.register.memory import MISSING, DecisionMemory
from gateway.register.updates import LibraryChange
from gateway.register.views import Actor, ClientView, PatronView
from gateway.register.vocabulary import RETIRED, Action
from protocols import ncip
from protocols.ncip import schemes as s
from protocols.ncip.schemes import PrivilegeKind, Problem, UserElementType

REGISTER_NAME = "Nasjonalt lånerregister"
_AUTH_FAILED = Problem(s.USER_AUTHENTICATION_FAILED, detail="Card number or PIN is invalid",
                       element="AuthenticationInput")
_UNKNOWN_CLIENT = Problem(s.AGENCY_AUTHENTICATION_FAILED, detail="Unknown or disabled client credential")


@dataclass(frozen=True)
class Answer:
    """The response, and what the log may say about it (never a PIN, token or national id)."""

    body: bytes
    service: str | None = None  # None: a message-level Problem
    client: str | None = None
    problem: str | None = None  # the ProblemType value, when the answer is a Problem
    library: str | None = None  # the client's library (ISIL)


#: The largest message answered from memory (a LookupUser by card is about 1 KB): a larger one is
#: parsed in the pool, so that no sender can keep the reactor thread parsing.
MEMORY_BODY_MAX = 16 * 1024


@dataclass(frozen=True)
class Recall:
    """What the memory lacked to answer (`Responder.answer_from_memory`): a client token or a card."""

    token: str | None = None
    card: str | None = None


class Refused(Exception):
    """A request the profile refuses before (or instead of) asking the register."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.type.value)
        self.problem = problem


# --- the register's words in NCIP's ---------------------------------------------------------------

def _card_or_none(value: str | None) -> str | None:
    """The card number, if ``value`` is one: only a card-shaped value may go into a ProblemValue
    (a client might put a national id where a card belongs)."""
    try:
        return normalise_card_number(value) if value else None
    except InvalidIdentifier:
        return None


def _same_library(agency_id: str | None, isil: str | None) -> bool:
    try:
        return agency_id is not None and normalise_isil(agency_id) == isil
    except InvalidIdentifier:
        return False


def problem_for(exc: RegisterError, request: ncip.Request) -> Problem:
    """The Problem that answers a register refusal (ncip.md A.5). Register messages are safe to show."""
    detail = str(exc)[:300]
    user = getattr(request, "user", None)
    card = getattr(request, "card", None) or (user.card if user else None)
    if isinstance(exc, RegisterUnavailable):
        return Problem(s.REGISTER_UNAVAILABLE, detail="The register does not answer; try again shortly")
    if isinstance(request, ncip.LookupAgency) and isinstance(exc, (NotFound, InvalidInput)):
        return Problem(s.UNKNOWN_AGENCY, detail=detail, element="AgencyId",
                       value=(request.agency_id or "")[:40] or None)
    if isinstance(exc, AuthenticationFailed) or (isinstance(exc, NotFound) and user and user.pin):
        return _AUTH_FAILED  # the same for an unknown card and a wrong PIN
    if isinstance(exc, PinLocked):
        return Problem(s.PIN_LOCKED, detail=detail, element="AuthenticationInput")
    if isinstance(exc, DuplicatePatron):
        return Problem(s.DUPLICATE_USER, detail=detail, element="UserIdentifierValue", value=exc.existing_card)
    if isinstance(exc, NotFound):
        return Problem(s.UNKNOWN_USER, detail=detail, element="UserIdentifierValue", value=_card_or_none(card))
    if isinstance(exc, InvalidNationalIdentityNumber):
        return Problem(s.INVALID_NATIONAL_IDENTITY_NUMBER, detail=detail, element="UserIdentifierValue")
    table: list[tuple[type[RegisterError], s.ProblemType, str | None]] = [
        (CardOutsideSeries, s.CARD_NUMBER_OUTSIDE_RESERVED_SERIES, "UserIdentifierValue"),
        (CardInUse, s.CARD_NUMBER_IN_USE, "UserIdentifierValue"),
        (NotAffiliated, s.NOT_AFFILIATED_WITH_AGENCY, None),
        (PermissionDenied, s.UNAUTHORIZED_SERVICE_FOR_AGENCY, request.service),
        (InvalidInput, s.ELEMENT_RULE_VIOLATED, None),
    ]
    for kind, problem_type, element in table:
        if isinstance(exc, kind):
            value = _card_or_none(card) if element == "UserIdentifierValue" else None
            return Problem(problem_type, detail=detail, element=element, value=value)
    return Problem(s.TEMPORARY_PROCESSING_FAILURE, detail=detail)  # version conflict, series exhausted


def user_view(p: PatronView) -> ncip.UserView:
    """A patron as NCIP shows it (ncip.md A.4); the national id is passed on separately."""
    privileges = [ncip.PrivilegeView(agency_id=a.library_isil, valid_from=a.activated_at,
                                     description=s.HOME_LIBRARY if a.home else s.ACTIVATED)
                  for a in p.activations]
    privileges += [ncip.PrivilegeView(agency_id=a.library_isil, kind=PrivilegeKind.MERAPENT,
                                      valid_from=a.door_agreement_at)
                   for a in p.activations if a.door_agreement_at and not a.door_revoked_at]
    lost = p.card_status in RETIRED
    blocks = [ncip.BlockView(type=s.BlockType.BLOCK_CHECK_OUT)] if p.blocked else []
    blocks += [ncip.BlockView(type=s.BlockType.TRAP_FOR_LOST_CARD)] if lost else []
    has_address = any((p.address_line1, p.address_line2, p.postal_code, p.city))
    return ncip.UserView(
        card=p.card, given_name=p.given_name or None, surname=p.surname or None,
        address=ncip.AddressView(line1=p.address_line1, line2=p.address_line2, locality=p.city,
                                 postal_code=p.postal_code, country=p.country) if has_address else None,
        secret_address=p.secret_address, email=p.email, phone=p.phone, birth_date=p.birth_date,
        privileges=tuple(privileges), blocks=tuple(blocks),
        status=s.PatronStatus.BLOCKED if p.blocked or lost else s.PatronStatus.OK,
        previous_cards=tuple(c.number for c in p.cards if c.status in RETIRED and c.number != p.card),
    )


class _NameFields(TypedDict, total=False):
    """Keyword arguments of the register: the names that were given."""

    given_name: str
    surname: str


class _AddressFields(TypedDict, total=False):
    """Keyword arguments of the register: the address."""

    address_line1: str | None
    address_line2: str | None
    city: str | None
    postal_code: str | None
    country: str | None


def _names(name: ncip.Name | None) -> _NameFields:
    out: _NameFields = {}
    if name is None:
        return out
    given, surname = name.given_name, name.surname
    if not surname and name.unstructured:  # "Kari Nordmann" or "Nordmann, Kari"
        text = name.unstructured.strip()
        if "," in text:
            surname, _, given = text.partition(",")
        else:
            given, _, surname = text.rpartition(" ")
    if given and given.strip():
        out["given_name"] = given.strip()
    if surname and surname.strip():
        out["surname"] = surname.strip()
    return out


def _address(addresses: tuple[ncip.Address, ...]) -> _AddressFields:
    if not addresses:
        return {}
    a = next((a for a in addresses if a.role == "Home"), addresses[0])
    line1, line2 = a.line1, a.line2
    if not line1 and a.unstructured:
        line1, _, rest = a.unstructured.strip().partition("\n")
        line2 = line2 or rest.strip() or None
    return _AddressFields(address_line1=line1, address_line2=line2, city=a.locality,
                          postal_code=a.postal_code, country=a.country)


def _needed(detail: str, element: str) -> Refused:
    return Refused(Problem(s.NEEDED_DATA_MISSING, detail=detail, element=element))


# --- the responder --------------------------------------------------------------------------------

class Responder:
    def __init__(self, register: Register, *, max_body_bytes: int = ncip.MAX_SIZE) -> None:
        self.register = register
        self.agency_id = register.settings.agency_id
        self.max_body_bytes = max_body_bytes

    def answer(self, message: bytes, bearer: str | None, request_id: str | None = None) -> Answer:
        """The response to one message, asked in the request ``request_id`` (its audit rows carry it).
        Raises nothing but a bug."""
        begun = self._begin(message, bearer, {})
        return begun if isinstance(begun, Answer) else self._finish(*begun, request_id)

    def answer_many(self, messages: list[tuple[bytes, str | None, str | None]]) -> list[Answer | Exception]:
        """``answer`` for messages that arrived together: the same responses, but lookups by card
        (without a PIN) of the same client are read in one go (``Register.find_patrons``), and each
        credential is checked once. A bug costs only the messages it met: their outcome is the
        exception, for the caller to answer as a processing failure; the others keep their answers
        (a CreateUser done is never reported as failed)."""
        out: list[Answer | Exception | None] = [None] * len(messages)
        clients: dict[str, ClientView | None] = {}
        lookups: dict[tuple[ClientView, bool], list[tuple[int, ncip.LookupUser]]] = {}
        for i, (message, bearer, request_id) in enumerate(messages):
            try:
                begun = self._begin(message, bearer, clients)
                if isinstance(begun, Answer):
                    out[i] = begun
                    continue
                request, client = begun
                if isinstance(request, ncip.LookupUser) and request.user.pin is None and request.user.card:
                    see = self._sees_national_id(request, client.actor())
                    lookups.setdefault((client, see), []).append((i, request))
                else:
                    out[i] = self._finish(request, client, request_id)
            except Exception as exc:  # noqa: BLE001 - a bug: this message alone
                out[i] = exc
        for (client, see), group in lookups.items():
            try:
                views: Sequence[PatronView | Exception] = self.register.find_patrons(
                    client.actor(), [r.user.card or "" for _, r in group], with_national_id=see,
                    request_ids=[messages[i][2] for i, _ in group])
            except Exception as exc:  # noqa: BLE001 - RegisterError: a Problem each; a bug: the group alone
                views = [exc] * len(group)
            for (i, r), view in zip(group, views, strict=True):
                if isinstance(view, RegisterError):
                    out[i] = self._problem(r, problem_for(view, r), client)
                elif isinstance(view, Exception):
                    out[i] = view
                else:
                    try:
                        body = ncip.lookup_user_response(user_view(view), r.element_types, header=r.header,
                                                         register_id=self.agency_id,
                                                         national_id=view.national_id if see else None)
                        out[i] = Answer(body, r.service, client.name, library=client.library_isil)
                    except Exception as exc:  # noqa: BLE001
                        out[i] = exc
        return out  # type: ignore[return-value]

    def answer_from_memory(self, message: bytes, bearer: str | None, request_id: str | None,
                           memory: DecisionMemory, audit_rows: list[dict[str, Any]] | Any) -> Answer | Recall | None:
        """The answer from the gateway's memory (issue 13, gateway.hot_path), with no database and no
        thread: a LookupUser by card without a PIN, whose client and card the memory holds, is
        answered as ``answer`` answers it, its audit row appended to ``audit_rows``; a `Recall` names
        what the memory lacks (read it, then ask again); None: the request is not for memory."""
        if not bearer or len(message) > MEMORY_BODY_MAX:
            return None  # parsed in the pool: no XML of an unknown sender, nor a large one, on the reactor
        client = memory.client(crypto.token_hash(bearer)) if len(bearer) <= 200 else None
        if client is MISSING:
            return Recall(token=bearer)
        if client is None:  # refused before the parse, as `_begin` does
            return Answer(ncip.message_problem(_UNKNOWN_CLIENT), problem=_UNKNOWN_CLIENT.type.value)
        try:
            request = ncip.parse_request(message, max_size=self.max_body_bytes)
        except ncip.NCIPError as exc:
            return Answer(ncip.error_response(exc, register_id=self.agency_id),
                          getattr(exc, "service", None), problem=exc.problem.type.value)
        if not isinstance(request, ncip.LookupUser) or request.user.pin is not None or not request.user.card:
            return None
        if request.header.from_agency_id is not None and not _same_library(request.header.from_agency_id,
                                                                            client.library_isil):
            return None  # refused by `_client`, in the pool
        actor = client.actor()
        if self._sees_national_id(request, actor) or not actor.may("lookup"):
            return None  # the national id is never in memory; a refusal is the register's
        try:
            number = normalise_card_number(request.user.card)
        except InvalidIdentifier:
            return None
        card = memory.card(number)
        if card is None:
            return Recall(card=number)
        asking = actor.asking(request_id)
        if card.view is None:
            audit_rows.append(audit.row(asking, Action.PATRON_LOOKUP, "not_found", card=number))
            return self._problem(request, problem_for(NotFound(f"card {number} is not in the register"), request),
                                 client)
        audit_rows.append(audit.row(asking, Action.PATRON_LOOKUP, "ok", patron=card.patron_id, card=number))
        # the response depends on the facts, the element types asked for and the agencies it names
        # (never the token): built once per such question while the facts are remembered
        key = (request.element_types, request.header.from_agency_id, request.header.to_agency_id)
        body = card.answers.get(key)
        if body is None:
            body = ncip.lookup_user_response(user_view(card.view), request.element_types, header=request.header,
                                             register_id=self.agency_id)
            if len(card.answers) < 4:
                card.answers[key] = body
        return Answer(body, request.service, client.name, library=client.library_isil)

    def _begin(self, message: bytes, bearer: str | None,
               clients: dict[str, ClientView | None]) -> Answer | tuple[ncip.Request, ClientView]:
        """The parsed request and the client behind it, or the answer that refuses it.

        A Bearer token is checked before the message is parsed: an unknown one is refused without
        any work on the body (the answer is the same "Unknown or disabled client credential" that
        follows the parse otherwise). A token in the InitiationHeader needs the parse, which the
        codec bounds (`ncip.MAX_ELEMENTS`)."""
        if bearer:
            try:
                if self._known(bearer, clients) is None:
                    return Answer(ncip.message_problem(_UNKNOWN_CLIENT), problem=_UNKNOWN_CLIENT.type.value)
            except RegisterUnavailable:
                pass  # answered after the parse, as the service's Problem
        try:
            request = ncip.parse_request(message, max_size=self.max_body_bytes)
        except ncip.NCIPError as exc:
            return Answer(ncip.error_response(exc, register_id=self.agency_id),
                          getattr(exc, "service", None), problem=exc.problem.type.value)
        try:
            return request, self._client(request.header, bearer, clients)
        except Refused as refused:
            return Answer(ncip.message_problem(refused.problem), problem=refused.problem.type.value)
        except RegisterUnavailable as exc:
            return self._problem(request, problem_for(exc, request), None)

    def _finish(self, request: ncip.Request, client: ClientView, request_id: str | None = None) -> Answer:
        try:
            body = self._serve(request, client.actor().asking(request_id))
        except RegisterError as exc:
            return self._problem(request, problem_for(exc, request), client)
        except Refused as refused:
            return self._problem(request, refused.problem, client)
        return Answer(body, request.service, client.name, library=client.library_isil)

    def _problem(self, request: ncip.Request, problem: Problem, client: ClientView | None) -> Answer:
        body = ncip.problem_response(request.service, problem, header=request.header, register_id=self.agency_id)
        return Answer(body, request.service, client.name if client else None, problem.type.value,
                      client.library_isil if client else None)

    def _client(self, header: ncip.InitiationHeader, bearer: str | None,
                known: dict[str, ClientView | None]) -> ClientView:
        """The API client behind the credential (ncip.md A.1), bound to the FromAgencyId when sent.
        ``known``: credentials already checked in this batch."""
        token = bearer or header.token
        if not token:
            raise Refused(Problem(s.AGENCY_AUTHENTICATION_FAILED, detail="No client credential: send "
                                  "Authorization: Bearer <token> or InitiationHeader/FromAgencyAuthentication"))
        client = self._known(token, known)
        if client is None:
            raise Refused(_UNKNOWN_CLIENT)
        if header.from_agency_id is not None and not _same_library(header.from_agency_id, client.library_isil):
            raise Refused(Problem(s.AGENCY_AUTHENTICATION_FAILED, element="FromAgencyId",
                                  detail="FromAgencyId is not the library this client credential belongs to"))
        return client

    def _known(self, token: str, known: dict[str, ClientView | None]) -> ClientView | None:
        """The client holding ``token`` (None: none, or disabled), asked of the register once per batch."""
        if token not in known:
            known[token] = self.register.authenticate_client(token) if len(token) <= 200 else None
        return known[token]

    def _serve(self, request: ncip.Request, actor: Actor) -> bytes:
        header, rid = request.header, self.agency_id
        match request:
            case ncip.LookupUser():
                view, national_id = self._lookup_user(request, actor)
                return ncip.lookup_user_response(user_view(view), request.element_types, header=header,
                                                 register_id=rid, national_id=national_id)
            case ncip.LookupAgency():
                return ncip.lookup_agency_response(self._agency(request.agency_id), request.element_types,
                                                   header=header, register_id=rid)
            case ncip.CreateUser():
                return ncip.create_user_response(self._create_user(request, actor), header=header, register_id=rid)
            case ncip.UpdateUser():
                return ncip.update_user_response(self._update_user(request, actor), header=header, register_id=rid)
            case ncip.DeleteUser():
                if not request.user.card:
                    raise _needed("DeleteUser needs the card number in UserId", "UserId")
                card = self.register.delete_patron(actor, request.user.card)
                return ncip.delete_user_response(card, header=header, register_id=rid)
            case _:
                return ncip.unsupported_service(request.service, header=header, register_id=rid)

    @staticmethod
    def _sees_national_id(r: ncip.LookupUser, actor: Actor) -> bool:
        """The national id goes only to a client allowed to see it, and only when User Id is asked for."""
        return UserElementType.USER_ID in r.element_types and actor.may("see-national-id")

    def _lookup_user(self, r: ncip.LookupUser, actor: Actor) -> tuple[PatronView, str | None]:
        see = self._sees_national_id(r, actor)
        user = r.user
        if user.pin is not None:
            if not user.card:
                raise Refused(_AUTH_FAILED)
            view = self.register.authenticate_patron(actor, user.card, user.pin, with_national_id=see)
        elif user.card:
            view = self.register.find_patron(actor, user.card, with_national_id=see)
        elif user.national_id:
            view = self.register.find_patron_by_national_id(actor, user.national_id, with_national_id=see)
        else:
            raise _needed("LookupUser needs a UserId or an AuthenticationInput", "UserId")
        return view, view.national_id if see else None

    def _agency(self, agency_id: str | None) -> ncip.AgencyView:
        if not agency_id or agency_id.strip().casefold() == self.agency_id.casefold():
            return ncip.AgencyView(agency_id=self.agency_id, name=REGISTER_NAME)
        library = self.register.get_library(agency_id)
        return ncip.AgencyView(agency_id=library.isil, name=library.name)

    def _create_user(self, r: ncip.CreateUser, actor: Actor) -> str:
        if not r.national_id:
            raise _needed("CreateUser needs the national identity number: Ext/UserId with "
                          "UserIdentifierType National Identity Number", "UserIdentifierValue")
        names = _names(r.name)
        if "surname" not in names:
            raise _needed("CreateUser needs the patron's name", "NameInformation")
        door = any(p.kind == PrivilegeKind.MERAPENT and _same_library(p.agency_id, actor.library_isil)
                   for p in r.privileges)
        view = self.register.register_patron(
            actor, actor.library_isil or "", national_id=r.national_id, card=r.card, birth_date=r.birth_date,
            email=next(iter(r.emails), None), phone=next(iter(r.phones), None), pin=r.pin, door_agreement=door,
            surname=names["surname"], given_name=names.get("given_name", ""), **_address(r.addresses))
        return view.card

    def _update_user(self, r: ncip.UpdateUser, actor: Actor) -> str:
        if not r.user.card:
            raise _needed("UpdateUser needs the card number in UserId or AuthenticationInput", "UserId")
        add, remove = r.add_fields, r.delete_fields
        changes: dict[str, Any] = {**_names(add.name)}
        if add.addresses or remove.addresses:
            changes.update(_address(add.addresses) or dict.fromkeys(
                ("address_line1", "address_line2", "city", "postal_code"), ""))
        for key, added, removed in (("email", add.emails, remove.emails), ("phone", add.phones, remove.phones)):
            if added or removed:
                changes[key] = added[0] if added else ""
        if add.birth_date is not None:
            changes["birth_date"] = add.birth_date
        changes = {k: v for k, v in changes.items() if v is not None}
        own = actor.library_isil
        wanted: dict[str, Any] = {"activate": False, "door_agreement": False, "revoke_door": False}
        for p in add.privileges:
            if p.kind == PrivilegeKind.LIBRARY and p.description == s.HOME_LIBRARY and p.agency_id:
                wanted["home_library"] = p.agency_id
            elif p.kind in (PrivilegeKind.LIBRARY, PrivilegeKind.MERAPENT) and _same_library(p.agency_id, own):
                wanted["activate" if p.kind == PrivilegeKind.LIBRARY else "door_agreement"] = True
            else:
                raise self._privilege_refused(own)
        for p in remove.privileges:
            if p.kind == PrivilegeKind.MERAPENT and _same_library(p.agency_id, own):
                wanted["revoke_door"] = not wanted["door_agreement"]
            elif not (p.kind == PrivilegeKind.LIBRARY and p.description == s.HOME_LIBRARY):
                raise self._privilege_refused(own)  # activations are never removed over NCIP
        if not (changes or add.pin or any(wanted.values())):
            raise _needed("UpdateUser changes nothing: put the new values in AddUserFields", "AddUserFields")
        change = LibraryChange(changes=PatronChanges.of(**changes), new_pin=add.pin, **wanted)
        return self.register.change_patron(actor, r.user.card, change, pin=r.user.pin)

    @staticmethod
    def _privilege_refused(own: str | None) -> Refused:
        return Refused(Problem(
            s.UNAUTHORIZED_COMBINATION_FOR_AGENCY, element="UserPrivilege",
            detail=f"A library system may add a LIBRARY or MERAPENT privilege only at its own library ({own}), "
                   "or move the home library (UserPrivilegeDescription Home library); activations stay"))
