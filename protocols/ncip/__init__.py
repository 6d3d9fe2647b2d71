"""NCIP 2.02 codec for the NLR gateway (ncip.md): sans-IO, lxml only.

    request = parse_request(body)          # typed request, or NCIPError
    body = lookup_user_response(view, request.element_types, header=request.header)
"""

from . import schemes
from .build import (
    AddressView,
    AgencyView,
    BlockView,
    PrivilegeView,
    UserView,
    create_user_response,
    delete_user_response,
    error_response,
    lookup_agency_response,
    lookup_user_response,
    message_problem,
    problem_response,
    unsupported_service,
    update_user_response,
    xs_datetime,
)
from .parse import (
    MAX_ELEMENTS,
    MAX_REPEATED,
    MAX_SIZE,
    MessageTooLarge,
    NCIPError,
    NCIPSyntaxError,
    RequestProblem,
    TooManyElements,
    UnknownService,
    parse_request,
)
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
from .schemes import (
    AgencyElementType,
    BlockType,
    PatronStatus,
    PrivilegeKind,
    Problem,
    ProblemType,
    Scheme,
    UserElementType,
)

__all__ = [
    "schemes", "parse_request", "MAX_SIZE", "NCIPError", "NCIPSyntaxError", "MessageTooLarge",
    "TooManyElements", "MAX_ELEMENTS", "MAX_REPEATED", "UnknownService", "RequestProblem",
    "Request", "InitiationHeader", "UserRef", "Name", "Address", "Privilege", "UserFields",
    "LookupUser", "LookupAgency", "CreateUser", "UpdateUser", "DeleteUser", "UnsupportedRequest",
    "UserView", "AddressView", "PrivilegeView", "BlockView", "AgencyView",
    "lookup_user_response", "lookup_agency_response", "create_user_response",
    "update_user_response", "delete_user_response", "problem_response", "unsupported_service",
    "message_problem", "error_response", "xs_datetime",
    "Problem", "ProblemType", "Scheme", "UserElementType", "AgencyElementType", "PrivilegeKind",
    "PatronStatus", "BlockType",
]
