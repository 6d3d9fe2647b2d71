"""Strict NCIP 2.02 response builders (ncip.md A.2 "emit", A.4, A.5).

Every function returns a complete UTF-8 document with an XML declaration: prefix ``ns1``,
``ns1:version``, ``ns1:Scheme`` on values from a published scheme, elements in schema order.
Everything they can produce validates against ncip_v2_02.xsd (the tests prove it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from lxml import etree

from . import schemes as s
from .parse import NCIPError, RequestProblem
from .requests import InitiationHeader
from .schemes import (
    AgencyElementType as AET,
    BlockType,
    PatronStatus,
    PrivilegeKind,
    Problem,
    Scheme,
    UserElementType as UET,
)

_XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


# --- builder inputs ------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class AddressView:
    line1: str | None = None
    line2: str | None = None
    locality: str | None = None  # city
    postal_code: str | None = None
    country: str | None = None  # ISO 3166 code, e.g. "NO"


@dataclass(frozen=True, kw_only=True)
class PrivilegeView:
    """One library the patron is activated at (LIBRARY) or has a door agreement with (MERAPENT)."""

    agency_id: str  # ISIL
    kind: PrivilegeKind = PrivilegeKind.LIBRARY
    valid_from: datetime | date | None = None  # activation / agreement time
    valid_to: datetime | date | None = None
    status: str = "Active"
    description: str | None = None  # s.HOME_LIBRARY or s.ACTIVATED for LIBRARY


@dataclass(frozen=True, kw_only=True)
class BlockView:
    type: BlockType
    agency_id: str | None = None  # None: the register
    valid_from: datetime | date | None = None
    valid_to: datetime | date | None = None


@dataclass(frozen=True, kw_only=True)
class UserView:
    """A patron as the register shows it. The national id is deliberately not here: pass it to
    `lookup_user_response` explicitly, and only for a client allowed to see it (A.4)."""

    card: str
    given_name: str | None = None
    surname: str | None = None
    address: AddressView | None = None
    secret_address: bool = False  # True: no postal address is ever emitted
    email: str | None = None
    phone: str | None = None
    birth_date: date | None = None
    privileges: tuple[PrivilegeView, ...] = ()
    status: PatronStatus = PatronStatus.OK
    blocks: tuple[BlockView, ...] = ()
    previous_cards: tuple[str, ...] = ()  # replaced (lost) card numbers


@dataclass(frozen=True, kw_only=True)
class AgencyView:
    agency_id: str
    name: str | None = None
    application_profile: str = s.APPLICATION_PROFILE
    pin_prompt: bool = True  # AuthenticationPrompt: the register asks for a PIN


# --- helpers -------------------------------------------------------------------------------------

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _q(name: str) -> str:
    return f"{{{s.NS}}}{name}"


def _add(parent: etree._Element, name: str, text: str | None = None,
         scheme: str | None = None) -> etree._Element:
    el = etree.SubElement(parent, _q(name))
    if scheme:
        el.set(_q("Scheme"), scheme)
    if text is not None:
        if not isinstance(text, str):
            raise TypeError(f"{name}: expected str, got {type(text).__name__}")
        el.text = _NOT_XML.sub("", text)  # characters XML 1.0 cannot carry are dropped
    return el


def _opt(parent: etree._Element, name: str, text: str | None, scheme: str | None = None) -> None:
    if text:
        _add(parent, name, text, scheme)


def xs_datetime(value: datetime | date) -> str:
    """xs:dateTime with the Europe/Oslo offset; naive values are Oslo wall time, dates midnight."""
    if isinstance(value, datetime):
        dt = value.replace(tzinfo=s.OSLO) if value.tzinfo is None else value.astimezone(s.OSLO)
    else:
        dt = datetime(value.year, value.month, value.day, tzinfo=s.OSLO)
    offset = dt.utcoffset() or timedelta()
    if offset % timedelta(minutes=1):  # local mean time (before 1895): xs wants whole minutes
        dt = dt.replace(tzinfo=timezone(timedelta(minutes=round(offset / timedelta(minutes=1)))))
    return dt.isoformat(timespec="seconds")


def _date(parent: etree._Element, name: str, value: datetime | date | None) -> None:
    if value is not None:
        _add(parent, name, xs_datetime(value))


def _root() -> etree._Element:
    root = etree.Element(_q("NCIPMessage"), nsmap={"ns1": s.NS})
    root.set(_q("version"), s.VERSION)
    return root


def _response(service: str, header: InitiationHeader | None,
              register_id: str) -> tuple[etree._Element, etree._Element]:
    if service not in s.SERVICES:
        raise ValueError(f"not an NCIP 2.02 service: {service!r}")
    root = _root()
    response = _add(root, service + "Response")
    if header is not None and header.from_agency_id:  # From/To swapped; never the token
        rh = _add(response, "ResponseHeader")
        _add(_add(rh, "FromAgencyId"), "AgencyId", header.to_agency_id or register_id)
        _add(_add(rh, "ToAgencyId"), "AgencyId", header.from_agency_id)
    return root, response


def _serialize(root: etree._Element) -> bytes:
    return _XML_DECLARATION + etree.tostring(root, encoding="UTF-8", pretty_print=True)


def _user_id(parent: etree._Element, card: str, register_id: str) -> None:
    uid = _add(parent, "UserId")
    _add(uid, "AgencyId", register_id)
    _add(uid, "UserIdentifierType", s.BARCODE, Scheme.USER_IDENTIFIER_TYPE)
    _add(uid, "UserIdentifierValue", card)


def _problem(parent: etree._Element, problem: Problem) -> None:
    el = _add(parent, "Problem")
    _add(el, "ProblemType", problem.type.value, problem.type.scheme)
    _opt(el, "ProblemDetail", problem.detail)
    _opt(el, "ProblemElement", problem.element)
    _opt(el, "ProblemValue", problem.value)


# --- user optional fields ------------------------------------------------------------------------

def _name(parent: etree._Element, user: UserView) -> None:
    full = " ".join(n for n in (user.given_name, user.surname) if n)
    if not full:
        return
    pni = _add(_add(parent, "NameInformation"), "PersonalNameInformation")
    if user.surname:
        spun = _add(pni, "StructuredPersonalUserName")
        _opt(spun, "GivenName", user.given_name)
        _add(spun, "Surname", user.surname)
    _add(pni, "UnstructuredPersonalUserName", full)


def _address_info(parent: etree._Element, role: str) -> etree._Element:
    uai = _add(parent, "UserAddressInformation")
    _add(uai, "UserAddressRoleType", role, Scheme.USER_ADDRESS_ROLE_TYPE)
    return uai


def _addresses(parent: etree._Element, user: UserView) -> None:
    a = user.address
    if a is not None and not user.secret_address:
        physical = _add(_address_info(parent, "Home"), "PhysicalAddress")
        structured = _add(physical, "StructuredAddress")
        lines = [line for line in (a.line1, a.line2) if line] or [""]
        _add(structured, "Line1", lines[0])
        _opt(structured, "Line2", lines[1] if len(lines) > 1 else None)
        _opt(structured, "Locality", a.locality)
        _opt(structured, "Country", a.country)
        _opt(structured, "PostalCode", a.postal_code)
        _add(physical, "PhysicalAddressType", "Postal Address", Scheme.PHYSICAL_ADDRESS_TYPE)
    for kind, data in (("mailto", user.email), ("tel", user.phone)):
        if data:
            electronic = _add(_address_info(parent, "Notice"), "ElectronicAddress")
            _add(electronic, "ElectronicAddressType", kind, Scheme.URI_SCHEMES)
            _add(electronic, "ElectronicAddressData", data)


def _privilege(parent: etree._Element, agency_id: str, kind: PrivilegeKind, status: str,
               valid_from: datetime | date | None = None, valid_to: datetime | date | None = None,
               description: str | None = None) -> None:
    up = _add(parent, "UserPrivilege")
    _add(up, "AgencyId", agency_id)
    _add(up, "AgencyUserPrivilegeType", kind)
    _date(up, "ValidFromDate", valid_from)
    _date(up, "ValidToDate", valid_to)
    _add(_add(up, "UserPrivilegeStatus"), "UserPrivilegeStatusType", status)
    _opt(up, "UserPrivilegeDescription", description)


def _privileges(parent: etree._Element, user: UserView, register_id: str) -> None:
    for p in user.privileges:
        kind = PrivilegeKind(p.kind)
        if kind is PrivilegeKind.STATUS:
            raise ValueError("the STATUS privilege comes from UserView.status")
        _privilege(parent, p.agency_id, kind, p.status, p.valid_from, p.valid_to, p.description)
    _privilege(parent, register_id, PrivilegeKind.STATUS, PatronStatus(user.status))


def _blocks(parent: etree._Element, user: UserView, register_id: str) -> None:
    for b in user.blocks:
        el = _add(parent, "BlockOrTrap")
        _add(el, "AgencyId", b.agency_id or register_id)
        _add(el, "BlockOrTrapType", BlockType(b.type), Scheme.BLOCK_OR_TRAP_TYPE)
        _date(el, "ValidFromDate", b.valid_from)
        _date(el, "ValidToDate", b.valid_to)


# --- public builders -----------------------------------------------------------------------------

def lookup_user_response(user: UserView, element_types: Iterable[UET] = (), *,
                         header: InitiationHeader | None = None,
                         register_id: str = s.DEFAULT_AGENCY_ID,
                         national_id: str | None = None) -> bytes:
    """``UserId`` always; of the optional fields only the requested ones (A.3). ``national_id``
    is emitted, as an ``Ext/UserId``, only when given *and* "User Id" was requested (A.4)."""
    wanted = {UET(t) for t in element_types}
    root, response = _response("LookupUser", header, register_id)
    _user_id(response, user.card, register_id)
    fields = etree.Element(_q("UserOptionalFields"))  # children in schema order:
    if UET.NAME_INFORMATION in wanted:
        _name(fields, user)
    if UET.USER_ADDRESS_INFORMATION in wanted:
        _addresses(fields, user)
    if UET.DATE_OF_BIRTH in wanted:
        _date(fields, "DateOfBirth", user.birth_date)
    if UET.USER_PRIVILEGE in wanted:
        _privileges(fields, user, register_id)
    if UET.BLOCK_OR_TRAP in wanted:
        _blocks(fields, user, register_id)
    if UET.USER_ID in wanted:
        _user_id(fields, user.card, register_id)
    if UET.PREVIOUS_USER_ID in wanted:
        for card in user.previous_cards:
            previous = _add(fields, "PreviousUserId")
            _add(previous, "AgencyId", register_id)
            _add(previous, "UserIdentifierValue", card)
    if UET.USER_ID in wanted and national_id:
        uid = _add(_add(fields, "Ext"), "UserId")
        _add(uid, "AgencyId", register_id)
        _add(uid, "UserIdentifierType", s.NATIONAL_IDENTITY_NUMBER, Scheme.NLR_USER_IDENTIFIER_TYPE)
        _add(uid, "UserIdentifierValue", national_id)
    if len(fields):
        response.append(fields)
    return _serialize(root)


def lookup_agency_response(agency: AgencyView, element_types: Iterable[AET] = (), *,
                           header: InitiationHeader | None = None,
                           register_id: str = s.DEFAULT_AGENCY_ID) -> bytes:
    """``AgencyId`` always; of the rest only the requested element types."""
    wanted = {AET(t) for t in element_types}
    root, response = _response("LookupAgency", header, register_id)
    _add(response, "AgencyId", agency.agency_id)
    if AET.ORGANIZATION_NAME_INFORMATION in wanted and agency.name:
        oni = _add(response, "OrganizationNameInformation")
        _add(oni, "OrganizationNameType", "Official Name", Scheme.ORGANIZATION_NAME_TYPE)
        _add(oni, "OrganizationName", agency.name)
    if AET.AUTHENTICATION_PROMPT in wanted and agency.pin_prompt:
        prompt = _add(response, "AuthenticationPrompt")
        output = _add(prompt, "PromptOutput")
        _add(output, "AuthenticationPromptData", "PIN")
        _add(output, "AuthenticationPromptType", "Password")
        prompt_input = _add(prompt, "PromptInput")
        _add(prompt_input, "AuthenticationInputType", "PIN", Scheme.AUTHENTICATION_INPUT_TYPE)
        _add(prompt_input, "AuthenticationDataFormatType", "text/plain", Scheme.MEDIA_TYPES)
        _add(prompt_input, "SensitiveDataFlag")
    if AET.APPLICATION_PROFILE_SUPPORTED_TYPE in wanted:
        _add(response, "ApplicationProfileSupportedType", agency.application_profile)
    if AET.AGENCY_USER_PRIVILEGE_TYPE in wanted:
        for kind in PrivilegeKind:
            _add(response, "AgencyUserPrivilegeType", kind)
    return _serialize(root)


def _user_id_response(service: str, card: str, header: InitiationHeader | None,
                      register_id: str) -> bytes:
    root, response = _response(service, header, register_id)
    _user_id(response, card, register_id)
    return _serialize(root)


def create_user_response(card: str, *, header: InitiationHeader | None = None,
                         register_id: str = s.DEFAULT_AGENCY_ID) -> bytes:
    return _user_id_response("CreateUser", card, header, register_id)


def update_user_response(card: str, *, header: InitiationHeader | None = None,
                         register_id: str = s.DEFAULT_AGENCY_ID) -> bytes:
    return _user_id_response("UpdateUser", card, header, register_id)


def delete_user_response(card: str, *, header: InitiationHeader | None = None,
                         register_id: str = s.DEFAULT_AGENCY_ID) -> bytes:
    return _user_id_response("DeleteUser", card, header, register_id)


def problem_response(service: str, *problems: Problem, header: InitiationHeader | None = None,
                     register_id: str = s.DEFAULT_AGENCY_ID) -> bytes:
    """``<service>Response`` holding the Problems (any of the 47 services)."""
    if not problems:
        raise ValueError("at least one Problem is needed")
    root, response = _response(service, header, register_id)
    for problem in problems:
        _problem(response, problem)
    return _serialize(root)


def unsupported_service(service: str, *, header: InitiationHeader | None = None,
                        register_id: str = s.DEFAULT_AGENCY_ID) -> bytes:
    return problem_response(service, Problem(
        s.UNSUPPORTED_SERVICE, detail=f"The national library card register does not implement "
        f"{service}", element=service), header=header, register_id=register_id)


def message_problem(*problems: Problem) -> bytes:
    """Problems directly under NCIPMessage, for a message whose service is unknown."""
    if not problems:
        raise ValueError("at least one Problem is needed")
    root = _root()
    for problem in problems:
        _problem(root, problem)
    return _serialize(root)


def error_response(error: NCIPError, *, register_id: str = s.DEFAULT_AGENCY_ID) -> bytes:
    """The answer to an error raised by `parse_request`."""
    if isinstance(error, RequestProblem):
        return problem_response(error.service, error.problem, header=error.header,
                                register_id=register_id)
    return message_problem(error.problem)
