"""Lenient, hardened NCIP request parser (ncip.md A.1, A.2).

Elements and attributes are matched by local name, so any prefix, a default namespace or no
namespace all work; ``Scheme``/``version`` may be qualified or not (we ignore both). A
SchemeValuePair may carry its value as text or as NCIP 1 ``Scheme``/``Value`` children; v1
``UniqueUserId``/``UniqueAgencyId`` are read as ``UserId``/``AgencyId``. Controlled values are
compared trimmed, case-, space-, ``-``- and ``_``-insensitively.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from enum import StrEnum
from typing import TYPE_CHECKING, TypedDict, TypeVar

from lxml import etree

from . import schemes as s
from .requests import (
    Address,
    CreateUser,
    DeleteUser,
    InitiationHeader,
    LookupAgency,
    LookupUser,
    Name,
    Privilege,
    Request,
    UnsupportedRequest,
    UpdateUser,
    UserFields,
    UserRef,
)

if TYPE_CHECKING:
    from lxml.etree._docloader import _InputDocument  # only in the stubs: what a Resolver hands back

MAX_SIZE = 256 * 1024
# The work bounds: a message of our profile holds at most a few dozen elements (the largest example,
# a LookupUserResponse, 60), none repeated more than a handful of times. Beyond these caps the
# message is refused right after libxml2 has read it (which it does without holding the GIL), before
# any Python walks the tree: a 256 KB body of 7,000 UserElementType costs about 2 ms, not 35.
MAX_ELEMENTS = 1000
MAX_REPEATED = 50
_COUNT_ELEMENTS = etree.XPath("count(//*)")


class NCIPError(Exception):
    """Base of the codec's errors; ``problem`` is what to answer (see `build.error_response`)."""

    problem: s.Problem


class NCIPSyntaxError(NCIPError):
    """Not XML, or not an NCIPMessage: message-level "Invalid Message Syntax Error"."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.problem = s.Problem(s.INVALID_MESSAGE_SYNTAX_ERROR, detail=reason)


class MessageTooLarge(NCIPSyntaxError):
    def __init__(self, limit: int):
        super().__init__(f"The message is larger than {limit} bytes")
        self.limit = limit


class TooManyElements(NCIPSyntaxError):
    """More elements than `MAX_ELEMENTS` in all, or more than `MAX_REPEATED` of one name side by side."""


class UnknownService(NCIPError):
    """The element under NCIPMessage is no NCIP 2.02 initiation message: "Unknown Service"."""

    def __init__(self, element: str):
        element = element[:100]
        super().__init__(f"unknown service {element!r}")
        self.element = element
        self.problem = s.Problem(s.UNKNOWN_SERVICE, detail="Not an NCIP 2.02 service",
                                 element=element)


class RequestProblem(NCIPError):
    """A known service with a value we cannot read (a bad date): a Problem in <service>Response."""

    def __init__(self, service: str, header: InitiationHeader, problem: s.Problem):
        super().__init__(f"{service}: {problem.type.value} in {problem.element}")
        self.service, self.header, self.problem = service, header, problem


class _BadDate(Exception):
    def __init__(self, element: str, raw: str):
        self.element, self.raw = element, raw


# --- the hardened parser -------------------------------------------------------------------------

class _DenyResolver(etree.Resolver):
    """Belt and braces: should libxml2 ever ask for an external resource, hand it nothing."""

    def resolve(self, system_url: str | None, public_id: str | None, context: object, /) -> _InputDocument:
        return self.resolve_string("", context)


_local_parsers = threading.local()


def _parser() -> etree.XMLParser:
    # lxml parsers must not be shared between threads. Note: collect_ids=False would make
    # libxml2 try to fetch an external DTD (a v1 DOCTYPE would then fail), so it is left alone.
    parser = getattr(_local_parsers, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False, load_dtd=False, dtd_validation=False, no_network=True,
            huge_tree=False, remove_comments=True, remove_pis=True)
        parser.resolvers.add(_DenyResolver())
        _local_parsers.parser = parser
    return parser


# --- tree helpers --------------------------------------------------------------------------------

_ALIASES = {"UniqueUserId": "UserId", "UniqueAgencyId": "AgencyId"}  # NCIP 1 names


def _local(el: etree._Element) -> str:
    """The local name of an element (``""`` for a comment or processing instruction, whose tag is
    not a string; the callers look at elements only)."""
    name = el.tag.rpartition("}")[2] if isinstance(el.tag, str) else ""
    return _ALIASES.get(name, name)


def _children(el: etree._Element | None, name: str | None = None) -> list[etree._Element]:
    """The child elements (named ``name``); more than `MAX_REPEATED` of that name: `TooManyElements`."""
    if el is None:
        return []
    found = [c for c in el if isinstance(c.tag, str) and (name is None or _local(c) == name)]
    if name is not None and len(found) > MAX_REPEATED:
        raise TooManyElements(f"More than {MAX_REPEATED} {name} elements in {_local(el)}")
    return found


def _child(el: etree._Element | None, name: str) -> etree._Element | None:
    found = _children(el, name)
    return found[0] if found else None


def _descendant(el: etree._Element | None, name: str) -> etree._Element | None:
    if el is None:
        return None
    return next((d for d in el.iterdescendants() if isinstance(d.tag, str) and _local(d) == name),
                None)


def _text(el: etree._Element | None) -> str | None:
    """Trimmed character data; unresolved entity references contribute nothing."""
    if el is None:
        return None
    text = ((el.text or "") + "".join(c.tail or "" for c in el)).strip()
    return text or None


def _value(el: etree._Element | None) -> str | None:
    """A SchemeValuePair's value: its text, or a v1 ``Value`` child's."""
    v1 = _child(el, "Value")
    return _text(v1) if v1 is not None else _text(el)


def _key(value: str | None) -> str:
    return re.sub(r"[\s_\-]+", "", value or "").casefold()


def _vocabulary(*values: str, **synonyms: str) -> dict[str, str]:
    table = {_key(v): v for v in values}
    table.update({_key(k): v for k, v in synonyms.items()})  # _key ignores "_" and spaces
    return table


def _canon(el: etree._Element | None, vocabulary: dict[str, str]) -> str | None:
    value = _value(el)
    return vocabulary.get(_key(value), value)


_USER_ELEMENT_TYPES = _vocabulary(*s.UserElementType)
_AGENCY_ELEMENT_TYPES = _vocabulary(*s.AgencyElementType)
_ROLES = _vocabulary("Bill To", "Home", "Multi-Purpose", "Notice", "Ship To", "Work")
_PRIVILEGE_KINDS = _vocabulary(*s.PrivilegeKind, MERÅPENT=s.PrivilegeKind.MERAPENT)
_DESCRIPTIONS = _vocabulary(s.HOME_LIBRARY, s.ACTIVATED)
_STATUSES = _vocabulary("Active", *s.PatronStatus)
_CARD, _PIN, _EMAIL, _PHONE = "card", "pin", "email", "phone"
_AUTH_TYPES = _vocabulary(Barcode_Id=_CARD, Barcode=_CARD, User_Id=_CARD, Username=_CARD,
                          PIN=_PIN, Password=_PIN)
_ELECTRONIC_TYPES = _vocabulary(
    mailto=_EMAIL, email=_EMAIL, email_address=_EMAIL, electronic_mail_address=_EMAIL,
    tel=_PHONE, telephone=_PHONE, phone=_PHONE, sms=_PHONE, mobile=_PHONE)

_DATE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,6})\d*)?)?)?"
    r"\s*(Z|[+-]\d{2}(?::?\d{2})?)?", re.ASCII | re.IGNORECASE)


def _datetime(el: etree._Element | None) -> datetime | None:
    """xs:dateTime or xs:date, with or without time and zone; no zone means Europe/Oslo."""
    found = _datetime_and_match(el)
    return found[0] if found else None


def _datetime_and_match(el: etree._Element | None) -> tuple[datetime, re.Match[str]] | None:
    raw = _text(el)
    if el is None or raw is None:
        return None
    m = _DATE.fullmatch(raw)
    try:
        if m is None:
            raise ValueError(raw)
        y, mo, d, h, mi, sec, frac, zone = m.groups()
        tz: tzinfo = s.OSLO
        if zone and zone.upper() == "Z":
            tz = UTC
        elif zone:
            digits = zone[1:].replace(":", "")
            offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
            tz = timezone(-offset if zone[0] == "-" else offset)
        return datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(sec or 0),
                        int((frac or "0").ljust(6, "0")), tzinfo=tz).astimezone(s.OSLO), m
    except (ValueError, OverflowError):
        raise _BadDate(_local(el), raw[:40]) from None


def _date(el: etree._Element | None) -> date | None:
    """A birth date: the calendar date as written, whatever time or zone follows it."""
    found = _datetime_and_match(el)  # validates the whole value
    if found is None:
        return None
    y, m, d = found[1].groups()[:3]
    return date(int(y), int(m), int(d))


# --- pieces --------------------------------------------------------------------------------------

def _agency(el: etree._Element | None) -> str | None:
    """``FromAgencyId``-like wrapper holding an ``AgencyId`` (or, leniently, the id as text)."""
    inner = _child(el, "AgencyId")
    return _value(inner if inner is not None else el)


def _header(service: etree._Element) -> InitiationHeader:
    h = _child(service, "InitiationHeader")
    return InitiationHeader(
        from_agency_id=_agency(_child(h, "FromAgencyId")),
        to_agency_id=_agency(_child(h, "ToAgencyId")),
        token=_text(_child(h, "FromAgencyAuthentication")),
        application_profile=_value(_child(h, "ApplicationProfileType")),
    )


def _auth_inputs(container: etree._Element | None) -> dict[str, str]:
    """First card and first PIN among the ``AuthenticationInput`` children (synonyms, A.2)."""
    found: dict[str, str] = {}
    for ai in _children(container, "AuthenticationInput"):
        kind = _AUTH_TYPES.get(_key(_value(_child(ai, "AuthenticationInputType"))))
        data = _text(_child(ai, "AuthenticationInputData"))
        if kind and data:
            found.setdefault(kind, data)
    return found


def _user_ref(containers: Iterable[etree._Element | None]) -> UserRef:
    uid_card = national_id = None
    auth: dict[str, str] = {}
    for container in containers:
        for uid in _children(container, "UserId"):
            value = _text(_child(uid, "UserIdentifierValue"))
            id_type = _key(_value(_child(uid, "UserIdentifierType")))
            if id_type == _key(s.NATIONAL_IDENTITY_NUMBER):
                national_id = national_id or value
            else:
                uid_card = uid_card or value
        for kind, data in _auth_inputs(container).items():
            auth.setdefault(kind, data)
    # With card + PIN the card that is authenticated wins over a UserId (A.2: both together).
    return UserRef(card=auth.get(_CARD) or uid_card, national_id=national_id, pin=auth.get(_PIN))


def _name(el: etree._Element | None) -> Name | None:
    if el is None:
        return None
    return Name(given_name=_text(_descendant(el, "GivenName")),
                surname=_text(_descendant(el, "Surname")),
                unstructured=_text(_descendant(el, "UnstructuredPersonalUserName")))


def _address(uai: etree._Element, physical: etree._Element) -> Address:
    structured = _child(physical, "StructuredAddress")

    def part(name: str) -> str | None:
        return _text(_child(structured, name))

    return Address(
        role=_canon(_child(uai, "UserAddressRoleType"), _ROLES),
        line1=part("Line1") or part("Street") or part("PostOfficeBox"),
        line2=part("Line2"),
        locality=part("Locality"),
        postal_code=part("PostalCode"),
        country=part("Country"),
        unstructured=_text(_descendant(_child(physical, "UnstructuredAddress"),
                                       "UnstructuredAddressData")),
        valid_to=_datetime(_child(uai, "ValidToDate")),
    )


def _privilege(el: etree._Element) -> Privilege:
    kind = _value(_child(el, "AgencyUserPrivilegeType"))
    return Privilege(
        agency_id=_value(_child(el, "AgencyId")),
        kind=_PRIVILEGE_KINDS.get(_key(kind)) or (kind.upper() if kind else None),
        valid_from=_datetime(_child(el, "ValidFromDate")),
        valid_to=_datetime(_child(el, "ValidToDate")),
        status=_canon(_descendant(el, "UserPrivilegeStatusType"), _STATUSES),
        description=_canon(_child(el, "UserPrivilegeDescription"), _DESCRIPTIONS),
    )


class _UserFieldValues(TypedDict):
    """The keyword arguments of ``UserFields``."""

    name: Name | None
    addresses: tuple[Address, ...]
    emails: tuple[str, ...]
    phones: tuple[str, ...]
    birth_date: date | None
    pin: str | None
    privileges: tuple[Privilege, ...]


def _user_fields(el: etree._Element | None) -> _UserFieldValues:
    addresses: list[Address] = []
    emails: list[str] = []
    phones: list[str] = []
    for uai in _children(el, "UserAddressInformation"):
        physical, electronic = _child(uai, "PhysicalAddress"), _child(uai, "ElectronicAddress")
        if physical is not None:
            addresses.append(_address(uai, physical))
        elif electronic is not None:
            kind = _ELECTRONIC_TYPES.get(_key(_value(_child(electronic, "ElectronicAddressType"))))
            data = _text(_child(electronic, "ElectronicAddressData"))
            if data and kind == _EMAIL:
                emails.append(re.sub(r"^mailto:", "", data, flags=re.I))
            elif data and kind == _PHONE:
                phones.append(re.sub(r"^(tel|sms):", "", data, flags=re.I))
    return _UserFieldValues(
        name=_name(_child(el, "NameInformation")),
        addresses=tuple(addresses), emails=tuple(emails), phones=tuple(phones),
        birth_date=_date(_child(el, "DateOfBirth")),
        pin=_auth_inputs(el).get(_PIN),
        privileges=tuple(_privilege(p) for p in _children(el, "UserPrivilege")),
    )


_E = TypeVar("_E", bound=StrEnum)


def _element_types(el: etree._Element, name: str, vocabulary: dict[str, str], enum: type[_E]) -> frozenset[_E]:
    """Requested element types; values outside the vocabulary are ignored."""
    values = (vocabulary.get(_key(_value(c))) for c in _children(el, name))
    return frozenset(enum(v) for v in values if v)


# --- services ------------------------------------------------------------------------------------

def _lookup_user(el: etree._Element, header: InitiationHeader) -> LookupUser:
    return LookupUser(header=header, user=_user_ref([el]), element_types=_element_types(
        el, "UserElementType", _USER_ELEMENT_TYPES, s.UserElementType))


def _lookup_agency(el: etree._Element, header: InitiationHeader) -> LookupAgency:
    return LookupAgency(header=header, agency_id=_value(_child(el, "AgencyId")),
                        element_types=_element_types(el, "AgencyElementType",
                                                     _AGENCY_ELEMENT_TYPES, s.AgencyElementType))


def _create_user(el: etree._Element, header: InitiationHeader) -> CreateUser:
    ref = _user_ref([el, _child(el, "Ext")])
    fields = _user_fields(el)
    fields["pin"] = ref.pin
    return CreateUser(header=header, card=ref.card, national_id=ref.national_id, **fields)


def _update_user(el: etree._Element, header: InitiationHeader) -> UpdateUser:
    return UpdateUser(header=header, user=_user_ref([el]),
                      delete_fields=UserFields(**_user_fields(_child(el, "DeleteUserFields"))),
                      add_fields=UserFields(**_user_fields(_child(el, "AddUserFields"))))


def _delete_user(el: etree._Element, header: InitiationHeader) -> DeleteUser:
    return DeleteUser(header=header, user=_user_ref([el]))


_SERVICES: dict[str, Callable[[etree._Element, InitiationHeader], Request]] = {
    "LookupUser": _lookup_user, "LookupAgency": _lookup_agency, "CreateUser": _create_user,
    "UpdateUser": _update_user, "DeleteUser": _delete_user,
}
_KNOWN = frozenset(s.SERVICES)


def parse_request(body: bytes, *, max_size: int = MAX_SIZE) -> Request:
    """Parse one NCIPMessage.

    Raises `NCIPSyntaxError` (incl. `MessageTooLarge` and `TooManyElements`), `UnknownService` or
    `RequestProblem`; never anything else for any input bytes. The work is bounded by the size cap,
    `MAX_ELEMENTS` and `MAX_REPEATED`.
    """
    if len(body) > max_size:
        raise MessageTooLarge(max_size)
    body = bytes(body).lstrip()  # some clients put a newline before the XML declaration
    if not body:
        raise NCIPSyntaxError("The message is empty")
    try:
        root = etree.fromstring(body, _parser())
    except (etree.LxmlError, ValueError, LookupError) as e:
        where = getattr(e, "position", None)
        raise NCIPSyntaxError("The message is not well-formed XML"
                              + (f" (line {where[0]}, column {where[1]})" if where else "")) from None
    if _COUNT_ELEMENTS(root) > MAX_ELEMENTS:  # libxml2 counts: no Python per element
        raise TooManyElements(f"The message holds more than {MAX_ELEMENTS} elements")
    if not isinstance(root.tag, str) or _local(root) != "NCIPMessage":
        raise NCIPSyntaxError("The root element is not NCIPMessage")
    services = [c for c in _children(root) if _local(c) != "Ext"]
    if not services:
        raise NCIPSyntaxError("NCIPMessage holds no service")
    el = services[0]
    name = _local(el)
    if name not in _KNOWN:
        raise UnknownService(name)
    header = _header(el)
    if name not in _SERVICES:
        return UnsupportedRequest(service=name, header=header)
    try:
        return _SERVICES[name](el, header)
    except _BadDate as e:
        raise RequestProblem(name, header, s.Problem(
            s.INVALID_DATE, detail="Expected an xs:dateTime such as 2024-09-02T10:15:00+02:00",
            element=e.element, value=e.raw)) from None
