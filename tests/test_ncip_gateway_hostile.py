"""POST /ncip against hostile and unauthenticated input (ncip.md A.1, A.5; PRODUCT §6): every answer is
a schema-valid NCIP message, with no secret, no file content and no stack trace in it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import pytest_twisted
from ncip_gateway_helpers import (
    KARI,
    KARI_NID,
    card,
    create_user,
    example,
    lookup_user,
    message,
    serve,
    user_id,
)
from register_helpers import BERGEN, TEST_SETTINGS
from twisted.internet import protocol, reactor
from twisted.logger import formatEvent, globalLogPublisher

from gateway.register import Register
from gateway.register.crypto import KeyRing
from gateway.register.database import make_engine
from gateway.register.views import OPERATOR
from protocols.ncip import schemes

SYNTAX = (schemes.Scheme.MESSAGING_ERROR, "Invalid Message Syntax Error")
AGENCY_FAILED = (schemes.Scheme.GENERAL_PROCESSING_ERROR, "Agency Authentication Failed")


def message_level(response) -> bool:
    return response.root[0].tag.endswith("}Problem")


@pytest_twisted.ensureDeferred
async def test_xxe_reads_no_file_and_fetches_nothing(gateway, tmp_path: Path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-FILE-CONTENT")
    hits: list[bytes] = []

    class Recorder(protocol.Protocol):
        def dataReceived(self, data: bytes) -> None:
            hits.append(data)

    trap = reactor.listenTCP(0, protocol.Factory.forProtocol(Recorder), interface="127.0.0.1")
    url = f"http://127.0.0.1:{trap.getHost().port}"
    try:
        for doctype in (f'<!DOCTYPE ns1:NCIPMessage [<!ENTITY xxe SYSTEM "file://{secret}">]>',
                        f'<!DOCTYPE ns1:NCIPMessage [<!ENTITY xxe SYSTEM "{url}/entity">]>',
                        f'<!DOCTYPE ns1:NCIPMessage SYSTEM "{url}/ncip.dtd">',
                        f'<!DOCTYPE ns1:NCIPMessage [<!ENTITY % remote SYSTEM "{url}/p"> %remote;]>'):
            body = card(example("01"), "&xxe;").replace(b"?>\n", b"?>\n" + doctype.encode() + b"\n", 1)
            response = await gateway.post(body)
            assert b"TOP-SECRET" not in response.body
            assert response.problem is not None  # the entity is not resolved: no card, or unknown card
    finally:
        await trap.stopListening()
    assert hits == []  # libxml2 never connected to the network


@pytest_twisted.ensureDeferred
async def test_billion_laughs_is_not_expanded(gateway):
    entities = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol%s;" % ("" if i == 1 else i - 1)) * 10}">' for i in range(1, 10))
    body = card(example("01"), "&lol9;").replace(b"?>\n", f"?>\n<!DOCTYPE ns1:NCIPMessage [{entities}]>\n".encode(), 1)
    started = time.monotonic()
    response = await gateway.post(body)
    assert time.monotonic() - started < 5
    assert len(response.body) < 4096 and b"lollol" not in response.body


@pytest.mark.parametrize("chunked", [False, True], ids=["Content-Length", "chunked"])
@pytest_twisted.ensureDeferred
async def test_ten_megabyte_body(gateway, chunked):
    padding = b"<!-- " + b"x" * (10 * 1024 * 1024) + b" -->"
    response = await gateway.post(example("01").replace(b"</ns1:NCIPMessage>", padding + b"</ns1:NCIPMessage>"),
                                  chunked=chunked)
    assert message_level(response) and response.problem == SYNTAX
    assert "larger than 262144 bytes" in response.problem_field("ProblemDetail")
    as_form = await gateway.form(b"<x>" + b"y" * (300 * 1024) + b"</x>")
    assert as_form.problem == SYNTAX


@pytest.mark.parametrize("body", [b"", b"hello", b'{"LookupUser": "N000123456"}', bytes(range(256)),
                                  b"<NCIPMessage><LookupUser>", b"<html><body>hi</body></html>",
                                  b"\xef\xbb\xbf<?xml version='1.0' encoding='latin-1'?><NCIPMessage/>"])
@pytest_twisted.ensureDeferred
async def test_not_xml_or_not_ncip(gateway, body):
    response = await gateway.post(body)
    assert message_level(response) and response.problem == SYNTAX


@pytest_twisted.ensureDeferred
async def test_unknown_element_under_ncip_message(gateway):
    response = await gateway.post(message("StealEverything", user_id(KARI)))
    assert message_level(response)
    assert response.problem == (schemes.Scheme.MESSAGING_ERROR, "Unknown Service")


@pytest_twisted.ensureDeferred
async def test_no_wrong_or_disabled_token(gateway):
    for kwargs in ({"client": None}, {"token": "nlr_not-a-token"}, {"token": "x" * 5000},
                   {"client": None, "headers": {"authorization": f"Basic {gateway.tokens['oslo']}"}}):
        response = await gateway.post(example("01"), **kwargs)
        assert message_level(response) and response.problem == AGENCY_FAILED
        assert b"Nordmann" not in response.body and b"not-a-token" not in response.body
    gateway.register.update_client(OPERATOR, "oslo", enabled=False)
    disabled = await gateway.post(example("01"))
    assert disabled.problem == AGENCY_FAILED


@pytest_twisted.ensureDeferred
async def test_another_librarys_token_or_from_agency(gateway):
    other = await gateway.post(example("01"), client="bergen")  # FromAgencyId says Oslo
    assert message_level(other) and other.problem == AGENCY_FAILED
    assert b"NO-2120100" not in other.body and b"Nordmann" not in other.body
    mismatch = await gateway.post(example("01").replace(b">NO-2030000<", f">{BERGEN}<".encode()))
    assert mismatch.problem == AGENCY_FAILED
    for agency in (b"NO-203000", b"NLR", b"NO-2030000x", b"NO 2030000"):
        garbled = await gateway.post(example("01").replace(b">NO-2030000<", b">" + agency + b"<"))
        assert garbled.problem == AGENCY_FAILED, agency
    in_xml = example("01").replace(b"</ns1:FromAgencyId>", b"</ns1:FromAgencyId><ns1:FromAgencyAuthentication>"
                                   + gateway.tokens["bergen"].encode() + b"</ns1:FromAgencyAuthentication>")
    assert (await gateway.post(in_xml, client=None)).problem == AGENCY_FAILED
    no_header = await gateway.post(lookup_user(KARI, agency=None), client="bergen")  # Bearer alone binds the library
    assert no_header.problem is None and no_header.find("LookupUserResponse/ResponseHeader") is None


@pytest_twisted.ensureDeferred
async def test_no_secret_in_any_answer(gateway):
    """PINs, tokens and national ids sent in requests never come back in a Problem."""
    token = gateway.tokens["oslo"]
    new_pin = ("<ns1:AddUserFields><ns1:AuthenticationInput><ns1:AuthenticationInputData>12ab"
               "</ns1:AuthenticationInputData><ns1:AuthenticationDataFormatType>text/plain"
               "</ns1:AuthenticationDataFormatType><ns1:AuthenticationInputType>PIN</ns1:AuthenticationInputType>"
               "</ns1:AuthenticationInput></ns1:AddUserFields>")
    requests = [
        ("oslo", lookup_user(KARI, pin="97531")),
        ("oslo", lookup_user("N000999999", pin="97531")),
        ("oslo", lookup_user(KARI_NID)),  # a national id where the card belongs
        ("oslo", lookup_user(national_id=KARI_NID)),  # this client may not look up by national id
        ("oslo-full", lookup_user(national_id="12345678901")),
        ("oslo", message("UpdateUser", user_id(KARI) + new_pin)),
        ("oslo", create_user("12345678901")),
        ("oslo", create_user(KARI_NID)),
    ]
    for client, body in requests:
        response = await gateway.post(body, client=client)
        assert response.problem is not None
        for secret in ("97531", KARI_NID, "12345678901", "12ab", token):
            assert secret.encode() not in response.body


@pytest_twisted.ensureDeferred
async def test_a_bug_answers_without_a_stack_trace(gateway, monkeypatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("secret detail 97531")

    monkeypatch.setattr(gateway.register, "find_patron", broken)
    monkeypatch.setattr(gateway.register, "find_patrons", broken)  # lookups that arrive together
    response = await gateway.post(example("01"))
    assert response.problem == (schemes.Scheme.GENERAL_PROCESSING_ERROR, "Temporary Processing Failure")
    assert b"ZeroDivision" not in response.body and b"97531" not in response.body


@pytest.mark.parametrize("url", [
    "sqlite:///{tmp}",  # a folder, not a database file: every connection fails
    pytest.param("postgresql+psycopg://postgres@127.0.0.1:1/test", marks=pytest.mark.postgres),  # nobody listens
], ids=["sqlite", "postgres"])
@pytest_twisted.ensureDeferred
async def test_register_unavailable(keys_path: Path, tmp_path: Path, url: str):
    down = Register(make_engine(url.format(tmp=tmp_path), connect_timeout=2), KeyRing.load(keys_path), TEST_SETTINGS)
    gw = serve(down, {"oslo": "nlr_some-token"})
    try:
        for body in (example("01"), example("02"), example("07"), example("09"), example("11"), example("14")):
            response = await gw.post(body)
            assert response.problem == (schemes.Scheme.NLR_PROCESSING_ERROR, "Register Unavailable")
            assert not message_level(response)
    finally:
        await gw.close()
        down.engine.dispose()


@pytest_twisted.ensureDeferred
async def test_no_secret_in_any_log_line(gateway):
    """Neither the daemon's lines nor twisted.web's access log hold a PIN, token or national id."""
    lines: list[str] = []

    def observer(event: dict) -> None:
        lines.append(formatEvent(event) + repr(event.get("log_failure", "")))

    globalLogPublisher.addObserver(observer)
    try:
        for client, body in (("oslo", lookup_user(KARI, pin="97531")), ("oslo", lookup_user(national_id=KARI_NID)),
                             ("oslo-full", lookup_user(KARI)), ("oslo", create_user(KARI_NID, pin="97531")),
                             (None, lookup_user(KARI, pin="97531"))):
            await gateway.post(body, client=client)
        await gateway.post(example("01"), token="nlr_wrong-token-97531")
    finally:
        globalLogPublisher.removeObserver(observer)
    assert any("User Authentication Failed" in line for line in lines)  # the observer saw the daemon's lines
    for secret in ("97531", KARI_NID, *gateway.tokens.values()):
        assert not any(secret in line for line in lines), secret


@pytest.mark.parametrize(("content_type", "body"), [
    ("multipart/form-data; boundary=b", b"--b\r\nContent-Disposition: form-data\r\n\r\nno name\r\n--b--\r\n"),
    ("multipart/form-data; boundary=b", b"no boundary anywhere"),
    ("multipart/form-data", b"--b\r\n\r\n"),  # no boundary parameter
    ("application/x-www-form-urlencoded", b"other=1&xml"),
    ("application/x-www-form-urlencoded", b"%%%=&&==" * 100),
])
@pytest_twisted.ensureDeferred
async def test_broken_forms(gateway, content_type, body):
    response = await gateway.post(body, headers={"content-type": content_type})
    assert message_level(response) and response.problem == SYNTAX


def test_a_huge_body_is_not_kept(register):
    """What twisted.web receives of a body beyond the cap is dropped on arrival: no 10 MB in memory or
    in a spool file per hostile request (the answer is 'too large' all the same, see above)."""
    from gateway.web.site import build_site

    site = build_site(register, reactor, max_body_bytes=1000)
    for declared in (None, 10 * 1024 * 1024):
        body = site.getContentFile(declared)
        for _ in range(160):
            assert body.write(b"x" * 65536) == 65536
        body.seek(0)
        assert len(body.read()) == 1001  # one byte over the cap: the reader still sees "too large"
    small = site.getContentFile(5)
    small.write(b"<a/>")
    small.seek(0)
    assert small.read() == b"<a/>"


@pytest_twisted.ensureDeferred
async def test_a_bug_in_the_lookups_costs_only_the_requests_it_met(gateway, monkeypatch):
    """Requests that arrive together share a batch; a bug in the lookups answers those lookups as a
    processing failure, and every other request in the batch keeps its own answer."""
    from twisted.internet import defer

    def broken(*args, **kwargs):
        raise ZeroDivisionError("secret detail 97531")

    monkeypatch.setattr(gateway.register, "find_patrons", broken)
    lookup, agency, junk, lookup_again = await defer.gatherResults([
        defer.ensureDeferred(gateway.post(body)) for body in (example("01"), example("07"), b"not xml", example("01"))])
    for response in (lookup, lookup_again):
        assert response.problem == (schemes.Scheme.GENERAL_PROCESSING_ERROR, "Temporary Processing Failure")
        assert b"ZeroDivision" not in response.body and b"97531" not in response.body
    assert agency.problem is None and agency.find("LookupAgencyResponse") is not None
    assert junk.problem == SYNTAX
