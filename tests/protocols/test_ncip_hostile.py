"""Hostile input to protocols.ncip.parse_request (ncip.md A.1): nothing is resolved, loaded or
fetched, and every input ends in a request or one of the codec's own errors."""

import dataclasses
import socket
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from protocols.ncip import (
    MAX_ELEMENTS,
    MAX_REPEATED,
    MAX_SIZE,
    LookupUser,
    MessageTooLarge,
    NCIPError,
    NCIPSyntaxError,
    TooManyElements,
    UserRef,
    parse_request,
    schemes,
)

NS = schemes.NS


def lookup_with(doctype: str, card: str) -> bytes:
    return (f'<?xml version="1.0"?>{doctype}<NCIPMessage xmlns="{NS}"><LookupUser><UserId>'
            f'<UserIdentifierValue>{card}</UserIdentifierValue></UserId></LookupUser>'
            f'</NCIPMessage>').encode()


def everything(request) -> str:
    """All field values, secrets included (repr hides those)."""
    return str(dataclasses.asdict(request))


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "secret.txt"
    path.write_text("TOP-SECRET-CONTENT")
    return path


@pytest.fixture
def listener():
    """A local TCP port that records whether anybody connected."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)

    def connected() -> bool:
        try:
            server.accept()[0].close()
            return True
        except BlockingIOError:
            return False

    yield server.getsockname()[1], connected
    server.close()


def parse_or_syntax_error(body: bytes):
    try:
        return parse_request(body)
    except NCIPSyntaxError:
        return None


def test_xxe_file_entity_is_not_resolved(secret_file):
    doctype = f'<!DOCTYPE NCIPMessage [<!ENTITY xxe SYSTEM "file://{secret_file}">]>'
    request = parse_or_syntax_error(lookup_with(doctype, "N00&xxe;1"))
    assert request is None or request.user == UserRef(card="N001")
    assert request is None or "TOP-SECRET" not in everything(request)


def test_external_dtd_file_is_not_loaded(secret_file, tmp_path):
    dtd = tmp_path / "evil.dtd"
    dtd.write_text(f'<!ENTITY leak SYSTEM "file://{secret_file}"><!ENTITY x "EXPANDED">')
    for doctype in (f'<!DOCTYPE NCIPMessage SYSTEM "file://{dtd}">',
                    f'<!DOCTYPE NCIPMessage [<!ENTITY % ext SYSTEM "file://{dtd}"> %ext;]>'):
        request = parse_or_syntax_error(lookup_with(doctype, "&x;&leak;N001"))
        assert request is None or request.user == UserRef(card="N001")


def test_network_entities_are_not_fetched(listener):
    port, connected = listener
    url = f"http://127.0.0.1:{port}/x"
    for doctype in (f'<!DOCTYPE NCIPMessage [<!ENTITY xxe SYSTEM "{url}">]>',
                    f'<!DOCTYPE NCIPMessage [<!ENTITY % ext SYSTEM "{url}"> %ext;]>',
                    f'<!DOCTYPE NCIPMessage SYSTEM "{url}">',
                    f'<!DOCTYPE NCIPMessage PUBLIC "-//X//EN" "{url}">'):
        parse_or_syntax_error(lookup_with(doctype, "&xxe;N001" if "xxe" in doctype else "N001"))
    assert not connected()


def test_v1_doctype_is_tolerated_and_ignored():
    doctype = ('<!DOCTYPE NCIPMessage PUBLIC "-//NISO//NCIP DTD Version 1//EN" '
               '"http://www.niso.org/ncip/v1_0/imp1/dtd/ncip_v1_0.dtd">')
    assert parse_request(lookup_with(doctype, "N000123456")) == \
        LookupUser(user=UserRef(card="N000123456"))


def test_internal_entities_are_not_expanded():
    doctype = '<!DOCTYPE NCIPMessage [<!ENTITY card "N000999999">]>'
    assert parse_request(lookup_with(doctype, "&card;N001")).user == UserRef(card="N001")


def test_billion_laughs():
    entities = ['<!ENTITY lol0 "lollollollollollollollollollol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)]
    body = lookup_with(f"<!DOCTYPE NCIPMessage [{''.join(entities)}]>", "&lol9;")
    started = time.monotonic()
    request = parse_or_syntax_error(body)
    assert time.monotonic() - started < 2
    assert request is None or request.user == UserRef()


def test_quadratic_blowup_is_not_expanded():
    big = "A" * 50_000
    body = lookup_with(f'<!DOCTYPE NCIPMessage [<!ENTITY a "{big}">]>', "&a;" * 50_000)
    assert len(body) < MAX_SIZE
    started = time.monotonic()
    request = parse_or_syntax_error(body)
    assert time.monotonic() - started < 2
    assert request is None or request.user == UserRef()


def test_size_cap():
    body = lookup_with("", "N000123456")
    padded = body + b" " * (MAX_SIZE - len(body))
    assert parse_request(padded).user.card == "N000123456"
    with pytest.raises(MessageTooLarge) as e:
        parse_request(padded + b" ")
    assert e.value.problem.type == schemes.INVALID_MESSAGE_SYNTAX_ERROR
    with pytest.raises(MessageTooLarge):
        parse_request(body, max_size=len(body) - 1)


def test_deep_nesting_is_refused():
    body = f'<NCIPMessage xmlns="{NS}"><LookupUser>'.encode() + b"<a>" * 100_000 + b"</a>" * 100_000
    with pytest.raises(MessageTooLarge):
        parse_request(body)
    with pytest.raises(NCIPSyntaxError):  # libxml2's depth limit, below the size cap
        parse_request(body, max_size=10**7)


@pytest.mark.parametrize("body", [
    b"", b"   \r\n", b"not xml at all", b'{"LookupUser": {}}', b"<NCIPMessage>",
    b"<NCIPMessage><LookupUser></NCIPMessage>", b"\x00\x01\x02", b"\xff\xfe\x00<",
    b'<?xml version="1.0" encoding="no-such-encoding"?><NCIPMessage/>',
    b"<NCIPMessage>&undefined;</NCIPMessage>", b"<r>&#0;</r>", b"<a/><b/>",
    "<NCIPMessage><LookupUser/></NCIPMessage>".encode("utf-16-le"),
])
def test_not_xml_is_a_syntax_error(body):
    with pytest.raises(NCIPSyntaxError) as e:
        parse_request(body)
    assert e.value.problem.type == schemes.INVALID_MESSAGE_SYNTAX_ERROR
    assert e.value.problem.value is None  # nothing of the input is echoed


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_raise_anything_else(body):
    try:
        parse_request(body)
    except NCIPError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_inside_a_message(junk):
    try:
        parse_request(b'<NCIPMessage xmlns="' + NS.encode() + b'"><LookupUser>' + junk
                      + b"</LookupUser></NCIPMessage>")
    except NCIPError:
        pass


# Random trees made of the names the parser looks for, with random (often date-like) text.
NAMES = sorted({"LookupUser", "LookupAgency", "CreateUser", "UpdateUser", "DeleteUser",
                "CheckOutItem", "InitiationHeader", "FromAgencyId", "ToAgencyId", "AgencyId",
                "UniqueAgencyId", "FromAgencyAuthentication", "ApplicationProfileType", "UserId",
                "UniqueUserId", "UserIdentifierType", "UserIdentifierValue", "AuthenticationInput",
                "AuthenticationInputData", "AuthenticationInputType", "UserElementType",
                "AgencyElementType", "NameInformation", "PersonalNameInformation", "GivenName",
                "Surname", "UserAddressInformation", "UserAddressRoleType", "PhysicalAddress",
                "StructuredAddress", "Line1", "UnstructuredAddress", "UnstructuredAddressData",
                "ElectronicAddress", "ElectronicAddressType", "ElectronicAddressData",
                "DateOfBirth", "ValidFromDate", "ValidToDate", "UserPrivilege",
                "AgencyUserPrivilegeType", "UserPrivilegeStatusType", "UserPrivilegeDescription",
                "AddUserFields", "DeleteUserFields", "Ext", "Scheme", "Value"})
TEXT = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20),
    st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2})?)?"
                  r"(Z|[+-][0-9]{2}:?[0-9]{2})?\Z"),
    st.sampled_from(["PIN", "Barcode Id", "National Identity Number", "mailto", "tel", "LIBRARY",
                     "User Id", "Name Information", "Home library"]))


def render(tree) -> str:
    name, text, children = tree
    escaped = text.replace("&", "&amp;").replace("<", "&lt;")
    return f"<{name}>{escaped}{''.join(render(c) for c in children)}</{name}>"


TREES = st.recursive(
    st.tuples(st.sampled_from(NAMES), TEXT, st.just(())),
    lambda kids: st.tuples(st.sampled_from(NAMES), TEXT, st.lists(kids, max_size=4).map(tuple)),
    max_leaves=40)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["LookupUser", "LookupAgency", "CreateUser", "UpdateUser", "DeleteUser",
                        "CheckOutItem"]), st.lists(TREES, max_size=5))
def test_random_ncip_shaped_messages(service, trees):
    body = (f'<NCIPMessage xmlns="{NS}"><{service}>{"".join(map(render, trees))}</{service}>'
            f'</NCIPMessage>').encode()
    try:
        request = parse_request(body)
    except NCIPError:
        return
    assert request.service == service
    hash(request)  # frozen all the way down


# ---------------------------------------------------------------------- bounded work (issue 9)
def lookup_with_types(n: int, name: str = "UserElementType", text: str = "User Id") -> bytes:
    """A LookupUser with ``n`` elements ``name`` (besides its one UserId, if ``name`` is another)."""
    card = "" if name == "UserId" else "<UserId><UserIdentifierValue>N000123456</UserIdentifierValue></UserId>"
    return (f'<NCIPMessage xmlns="{NS}"><LookupUser>{card}' + f"<{name}>{text}</{name}>" * n
            + "</LookupUser></NCIPMessage>").encode()


def test_more_elements_than_the_cap_are_refused_before_any_walk():
    """7,000 UserElementType in 255 KB: refused as syntax right after libxml2 read them, in a few ms
    (walking them in Python took 35 ms and held the GIL)."""
    body = lookup_with_types(7000, text="x")
    assert len(body) < MAX_SIZE
    assert parse_request(lookup_with_types(40)).element_types == {schemes.UserElementType.USER_ID}
    started = time.thread_time()
    for _ in range(10):
        with pytest.raises(TooManyElements) as e:
            parse_request(body)
    assert (time.thread_time() - started) / 10 < 0.01
    assert e.value.problem.type == schemes.INVALID_MESSAGE_SYNTAX_ERROR
    assert f"more than {MAX_ELEMENTS} elements" in (e.value.problem.detail or "")
    assert isinstance(e.value, NCIPSyntaxError)  # answered as a message-level Problem


@pytest.mark.parametrize("name", ["UserElementType", "UserId", "AuthenticationInput", "Foo"])
def test_a_repeated_element_over_its_cap_is_refused(name):
    assert parse_request(lookup_with_types(MAX_REPEATED, name)).service == "LookupUser"
    body = lookup_with_types(MAX_REPEATED + 1, name)
    if name == "Foo":  # not one the parser looks for: only the total cap applies
        assert parse_request(body).service == "LookupUser"
        return
    with pytest.raises(TooManyElements) as e:
        parse_request(body)
    assert e.value.problem.type == schemes.INVALID_MESSAGE_SYNTAX_ERROR
    assert f"More than {MAX_REPEATED} {name} elements in LookupUser" == e.value.problem.detail


def test_the_largest_message_under_the_caps_is_cheap():
    """Just under the element cap, the costliest shape (repeated children the parser walks): a few ms."""
    per = MAX_REPEATED
    groups = "".join(f"<UserId><UserIdentifierValue>N{i:09d}</UserIdentifierValue></UserId>"
                     for i in range(per)) + "<UserElementType>User Id</UserElementType>" * per
    body = f'<NCIPMessage xmlns="{NS}"><LookupUser>{groups}</LookupUser></NCIPMessage>'.encode()
    started = time.thread_time()
    for _ in range(10):
        parse_request(body)
    assert (time.thread_time() - started) / 10 < 0.01
