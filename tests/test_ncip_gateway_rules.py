"""The register's rules as a library system meets them over NCIP (ncip.md A.3-A.5, PRODUCT §2):
national ids, permissions, affiliation, duplicates, series, the shared PIN lockout."""

from __future__ import annotations

import pytest_twisted
from ncip_gateway_helpers import (
    KARI,
    KARI_NID,
    LIER,
    PIN,
    auth,
    create_user,
    electronic,
    lookup_user,
    message,
    privilege,
    update_user,
    user_id,
)
from register_helpers import BERGEN, OSLO, TRONDHEIM, nid, terminal
from twisted.internet import defer

from gateway.register.views import OPERATOR, PinCheck, Reason
from protocols.ncip import schemes

NLR = schemes.Scheme.NLR_PROCESSING_ERROR


# --- national identity numbers -------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_national_id_only_to_a_client_allowed_to_see_it(gateway):
    for client in ("oslo", "oslo-national-id", "oslo-lookup"):
        for body in (lookup_user(KARI), lookup_user(KARI, pin=PIN)):
            response = await gateway.post(body, client=client)
            assert response.problem is None and KARI_NID.encode() not in response.body
    allowed = await gateway.post(lookup_user(KARI), client="oslo-full")
    ext = allowed.find("LookupUserResponse/UserOptionalFields/Ext/UserId")
    assert ext.findtext(f"{{{schemes.NS}}}UserIdentifierValue") == KARI_NID
    with_pin = await gateway.post(lookup_user(KARI, pin=PIN), client="oslo-full")
    assert with_pin.values("UserIdentifierValue").count(KARI_NID) == 1
    not_asked = await gateway.post(lookup_user(KARI, types=("Name Information",)), client="oslo-full")
    assert KARI_NID.encode() not in not_asked.body


@pytest_twisted.ensureDeferred
async def test_lookup_by_national_id(gateway):
    refused = await gateway.post(lookup_user(national_id=KARI_NID), client="oslo")
    assert refused.problem_type == "Unauthorized Service For Agency"
    found = await gateway.post(lookup_user(national_id=KARI_NID), client="oslo-national-id")
    assert found.text("LookupUserResponse/UserId/UserIdentifierValue") == KARI
    assert KARI_NID.encode() not in found.body  # not even in the answer to a lookup by national id
    shown = await gateway.post(lookup_user(national_id=KARI_NID), client="oslo-full")
    assert shown.values("UserIdentifierValue") == [KARI, KARI, KARI_NID]
    nobody = await gateway.post(lookup_user(national_id=nid(5)), client="oslo-full")
    assert nobody.problem_type == "Unknown User" and nobody.problem_field("ProblemValue") is None
    malformed = await gateway.post(lookup_user(national_id="12345678901"), client="oslo-full")
    assert malformed.problem == (NLR, "Invalid National Identity Number")


# --- permissions ---------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_services_outside_the_clients_permissions(gateway):
    cases = [
        ("oslo-lookup", create_user(nid(3))),
        ("oslo-lookup", update_user(KARI, electronic("mailto", "ny@example.no"))),
        ("oslo-lookup", update_user(KARI, privilege(OSLO, "MERAPENT"))),
        ("bergen", message("DeleteUser", user_id(KARI), agency=BERGEN)),
        ("oslo-create", lookup_user(KARI)),
        ("oslo-create", lookup_user(KARI, pin=PIN)),
    ]
    for client, body in cases:
        response = await gateway.post(body, client=client)
        assert response.problem == (schemes.Scheme.GENERAL_PROCESSING_ERROR, "Unauthorized Service For Agency"), client
    assert gateway.register.find_patron(OPERATOR, KARI).email == "kari.nordmann@example.no"
    # the PIN was not even checked for a client that may not look up
    assert gateway.register.verify_pin(OPERATOR, KARI, PIN) is PinCheck.OK


@pytest_twisted.ensureDeferred
async def test_delete_needs_the_home_library(gateway):
    created = await gateway.post(create_user(nid(4), surname="Berg", given_name="Emma"), client="oslo")
    number = created.text("CreateUserResponse/UserId/UserIdentifierValue")
    gateway.register.activate(OPERATOR, number, BERGEN)
    gateway.register.update_client(OPERATOR, "bergen", permissions=["lookup", "delete"])
    other = await gateway.post(message("DeleteUser", user_id(number), agency=BERGEN), client="bergen")
    assert other.problem_type == "Unauthorized Service For Agency"
    home = await gateway.post(message("DeleteUser", user_id(number)), client="oslo")
    assert home.text("DeleteUserResponse/UserId/UserIdentifierValue") == number
    assert (await gateway.post(lookup_user(number))).problem_type == "Unknown User"


# --- affiliation ---------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_an_update_user_that_fails_anywhere_changes_nothing(gateway):
    """UpdateUser was up to six transactions: the door agreement and the activation stayed although
    the bad e-mail after them answered a Problem (issue 8, item 2). With the patron's PIN too."""
    register = gateway.register
    before = register.find_patron(OPERATOR, KARI)
    feed = len(register.changes())
    door_and_bad_email = privilege(BERGEN) + privilege(BERGEN, "MERAPENT") + electronic("mailto", "not an e-mail")
    for pin in (None, PIN):
        refused = await gateway.post(update_user(KARI, door_and_bad_email, pin=pin, agency=BERGEN), client="bergen")
        assert refused.problem_type == "Element Rule Violated", refused.body
    after = register.find_patron(OPERATOR, KARI)
    assert after.activation_at(BERGEN) is None and after.email == before.email
    assert len(register.changes()) == feed
    done = await gateway.post(update_user(KARI, privilege(BERGEN) + privilege(BERGEN, "MERAPENT")
                                          + electronic("mailto", "kari@bergen.example"), pin=PIN, agency=BERGEN),
                              client="bergen")
    assert done.problem is None, done.body
    after = register.find_patron(OPERATOR, KARI)
    assert after.activation_at(BERGEN).door_agreement_at is not None and after.email == "kari@bergen.example"


@pytest_twisted.ensureDeferred
async def test_not_affiliated_library_cannot_update_but_can_activate_at_itself(gateway):
    register = gateway.register
    change = update_user(KARI, electronic("mailto", "kari@bergen.example"), agency=BERGEN)
    refused = await gateway.post(change, client="bergen")
    assert refused.problem == (NLR, "Not Affiliated With Agency")
    assert register.find_patron(OPERATOR, KARI).email == "kari.nordmann@example.no"
    elsewhere = await gateway.post(update_user(KARI, privilege(TRONDHEIM), agency=BERGEN), client="bergen")
    assert elsewhere.problem_type == "Unauthorized Combination Of Element Values For Agency"

    activated = await gateway.post(update_user(KARI, privilege(BERGEN, description="Activated"), agency=BERGEN),
                                   client="bergen")
    assert activated.problem is None
    assert {a.library_isil for a in register.find_patron(OPERATOR, KARI).activations} == {OSLO, LIER, BERGEN}
    lookup = await gateway.post(lookup_user(KARI, agency=BERGEN), client="bergen")
    assert (BERGEN, "LIBRARY", "Active", "Activated") in lookup.privileges()
    assert (await gateway.post(change, client="bergen")).problem is None  # affiliated now
    assert register.find_patron(OPERATOR, KARI).email == "kari@bergen.example"


@pytest_twisted.ensureDeferred
async def test_meraapent_agreement_and_home_library(gateway):
    register = gateway.register
    signed = await gateway.post(update_user(KARI, privilege(OSLO, "MERAPENT")))
    assert signed.problem is None
    door = register.decide(terminal(OSLO, "door-1"), KARI, PIN, door=True)
    assert door.reason is Reason.GRANTED
    shown = await gateway.post(lookup_user(KARI))
    assert (OSLO, "MERAPENT", "Active", None) in shown.privileges()
    revoked = await gateway.post(update_user(KARI, delete=privilege(OSLO, "MERAPENT")))
    assert revoked.problem is None
    assert register.decide(terminal(OSLO, "door-1"), KARI, PIN, door=True).reason is Reason.DOOR_REVOKED

    # Bergen activates and records its agreement in one UpdateUser, then moves the home library
    both = await gateway.post(update_user(KARI, privilege(BERGEN) + privilege(BERGEN, "MERAPENT"), agency=BERGEN),
                              client="bergen")
    assert both.problem is None
    moved = await gateway.post(update_user(KARI, privilege(BERGEN, description="Home library"),
                                           delete=privilege(OSLO, description="Home library"), agency=BERGEN),
                               client="bergen")
    assert moved.problem is None
    patron = register.find_patron(OPERATOR, KARI)
    assert patron.home_library_isil == BERGEN
    assert patron.activation_at(BERGEN).door_agreement_at is not None


@pytest_twisted.ensureDeferred
async def test_change_address_email_phone_and_pin(gateway):
    register = gateway.register
    address = ("<ns1:UserAddressInformation><ns1:UserAddressRoleType>Home</ns1:UserAddressRoleType>"
               "<ns1:PhysicalAddress>"
               "<ns1:StructuredAddress><ns1:Line1>Kongens gate 9</ns1:Line1><ns1:Locality>Trondheim</ns1:Locality>"
               "<ns1:Country>NO</ns1:Country><ns1:PostalCode>7011</ns1:PostalCode></ns1:StructuredAddress>"
               "<ns1:PhysicalAddressType>Postal Address</ns1:PhysicalAddressType></ns1:PhysicalAddress>"
               "</ns1:UserAddressInformation>")
    new_pin = auth("PIN", "8642")
    response = await gateway.post(update_user(KARI, address + electronic("mailto", "kari@example.org")
                                              + electronic("tel", "98765432") + new_pin, pin=PIN))
    assert response.text("UpdateUserResponse/UserId/UserIdentifierValue") == KARI
    patron = register.find_patron(OPERATOR, KARI)
    assert (patron.address_line1, patron.postal_code, patron.city) == ("Kongens gate 9", "7011", "Trondheim")
    assert (patron.email, patron.phone) == ("kari@example.org", "+4798765432")
    assert register.verify_pin(OPERATOR, KARI, "8642") is PinCheck.OK
    removed = await gateway.post(update_user(KARI, delete=electronic("tel", "+4798765432")))
    assert removed.problem is None and register.find_patron(OPERATOR, KARI).phone is None
    bad = await gateway.post(update_user(KARI, electronic("mailto", "not an address")))
    assert bad.problem_type == "Element Rule Violated"
    nothing = await gateway.post(update_user(KARI, delete=""))
    assert nothing.problem_type == "Needed Data Missing"
    wrong_pin = await gateway.post(update_user(KARI, electronic("mailto", "x@example.org"), pin="0000"))
    assert wrong_pin.problem_type == "User Authentication Failed"
    assert register.find_patron(OPERATOR, KARI).email == "kari@example.org"


# --- registration: duplicates and series ---------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_duplicate_national_id_names_the_existing_card_only_with_lookup_by_national_id(gateway):
    """A client with only ``create`` must not turn CreateUser into a lookup by national id (issue 8):
    it hears that the person is registered, not the card; the probe is in the patron's audit trail."""
    response = await gateway.post(create_user(KARI_NID, surname="Nordmann", given_name="Kari", agency=BERGEN),
                                  client="bergen")
    assert response.problem == (NLR, "Duplicate User")
    assert KARI.encode() not in response.body and KARI_NID.encode() not in response.body
    assert response.problem_field("ProblemValue") is None
    probes = [e for e in gateway.register.audit_events(KARI) if e.outcome == "duplicate_patron"]
    assert [(e.actor, e.action) for e in probes] == [("client:bergen", "patron_register")]
    full = await gateway.post(create_user(KARI_NID, surname="Nordmann", given_name="Kari"), client="oslo-full")
    assert full.problem == (NLR, "Duplicate User")
    assert KARI in full.problem_field("ProblemDetail")
    assert full.problem_field("ProblemValue") == KARI
    assert KARI_NID.encode() not in full.body


@pytest_twisted.ensureDeferred
async def test_card_numbers_come_from_the_librarys_series(gateway):
    outside = await gateway.post(create_user(nid(1), "N000200123"))  # Bergen's series, Oslo's client
    assert outside.problem == (NLR, "Card Number Outside Reserved Series")
    assert outside.problem_field("ProblemValue") == "N000200123"
    in_use = await gateway.post(create_user(nid(1), KARI))
    assert in_use.problem == (NLR, "Card Number In Use")
    allocated = await gateway.post(create_user(nid(1), pin="2580"))
    number = allocated.text("CreateUserResponse/UserId/UserIdentifierValue")
    assert "N000100000" <= number <= "N000199999"
    patron = gateway.register.find_patron(OPERATOR, number)
    assert patron.home_library_isil == OSLO and patron.has_pin
    invalid = await gateway.post(create_user("01010112345"))
    assert invalid.problem == (NLR, "Invalid National Identity Number")
    missing = await gateway.post(message("CreateUser", "<ns1:NameInformation><ns1:PersonalNameInformation>"
                                         "<ns1:UnstructuredPersonalUserName>Ola Nordmann"
                                         "</ns1:UnstructuredPersonalUserName></ns1:PersonalNameInformation>"
                                         "</ns1:NameInformation>"))
    assert missing.problem_type == "Needed Data Missing"


@pytest_twisted.ensureDeferred
async def test_create_with_an_unstructured_name_and_a_door_agreement(gateway):
    body = create_user(nid(2), extra=privilege(OSLO, "MERAPENT")).replace(
        b"<ns1:StructuredPersonalUserName><ns1:GivenName>Ola</ns1:GivenName><ns1:Surname>Nordmann</ns1:Surname>"
        b"</ns1:StructuredPersonalUserName>",
        b"<ns1:UnstructuredPersonalUserName>Nordmann, Ola Johan</ns1:UnstructuredPersonalUserName>")
    response = await gateway.post(body)
    patron = gateway.register.find_patron(OPERATOR, response.text("CreateUserResponse/UserId/UserIdentifierValue"))
    assert (patron.given_name, patron.surname) == ("Ola Johan", "Nordmann")
    assert patron.activation_at(OSLO).door_agreement_at is not None


# --- PINs: one answer for unknown card and wrong PIN, lockout shared with SIP2 -------------------

@pytest_twisted.ensureDeferred
async def test_unknown_card_and_wrong_pin_look_the_same(gateway):
    wrong = await gateway.post(lookup_user(KARI, pin="9999"))
    unknown = await gateway.post(lookup_user("N000999999", pin="9999"))
    garbage = await gateway.post(lookup_user("no card", pin="9999"))
    assert wrong.body == unknown.body == garbage.body
    assert wrong.problem == (schemes.Scheme.LOOKUP_USER_PROCESSING_ERROR, "User Authentication Failed")


@pytest_twisted.ensureDeferred
async def test_five_wrong_pins_over_ncip_lock_the_pin_for_sip2_too(gateway):
    answers = [(await gateway.post(lookup_user(KARI, pin="0000"))).problem for _ in range(5)]
    assert [a[1] for a in answers] == ["User Authentication Failed"] * 4 + ["PIN Locked"]
    right = await gateway.post(lookup_user(KARI, pin=PIN))
    assert right.problem == (NLR, "PIN Locked")
    sip2 = gateway.register.decide(terminal(OSLO), KARI, PIN)  # what a SIP2 23/63 asks
    assert sip2.reason is Reason.PIN_LOCKED and not sip2.pin_valid


@pytest_twisted.ensureDeferred
async def test_sip2_failures_count_over_ncip(gateway):
    for _ in range(4):
        assert gateway.register.decide(terminal(OSLO), KARI, "0000").reason is Reason.PIN_WRONG
    assert (await gateway.post(lookup_user(KARI, pin="0000"))).problem == (NLR, "PIN Locked")


# --- what a lookup shows ---------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_blocked_lost_secret_and_deleted_patrons(gateway):
    register = gateway.register
    register.set_blocked(OPERATOR, KARI, True, "unpaid replacement fee")
    blocked = await gateway.post(lookup_user(KARI, pin=PIN))  # a blocked patron still authenticates
    assert blocked.values("BlockOrTrapType") == ["Block Check Out"]
    assert blocked.values("UserPrivilegeStatusType")[-1] == "BLOCKED"
    assert b"unpaid" not in blocked.body
    register.set_blocked(OPERATOR, KARI, False)

    register.report_lost(OPERATOR, KARI)
    new = register.replace_card(OPERATOR, KARI).card
    old = await gateway.post(lookup_user(KARI))
    assert old.values("BlockOrTrapType") == ["Trap For Lost Card"]
    assert old.values("UserPrivilegeStatusType")[-1] == "BLOCKED"
    assert (await gateway.post(lookup_user(KARI, pin=PIN))).problem_type == "User Authentication Failed"
    current = await gateway.post(lookup_user(new, pin=PIN))
    assert current.problem is None and current.values("UserPrivilegeStatusType")[-1] == "OK"
    prev = current.find("LookupUserResponse/UserOptionalFields/PreviousUserId/UserIdentifierValue")
    assert prev.text == KARI

    register.update_patron(OPERATOR, new, secret_address=True)
    secret = await gateway.post(lookup_user(new))
    assert b"Storgata" not in secret.body
    assert secret.find("LookupUserResponse/UserOptionalFields/UserAddressInformation/PhysicalAddress") is None

    register.delete_patron(OPERATOR, new)
    for number in (new, KARI):
        assert (await gateway.post(lookup_user(number))).problem_type == "Unknown User"


@pytest_twisted.ensureDeferred
async def test_first_card_and_pin_use_at_an_auto_activation_library_activates(gateway):
    response = await gateway.post(lookup_user(KARI, pin=PIN, agency=TRONDHEIM), client="trondheim")
    assert response.problem is None
    assert gateway.register.find_patron(OPERATOR, KARI).activation_at(TRONDHEIM).channel == "ncip"


@pytest_twisted.ensureDeferred
async def test_lookups_arriving_together_keep_each_clients_rights(gateway):
    """Lookups sent at the same moment are read together; each client still gets exactly the answer
    it gets alone: the national id only where allowed, a Problem only for its own bad request."""
    asks = [("oslo-full", KARI), ("oslo", KARI), ("oslo-lookup", "N000999999"), ("oslo-full", "N000999998"),
            ("oslo-create", KARI), ("oslo", "not a card"), ("bergen", KARI)] * 3

    def seen(response):
        return (response.problem, response.text("LookupUserResponse/UserId/UserIdentifierValue"),
                KARI_NID.encode() in response.body)

    alone = [seen(await gateway.post(lookup_user(card), client=client)) for client, card in asks]
    together = await defer.gatherResults([defer.ensureDeferred(gateway.post(lookup_user(card), client=client))
                                          for client, card in asks])
    assert [seen(r) for r in together] == alone
    assert alone[0] == (None, KARI, True) and alone[1] == (None, KARI, False)
    assert alone[2][0][1] == "Unknown User" and alone[4][0] is not None and alone[5][0] is not None
