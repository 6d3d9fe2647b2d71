"""protocols.ncip.build: the response examples are reproduced, and everything the builders can
produce validates against ncip_v2_02.xsd (ncip.md A.2 "emit", A.4, A.5)."""

import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from lxml import etree

from protocols.ncip import (
    AddressView,
    AgencyElementType as AET,
    AgencyView,
    BlockType,
    BlockView,
    InitiationHeader,
    MessageTooLarge,
    NCIPError,
    PatronStatus,
    PrivilegeKind,
    PrivilegeView,
    Problem,
    RequestProblem,
    UnknownService,
    UserElementType as UET,
    UserView,
    create_user_response,
    delete_user_response,
    error_response,
    lookup_agency_response,
    lookup_user_response,
    message_problem,
    parse_request,
    problem_response,
    schemes,
    unsupported_service,
    update_user_response,
    xs_datetime,
)
from protocols.ncip.schemes import ProblemType

# Copies of shared/ncip (the official NCIP 2.02 XSD and our profile's examples), so a clone tests alone.
SHARED = Path(__file__).resolve().parents[1] / "data"
EXAMPLES = SHARED / "ncip" / "examples"
NS = schemes.NS
Q = f"{{{NS}}}"


@pytest.fixture(scope="session")
def schema() -> etree.XMLSchema:
    # The XSD has no import/include; parse it with a parser that could not fetch one anyway.
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    return etree.XMLSchema(etree.parse(str(SHARED / "ncip" / "ncip_v2_02.xsd"), parser))


def valid(schema, body: bytes) -> etree._Element:
    """Assert the whole A.2 emit profile; return the parsed document."""
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    root = etree.fromstring(body)
    schema.assertValid(root)
    assert root.get(f"{Q}version") == schemes.VERSION
    for el in root.iter():
        assert el.prefix == "ns1", el.tag
        assert all(a.startswith(Q) for a in el.attrib), el.tag  # ns1:Scheme, ns1:version only
        if etree.QName(el).localname in CONTROLLED:
            assert el.get(f"{Q}Scheme"), f"{el.tag} without ns1:Scheme"
    for el in root.iter(f"{Q}UserPrivilege", f"{Q}BlockOrTrap"):
        assert el[0].tag == f"{Q}AgencyId"
    return root


CONTROLLED = {"ProblemType", "UserIdentifierType", "UserAddressRoleType", "PhysicalAddressType",
              "ElectronicAddressType", "BlockOrTrapType", "OrganizationNameType",
              "AuthenticationInputType", "AuthenticationDataFormatType"}


def example(number: str) -> bytes:
    (path,) = EXAMPLES.glob(f"{number}-*.xml")
    return path.read_bytes()


def local(el) -> str:
    return etree.QName(el).localname


def reproduces(expected: etree._Element, actual: etree._Element, path: str = "") -> None:
    """`actual` has everything `expected` has, in the same order, with the same text and
    attributes. Beyond that it may only add ns1:Scheme attributes and a UserIdentifierType
    (A.4: a card is always typed Barcode), which some examples leave out."""
    path = f"{path}/{local(expected)}"
    assert actual.tag == expected.tag, path
    assert (actual.text or "").strip() == (expected.text or "").strip(), path
    for name, value in expected.attrib.items():
        assert actual.get(name) == value, f"{path}@{name}"
    assert set(actual.attrib) - set(expected.attrib) <= {f"{Q}Scheme"}, path
    remaining = list(actual)
    for child in expected:
        while remaining and remaining[0].tag != child.tag:
            assert local(remaining.pop(0)) == "UserIdentifierType", f"{path}: extra element"
        assert remaining, f"{path}/{local(child)} missing"
        reproduces(child, remaining.pop(0), path)
    assert all(local(extra) == "UserIdentifierType" for extra in remaining), f"{path}: extra"


KARI = UserView(
    card="N000123456", given_name="Kari", surname="Nordmann",
    address=AddressView(line1="Storgata 1", locality="Oslo", country="NO", postal_code="0155"),
    email="kari.nordmann@example.no", phone="+4791234567",
    privileges=(
        PrivilegeView(agency_id="NO-2030000", valid_from=datetime(2019, 3, 1),
                      description=schemes.HOME_LIBRARY),
        PrivilegeView(agency_id="NO-2061700", valid_from=date(2023, 6, 15),
                      description=schemes.ACTIVATED)))


def build_example(number: str) -> bytes:
    """Answer the example request the way the example response does."""
    header = lambda n: parse_request(example(n)).header  # noqa: E731
    match number:
        case "03":
            request = parse_request(example("01"))
            return lookup_user_response(KARI, request.element_types, header=request.header)
        case "04":
            return problem_response("LookupUser", Problem(
                schemes.UNKNOWN_USER, detail="No patron with this library card number",
                element="UserIdentifierValue", value="N000999999"), header=header("01"))
        case "05":
            return problem_response("LookupUser", Problem(
                schemes.USER_AUTHENTICATION_FAILED, detail="Card number or PIN is invalid",
                element="AuthenticationInput"), header=header("02"))
        case "06":
            return message_problem(Problem(
                schemes.UNSUPPORTED_SERVICE,
                detail="This responder does not implement CheckOutItem", element="CheckOutItem"))
        case "08":
            request = parse_request(example("07"))
            agency = AgencyView(agency_id="NLR", name="Nasjonalt lånerregister",
                                application_profile="NLR-NCIP 1.0")
            return lookup_agency_response(agency, request.element_types, header=request.header)
        case "10":
            return create_user_response("N000123457", header=header("09"))
        case "13":
            return update_user_response("N000123456", header=header("11"))
        case "15":
            return problem_response("CreateUser", Problem(
                schemes.DUPLICATE_USER,
                detail="A patron with this library card number already exists",
                element="UserIdentifierValue", value="N000123457"), header=header("09"))


RESPONSES = ["03", "04", "05", "06", "08", "10", "13", "15"]


@pytest.mark.parametrize("number", RESPONSES)
def test_response_examples_are_reproduced(schema, number):
    actual = valid(schema, build_example(number))
    reproduces(etree.fromstring(example(number)), actual)


def test_all_examples_are_schema_valid(schema):
    for path in sorted(EXAMPLES.glob("*.xml")):
        schema.assertValid(etree.parse(str(path)))


# --- lookup_user_response ------------------------------------------------------------------------

EVERYTHING = UserView(
    card="N000123456", given_name="Kari", surname="Nordmann",
    address=AddressView(line1="Storgata 1", line2="H0101", locality="Oslo", postal_code="0155",
                        country="NO"),
    email="k@example.no", phone="+4791234567", birth_date=date(1985, 4, 17),
    privileges=(PrivilegeView(agency_id="NO-2030000", valid_from=datetime(2019, 3, 1, 12),
                              description=schemes.HOME_LIBRARY),
                PrivilegeView(agency_id="NO-2030000", kind=PrivilegeKind.MERAPENT,
                              valid_from=datetime(2020, 1, 1, tzinfo=UTC),
                              valid_to=date(2030, 1, 1))),
    status=PatronStatus.BLOCKED,
    blocks=(BlockView(type=BlockType.BLOCK_CHECK_OUT, valid_from=date(2024, 1, 1)),
            BlockView(type=BlockType.TRAP_FOR_LOST_CARD, agency_id="NO-2030000")),
    previous_cards=("N000000001", "N000000002"))


def texts(root, name: str) -> list[str]:
    return [el.text for el in root.iter(f"{Q}{name}")]


@pytest.mark.parametrize("wanted", [[], list(UET)] + [[t] for t in UET], ids=str)
def test_only_requested_elements_are_returned(schema, wanted):
    root = valid(schema, lookup_user_response(EVERYTHING, wanted))
    response = root[0]
    assert local(response[0]) == "UserId"  # always, and first (no header given)
    names = {local(el) for el in response.iter()}
    assert ("NameInformation" in names) == (UET.NAME_INFORMATION in wanted)
    assert ("UserAddressInformation" in names) == (UET.USER_ADDRESS_INFORMATION in wanted)
    assert ("DateOfBirth" in names) == (UET.DATE_OF_BIRTH in wanted)
    assert ("UserPrivilege" in names) == (UET.USER_PRIVILEGE in wanted)
    assert ("BlockOrTrap" in names) == (UET.BLOCK_OR_TRAP in wanted)
    assert ("PreviousUserId" in names) == (UET.PREVIOUS_USER_ID in wanted)
    assert len(texts(root, "UserId")) == 1 + (UET.USER_ID in wanted)
    assert ("UserOptionalFields" in names) == bool(
        set(wanted) - {UET.USER_LANGUAGE, UET.AUTHENTICATION_INPUT})


def test_status_privileges_and_blocks(schema):
    root = valid(schema, lookup_user_response(EVERYTHING, [UET.USER_PRIVILEGE, UET.BLOCK_OR_TRAP]))
    assert texts(root, "AgencyUserPrivilegeType") == ["LIBRARY", "MERAPENT", "STATUS"]
    assert texts(root, "UserPrivilegeStatusType") == ["Active", "Active", "BLOCKED"]
    status = root.findall(f".//{Q}UserPrivilege")[-1]
    assert status.findtext(f"{Q}AgencyId") == "NLR"
    assert texts(root, "ValidFromDate") == [
        "2019-03-01T12:00:00+01:00", "2020-01-01T01:00:00+01:00", "2024-01-01T00:00:00+01:00"]
    assert texts(root, "ValidToDate") == ["2030-01-01T00:00:00+01:00"]
    assert texts(root, "BlockOrTrapType") == ["Block Check Out", "Trap For Lost Card"]
    assert [b.findtext(f"{Q}AgencyId") for b in root.iter(f"{Q}BlockOrTrap")] == \
        ["NLR", "NO-2030000"]


def test_secret_address_is_never_emitted(schema):
    secret = UserView(card="N1", surname="S", address=EVERYTHING.address, secret_address=True,
                      email="e@x.no")
    root = valid(schema, lookup_user_response(secret, list(UET)))
    assert not list(root.iter(f"{Q}PhysicalAddress"))
    assert "Storgata" not in etree.tostring(root).decode()
    assert texts(root, "ElectronicAddressData") == ["e@x.no"]


def test_national_id_only_explicitly_and_only_with_user_id(schema):
    nid = "17848510033"
    without_user_id = [t for t in UET if t is not UET.USER_ID]
    assert nid.encode() not in lookup_user_response(EVERYTHING, list(UET))
    assert nid.encode() not in lookup_user_response(EVERYTHING, without_user_id, national_id=nid)
    root = valid(schema, lookup_user_response(EVERYTHING, [UET.USER_ID], national_id=nid))
    ext_id = root.find(f".//{Q}UserOptionalFields/{Q}Ext/{Q}UserId")
    assert ext_id.findtext(f"{Q}UserIdentifierValue") == nid
    kind = ext_id.find(f"{Q}UserIdentifierType")
    assert (kind.text, kind.get(f"{Q}Scheme")) == ("National Identity Number",
                                                  "urn:x-nlr:schemes:useridentifiertype")


@pytest.mark.parametrize("user", [
    UserView(card="N1"),
    UserView(card="N1", given_name="Cher"),  # no surname: UnstructuredPersonalUserName only
    UserView(card="N1", address=AddressView(postal_code="0155")),  # no street line
    UserView(card="N1", address=AddressView(line2="only line two")),
], ids=["bare", "given name only", "no street", "line2 only"])
def test_sparse_users_stay_valid(schema, user):
    valid(schema, lookup_user_response(user, list(UET), national_id="1"))


def test_header_swap_and_register_id(schema):
    header = InitiationHeader(from_agency_id="2030000", to_agency_id="NLR-TEST", token="secret")
    body = create_user_response("N1", header=header, register_id="NLR-TEST")
    root = valid(schema, body)
    assert root.findtext(f".//{Q}FromAgencyId/{Q}AgencyId") == "NLR-TEST"
    assert root.findtext(f".//{Q}ToAgencyId/{Q}AgencyId") == "2030000"
    assert b"secret" not in body
    no_to = valid(schema, delete_user_response("N1", header=InitiationHeader(from_agency_id="X")))
    assert no_to.findtext(f".//{Q}FromAgencyId/{Q}AgencyId") == "NLR"
    no_from = valid(schema, delete_user_response("N1", header=InitiationHeader(to_agency_id="NLR")))
    assert no_from.find(f".//{Q}ResponseHeader") is None


# --- Problems ------------------------------------------------------------------------------------

PROBLEM_TYPES = [v for v in vars(schemes).values() if isinstance(v, ProblemType)]


def test_problem_constants():
    assert len(PROBLEM_TYPES) == 6 + 13 + 5 + 7
    ours = {p.value for p in PROBLEM_TYPES if p.scheme == "urn:x-nlr:schemes:processingerror"}
    assert ours == {"Duplicate User", "Card Number Outside Reserved Series", "Card Number In Use",
                    "Invalid National Identity Number", "Not Affiliated With Agency",
                    "PIN Locked", "Register Unavailable"}


@pytest.mark.parametrize("service", sorted(schemes.SUPPORTED_SERVICES))
def test_every_problem_in_every_supported_response(schema, service):
    header = InitiationHeader(from_agency_id="NO-2030000", to_agency_id="NLR")
    problems = [Problem(t, detail="d", element="e", value="v") for t in PROBLEM_TYPES]
    root = valid(schema, problem_response(service, *problems, header=header))
    assert len(root.findall(f"{Q}{service}Response/{Q}Problem")) == len(problems)
    valid(schema, problem_response(service, Problem(schemes.UNKNOWN_USER)))
    valid(schema, message_problem(*problems))


@pytest.mark.parametrize("service", schemes.SERVICES)
def test_unsupported_service_for_all_47(schema, service):
    header = InitiationHeader(from_agency_id="NO-2030000", to_agency_id="NLR")
    root = valid(schema, unsupported_service(service, header=header))
    problem = root.find(f"{Q}{service}Response/{Q}Problem")
    assert problem.findtext(f"{Q}ProblemType") == "Unsupported Service"
    scheme = problem.find(f"{Q}ProblemType").get(f"{Q}Scheme")
    assert scheme == schemes.Scheme.GENERAL_PROCESSING_ERROR
    assert problem.findtext(f"{Q}ProblemElement") == service


@pytest.mark.parametrize("body, expected", [
    (b"<not xml", "Invalid Message Syntax Error"),
    (b"x" * (300 * 1024), "Invalid Message Syntax Error"),
    (f'<NCIPMessage xmlns="{NS}"><LookupVersion/></NCIPMessage>'.encode(), "Unknown Service"),
    (f'<NCIPMessage xmlns="{NS}"><CreateUser><InitiationHeader><FromAgencyId><AgencyId>A'
     f'</AgencyId></FromAgencyId></InitiationHeader><DateOfBirth>soon</DateOfBirth></CreateUser>'
     f'</NCIPMessage>'.encode(), "Invalid Date"),
], ids=["not xml", "too large", "unknown service", "bad date"])
def test_error_response(schema, body, expected):
    with pytest.raises(NCIPError) as e:
        parse_request(body)
    root = valid(schema, error_response(e.value))
    assert texts(root, "ProblemType") == [expected]
    if isinstance(e.value, RequestProblem):
        assert local(root[0]) == "CreateUserResponse"
        assert root.findtext(f".//{Q}ToAgencyId/{Q}AgencyId") == "A"
    else:
        assert local(root[0]) == "Problem"


def test_strictness():
    with pytest.raises(ValueError):
        problem_response("LookupVersion", Problem(schemes.UNKNOWN_USER))
    with pytest.raises(ValueError):
        problem_response("LookupUser")
    with pytest.raises(ValueError):
        message_problem()
    with pytest.raises(ValueError):
        lookup_user_response(UserView(card="N1", privileges=(
            PrivilegeView(agency_id="X", kind=PrivilegeKind.STATUS),)), [UET.USER_PRIVILEGE])
    with pytest.raises(ValueError):
        lookup_user_response(UserView(card="N1", privileges=(
            PrivilegeView(agency_id="X", kind="PROFILE"),)), [UET.USER_PRIVILEGE])
    with pytest.raises(ValueError):
        lookup_user_response(UserView(card="N1"), ["Preview User"])
    with pytest.raises(TypeError):
        create_user_response(123456)


@pytest.mark.parametrize("value, expected", [
    (datetime(2024, 1, 15, 9, 30), "2024-01-15T09:30:00+01:00"),
    (datetime(2024, 7, 15, 9, 30, 12, 999), "2024-07-15T09:30:12+02:00"),
    (datetime(2024, 7, 15, 7, 30, tzinfo=UTC), "2024-07-15T09:30:00+02:00"),
    (date(2024, 3, 31), "2024-03-31T00:00:00+01:00"),
])
def test_xs_datetime_uses_the_oslo_offset(value, expected):
    assert xs_datetime(value) == expected


def test_xs_datetime_before_1895_has_a_whole_minute_offset():
    """Oslo mean time (+00:43, or +00:53:28 with tzdata that links Oslo to Berlin)."""
    assert re.fullmatch(r"1890-01-01T00:00:00[+-]\d\d:\d\d", xs_datetime(date(1890, 1, 1)))


# --- property: whatever the register holds, the answer is valid ----------------------------------

ANY_TEXT = st.text(max_size=30)  # any code point, control characters and surrogates included
MAYBE = st.none() | ANY_TEXT
WHEN = st.none() | st.dates(date(1880, 1, 1), date(2200, 1, 1)) | st.datetimes(
    datetime(1880, 1, 1), datetime(2200, 1, 1), timezones=st.none() | st.timezones())
USERS = st.builds(
    UserView, card=ANY_TEXT, given_name=MAYBE, surname=MAYBE,
    address=st.none() | st.builds(AddressView, line1=MAYBE, line2=MAYBE, locality=MAYBE,
                                  postal_code=MAYBE, country=MAYBE),
    secret_address=st.booleans(), email=MAYBE, phone=MAYBE,
    birth_date=st.none() | st.dates(date(1880, 1, 1), date(2100, 1, 1)),
    privileges=st.lists(st.builds(
        PrivilegeView, agency_id=ANY_TEXT,
        kind=st.sampled_from([PrivilegeKind.LIBRARY, PrivilegeKind.MERAPENT]),
        valid_from=WHEN, valid_to=WHEN, status=ANY_TEXT, description=MAYBE), max_size=3).map(tuple),
    status=st.sampled_from(PatronStatus),
    blocks=st.lists(st.builds(BlockView, type=st.sampled_from(BlockType), agency_id=MAYBE,
                              valid_from=WHEN, valid_to=WHEN), max_size=2).map(tuple),
    previous_cards=st.lists(ANY_TEXT, max_size=2).map(tuple))
HEADERS = st.none() | st.builds(InitiationHeader, from_agency_id=MAYBE, to_agency_id=MAYBE)


@settings(max_examples=200, deadline=None)
@given(USERS, st.sets(st.sampled_from(UET)), HEADERS, MAYBE)
def test_any_user_gives_a_valid_lookup_user_response(schema, user, wanted, header, national_id):
    valid(schema, lookup_user_response(user, wanted, header=header, national_id=national_id))


@settings(max_examples=100, deadline=None)
@given(st.builds(AgencyView, agency_id=ANY_TEXT, name=MAYBE, application_profile=ANY_TEXT,
                 pin_prompt=st.booleans()), st.sets(st.sampled_from(AET)), HEADERS)
def test_any_agency_gives_a_valid_lookup_agency_response(schema, agency, wanted, header):
    valid(schema, lookup_agency_response(agency, wanted, header=header))


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(schemes.SERVICES), st.lists(st.builds(
    Problem, type=st.sampled_from(PROBLEM_TYPES), detail=MAYBE, element=MAYBE, value=MAYBE),
    min_size=1, max_size=3), HEADERS, ANY_TEXT)
def test_any_problem_and_user_id_response_is_valid(schema, service, problems, header, card):
    valid(schema, problem_response(service, *problems, header=header))
    valid(schema, message_problem(*problems))
    for build in (create_user_response, update_user_response, delete_user_response):
        valid(schema, build(card, header=header))


def test_too_large_error_is_a_message_problem(schema):
    error = MessageTooLarge(10)
    root = valid(schema, error_response(error))
    assert "10 bytes" in root.findtext(f".//{Q}ProblemDetail")
    assert isinstance(UnknownService("x"), NCIPError)
