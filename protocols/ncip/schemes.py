"""NCIP 2.02 constants: namespace, version, service names, schemes, controlled values, Problems.

Sources: ncip.md B.2 (services, verified from the XSD), B.5/B.6 (schemes) and A.4/A.5 (ours).
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from zoneinfo import ZoneInfo

NS = "http://www.niso.org/2008/ncip"
VERSION = "http://www.niso.org/schemas/ncip/v2_02/ncip_v2_02.xsd"
OSLO = ZoneInfo("Europe/Oslo")
DEFAULT_AGENCY_ID = "NLR"  # the register's own agency id (configurable in the gateway)
APPLICATION_PROFILE = "NLR 1.0"  # ncip.md A.3 (example 08 says "NLR-NCIP 1.0")

# The 47 initiation messages of NCIP 2.02, in schema order; each has a "<name>Response".
SERVICES: tuple[str, ...] = (
    "AcceptItem", "AgencyCreated", "AgencyUpdated", "CancelRecallItem", "CancelRequestItem",
    "CheckInItem", "CheckOutItem", "CirculationStatusChangeReported", "CirculationStatusUpdated",
    "CreateAgency", "CreateItem", "CreateUser", "CreateUserFiscalTransaction", "DeleteItem",
    "DeleteUser", "ItemCheckedIn", "ItemCheckedOut", "ItemCreated", "ItemRecallCancelled",
    "ItemRecalled", "ItemReceived", "ItemRenewed", "ItemRequestCancelled", "ItemRequestUpdated",
    "ItemRequested", "ItemShipped", "ItemUpdated", "LookupAgency", "LookupItem", "LookupItemSet",
    "LookupRequest", "LookupUser", "RecallItem", "RenewItem", "ReportCirculationStatusChange",
    "RequestItem", "SendUserNotice", "UndoCheckOutItem", "UpdateAgency", "UpdateCirculationStatus",
    "UpdateItem", "UpdateRequestItem", "UpdateUser", "UserCreated", "UserFiscalTransactionCreated",
    "UserNoticeSent", "UserUpdated",
)
SUPPORTED_SERVICES = frozenset({
    "LookupUser", "LookupAgency", "CreateUser", "UpdateUser", "DeleteUser"})

_V1 = "http://www.niso.org/ncip/v1_0"
_V1_IMP1 = _V1 + "/imp1/schemes"
_V2_IMP1 = "http://www.niso.org/ncip/v2_0/imp1/schemes"


class Scheme:
    """Scheme URIs emitted as ``ns1:Scheme`` (B.5, B.6, A.4, A.5)."""

    MESSAGING_ERROR = _V1 + "/schemes/messagingerrortype/messagingerrortype.scm"
    GENERAL_PROCESSING_ERROR = _V1 + "/schemes/processingerrortype/generalprocessingerror.scm"
    LOOKUP_USER_PROCESSING_ERROR = (
        _V1 + "/schemes/processingerrortype/lookupuserprocessingerror.scm")
    NLR_PROCESSING_ERROR = "urn:x-nlr:schemes:processingerror"
    USER_ELEMENT_TYPE = _V1 + "/schemes/userelementtype/userelementtype.scm"
    AGENCY_ELEMENT_TYPE = _V1 + "/schemes/agencyelementtype/agencyelementtype.scm"
    AUTHENTICATION_INPUT_TYPE = _V1_IMP1 + "/authenticationinputtype/authenticationinputtype.scm"
    MEDIA_TYPES = "http://www.iana.org/assignments/media-types"
    USER_IDENTIFIER_TYPE = _V1_IMP1 + "/visibleuseridentifiertype/visibleuseridentifiertype.scm"
    NLR_USER_IDENTIFIER_TYPE = "urn:x-nlr:schemes:useridentifiertype"
    USER_ADDRESS_ROLE_TYPE = _V2_IMP1 + "/useraddressroletype/useraddressroletype.scm"
    PHYSICAL_ADDRESS_TYPE = _V1_IMP1 + "/physicaladdresstype/physicaladdresstype.scm"
    URI_SCHEMES = "http://www.iana.org/assignments/uri-schemes"
    ORGANIZATION_NAME_TYPE = _V1_IMP1 + "/organizationnametype/organizationnametype.scm"
    BLOCK_OR_TRAP_TYPE = _V1_IMP1 + "/blockortraptype/blockortraptype.scm"


BARCODE = "Barcode"
NATIONAL_IDENTITY_NUMBER = "National Identity Number"
HOME_LIBRARY = "Home library"
ACTIVATED = "Activated"


class UserElementType(enum.StrEnum):
    AUTHENTICATION_INPUT = "Authentication Input"
    BLOCK_OR_TRAP = "Block Or Trap"
    DATE_OF_BIRTH = "Date Of Birth"
    NAME_INFORMATION = "Name Information"
    USER_ADDRESS_INFORMATION = "User Address Information"
    USER_LANGUAGE = "User Language"
    USER_PRIVILEGE = "User Privilege"
    USER_ID = "User Id"
    PREVIOUS_USER_ID = "Previous User Id"


class AgencyElementType(enum.StrEnum):
    AGENCY_ADDRESS_INFORMATION = "Agency Address Information"
    AGENCY_USER_PRIVILEGE_TYPE = "Agency User Privilege Type"
    APPLICATION_PROFILE_SUPPORTED_TYPE = "Application Profile Supported Type"
    AUTHENTICATION_PROMPT = "Authentication Prompt"
    CONSORTIUM_AGREEMENT = "Consortium Agreement"
    ORGANIZATION_NAME_INFORMATION = "Organization Name Information"


class PrivilegeKind(enum.StrEnum):
    """``AgencyUserPrivilegeType`` values of our profile (A.4)."""

    LIBRARY = "LIBRARY"
    MERAPENT = "MERAPENT"
    STATUS = "STATUS"


class PatronStatus(enum.StrEnum):
    OK = "OK"
    BLOCKED = "BLOCKED"


class BlockType(enum.StrEnum):
    BLOCK_CHECK_OUT = "Block Check Out"
    TRAP_FOR_LOST_CARD = "Trap For Lost Card"


@dataclass(frozen=True)
class ProblemType:
    scheme: str
    value: str


@dataclass(frozen=True)
class Problem:
    """One ``Problem``. ``value`` must never hold a PIN, password, token or national id (A.5)."""

    type: ProblemType
    detail: str | None = None
    element: str | None = None
    value: str | None = None


_msg = functools.partial(ProblemType, Scheme.MESSAGING_ERROR)
_gen = functools.partial(ProblemType, Scheme.GENERAL_PROCESSING_ERROR)
_usr = functools.partial(ProblemType, Scheme.LOOKUP_USER_PROCESSING_ERROR)
_nlr = functools.partial(ProblemType, Scheme.NLR_PROCESSING_ERROR)

# B.5 messagingerrortype (message-level Problems)
INVALID_MESSAGE_SYNTAX_ERROR = _msg("Invalid Message Syntax Error")
PROTOCOL_ERROR = _msg("Protocol Error")
UNKNOWN_ELEMENT = _msg("Unknown Element")
UNKNOWN_SCHEME = _msg("Unknown Scheme")
UNKNOWN_SERVICE = _msg("Unknown Service")
UNKNOWN_VALUE_FROM_KNOWN_SCHEME = _msg("Unknown Value From Known Scheme")
# B.5 generalprocessingerror
AGENCY_AUTHENTICATION_FAILED = _gen("Agency Authentication Failed")
INVALID_AMOUNT = _gen("Invalid Amount")
INVALID_DATE = _gen("Invalid Date")
NEEDED_DATA_MISSING = _gen("Needed Data Missing")
SYSTEM_AUTHENTICATION_FAILED = _gen("System Authentication Failed")
TEMPORARY_PROCESSING_FAILURE = _gen("Temporary Processing Failure")
UNAUTHORIZED_COMBINATION_FOR_AGENCY = _gen("Unauthorized Combination Of Element Values For Agency")
UNAUTHORIZED_COMBINATION_FOR_SYSTEM = _gen("Unauthorized Combination Of Element Values For System")
UNAUTHORIZED_SERVICE_FOR_AGENCY = _gen("Unauthorized Service For Agency")
UNAUTHORIZED_SERVICE_FOR_SYSTEM = _gen("Unauthorized Service For System")
UNKNOWN_AGENCY = _gen("Unknown Agency")
UNKNOWN_SYSTEM = _gen("Unknown System")
UNSUPPORTED_SERVICE = _gen("Unsupported Service")
# B.5 lookupuserprocessingerror (reused for Create/Update/DeleteUser, as B.5 proposes)
ELEMENT_RULE_VIOLATED = _usr("Element Rule Violated")
NON_UNIQUE_USER = _usr("Non-Unique User")
UNKNOWN_USER = _usr("Unknown User")
USER_ACCESS_DENIED = _usr("User Access Denied")
USER_AUTHENTICATION_FAILED = _usr("User Authentication Failed")
# A.5 urn:x-nlr:schemes:processingerror (register rules)
DUPLICATE_USER = _nlr("Duplicate User")
CARD_NUMBER_OUTSIDE_RESERVED_SERIES = _nlr("Card Number Outside Reserved Series")
CARD_NUMBER_IN_USE = _nlr("Card Number In Use")
INVALID_NATIONAL_IDENTITY_NUMBER = _nlr("Invalid National Identity Number")
NOT_AFFILIATED_WITH_AGENCY = _nlr("Not Affiliated With Agency")
PIN_LOCKED = _nlr("PIN Locked")
REGISTER_UNAVAILABLE = _nlr("Register Unavailable")
