"""The NCIP gateway over real HTTP (tests/test_ncip_gateway*.py): the helpers; the fixtures are in conftest.py.

The ``gateway`` fixture is the daemon's own site (`gateway.web.site.build_site`) listening on 127.0.0.1:0
in the test process, over a fresh register (SQLite and PostgreSQL) that holds the libraries, series,
patron and API clients of the examples in tests/data/ncip/examples (``reg`` + `setup_examples`).
`Gateway.post` sends a request with twisted.web's Agent and validates every XML response against
ncip_v2_02.xsd.
"""

from __future__ import annotations

import functools
import io
import re
import urllib.parse
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from lxml import etree
from register_helpers import BERGEN, OSLO, TRONDHEIM, nid
from twisted.internet import defer, reactor
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.web.client import Agent, FileBodyProducer, ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH

from gateway.blocking import RegisterCalls
from gateway.hot_path import HotPath
from gateway.register import Register
from gateway.register.views import OPERATOR
from gateway.web.site import build_site
from protocols.ncip import schemes

DATA = Path(__file__).resolve().parent / "data" / "ncip"
EXAMPLES = DATA / "examples"
NS = schemes.NS
Q = f"{{{NS}}}"
LIER = "NO-2061700"  # the second library of examples 03 and 11
KARI = "N000123456"  # the patron of examples 01-05 and 11-12
KARI_NID = nid(0, date(1985, 3, 14))
PIN = "1234"
PERMISSIONS = ["lookup", "lookup-national-id", "create", "update", "delete", "see-national-id"]
CLIENTS: dict[str, tuple[str, list[str]]] = {
    "oslo": (OSLO, ["lookup", "create", "update", "delete"]),
    "oslo-full": (OSLO, PERMISSIONS),
    "oslo-national-id": (OSLO, ["lookup", "lookup-national-id"]),
    "oslo-lookup": (OSLO, ["lookup"]),
    "oslo-create": (OSLO, ["create"]),
    "bergen": (BERGEN, ["lookup", "create", "update"]),
    "trondheim": (TRONDHEIM, ["lookup", "update"]),
    "lier": (LIER, ["lookup", "update"]),
}


@functools.cache
def schema() -> etree.XMLSchema:
    """The official NCIP 2.02 schema, loaded once per session."""
    return etree.XMLSchema(etree.parse(str(DATA / "ncip_v2_02.xsd"), etree.XMLParser(no_network=True)))


def example(number: str) -> bytes:
    (path,) = EXAMPLES.glob(f"{number}-*.xml")
    return path.read_bytes()


@dataclass
class Response:
    code: int
    headers: Headers
    body: bytes

    @functools.cached_property
    def root(self) -> etree._Element:
        return etree.fromstring(self.body)

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None

    def find(self, path: str) -> etree._Element | None:
        """``path`` in local names, e.g. ``"LookupUserResponse/UserId/UserIdentifierValue"``."""
        return self.root.find("/".join(f"{Q}{p}" for p in path.split("/")))

    def text(self, path: str) -> str | None:
        el = self.find(path)
        return el.text if el is not None else None

    @property
    def problem(self) -> tuple[str, str] | None:
        """(scheme, value) of the first Problem, message-level or in the service response."""
        el = next(self.root.iter(f"{Q}ProblemType"), None)
        return (el.get(f"{Q}Scheme"), el.text) if el is not None else None

    @property
    def problem_type(self) -> str | None:
        return self.problem[1] if self.problem else None

    def problem_field(self, name: str) -> str | None:
        el = next(self.root.iter(f"{Q}{name}"), None)
        return el.text if el is not None else None

    def values(self, name: str) -> list[str]:
        return [el.text for el in self.root.iter(f"{Q}{name}")]

    def privileges(self) -> list[tuple[str | None, ...]]:
        """(AgencyId, AgencyUserPrivilegeType, UserPrivilegeStatusType, UserPrivilegeDescription) each."""
        return [tuple(el.findtext(f".//{Q}{n}") for n in ("AgencyId", "AgencyUserPrivilegeType",
                                                          "UserPrivilegeStatusType", "UserPrivilegeDescription"))
                for el in self.root.iter(f"{Q}UserPrivilege")]


class _Body(Protocol):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.done: defer.Deferred[bytes] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Any) -> None:
        if reason.check(ResponseDone):
            self.done.callback(b"".join(self.chunks))
        else:
            self.done.errback(reason)


class Gateway:
    def __init__(self, register: Register, port: Any, tokens: dict[str, str], hot: HotPath | None = None) -> None:
        self.register = register
        self.port = port
        self.tokens = tokens
        self.hot = hot
        self.url = f"http://127.0.0.1:{port.getHost().port}/ncip".encode()

    @defer.inlineCallbacks
    def close(self) -> Any:
        yield defer.maybeDeferred(self.port.stopListening)
        if self.hot is not None:
            yield self.hot.flush(5.0)

    @defer.inlineCallbacks
    def settle(self) -> Any:
        """With the hot path: until it follows the feed and has written its audit queue."""
        hot = self.hot
        for _ in range(500):
            if hot is None or (hot.fresh and not hot.queue and not hot._writing):  # noqa: SLF001
                return
            yield deferLater(reactor, 0.01, lambda: None)
        raise AssertionError("the hot path did not settle")

    @defer.inlineCallbacks
    def request(self, method: bytes, body: bytes | None = None, *, client: str | None = "oslo",
                token: str | None = None, headers: dict[str, str] | None = None,
                chunked: bool = False) -> Any:
        raw = Headers({k: [v] for k, v in (headers or {}).items()})
        token = token or (self.tokens[client] if client else None)
        if token is not None:
            raw.setRawHeaders("authorization", [f"Bearer {token}"])
        producer = None
        if body is not None:
            producer = FileBodyProducer(io.BytesIO(body))
            if chunked:
                producer.length = UNKNOWN_LENGTH
        response = yield Agent(reactor).request(method, self.url, raw, producer)
        body = _Body()
        response.deliverBody(body)
        data = yield body.done
        return Response(response.code, response.headers, data)

    @defer.inlineCallbacks
    def post(self, body: bytes, **kwargs: Any) -> Any:
        """POST ``body``; assert the A.1 transport rules and the schema on the answer."""
        response = yield self.request(b"POST", body, **kwargs)
        assert response.code == 200, response.body[:300]
        assert response.header("content-type") == "application/xml; charset=utf-8"
        assert b"Traceback" not in response.body
        schema().assertValid(response.root)
        return response

    def form(self, xml: bytes, **kwargs: Any) -> defer.Deferred:
        """The XML in the form field ``xml``, as old NCIP 1 clients send it."""
        body = urllib.parse.urlencode({"xml": xml.decode()}).encode()
        return self.post(body, headers={"content-type": "application/x-www-form-urlencoded"}, **kwargs)


def setup_examples(reg: Register) -> dict[str, str]:
    """Lier with its series, the examples' patron and the API clients, added to a register that holds
    `setup_libraries`' three libraries (the ``reg`` fixture); returns a token per client name."""
    reg.add_library(OPERATOR, LIER, "Lier bibliotek")
    reg.reserve_series(OPERATOR, LIER, first="N000400000", last="N000499999")
    reg.register_patron(
        OPERATOR, OSLO, card=KARI, national_id=KARI_NID, surname="Nordmann", given_name="Kari",
        birth_date=date(1985, 3, 14), address_line1="Storgata 1", postal_code="0155", city="Oslo",
        country="NO", email="kari.nordmann@example.no", phone="+4791234567", pin=PIN)
    reg.activate(OPERATOR, KARI, LIER)
    return {name: reg.add_client(OPERATOR, name, isil, perms)[1] for name, (isil, perms) in CLIENTS.items()}


def serve(register: Register, tokens: dict[str, str] | None = None, *, hot: dict[str, Any] | None = None) -> Gateway:
    """The daemon's site on 127.0.0.1, any free port; `Gateway.close` stops it. ``hot``: with the
    memory of decision facts and the audit written behind (gateway.hot_path), as `nlr serve` has them."""
    calls = hot_path = None
    if hot is not None:
        calls = RegisterCalls(reactor, probe=register.ping)
        hot_path = HotPath(register, calls, reactor, **hot)
        hot_path.start()
    port = reactor.listenTCP(0, build_site(register, reactor, calls=calls, hot=hot_path), interface="127.0.0.1")
    return Gateway(register, port, tokens or {}, hot_path)


# --- rewriting the strict examples into the forms real clients send (ncip.md A.2, C.1-C.6) ------

def card(xml: bytes, number: str) -> bytes:
    return xml.replace(KARI.encode(), number.encode())


def unqualified(xml: bytes) -> bytes:
    """``version`` and ``Scheme`` without the namespace prefix."""
    return xml.replace(b" ns1:version=", b" version=").replace(b" ns1:Scheme=", b" Scheme=")


def no_namespace(xml: bytes) -> bytes:
    return re.sub(rb' xmlns:ns1="[^"]*"', b"", xml).replace(b"ns1:", b"")


def default_namespace(xml: bytes) -> bytes:
    """As Koha, FOLIO and ReShare send it: ``xmlns="…"``, unqualified attributes."""
    return xml.replace(b"xmlns:ns1=", b"xmlns=").replace(b"ns1:", b"")


def v1_scheme_value(xml: bytes) -> bytes:
    """SchemeValuePairs as NCIP 1 ``Scheme``/``Value`` children."""
    return re.sub(rb'<ns1:(\w+) ns1:Scheme="([^"]*)">([^<]*)</ns1:\1>',
                  rb"<ns1:\1><ns1:Scheme>\2</ns1:Scheme><ns1:Value>\3</ns1:Value></ns1:\1>", xml)


def with_doctype(xml: bytes) -> bytes:
    declaration, _, rest = xml.partition(b"\n")
    return (declaration + b'\n<!DOCTYPE NCIPMessage PUBLIC "-//NISO//NCIP DTD Version 1//EN" '
            b'"http://www.niso.org/ncip/v1_0/imp1/dtd/ncip_v1_0.dtd">\n' + rest)


def leaves(root: etree._Element, ignore: frozenset[str] = frozenset({"ValidFromDate"})) -> list[tuple[str, str]]:
    """(path, text) of every leaf element, in document order; ``ignore``d leaves as ``*``."""
    out = []
    for el in root.iter():
        if isinstance(el.tag, str) and len(el) == 0:
            path = "/".join(etree.QName(a).localname for a in [*reversed(list(el.iterancestors())), el])
            out.append((path, "*" if etree.QName(el).localname in ignore else (el.text or "").strip()))
    return out


# --- requests of our own, in the strict form of the examples ------------------------------------

def message(service: str, body: str, *, agency: str | None = OSLO, token: str | None = None) -> bytes:
    header = ""
    if agency or token:
        header = ("<ns1:InitiationHeader>"
                  + (f"<ns1:FromAgencyId><ns1:AgencyId>{agency}</ns1:AgencyId></ns1:FromAgencyId>" if agency else "")
                  + (f"<ns1:FromAgencyAuthentication>{token}</ns1:FromAgencyAuthentication>" if token else "")
                  + "<ns1:ToAgencyId><ns1:AgencyId>NLR</ns1:AgencyId></ns1:ToAgencyId></ns1:InitiationHeader>")
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<ns1:NCIPMessage xmlns:ns1="{NS}" '
            f'ns1:version="{schemes.VERSION}"><ns1:{service}>{header}{body}</ns1:{service}></ns1:NCIPMessage>'
            ).encode()


def user_id(number: str) -> str:
    return (f"<ns1:UserId><ns1:AgencyId>NLR</ns1:AgencyId><ns1:UserIdentifierType>Barcode</ns1:UserIdentifierType>"
            f"<ns1:UserIdentifierValue>{number}</ns1:UserIdentifierValue></ns1:UserId>")


def national_id_ref(value: str) -> str:
    return (f'<ns1:UserId><ns1:AgencyId>NLR</ns1:AgencyId><ns1:UserIdentifierType ns1:Scheme='
            f'"urn:x-nlr:schemes:useridentifiertype">National Identity Number</ns1:UserIdentifierType>'
            f"<ns1:UserIdentifierValue>{value}</ns1:UserIdentifierValue></ns1:UserId>")


def auth(kind: str, data: str) -> str:
    return (f"<ns1:AuthenticationInput><ns1:AuthenticationInputData>{data}</ns1:AuthenticationInputData>"
            "<ns1:AuthenticationDataFormatType>text/plain</ns1:AuthenticationDataFormatType>"
            f"<ns1:AuthenticationInputType>{kind}</ns1:AuthenticationInputType></ns1:AuthenticationInput>")


ALL_TYPES = ("Name Information", "User Address Information", "User Privilege", "Block Or Trap", "User Id",
             "Previous User Id", "Date Of Birth")


def lookup_user(number: str | None = None, *, pin: str | None = None, national_id: str | None = None,
                types: tuple[str, ...] = ALL_TYPES, **kwargs: Any) -> bytes:
    who = national_id_ref(national_id) if national_id else ""
    who += (auth("Barcode Id", number) + auth("PIN", pin)) if pin is not None else (user_id(number) if number else "")
    wanted = "".join(f"<ns1:UserElementType>{t}</ns1:UserElementType>" for t in types)
    return message("LookupUser", who + wanted, **kwargs)


def privilege(agency: str, kind: str = "LIBRARY", description: str | None = None) -> str:
    return (f"<ns1:UserPrivilege><ns1:AgencyId>{agency}</ns1:AgencyId><ns1:AgencyUserPrivilegeType>{kind}"
            "</ns1:AgencyUserPrivilegeType><ns1:UserPrivilegeStatus><ns1:UserPrivilegeStatusType>Active"
            "</ns1:UserPrivilegeStatusType></ns1:UserPrivilegeStatus>"
            + (f"<ns1:UserPrivilegeDescription>{description}</ns1:UserPrivilegeDescription>" if description else "")
            + "</ns1:UserPrivilege>")


def electronic(kind: str, data: str) -> str:
    return (f"<ns1:UserAddressInformation><ns1:UserAddressRoleType>Notice</ns1:UserAddressRoleType>"
            f"<ns1:ElectronicAddress><ns1:ElectronicAddressType>{kind}</ns1:ElectronicAddressType>"
            f"<ns1:ElectronicAddressData>{data}</ns1:ElectronicAddressData></ns1:ElectronicAddress>"
            "</ns1:UserAddressInformation>")


def update_user(number: str, add: str = "", delete: str = "", *, pin: str | None = None, **kwargs: Any) -> bytes:
    who = auth("Barcode Id", number) + auth("PIN", pin) if pin is not None else user_id(number)
    fields = (f"<ns1:DeleteUserFields>{delete}</ns1:DeleteUserFields>" if delete else "") + (
        f"<ns1:AddUserFields>{add}</ns1:AddUserFields>" if add else "")
    return message("UpdateUser", who + fields, **kwargs)


def create_user(national_id: str, number: str | None = None, *, surname: str = "Nordmann",
                given_name: str = "Ola", pin: str | None = None, extra: str = "", **kwargs: Any) -> bytes:
    body = (user_id(number) if number else "") + (
        "<ns1:NameInformation><ns1:PersonalNameInformation><ns1:StructuredPersonalUserName>"
        f"<ns1:GivenName>{given_name}</ns1:GivenName><ns1:Surname>{surname}</ns1:Surname>"
        "</ns1:StructuredPersonalUserName></ns1:PersonalNameInformation></ns1:NameInformation>")
    body += extra + "<ns1:Ext>" + national_id_ref(national_id) + (auth("PIN", pin) if pin else "") + "</ns1:Ext>"
    return message("CreateUser", body, **kwargs)
