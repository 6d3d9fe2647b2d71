"""protocols.ncip.parse: the examples, service recognition, and every tolerance of ncip.md A.2
(each lenient form parses to exactly the request its strict form parses to)."""

import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from lxml import etree

from protocols.ncip import (
    Address,
    AgencyElementType as AET,
    CreateUser,
    DeleteUser,
    InitiationHeader,
    LookupAgency,
    LookupUser,
    Name,
    NCIPSyntaxError,
    Privilege,
    PrivilegeKind,
    RequestProblem,
    UnknownService,
    UnsupportedRequest,
    UpdateUser,
    UserElementType as UET,
    UserFields,
    UserRef,
    parse_request,
    schemes,
)
from protocols.ncip.schemes import OSLO

# Copies of shared/ncip (the official NCIP 2.02 XSD and our profile's examples), so a clone tests alone.
SHARED = Path(__file__).resolve().parents[1] / "data"
EXAMPLES = SHARED / "ncip" / "examples"
NS = schemes.NS


def example(number: str) -> bytes:
    (path,) = EXAMPLES.glob(f"{number}-*.xml")
    return path.read_bytes()


HEADER = InitiationHeader(from_agency_id="NO-2030000", to_agency_id="NLR")


# --- the examples --------------------------------------------------------------------------------

EXPECTED = {
    "01": LookupUser(header=HEADER, user=UserRef(card="N000123456"), element_types=frozenset({
        UET.NAME_INFORMATION, UET.USER_ADDRESS_INFORMATION, UET.USER_PRIVILEGE, UET.BLOCK_OR_TRAP,
        UET.USER_ID})),
    "02": LookupUser(header=HEADER, user=UserRef(card="N000123456", pin="1234"),
                     element_types=frozenset({UET.NAME_INFORMATION})),
    "07": LookupAgency(header=HEADER, agency_id="NLR", element_types=frozenset({
        AET.ORGANIZATION_NAME_INFORMATION, AET.APPLICATION_PROFILE_SUPPORTED_TYPE,
        AET.AUTHENTICATION_PROMPT})),
    "09": CreateUser(
        header=HEADER, card="N000123457", national_id="17848510033", pin="4321",
        name=Name(given_name="Ola", surname="Nordmann"),
        addresses=(Address(role="Home", line1="Kirkegata 2", locality="Bergen", postal_code="5003",
                           country="NO"),),
        emails=("ola.nordmann@example.no",), birth_date=date(1985, 4, 17),
        privileges=(Privilege(agency_id="NO-2030000", kind=PrivilegeKind.LIBRARY, status="Active",
                              description=schemes.HOME_LIBRARY),)),
    "11": UpdateUser(
        header=InitiationHeader(from_agency_id="NO-2061700", to_agency_id="NLR"),
        user=UserRef(card="N000123456"),
        delete_fields=UserFields(phones=("+4791234567",)),
        add_fields=UserFields(phones=("+4798765432",), privileges=(Privilege(
            agency_id="NO-2061700", kind=PrivilegeKind.LIBRARY,
            valid_from=datetime(2024, 9, 2, 10, 15, tzinfo=OSLO), status="Active",
            description=schemes.ACTIVATED),))),
    "12": UpdateUser(header=HEADER, user=UserRef(card="N000123456", pin="1234"),
                     add_fields=UserFields(pin="9876")),
    "14": DeleteUser(header=HEADER, user=UserRef(card="N000123457")),
}


@pytest.mark.parametrize("number", sorted(EXPECTED))
def test_example_requests_parse(number):
    assert parse_request(example(number)) == EXPECTED[number]


def test_secrets_stay_out_of_repr():
    profile = b"<ns1:ApplicationProfileType>NLR 1.0</ns1:ApplicationProfileType>"
    body = example("09").replace(b"</ns1:ToAgencyId>", b"</ns1:ToAgencyId>" + profile)
    body = body.replace(b"<ns1:ToAgencyId>", b"<ns1:FromAgencyAuthentication>tok-SECRET"
                        b"</ns1:FromAgencyAuthentication><ns1:ToAgencyId>")
    request = parse_request(body)
    assert request.header.token == "tok-SECRET" and request.header.application_profile == "NLR 1.0"
    for secret in ("tok-SECRET", "17848510033", "4321"):
        assert secret not in repr(request)
    assert "pin" not in repr(parse_request(example("02")))


# --- services ------------------------------------------------------------------------------------

def message(inner: str, *, root: str = "NCIPMessage") -> bytes:
    return (f'<{root} xmlns="{NS}" version="{schemes.VERSION}">{inner}</{root}>').encode()


@pytest.mark.parametrize("service", sorted(set(schemes.SERVICES) - schemes.SUPPORTED_SERVICES))
def test_every_other_service_is_recognised_as_unsupported(service):
    header = ("<InitiationHeader><FromAgencyId><AgencyId>NO-2030000</AgencyId></FromAgencyId>"
              "<ToAgencyId><AgencyId>NLR</AgencyId></ToAgencyId></InitiationHeader>")
    assert parse_request(message(f"<{service}>{header}<Whatever/></{service}>")) == \
        UnsupportedRequest(service=service, header=HEADER)


@pytest.mark.parametrize("element", ["LookupVersion", "AuthenticateUser", "LookupUserResponse",
                                     "Problem", "Frobnicate"])
def test_unknown_element_under_ncipmessage_is_unknown_service(element):
    with pytest.raises(UnknownService) as e:
        parse_request(message(f"<{element}/>"))
    assert e.value.element == element
    assert e.value.problem.type == schemes.UNKNOWN_SERVICE


@pytest.mark.parametrize("body", [
    b"<LookupUser/>", message("<LookupUser/>", root="NCIPMsg"), message(""),
    message("<Ext><x/></Ext>"), b"<html><body>It works!</body></html>",
])
def test_no_service_is_a_syntax_error(body):
    with pytest.raises(NCIPSyntaxError) as e:
        parse_request(body)
    assert e.value.problem.type == schemes.INVALID_MESSAGE_SYNTAX_ERROR


def test_missing_header_and_fields_give_empty_defaults():
    assert parse_request(message("<LookupUser/>")) == LookupUser()
    assert parse_request(message("<CreateUser/>")) == CreateUser()


def test_bad_date_is_a_problem_in_the_service_response():
    body = example("09").replace(b"1985-04-17T00:00:00", b"17.04.1985")
    with pytest.raises(RequestProblem) as e:
        parse_request(body)
    assert (e.value.service, e.value.header) == ("CreateUser", HEADER)
    assert e.value.problem.type == schemes.INVALID_DATE
    assert (e.value.problem.element, e.value.problem.value) == ("DateOfBirth", "17.04.1985")


# --- A.2 tolerances: lenient form == strict form -------------------------------------------------

REQUESTS = ["01", "02", "07", "09", "11", "12", "14"]


def no_prefix(body: bytes) -> bytes:
    return body.replace(b"<ns1:", b"<").replace(b"</ns1:", b"</")


NAMESPACE_FORMS = {
    "other prefix": lambda b: b.replace(b"ns1:", b"n:").replace(b"xmlns:ns1=", b"xmlns:n="),
    "default namespace": lambda b: no_prefix(b).replace(b"xmlns:ns1=", b"xmlns=").replace(
        b"ns1:version", b"version").replace(b"ns1:Scheme", b"Scheme"),
    "no namespace": lambda b: re.sub(rb' xmlns:ns1="[^"]*"', b"", no_prefix(b)).replace(
        b"ns1:version", b"version").replace(b"ns1:Scheme", b"Scheme"),
    "unqualified version and Scheme": lambda b: b.replace(b"ns1:version=", b"version=").replace(
        b"ns1:Scheme=", b"Scheme="),
    "no XML declaration, leading blank line": lambda b: b"\r\n  " + b.split(b"?>", 1)[1],
}


@pytest.mark.parametrize("form", sorted(NAMESPACE_FORMS))
@pytest.mark.parametrize("number", REQUESTS)
def test_namespace_and_qualification_variants(number, form):
    strict = example(number)
    lenient = NAMESPACE_FORMS[form](strict)
    assert lenient != strict
    assert parse_request(lenient) == parse_request(strict)


SCHEME_VALUE_PAIRS = {  # elements of type SchemeValuePair that our requests read
    "AgencyId", "UserIdentifierType", "AuthenticationInputType", "AuthenticationDataFormatType",
    "UserElementType", "AgencyElementType", "UserAddressRoleType", "PhysicalAddressType",
    "ElectronicAddressType", "AgencyUserPrivilegeType", "UserPrivilegeStatusType",
    "ApplicationProfileType",
}
CONTROLLED = SCHEME_VALUE_PAIRS - {"AgencyId", "ApplicationProfileType"} | {
    "UserPrivilegeDescription"}


def transform(body: bytes, change) -> bytes:
    root = etree.fromstring(body)
    for el in list(root.iter()):
        if etree.QName(el).localname in change.names:
            change(el)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def v1_scheme_value(el):
    """<X Scheme="s">v</X>  ->  <X><Scheme>s</Scheme><Value>v</Value></X> (NCIP 1)"""
    scheme = el.attrib.pop(f"{{{NS}}}Scheme", None)
    value, el.text = el.text, None
    if scheme:
        etree.SubElement(el, f"{{{NS}}}Scheme").text = scheme
    etree.SubElement(el, f"{{{NS}}}Value").text = value


v1_scheme_value.names = SCHEME_VALUE_PAIRS


def sloppy_case(el):
    el.text = f"\n   {el.text.swapcase()} \t"


sloppy_case.names = CONTROLLED


@pytest.mark.parametrize("change", [v1_scheme_value, sloppy_case], ids=lambda f: f.__name__)
@pytest.mark.parametrize("number", REQUESTS)
def test_value_variants(number, change):
    strict = example(number)
    lenient = transform(strict, change)
    assert lenient != strict
    assert parse_request(lenient) == parse_request(strict)


def test_v1_unique_ids():
    strict = example("01")
    lenient = strict.replace(b"ns1:UserId>", b"ns1:UniqueUserId>").replace(
        b"ns1:AgencyId>", b"ns1:UniqueAgencyId>")
    assert parse_request(lenient) == parse_request(strict)


def auth_input(data: str, kind: str, data_format: str = "text/plain") -> str:
    return (f"<AuthenticationInput><AuthenticationInputData>{data}</AuthenticationInputData>"
            f"<AuthenticationDataFormatType>{data_format}</AuthenticationDataFormatType>"
            f"<AuthenticationInputType>{kind}</AuthenticationInputType></AuthenticationInput>")


def lookup(*parts: str) -> bytes:
    return message("<LookupUser>" + "".join(parts) + "</LookupUser>")


USER_ID = ("<UserId><AgencyId>NLR</AgencyId><UserIdentifierType>Barcode</UserIdentifierType>"
           "<UserIdentifierValue>N000123456</UserIdentifierValue></UserId>")
STRICT_CARD_PIN = lookup(auth_input("N000123456", "Barcode Id"), auth_input("1234", "PIN"))


@pytest.mark.parametrize("card_type", ["Barcode Id", "Barcode", "User Id", "Username",
                                       "username", "BarcodeId"])
@pytest.mark.parametrize("pin_type", ["PIN", "Password", "pin", "password"])
def test_authentication_input_type_synonyms(card_type, pin_type):
    lenient = lookup(auth_input("1234", pin_type, "Text"), auth_input(" N000123456 ", card_type))
    assert parse_request(lenient) == parse_request(STRICT_CARD_PIN)
    assert parse_request(lenient).user == UserRef(card="N000123456", pin="1234")


@pytest.mark.parametrize("lenient", [
    lookup(USER_ID, auth_input("1234", "PIN")),  # FOLIO: UserId + PIN
    lookup(USER_ID, auth_input("N000123456", "Barcode Id"), auth_input("1234", "PIN")),
    lookup(auth_input("1234", "PIN"), USER_ID),
], ids=["UserId+PIN", "UserId+card+PIN", "PIN first"])
def test_user_id_and_authentication_input_together(lenient):
    assert parse_request(lenient) == parse_request(STRICT_CARD_PIN)


def test_authenticated_card_wins_over_a_different_user_id():
    request = parse_request(lookup(USER_ID.replace("N000123456", "patron-42"),
                                   auth_input("N000123456", "Username"), auth_input("1", "PIN")))
    assert request.user == UserRef(card="N000123456", pin="1")


def test_lookup_by_national_id():
    uid = ("<UserId><UserIdentifierType Scheme='urn:x-nlr:schemes:useridentifiertype'>"
           "National Identity Number</UserIdentifierType>"
           "<UserIdentifierValue>17848510033</UserIdentifierValue></UserId>")
    strict = lookup(uid)
    assert parse_request(strict).user == UserRef(national_id="17848510033")
    sloppy = lookup(uid.replace("National Identity Number", " national  identity number"))
    assert parse_request(sloppy) == parse_request(strict)


VALID_FROM = "2024-09-02T10:15:00+02:00"


@pytest.mark.parametrize("lenient", ["2024-09-02T10:15:00", "2024-09-02T10:15", "2024-09-02 10:15",
                                     "2024-09-02T08:15:00Z", "2024-09-02T08:15:00.000z",
                                     "2024-09-02T10:15:00+0200", "2024-09-02T03:15:00-05:00"])
def test_date_time_variants(lenient):
    strict = example("11")
    assert parse_request(strict.replace(VALID_FROM.encode(), lenient.encode())) == \
        parse_request(strict)


@pytest.mark.parametrize("lenient", ["2024-09-02", "2024-09-02T00:00", "2024-09-01T22:00:00Z"])
def test_date_only_means_midnight_in_oslo(lenient):
    strict = example("11").replace(VALID_FROM.encode(), b"2024-09-02T00:00:00+02:00")
    assert parse_request(example("11").replace(VALID_FROM.encode(), lenient.encode())) == \
        parse_request(strict)


@pytest.mark.parametrize("lenient", ["1985-04-17", "1985-04-17T00:00:00+02:00", "1985-04-17Z",
                                     "1985-04-17T12:00:00-05:00", " 1985-04-17T00:00 "])
def test_birth_date_variants(lenient):
    strict = example("09")
    lenient_body = strict.replace(b"1985-04-17T00:00:00", lenient.encode())
    assert parse_request(lenient_body) == parse_request(strict)


def test_parsed_datetimes_are_in_oslo():
    request = parse_request(example("11").replace(VALID_FROM.encode(), b"2024-09-02T08:15:00Z"))
    valid_from = request.add_fields.privileges[0].valid_from
    assert valid_from == datetime(2024, 9, 2, 8, 15, tzinfo=UTC)
    assert valid_from.utcoffset().total_seconds() == 7200


def test_other_encodings_and_entities():
    strict = example("09").replace(b"Ola", "Åse Ærlig".encode())
    latin1 = strict.decode().replace('encoding="UTF-8"', 'encoding="ISO-8859-1"').encode("latin-1")
    char_refs = strict.replace("Å".encode(), b"&#xC5;").replace(b"Nordmann", b"Nord&#109;ann")
    assert parse_request(latin1) == parse_request(char_refs) == parse_request(strict)
    assert parse_request(strict).name.given_name == "Åse Ærlig"


def test_electronic_address_variants():
    def create(kind, data):
        return message("<CreateUser><UserAddressInformation><UserAddressRoleType>Notice"
                       "</UserAddressRoleType><ElectronicAddress><ElectronicAddressType>"
                       f"{kind}</ElectronicAddressType><ElectronicAddressData>{data}"
                       "</ElectronicAddressData></ElectronicAddress></UserAddressInformation>"
                       "</CreateUser>")
    assert parse_request(create("mailto", "a@b.no")) == \
        parse_request(create(" E-mail", "mailto:a@b.no"))
    assert parse_request(create("tel", "+47123")) == parse_request(create("TEL", "tel:+47123"))
    assert parse_request(create("tel", "+47123")).phones == ("+47123",)


def test_create_user_national_id_and_pin_at_top_level():
    """CreateUser's schema choice allows AuthenticationInput+ instead of UserId."""
    strict = parse_request(example("09"))
    body = message(
        "<CreateUser><InitiationHeader><FromAgencyId><AgencyId>NO-2030000</AgencyId></FromAgencyId>"
        "<ToAgencyId><AgencyId>NLR</AgencyId></ToAgencyId></InitiationHeader>"
        + auth_input("N000123457", "Barcode Id") + auth_input("4321", "PIN")
        + "<Ext><UserId><UserIdentifierType>National Identity Number</UserIdentifierType>"
          "<UserIdentifierValue>17848510033</UserIdentifierValue></UserId></Ext></CreateUser>")
    request = parse_request(body)
    assert (request.card, request.national_id, request.pin) == ("N000123457", "17848510033", "4321")
    assert request.header == strict.header


def test_update_user_home_library_and_merapent():
    def privilege(kind, description):
        return message(
            "<UpdateUser><UserId><UserIdentifierValue>N000123456</UserIdentifierValue></UserId>"
            "<AddUserFields><UserPrivilege><AgencyId>NO-2030000</AgencyId><AgencyUserPrivilegeType>"
            f"{kind}</AgencyUserPrivilegeType><UserPrivilegeDescription>{description}"
            "</UserPrivilegeDescription></UserPrivilege></AddUserFields></UpdateUser>")
    home = parse_request(privilege("LIBRARY", "Home library")).add_fields.privileges[0]
    assert (home.kind, home.description) == (PrivilegeKind.LIBRARY, schemes.HOME_LIBRARY)
    assert parse_request(privilege("library", "HOME LIBRARY")).add_fields.privileges[0] == home
    door = parse_request(privilege("Meråpent", "signed v3")).add_fields.privileges[0]
    assert (door.kind, door.description) == (PrivilegeKind.MERAPENT, "signed v3")
    assert parse_request(privilege("profile", "x")).add_fields.privileges[0].kind == "PROFILE"


def test_unknown_element_types_are_ignored():
    body = example("01").replace(b">Name Information<", b">Preview User<")
    assert UET.NAME_INFORMATION not in parse_request(body).element_types
    assert len(parse_request(body).element_types) == 4
