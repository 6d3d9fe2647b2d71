"""The change feed over HTTP (issue 12, item 1): ``GET /api/v1/changes`` and ``GET /api/v1/openapi.json``
on the daemon's own site (`build_site`) listening on 127.0.0.1 in the test process, over a fresh
register on SQLite and PostgreSQL; ``nlr changes --library`` in a subprocess against the same
register. Every answer is checked against the OpenAPI document's own schemas (jsonschema), and the
document itself with openapi-spec-validator.

The register's rules of the feed (affiliation, every change kind, ordering under concurrent writers)
are tested with the register (tests/test_register_changes.py and the feed's own tests); here: what the
HTTP API and the command line make of them.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from daemon_helpers import REPO, write_config
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from register_helpers import BERGEN, OSLO, TRONDHEIM, add_patron, nid
from twisted.internet import reactor, threads

from gateway.api.resource import openapi_document
from gateway.blocking import RegisterCalls
from gateway.register import Register
from gateway.register.views import OPERATOR, PatronView
from gateway.web.site import build_site

DOCUMENT = json.loads(openapi_document())
_REGISTRY = Registry().with_resource("urn:nlr:openapi", Resource(contents=DOCUMENT, specification=DRAFT202012))
JSON = "application/json; charset=utf-8"


def schema(name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"urn:nlr:openapi#/components/schemas/{name}"}, registry=_REGISTRY,
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


PAGE, ERROR = schema("ChangePage"), schema("Error")


# ---------------------------------------------------------------------- a site and a client
@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Served:
    register: Register
    port: Any
    calls: RegisterCalls
    tokens: dict[str, str]
    cards: dict[str, str]

    @property
    def number(self) -> int:
        return int(self.port.getHost().port)

    async def get(self, target: str, token: str | None = None, *, method: str = "GET",
                  headers: dict[str, str] | None = None) -> Answer:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        return await threads.deferToThread(self._get, method, target, sent)

    def _get(self, method: str, target: str, headers: dict[str, str]) -> Answer:
        conn = http.client.HTTPConnection("127.0.0.1", self.number, timeout=20)
        try:
            conn.request(method, target, headers=headers)
            response = conn.getresponse()
            return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            conn.close()

    async def raw(self, data: bytes) -> bytes:
        """Send ``data`` as it is and read until the server closes (a request http.client would not send)."""
        def send() -> bytes:
            chunks = []
            with socket.create_connection(("127.0.0.1", self.number), timeout=20) as s:
                try:
                    s.sendall(data)
                    while chunk := s.recv(65536):
                        chunks.append(chunk)
                except ConnectionResetError:  # closed while we still sent
                    pass
            return b"".join(chunks)
        return await threads.deferToThread(send)

    async def page(self, token: str, query: str = "") -> dict[str, Any]:
        answer = await self.get(f"/api/v1/changes{query}", token)
        assert answer.status == 200, (answer.status, answer.body)
        assert_json(answer)
        body = answer.json
        PAGE.validate(body)
        return body

    async def everything(self, token: str, limit: int = 100) -> list[dict[str, Any]]:
        """Every change, following ``next`` page by page until ``more`` is false."""
        seen: list[dict[str, Any]] = []
        after: str | None = None
        for _ in range(1000):
            query = f"?limit={limit}" + (f"&after={after}" if after else "")
            body = await self.page(token, query)
            seen += body["changes"]
            assert len(body["changes"]) <= limit
            after = body["next"]
            if not body["more"]:
                return seen
        raise AssertionError("the feed never ended")


def assert_json(answer: Answer) -> None:
    assert answer.headers["content-type"] == JSON, answer.headers
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["x-content-type-options"] == "nosniff"
    json.loads(answer.body)


def assert_error(answer: Answer, status: int) -> str:
    """A refusal: the status, JSON ``{"error": …}``, no traceback."""
    assert answer.status == status, (answer.status, answer.body)
    assert_json(answer)
    ERROR.validate(answer.json)
    assert b"Traceback" not in answer.body and b'File "' not in answer.body
    return str(answer.json["error"])


def token_of(reg: Register, name: str, library: str, *permissions: str) -> str:
    account = reg.add_client(OPERATOR, name, library, list(permissions))
    assert account.token
    return account.token


def setup(reg: Register) -> tuple[dict[str, str], dict[str, str]]:
    """Clients of Oslo with and without the feed's permissions; patrons at Oslo, Bergen and both."""
    tokens = {
        "feed": token_of(reg, "feed", OSLO, "changes"),
        "feed_nid": token_of(reg, "feed-nid", OSLO, "changes", "see-national-id"),
        "lookup": token_of(reg, "lookup", OSLO, "lookup", "create", "update"),
        "bergen": token_of(reg, "bergen", BERGEN, "changes"),
    }
    cards = {
        "kari": add_patron(reg, 0, OSLO, address_line1="Storgata 1", postal_code="0155", city="Oslo").card,
        "ola": add_patron(reg, 1, BERGEN).card,  # later activated at Oslo
        "secret": add_patron(reg, 2, OSLO, address_line1="Hemmeligveien 9", postal_code="0150", city="Oslo",
                             secret_address=True).card,
        "bergen_only": add_patron(reg, 3, BERGEN).card,
        "gone": add_patron(reg, 4, OSLO).card,
        "trondheim": add_patron(reg, 5, TRONDHEIM).card,
    }
    reg.activate(OPERATOR, cards["ola"], OSLO)
    reg.set_blocked(OPERATOR, cards["kari"], True, "misbruk")
    reg.set_blocked(OPERATOR, cards["kari"], False)
    reg.update_patron(OPERATOR, cards["kari"], email="kari@example.no")
    reg.report_lost(OPERATOR, cards["kari"])
    cards["kari_new"] = reg.replace_card(OPERATOR, cards["kari"]).card
    reg.delete_patron(OPERATOR, cards["gone"])
    return tokens, cards


@pytest.fixture
def api(reg: Register, no_daemon_failures: None) -> Iterator[Served]:
    tokens, cards = setup(reg)
    calls = RegisterCalls(reactor)
    port = reactor.listenTCP(0, build_site(reg, reactor, calls=calls), interface="127.0.0.1")
    yield Served(reg, port, calls, tokens, cards)
    pytest_twisted.blockon(port.stopListening())


# ---------------------------------------------------------------------- the feed
@pytest_twisted.ensureDeferred
async def test_paging_by_next_sees_every_change_of_the_librarys_patrons_once(api: Served) -> None:
    whole = await api.everything(api.tokens["feed"], limit=100)
    paged = await api.everything(api.tokens["feed"], limit=2)
    assert paged == whole and len(whole) >= 8
    assert len({c["cursor"] for c in whole}) == len(whole), "a cursor per change"
    cards = {c["card"] for c in whole} | {c.get("previous_card") for c in whole}
    assert {api.cards["kari"], api.cards["kari_new"], api.cards["ola"], api.cards["secret"], api.cards["gone"]} <= cards
    assert api.cards["bergen_only"] not in cards and api.cards["trondheim"] not in cards
    kinds = [c["kind"] for c in whole if c["card"] in (api.cards["kari"], api.cards["kari_new"])]
    for kind in ("registered", "blocked", "unblocked", "updated", "card_lost", "card_replaced"):
        assert kind in kinds, (kind, kinds)
    replaced = next(c for c in whole if c["kind"] == "card_replaced")
    assert replaced["card"] == api.cards["kari_new"] and replaced["previous_card"] == api.cards["kari"]
    for change in whole:
        assert change["time"].endswith("Z"), change["time"]

    # Resumable: from any next, the rest; at the end an empty page that keeps its place.
    first = await api.page(api.tokens["feed"], "?limit=3")
    assert first["more"] is True and first["changes"] == whole[:3]
    rest = await api.page(api.tokens["feed"], f"?after={first['next']}&limit=1000")
    assert rest["changes"] == whole[3:] and rest["more"] is False
    end = await api.page(api.tokens["feed"], f"?after={rest['next']}")
    assert end["changes"] == [] and end["more"] is False
    default = await api.page(api.tokens["feed"])  # no limit: 100
    assert default["changes"] == whole[:100]

    # Another library sees its own patrons only.
    bergen = {c["card"] for c in await api.everything(api.tokens["bergen"])}
    assert api.cards["bergen_only"] in bergen and api.cards["ola"] in bergen and api.cards["secret"] not in bergen


@pytest_twisted.ensureDeferred
async def test_the_national_id_only_with_see_national_id_and_a_secret_address_never(api: Served) -> None:
    plain = await api.everything(api.tokens["feed"])
    with_nid = await api.everything(api.tokens["feed_nid"])
    assert [c["cursor"] for c in plain] == [c["cursor"] for c in with_nid]
    patrons = [c["patron"] for c in plain if c.get("patron")]
    assert patrons and all(p["national_id"] is None for p in patrons)
    kari = next(c["patron"] for c in with_nid if c["card"] == api.cards["kari_new"] and c.get("patron"))
    assert kari["national_id"] == nid(0, kari_birth(api))
    secret = [c["patron"] for c in plain + with_nid if c["card"] == api.cards["secret"] and c.get("patron")]
    assert secret and all(p["secret_address"] for p in secret)
    for p in secret:
        assert p["address_line1"] is None and p["postal_code"] is None and p["city"] is None, p
    assert b"Hemmeligveien" not in json.dumps(plain + with_nid, ensure_ascii=False).encode()


def kari_birth(api: Served) -> Any:
    return api.register.find_patron(OPERATOR, api.cards["kari_new"]).birth_date


@pytest_twisted.ensureDeferred
async def test_a_deletion_is_a_tombstone_with_nothing_about_the_person(api: Served) -> None:
    changes = await api.everything(api.tokens["feed_nid"])
    tombstones = [c for c in changes if c["kind"] == "deleted"]
    assert len(tombstones) == 1
    assert set(tombstones[0]) == {"cursor", "time", "kind", "card"}, tombstones[0]
    assert tombstones[0]["card"] == api.cards["gone"]
    schema("Tombstone").validate(tombstones[0])
    for c in changes:  # the deleted patron's earlier changes carry nothing about the person either
        if c["card"] == api.cards["gone"] and c["kind"] != "deleted":
            assert c["patron"] is None, c


@pytest_twisted.ensureDeferred
async def test_the_patron_object_has_the_keys_of_nlr_patron_show_json(api: Served) -> None:
    shown = {f.name for f in fields(PatronView)}  # `nlr patron show --json` is jsonable(PatronView)
    assert set(DOCUMENT["components"]["schemas"]["Patron"]["properties"]) == shown
    assert set(DOCUMENT["components"]["schemas"]["Patron"]["required"]) == shown
    changes = await api.everything(api.tokens["feed"])
    for c in changes:
        if c.get("patron"):
            assert set(c["patron"]) == shown, set(c["patron"]) ^ shown
    kinds = {k for s in ("PatronChange", "Tombstone") for k in _kinds(s)}
    from gateway.register.vocabulary import ChangeKind
    assert kinds == {k.value for k in ChangeKind}


def _kinds(name: str) -> set[str]:
    kind = DOCUMENT["components"]["schemas"][name]["properties"]["kind"]
    return set(kind.get("enum", [kind.get("const")]))


# ---------------------------------------------------------------------- refusals
@pytest_twisted.ensureDeferred
async def test_a_bad_limit_or_cursor_is_400_json(api: Served) -> None:
    token = api.tokens["feed"]
    for query in ("limit=0", "limit=1001", "limit=abc", "limit=-1", "limit=1.5", "limit=", "limit=%20%35",
                  "limit=99999999999999999999", "after=", "after=nonsense", "after=" + "x" * 300,
                  "after=%00%01", "limit=5&limit=6", "after=a&after=b", "limt=5", "%ff=1", "after=%ff%fe",
                  "after=%", "limit=%C3%A5", "&&&limit=0", "after=0", "after=999999", "after=" + "A" * 32):
        message = assert_error(await api.get(f"/api/v1/changes?{query}", token), 400)
        assert message and "Traceback" not in message, query
    assert "1 to 1000" in assert_error(await api.get("/api/v1/changes?limit=0", token), 400)
    assert "more than once" in assert_error(await api.get("/api/v1/changes?limit=5&limit=5", token), 400)
    # a long query (under the HTTP layer's line limit) is refused here, in JSON
    assert "longer than" in assert_error(await api.get("/api/v1/changes?after=" + "a" * 8000, token), 400)
    assert (await api.page(token, "?limit=1000&"))["more"] is False, "an empty field is no parameter"
    # a cursor of this feed, altered by one character: not one of this feed's
    cursor = (await api.page(token, "?limit=1"))["next"]
    altered = cursor[:5] + ("x" if cursor[5] != "x" else "y") + cursor[6:]
    assert "not a cursor of this feed" in assert_error(await api.get(f"/api/v1/changes?after={altered}", token), 400)


@pytest_twisted.ensureDeferred
async def test_hostile_requests_are_answered_4xx_never_500(api: Served, logs: list[str]) -> None:
    token = api.tokens["feed"].encode()
    # escaped bytes that are not UTF-8: refused here, in JSON
    answer = await api.raw(b"GET /api/v1/changes?after=%ff%fe&limit=%c3 HTTP/1.1\r\nHost: x\r\n"
                           b"Authorization: Bearer " + token + b"\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert answer.endswith(b'{"error": "the query string is not UTF-8"}'), answer
    # raw bytes outside ASCII in the request line: twisted.web refuses them before any resource (bare 400)
    answer = await api.raw(b"GET /api/v1/changes?after=\xff\xfe&limit=\xc3 HTTP/1.1\r\nHost: x\r\n"
                           b"Authorization: Bearer " + token + b"\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    # a request line over twisted.web's 16 KB line limit: refused by the HTTP layer before any resource
    # (a bare 400, or the connection closed while the line still comes)
    for size in (17_000, 70_000):
        answer = await api.raw(b"GET /api/v1/changes?after=" + b"a" * size + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer == b"" or answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    for target in ("/api/v1/changes?" + "&".join(["limit=5"] * 300), "/api/v1/changes?" + "a=&" * 600):
        assert_error(await api.get(target, api.tokens["feed"]), 400)
    assert_error(await api.get("/api/v1/changes", api.tokens["feed"], method="POST"), 405)
    assert_error(await api.get("/api/v1/nothing", api.tokens["feed"]), 404)
    assert_error(await api.get("/api/v1/changes/", api.tokens["feed"]), 404)
    assert_error(await api.get("/api", api.tokens["feed"]), 404)
    head = await api.get("/api/v1/changes?limit=1", api.tokens["feed"], method="HEAD")
    assert head.status == 200 and head.body == b""
    assert not [line for line in logs if "Traceback" in line]


@pytest_twisted.ensureDeferred
async def test_no_or_an_unknown_token_is_401_with_www_authenticate(api: Served) -> None:
    cases: list[tuple[str | None, dict[str, str]]] = [
        (None, {}), ("wrong-token", {}), ("x" * 5000, {}), (None, {"Authorization": "Basic Zm9vOmJhcg=="}),
        (None, {"Authorization": "Bearer "}), (None, {"Authorization": "Bearer\u00e5"}),
        (None, {"Authorization": api.tokens["feed"]}),  # the token without its scheme
    ]
    for token, headers in cases:
        for query in ("", "?limit=0"):  # no token at all: 401 before the query is judged
            answer = await api.get(f"/api/v1/changes{query}", token, headers=headers)
            if query and token is not None:
                assert answer.status == 400  # a token: the query is judged first (no register call)
                continue
            assert_error(answer, 401)
            assert answer.headers["www-authenticate"].startswith("Bearer"), answer.headers
    api.register.update_client(OPERATOR, "feed", enabled=False)
    assert_error(await api.get("/api/v1/changes", api.tokens["feed"]), 401)


@pytest_twisted.ensureDeferred
async def test_a_client_without_the_changes_permission_is_403(api: Served) -> None:
    message = assert_error(await api.get("/api/v1/changes", api.tokens["lookup"]), 403)
    assert "chang" in message
    assert_error(await api.get("/api/v1/changes?limit=1", api.tokens["lookup"]), 403)


@pytest_twisted.ensureDeferred
async def test_an_offline_register_is_503_json(api: Served) -> None:
    api.calls.online = False  # as after the pool found the register hung (gateway.blocking)
    try:
        answer = await api.get("/api/v1/changes", api.tokens["feed"])
    finally:
        api.calls.online = True
    assert_error(answer, 503)
    assert answer.headers["retry-after"].isdigit()
    assert (await api.get("/api/v1/changes", api.tokens["feed"])).status == 200


# ---------------------------------------------------------------------- the document
@pytest_twisted.ensureDeferred
async def test_the_openapi_document_is_served_and_validates(api: Served) -> None:
    answer = await api.get("/api/v1/openapi.json")
    assert answer.status == 200
    assert_json(answer)
    assert answer.body == (REPO / "gateway" / "api" / "openapi.json").read_bytes()
    document = answer.json
    validate_openapi(document)
    assert document["openapi"].startswith("3.1")
    operation = document["paths"]["/api/v1/changes"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"after", "limit"}
    assert set(operation["responses"]) == {"200", "400", "401", "403", "503"}
    # what the API answers besides: 405 to any other method, 404 to any other address (L5)
    for path in ("/api/v1/changes", "/api/v1/openapi.json"):
        for method in ("post", "put", "patch", "delete", "options"):
            assert document["paths"][path][method]["responses"] == {"405": {"$ref": "#/components/responses/"
                                                                                    "MethodNotAllowed"}}
    refused = document["components"]["responses"]
    assert refused["MethodNotAllowed"]["headers"]["Allow"]["schema"]["const"] == "GET, HEAD"
    assert document["paths"]["/api/v1/{address}"]["get"]["responses"] == {"404": {"$ref": "#/components/responses/"
                                                                                           "NotFound"}}
    assert all(r["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
               for r in refused.values())
    cursor = document["components"]["schemas"]["Cursor"]
    assert re.fullmatch(cursor["pattern"], cursor["examples"][0])
    assert document["components"]["securitySchemes"]["bearer"] == {
        **document["components"]["securitySchemes"]["bearer"], "type": "http", "scheme": "bearer"}
    limit = next(p for p in operation["parameters"] if p["name"] == "limit")["schema"]
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, 1000, 100)


def test_the_document_is_shipped_as_package_data() -> None:
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert '"api/openapi.json"' in text


# ---------------------------------------------------------------------- the command line
def nlr(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(config), *args],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest_twisted.ensureDeferred
async def test_nlr_changes_library_shows_what_the_librarys_client_sees(api: Served, database_url: str,
                                                                       keys_path: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "nlr.yaml", database_url, keys_path, http=[])
    over_http = await api.everything(api.tokens["feed"], limit=1000)
    with_nid = await api.everything(api.tokens["feed_nid"], limit=1000)

    def run_all() -> list[subprocess.CompletedProcess[str]]:
        return [nlr(config, "changes", "--library", OSLO, "--json"),
                nlr(config, "changes", "--library", "2030000", "--json", "--with-national-id"),
                nlr(config, "changes", "--library", OSLO, "--limit", "2"),
                nlr(config, "changes", "--library", OSLO, "--limit", "1001"),
                nlr(config, "changes", "--library", "NO-9999999"),
                nlr(config, "changes", "--library", OSLO, "--after", "nonsense"),
                nlr(config, "changes", "--json", "--limit", "3")]
    as_json, as_json_nid, text, too_many, unknown, bad_cursor, global_feed = await threads.deferToThread(run_all)

    assert as_json.returncode == 0, as_json.stderr
    page = json.loads(as_json.stdout)
    PAGE.validate(page)
    assert page["changes"] == over_http and page["more"] is False
    assert json.loads(as_json_nid.stdout)["changes"] == with_nid

    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert len(lines) == 2 and lines[0].split()[0] == over_http[0]["cursor"]
    assert over_http[0]["card"] in lines[0] and over_http[0]["kind"] in lines[0]
    assert "more changes follow; next: --after " in text.stderr
    after = text.stderr.strip().rsplit(" ", 1)[1]
    rest = await threads.deferToThread(nlr, config, "changes", "--library", OSLO, "--after", after, "--json")
    assert json.loads(rest.stdout)["changes"] == over_http[2:]

    for refused in (too_many, unknown, bad_cursor):
        assert refused.returncode == 2 and refused.stderr.startswith("error: "), refused
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert global_feed.returncode == 0 and len(json.loads(global_feed.stdout)) == 3, "the global feed as before"
