"""POST /ncip over real HTTP: the examples of our profile, and the same requests as real clients
send them (ncip.md A.1-A.4). Every response is validated against ncip_v2_02.xsd by `Gateway.post`."""

from __future__ import annotations

from datetime import date

import pytest
import pytest_twisted
from lxml import etree
from ncip_gateway_helpers import (
    KARI,
    PIN,
    auth,
    card,
    default_namespace,
    example,
    leaves,
    message,
    no_namespace,
    unqualified,
    user_id,
    v1_scheme_value,
    with_doctype,
)
from register_helpers import OSLO

from gateway.register.views import OPERATOR, PinCheck
from protocols.ncip import schemes


def expected(number: str) -> etree._Element:
    return etree.fromstring(example(number))


def without(pairs: list[tuple[str, str]], *names: str) -> list[tuple[str, str]]:
    return [(p, t) for p, t in pairs if p.rpartition("/")[2] not in names]


@pytest_twisted.ensureDeferred
async def test_lookup_examples_get_the_example_responses(gateway):
    by_card = await gateway.post(example("01"))
    assert leaves(by_card.root) == leaves(expected("03"))  # activation times aside
    with_pin = await gateway.post(example("02"))
    only_name = [(p, t) for p, t in leaves(expected("03"))
                 if "/UserOptionalFields/" not in p or "/NameInformation/" in p]
    assert leaves(with_pin.root) == only_name  # UserId always, and only the element types asked for
    unknown = await gateway.post(card(example("01"), "N000999999"))
    assert leaves(unknown.root, frozenset({"ProblemDetail"})) == leaves(expected("04"), frozenset({"ProblemDetail"}))
    wrong_pin = await gateway.post(example("02").replace(b">1234<", b">9999<"))
    assert leaves(wrong_pin.root) == leaves(expected("05"))


@pytest_twisted.ensureDeferred
async def test_lookup_agency_example(gateway):
    response = await gateway.post(example("07"))
    want = [(p, "NLR 1.0" if p.endswith("ApplicationProfileSupportedType") else t) for p, t in leaves(expected("08"))]
    assert leaves(response.root) == want  # ncip.md A.3 names the profile "NLR 1.0"
    agency = b"<ns1:AgencyId>NLR</ns1:AgencyId>\n"
    library = await gateway.post(example("07").replace(agency, b"<ns1:AgencyId>2120100</ns1:AgencyId>\n"))
    assert library.text("LookupAgencyResponse/AgencyId") == "NO-2120100"
    assert library.values("OrganizationName") == ["Bergen offentlige bibliotek"]
    nowhere = await gateway.post(example("07").replace(agency, b"<ns1:AgencyId>NO-9999999</ns1:AgencyId>\n"))
    assert nowhere.problem_type == "Unknown Agency"


@pytest_twisted.ensureDeferred
async def test_create_and_delete_examples(gateway):
    register = gateway.register
    created = await gateway.post(example("09"))
    assert leaves(created.root) == leaves(expected("10"))
    ola = register.find_patron(OPERATOR, "N000123457", with_national_id=True)
    assert (ola.given_name, ola.surname, ola.home_library_isil) == ("Ola", "Nordmann", OSLO)
    assert (ola.national_id, ola.birth_date, ola.email) == ("17848510033", date(1985, 4, 17), "ola.nordmann@example.no")
    assert (ola.address_line1, ola.postal_code, ola.city, ola.country) == ("Kirkegata 2", "5003", "Bergen", "NO")
    assert register.verify_pin(OPERATOR, "N000123457", "4321") is PinCheck.OK

    # The existing card is named only to a client that may look patrons up by national id (issue 8)
    again = await gateway.post(example("09"), client="oslo-full")
    assert leaves(again.root, frozenset({"ProblemDetail"})) == leaves(expected("15"), frozenset({"ProblemDetail"}))
    assert "N000123457" in again.problem_field("ProblemDetail")
    probe = await gateway.post(example("09"))
    assert without(leaves(probe.root, frozenset({"ProblemDetail"})), "ProblemValue") == without(
        leaves(expected("15"), frozenset({"ProblemDetail"})), "ProblemValue")
    assert b"N000123457" not in probe.body

    deleted = await gateway.post(example("14"))
    assert without(leaves(deleted.root), "UserIdentifierType") == [
        (p.replace("CreateUser", "DeleteUser"), t) for p, t in without(leaves(expected("10")), "UserIdentifierType")]
    gone = await gateway.post(card(example("01"), "N000123457"))
    assert gone.problem_type == "Unknown User"
    reused = await gateway.post(example("09"))  # the person may come back, the number never
    assert reused.problem_type == "Card Number In Use"


@pytest_twisted.ensureDeferred
async def test_update_examples(gateway):
    register = gateway.register
    phone = await gateway.post(example("11"), client="lier")
    assert without(leaves(phone.root), "UserIdentifierType") == leaves(expected("13"))
    assert register.find_patron(OPERATOR, KARI).phone == "+4798765432"
    pin = await gateway.post(example("12"))
    assert pin.text("UpdateUserResponse/UserId/UserIdentifierValue") == KARI
    assert register.verify_pin(OPERATOR, KARI, "9876") is PinCheck.OK
    stale = await gateway.post(example("12"))  # the old PIN no longer authenticates
    assert stale.problem_type == "User Authentication Failed"


@pytest_twisted.ensureDeferred
async def test_other_services_are_unsupported(gateway):
    checkout = message("CheckOutItem", user_id(KARI) + "<ns1:ItemId><ns1:ItemIdentifierValue>1"
                                                         "</ns1:ItemIdentifierValue></ns1:ItemId>")
    response = await gateway.post(checkout)
    assert response.problem_type == "Unsupported Service"
    assert response.find("CheckOutItemResponse/Problem/ProblemElement").text == "CheckOutItem"
    assert (await gateway.post(message("FlyToTheMoon", ""))).problem_type == "Unknown Service"


# --- the same requests as real clients send them (ncip.md A.2) ----------------------------------

FORMS = {
    "no namespace": no_namespace,
    "default namespace": default_namespace,
    "unqualified version and Scheme": unqualified,
    "v1 Scheme/Value children": v1_scheme_value,
    "DOCTYPE": with_doctype,
    "everything at once": lambda xml: with_doctype(default_namespace(v1_scheme_value(xml))),
    "bare library number": lambda xml: xml.replace(b">NO-2030000<", b">2030000<"),
    "spaces and case": lambda xml: xml.replace(b">Name Information<", b"> name  information <")
                                      .replace(b">Barcode Id<", b"> BARCODE ID\n<").replace(b">PIN<", b">pin<"),
}


@pytest.mark.parametrize("number", ["01", "02", "07", "12"])
@pytest.mark.parametrize("form", FORMS)
@pytest_twisted.ensureDeferred
async def test_real_client_forms_get_the_strict_answer(gateway, number, form):
    strict = await gateway.post(example(number))
    gateway.register.set_pin(OPERATOR, KARI, PIN)  # example 12 changes it
    lenient = await gateway.post(FORMS[form](example(number)))
    if form == "bare library number":  # the To of the answer echoes the From as sent
        assert lenient.body == strict.body.replace(b">NO-2030000<", b">2030000<", 1)
    else:
        assert lenient.body == strict.body


@pytest.mark.parametrize("who", [
    pytest.param(user_id(KARI) + auth("PIN", PIN), id="UserId with AuthenticationInput PIN"),
    pytest.param(user_id(KARI) + auth("Barcode Id", KARI) + auth("PIN", PIN), id="UserId with card and PIN"),
    pytest.param(auth("Barcode", KARI) + auth("Password", PIN), id="Barcode and Password"),
    pytest.param(auth("User Id", KARI) + auth("PIN", PIN), id="User Id"),
    pytest.param(auth("Username", KARI) + auth("PIN", PIN), id="Username"),
])
@pytest_twisted.ensureDeferred
async def test_card_and_pin_in_any_form(gateway, who):
    strict = await gateway.post(example("02"))
    types = (f'<ns1:UserElementType ns1:Scheme="{schemes.Scheme.USER_ELEMENT_TYPE}">Name Information'
             "</ns1:UserElementType>")
    lenient = await gateway.post(message("LookupUser", who + types))
    assert lenient.body == strict.body


@pytest.mark.parametrize("born", ["1985-03-15T00:00:00+01:00", "1985-03-15", "1985-03-15T00:00:00", "1985-03-15Z",
                                  "1985-03-15 12:00"])
@pytest_twisted.ensureDeferred
async def test_date_only_and_zoneless_dates(gateway, born):
    response = await gateway.post(message("UpdateUser", user_id(KARI) + f"<ns1:AddUserFields><ns1:DateOfBirth>{born}"
                                          "</ns1:DateOfBirth></ns1:AddUserFields>"))
    assert response.text("UpdateUserResponse/UserId/UserIdentifierValue") == KARI
    assert gateway.register.find_patron(OPERATOR, KARI).birth_date == date(1985, 3, 15)
    bad = await gateway.post(message("UpdateUser", user_id(KARI) + "<ns1:AddUserFields><ns1:DateOfBirth>15.03.1985"
                                     "</ns1:DateOfBirth></ns1:AddUserFields>"))
    assert bad.problem_type == "Invalid Date"


@pytest_twisted.ensureDeferred
async def test_xml_in_a_form_field(gateway):
    strict = await gateway.post(example("01"))
    assert (await gateway.form(example("01"))).body == strict.body
    boundary = "nlr-form-boundary"
    multipart = (f'--{boundary}\r\nContent-Disposition: form-data; name="xml"\r\n\r\n'.encode()
                 + example("01") + f"\r\n--{boundary}--\r\n".encode())
    response = await gateway.post(multipart, headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert response.body == strict.body
    # curl -d sends raw XML labelled as a form: the body is still the message
    labelled = await gateway.post(example("01"), headers={"content-type": "application/x-www-form-urlencoded"})
    assert labelled.body == strict.body


@pytest_twisted.ensureDeferred
async def test_token_in_the_initiation_header(gateway):
    strict = await gateway.post(example("01"))
    in_header = example("01").replace(b"</ns1:FromAgencyId>", b"</ns1:FromAgencyId><ns1:FromAgencyAuthentication>"
                                      + gateway.tokens["oslo"].encode() + b"</ns1:FromAgencyAuthentication>", 1)
    response = await gateway.post(in_header, client=None)
    assert response.body == strict.body
    assert gateway.tokens["oslo"].encode() not in response.body


@pytest_twisted.ensureDeferred
async def test_get_is_not_allowed(gateway):
    response = await gateway.request(b"GET")
    assert response.code == 405
    assert response.header("allow") == "POST"
    assert (await gateway.request(b"PUT", b"<x/>")).code == 405
