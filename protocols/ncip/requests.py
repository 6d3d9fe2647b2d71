"""Typed NCIP requests, as `parse_request` returns them.

Values are normalised (trimmed; controlled values canonical), so every lenient form of a request
(ncip.md A.2) compares equal to its strict form. Secrets (token, PIN, national id) stay out of
``repr`` so that a logged request leaks nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import ClassVar, TypeAlias

from .schemes import AgencyElementType, PrivilegeKind, UserElementType


def _secret() -> str | None:
    return field(default=None, repr=False)


@dataclass(frozen=True, kw_only=True)
class InitiationHeader:
    from_agency_id: str | None = None
    to_agency_id: str | None = None
    token: str | None = _secret()  # FromAgencyAuthentication
    application_profile: str | None = None  # ApplicationProfileType


@dataclass(frozen=True, kw_only=True)
class UserRef:
    """Who a request is about: top-level ``UserId`` and/or ``AuthenticationInput``.

    ``card`` comes from a card-type AuthenticationInput or, failing that, a ``UserId`` that is not
    a national identity number. ``national_id`` from a ``UserId`` whose UserIdentifierType is
    ``National Identity Number``. ``pin`` from a PIN-type AuthenticationInput.
    """

    card: str | None = None
    national_id: str | None = _secret()
    pin: str | None = _secret()


@dataclass(frozen=True, kw_only=True)
class Name:
    given_name: str | None = None
    surname: str | None = None
    unstructured: str | None = None  # UnstructuredPersonalUserName


@dataclass(frozen=True, kw_only=True)
class Address:
    """A ``PhysicalAddress`` (StructuredAddress; or UnstructuredAddress, kept as text)."""

    role: str | None = None  # UserAddressRoleType, canonical ("Home", "Multi-Purpose", ...)
    line1: str | None = None
    line2: str | None = None
    locality: str | None = None
    postal_code: str | None = None
    country: str | None = None
    unstructured: str | None = None
    valid_to: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class Privilege:
    agency_id: str | None = None
    kind: PrivilegeKind | str | None = None  # upper-cased AgencyUserPrivilegeType
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    status: str | None = None  # UserPrivilegeStatusType; "Active", "OK", "BLOCKED" canonical
    description: str | None = None  # "Home library" / "Activated" canonical, else as sent


@dataclass(frozen=True, kw_only=True)
class UserFields:
    """The patron data of CreateUser, AddUserFields and DeleteUserFields."""

    name: Name | None = None
    addresses: tuple[Address, ...] = ()
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    birth_date: date | None = None
    pin: str | None = _secret()  # AuthenticationInput of PIN type (a PIN change in AddUserFields)
    privileges: tuple[Privilege, ...] = ()


@dataclass(frozen=True, kw_only=True)
class LookupUser:
    service: ClassVar[str] = "LookupUser"
    header: InitiationHeader = InitiationHeader()
    user: UserRef = UserRef()
    element_types: frozenset[UserElementType] = frozenset()


@dataclass(frozen=True, kw_only=True)
class LookupAgency:
    service: ClassVar[str] = "LookupAgency"
    header: InitiationHeader = InitiationHeader()
    agency_id: str | None = None
    element_types: frozenset[AgencyElementType] = frozenset()


@dataclass(frozen=True, kw_only=True)
class CreateUser(UserFields):
    """``card`` None: the register allocates one. National id and PIN come from ``Ext``
    (example 09) or, leniently, from a top-level UserId / AuthenticationInput."""

    service: ClassVar[str] = "CreateUser"
    header: InitiationHeader = InitiationHeader()
    card: str | None = None
    national_id: str | None = _secret()


@dataclass(frozen=True, kw_only=True)
class UpdateUser:
    service: ClassVar[str] = "UpdateUser"
    header: InitiationHeader = InitiationHeader()
    user: UserRef = UserRef()
    delete_fields: UserFields = UserFields()
    add_fields: UserFields = UserFields()


@dataclass(frozen=True, kw_only=True)
class DeleteUser:
    service: ClassVar[str] = "DeleteUser"
    header: InitiationHeader = InitiationHeader()
    user: UserRef = UserRef()


@dataclass(frozen=True, kw_only=True)
class UnsupportedRequest:
    """Any other 2.02 service: answer with `build.unsupported_service`."""

    service: str
    header: InitiationHeader = InitiationHeader()


Request: TypeAlias = (LookupUser | LookupAgency | CreateUser | UpdateUser | DeleteUser
                      | UnsupportedRequest)
