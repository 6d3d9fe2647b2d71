"""Min side (issue 10) over HTTP, without a browser: the daemon's own site (`build_site`) listening on
127.0.0.1 in the test process, over a fresh register on SQLite and PostgreSQL, spoken to with
twisted.web's Agent (cookies kept by hand, redirects not followed). One test runs `nlr serve` with the
``web:`` section of its config. The real-browser tests are tests/test_web_browser.py.
"""

from __future__ import annotations

import http.client
import io
import json
import re
import ssl
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from html import escape
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from daemon_helpers import Daemon, free_port, self_signed, start, write_config
from register_helpers import BERGEN, OSLO, OTHER_PIN, PIN, TRONDHEIM, add_patron, client, nid, terminal
from twisted.internet import defer, reactor, ssl as twisted_ssl, task, threads
from twisted.internet.protocol import Protocol
from twisted.web.client import Agent, FileBodyProducer, ResponseDone
from twisted.web.http_headers import Headers
from web_helpers import HiddenFields

from gateway.blocking import RegisterCalls
from gateway.config import LoginThrottleConfig, WebConfig
from gateway.register import Register
from gateway.register.views import OPERATOR
from gateway.register.vocabulary import PinCheck
from gateway.web.minside import i18n
from gateway.web.minside.resource import CSP, MAX_FORM_BYTES
from gateway.web.site import build_site

FAILED_NB = "Feil lånenummer eller PIN-kode"
FAILED_EN = "Wrong card number or PIN"
BIRTH = date(1985, 3, 14)
PAGES = ["/min-side/", "/min-side/innsyn", "/min-side/innsyn.json", "/min-side/hjemmebibliotek", "/min-side/pin"]


# ---------------------------------------------------------------------- a client that keeps cookies

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


@dataclass
class Answer:
    code: int
    headers: Headers
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None

    @property
    def cookies(self) -> list[str]:
        return self.headers.getRawHeaders("set-cookie") or []

    def cookie(self, name: str) -> str | None:
        """The Set-Cookie line for ``name``, whole (flags included)."""
        return next((c for c in self.cookies if c.startswith(f"{name}=")), None)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def hidden(self, action: str) -> dict[str, str]:
        parser = HiddenFields()
        parser.feed(self.text)
        assert action in parser.forms, (action, parser.forms)
        return parser.forms[action]


@dataclass
class Visitor:
    """One browser's worth of cookies against a site."""

    base: str
    cookies: dict[str, str] = field(default_factory=dict)
    agent: Any = field(default_factory=lambda: Agent(reactor))

    @property
    def origin(self) -> str:
        return self.base

    async def request(self, method: str, path: str, *, form: dict[str, str] | None = None, body: bytes | None = None,
                      headers: dict[str, str] | None = None, origin: str | None = "own") -> Answer:
        raw = Headers()
        for name, value in (headers or {}).items():
            raw.setRawHeaders(name, [value])
        if self.cookies:
            raw.setRawHeaders("cookie", ["; ".join(f"{k}={v}" for k, v in self.cookies.items())])
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            if not raw.hasHeader("content-type"):
                raw.setRawHeaders("content-type", ["application/x-www-form-urlencoded"])
        if method == "POST" and origin is not None:
            raw.setRawHeaders("origin", [self.origin if origin == "own" else origin])
        producer = FileBodyProducer(io.BytesIO(body)) if body is not None else None
        response = await self.agent.request(method.encode(), (self.base + path).encode(), raw, producer)
        receiver = _Body()
        response.deliverBody(receiver)
        data = await receiver.done
        answer = Answer(response.code, response.headers, data)
        for line in answer.cookies:
            name, _, rest = line.partition("=")
            value = rest.split(";", 1)[0]
            if "Max-Age=0" in line:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return answer

    async def get(self, path: str, **kwargs: Any) -> Answer:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, form: dict[str, str], **kwargs: Any) -> Answer:
        return await self.request("POST", path, form=form, **kwargs)

    async def submit(self, path: str, fields: dict[str, str], *, action: str | None = None, **kwargs: Any) -> Answer:
        """GET the page, then POST its form with every hidden field it carries plus ``fields``."""
        page = await self.get(path)
        assert page.code == 200, (path, page.code)
        return await self.post(action or path, {**page.hidden(action or path), **fields}, **kwargs)

    async def log_in(self, card: str, pin: str = PIN, **kwargs: Any) -> Answer:
        return await self.submit("/min-side/logg-inn", {"card": card, "pin": pin}, **kwargs)

    async def csrf(self) -> str:
        return (await self.get("/min-side/pin")).hidden("/min-side/pin")["csrf"]


@dataclass
class Served:
    register: Register
    port: Any
    calls: RegisterCalls
    cards: dict[str, str]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port.getHost().port}"

    def visitor(self) -> Visitor:
        return Visitor(self.base)


def setup_patrons(reg: Register) -> dict[str, str]:
    """Kari (Oslo, also Bergen, door agreement at Oslo), a blocked patron, a lost card, a secret address."""
    kari = add_patron(reg, 0, OSLO, birth=BIRTH, address_line1="Storgata 1", postal_code="0155", city="Oslo",
                      email="kari@example.no", phone="+4791234567", door_agreement=True).card
    reg.activate(OPERATOR, kari, BERGEN)
    blocked = add_patron(reg, 1, OSLO, birth=date(1990, 5, 1)).card
    reg.set_blocked(OPERATOR, blocked, True, "misbruk")
    lost = add_patron(reg, 2, OSLO, birth=date(1991, 6, 2)).card
    reg.report_lost(OPERATOR, lost)
    secret = add_patron(reg, 3, BERGEN, birth=date(1992, 7, 3), address_line1="Hemmeligveien 9", postal_code="5003",
                        city="Bergen", secret_address=True).card
    return {"kari": kari, "blocked": blocked, "lost": lost, "secret": secret}


def serve(reg: Register, web: WebConfig | None = None) -> Served:
    calls = RegisterCalls(reactor)
    port = reactor.listenTCP(0, build_site(reg, reactor, calls=calls, web=web), interface="127.0.0.1")
    return Served(reg, port, calls, {})


@pytest.fixture
def site(reg: Register, no_daemon_failures: None) -> Iterator[Served]:
    served = serve(reg)
    served.cards = setup_patrons(reg)
    yield served
    pytest_twisted.blockon(served.port.stopListening())


def _sleep(seconds: float) -> Any:
    return task.deferLater(reactor, seconds, lambda: None)


def _masked(text: str, *secrets: str) -> str:
    """A page with its one-time tokens (and the given strings) blanked, to compare two answers."""
    text = re.sub(r'name="(login_token|csrf)" value="[^"]*"', r'name="\1" value=""', text)
    for secret in secrets:
        text = text.replace(secret, "…")
    return text


# ---------------------------------------------------------------------- the way in
@pytest_twisted.ensureDeferred
async def test_the_root_and_every_page_without_a_session_lead_to_the_login_form(site: Served) -> None:
    v = site.visitor()
    root = await v.get("/")
    assert root.code in (302, 303) and root.header("location") == "/min-side/"
    assert (await v.get("/min-side")).header("location") == "/min-side/"
    for path in PAGES:
        answer = await v.get(path)
        assert answer.code == 303, path
        assert answer.header("location") == "/min-side/logg-inn", path
    v.cookies["nlr_session"] = "x" * 43  # a session the register does not know: cleared, and the form says so
    answer = await v.get("/min-side/")
    assert answer.code == 303 and answer.header("location") == "/min-side/logg-inn?utlopt=1"
    assert "Max-Age=0" in (answer.cookie("nlr_session") or "")
    expired = await v.get("/min-side/logg-inn?utlopt=1")
    assert "Logg inn igjen" in expired.text


@pytest_twisted.ensureDeferred
async def test_the_login_form(site: Served) -> None:
    page = await site.visitor().get("/min-side/logg-inn")
    assert page.code == 200
    html = page.text
    assert '<html lang="nb">' in html
    assert '<form class="form" method="post" action="/min-side/logg-inn"' in html
    assert '<label for="card">Lånenummer</label>' in html and '<label for="pin">PIN-kode</label>' in html
    assert 'name="card"' in html and 'autocomplete="username"' in html
    assert 'name="pin" type="password" autocomplete="current-password" inputmode="numeric"' in html
    assert "Har du ikke PIN-kode? Du får en på biblioteket ditt." in html
    assert page.hidden("/min-side/logg-inn")["login_token"]
    assert 'href="#main"' in html and '<main id="main"' in html and "<header" in html and "<footer" in html
    assert "<script" not in html and "style=" not in html  # CSP: no inline script or style


@pytest_twisted.ensureDeferred
async def test_a_login_opens_a_session_in_a_cookie_with_its_flags(site: Served) -> None:
    v = site.visitor()
    answer = await v.log_in(site.cards["kari"])
    assert answer.code == 303 and answer.header("location") == "/min-side/"
    line = answer.cookie("nlr_session")
    assert line is not None
    flags = [f.strip() for f in line.split(";")]
    assert "HttpOnly" in flags and "SameSite=Strict" in flags and "Path=/min-side" in flags
    assert "Secure" not in flags  # plain HTTP (the TLS test sees Secure)
    token = flags[0].partition("=")[2]
    assert len(token) >= 22  # ≥ 128 bits in URL-safe base64
    overview = await v.get("/min-side/")
    assert overview.code == 200
    html = overview.text
    assert "Kari Nordmann0" in html and site.cards["kari"] in html
    assert "Deichman Oslo" in html and "Bergen offentlige bibliotek" in html
    assert "14. mars 1985" in html
    full = nid(0, BIRTH)
    assert full[:6] + "*****" in html and full not in html
    assert "Storgata 1" in html and "kari@example.no" in html and "+4791234567" in html
    # a new login is a new session id
    again = site.visitor()
    await again.log_in(site.cards["kari"])
    assert again.cookies["nlr_session"] != v.cookies["nlr_session"]


@pytest_twisted.ensureDeferred
async def test_every_login_failure_reads_the_same(site: Served) -> None:
    """Unknown card, malformed card, wrong PIN, locked PIN, a lost card: 200, the form again, one text."""
    kari = site.cards["kari"]
    other = add_patron(site.register, 4, OSLO, birth=date(1993, 8, 4)).card
    for _ in range(5):  # the shared lockout: 5 wrong PINs at a kiosk lock the page too
        site.register.verify_pin(terminal(OSLO), other, "0000")
    attempts = {"unknown card": ("N000199999", PIN), "malformed card": ("12<b>", PIN), "wrong PIN": (kari, "9999"),
                "locked PIN": (other, PIN), "lost card": (site.cards["lost"], PIN), "no PIN": ("", "")}
    bodies = {}
    for what, (card, pin) in attempts.items():
        v = site.visitor()
        answer = await v.log_in(card, pin)
        assert answer.code == 200, what
        assert FAILED_NB in answer.text, what
        assert "nlr_session" not in v.cookies, what
        assert 'name="card"' in answer.text and 'role="alert"' in answer.text
        assert re.search(r'<div class="error-summary" role="alert"[^>]* tabindex="-1" autofocus>', answer.text)
        assert answer.text.count("autofocus") == 1
        assert "12<b>" not in answer.text
        bodies[what] = _masked(answer.text, escape(card)) if card else _masked(answer.text)
    first = next(iter(bodies.values()))
    for what, body in bodies.items():
        if what != "no PIN":  # the empty card leaves the field without a value attribute
            assert body == first, what
    # a blocked patron logs in (innsyn is a right) and is told of the block
    v = site.visitor()
    assert (await v.log_in(site.cards["blocked"])).code == 303
    assert "Lånekortet ditt er sperret" in (await v.get("/min-side/")).text


@pytest_twisted.ensureDeferred
async def test_failed_logins_are_throttled_per_source(reg: Register, no_daemon_failures: None) -> None:
    served = serve(reg, WebConfig(login_throttle=LoginThrottleConfig(failures=3, window_seconds=300)))
    try:
        card = add_patron(reg, 0, OSLO).card
        for _ in range(3):
            assert FAILED_NB in (await served.visitor().log_in(card, "9999")).text
        checks = len(reg.audit_events(card, limit=1000))
        v = served.visitor()
        answer = await v.log_in(card, PIN)  # the right PIN, from a throttled source
        assert answer.code == 429
        assert "For mange mislykkede innlogginger" in answer.text
        assert "nlr_session" not in v.cookies
        assert len(reg.audit_events(card, limit=1000)) == checks  # the register was not asked
        assert reg.verify_pin(terminal(OSLO), card, PIN) is PinCheck.OK  # 3 page failures: no lockout
    finally:
        await served.port.stopListening()


# ---------------------------------------------------------------------- CSRF, headers, forms
@pytest_twisted.ensureDeferred
async def test_a_post_without_the_right_token_or_from_another_site_is_refused_and_changes_nothing(
        site: Served) -> None:
    kari = site.cards["kari"]
    v = site.visitor()
    await v.log_in(kari)
    token = await v.csrf()
    for what, form, origin in [
        ("no token", {"library": BERGEN}, "own"),
        ("wrong token", {"library": BERGEN, "csrf": "0" * 64}, "own"),
        ("another site", {"library": BERGEN, "csrf": token}, "https://evil.example"),
        ("another port", {"library": BERGEN, "csrf": token}, site.base.rsplit(":", 1)[0] + ":1"),
    ]:
        answer = await v.post("/min-side/hjemmebibliotek", form, origin=origin)
        assert answer.code == 403, what
        assert "Forespørselen ble avvist" in answer.text
        assert site.register.find_patron(OPERATOR, kari).home_library_isil == OSLO, what
    refused = await v.post("/min-side/pin", {"old_pin": PIN, "new_pin": OTHER_PIN, "new_pin_again": OTHER_PIN})
    assert refused.code == 403
    assert site.register.verify_pin(terminal(OSLO), kari, PIN) is PinCheck.OK
    assert (await v.post("/min-side/logg-ut", {})).code == 403
    assert (await v.get("/min-side/")).code == 200  # still logged in
    # Chromium under Referrer-Policy: no-referrer sends Origin: null: the token decides
    answer = await v.post("/min-side/hjemmebibliotek", {"library": BERGEN, "csrf": token}, origin="null")
    assert answer.code == 303
    assert site.register.find_patron(OPERATOR, kari).home_library_isil == BERGEN
    # without an Origin header at all (older clients): the token decides too
    answer = await v.post("/min-side/hjemmebibliotek", {"library": OSLO, "csrf": token}, origin=None)
    assert answer.code == 303
    # the login form's own token
    fresh = site.visitor()
    assert (await fresh.post("/min-side/logg-inn", {"card": kari, "pin": PIN})).code == 403
    assert "nlr_session" not in fresh.cookies
    foreign = await fresh.log_in(kari, origin="https://evil.example")
    assert foreign.code == 403 and "nlr_session" not in fresh.cookies


@pytest_twisted.ensureDeferred
async def test_every_page_carries_the_security_headers(site: Served) -> None:
    v = site.visitor()
    anonymous = [await v.get(p) for p in ("/min-side/logg-inn", "/min-side/om", "/min-side/nope", *PAGES)]
    await v.log_in(site.cards["kari"])
    pages = [await v.get(p) for p in (*PAGES, "/min-side/om", "/min-side/logg-inn", "/min-side/pin/x")]
    css = await v.get(re.search(r'href="(/min-side/static/minside\.css[^"]*)"', pages[0].text).group(1))
    for answer in (*anonymous, *pages, css):
        assert answer.header("content-security-policy") == CSP.decode()
        assert "default-src 'self'" in CSP.decode() and "frame-ancestors 'none'" in CSP.decode()
        assert "form-action 'self'" in CSP.decode() and "unsafe-inline" not in CSP.decode()
        assert answer.header("x-content-type-options") == "nosniff"
        assert answer.header("referrer-policy") == "no-referrer"
    for answer in (*anonymous, *pages):
        assert answer.header("cache-control") == "no-store"
    assert css.code == 200 and css.header("content-type") == "text/css; charset=utf-8"
    assert "immutable" in (css.header("cache-control") or "") and "@media print" in css.text
    assert anonymous[2].code == 404 and pages[-1].code == 404
    assert (await v.get("/min-side/static/nope.css")).code == 404
    assert (await v.get("/min-side/logg-ut")).code == 405
    head = await v.request("HEAD", "/min-side/")
    assert head.code == 200 and head.body == b"" and head.header("cache-control") == "no-store"


@pytest_twisted.ensureDeferred
async def test_forms_are_bounded(site: Served) -> None:
    kari = site.cards["kari"]
    v = site.visitor()
    await v.log_in(kari)
    token = await v.csrf()
    many = {f"f{i}": "x" for i in range(40)} | {"csrf": token, "library": BERGEN}
    assert (await v.post("/min-side/hjemmebibliotek", many)).code == 400
    big = {"csrf": token, "library": BERGEN, "pad": "x" * MAX_FORM_BYTES}
    assert (await v.post("/min-side/hjemmebibliotek", big)).code == 413
    xml = await v.request("POST", "/min-side/hjemmebibliotek", body=b"<x/>", headers={"content-type": "text/xml"})
    assert xml.code == 400
    huge = await v.post("/min-side/hjemmebibliotek", {"csrf": token, "library": BERGEN, "pad": "x" * 300_000})
    assert huge.code == 413 and huge.header("content-security-policy") == CSP.decode()  # over the site's cap
    assert site.register.find_patron(OPERATOR, kari).home_library_isil == OSLO


# ---------------------------------------------------------------------- language
@pytest_twisted.ensureDeferred
async def test_english_by_query_accept_language_or_cookie(site: Served) -> None:
    v = site.visitor()
    page = await v.get("/min-side/logg-inn?lang=en")
    assert '<html lang="en">' in page.text and "Card number" in page.text
    line = page.cookie("nlr_lang") or ""
    assert line.startswith("nlr_lang=en") and "Path=/" in line and "SameSite=Lax" in line
    remembered = await v.get("/min-side/logg-inn")  # the cookie
    assert '<html lang="en">' in remembered.text
    failed = await v.log_in(site.cards["kari"], "9999")
    assert FAILED_EN in failed.text and FAILED_NB not in failed.text
    await v.log_in(site.cards["kari"])
    assert "What is stored about you" in (await v.get("/min-side/")).text
    assert '<html lang="nb">' in (await v.get("/min-side/?lang=nb")).text

    for header, lang in [("en-GB,en;q=0.9", "en"), ("de-DE, en;q=0.5", "en"), ("nn-NO,nn;q=0.9,en;q=0.5", "nn"),
                         ("nb-NO,no;q=0.9,en;q=0.5", "nb"), ("fr", "nb"), ("en;q=0.2, no;q=0.8", "nb")]:
        answer = await site.visitor().get("/min-side/logg-inn", headers={"accept-language": header})
        assert f'<html lang="{lang}">' in answer.text, header
        assert answer.cookie("nlr_lang") is None  # only a choice made with ?lang= is remembered
    nynorsk = await site.visitor().get("/min-side/om?lang=nn")
    assert "Kva registeret er" in nynorsk.text
    chosen = site.visitor()
    await chosen.get("/min-side/om?lang=en")
    assert '<html lang="en">' in (await chosen.get("/min-side/om", headers={"accept-language": "nb"})).text


def test_every_text_is_in_every_language() -> None:
    nb, en, nn = i18n.NB, i18n.EN, i18n.NN
    assert set(en) == set(nb), set(nb) ^ set(en)
    assert set(nn) == set(nb), set(nn) ^ set(nb)  # nynorsk is whole: no key falls back to bokmål
    for key, text in nb.items():
        fields = set(re.findall(r"{(\w+)}", text))
        assert set(re.findall(r"{(\w+)}", en[key])) == fields, key
        assert set(re.findall(r"{(\w+)}", nn[key])) == fields, key
    assert "<" not in "".join(nb.values()) + "".join(en.values()) + "".join(nn.values())  # plain text only


# ---------------------------------------------------------------------- sessions
@pytest_twisted.ensureDeferred
async def test_logout_ends_the_session(site: Served) -> None:
    v = site.visitor()
    await v.log_in(site.cards["kari"])
    cookie = v.cookies["nlr_session"]
    answer = await v.post("/min-side/logg-ut", {"csrf": await v.csrf()})
    assert answer.code == 303 and answer.header("location") == "/min-side/logg-inn?utlogget=1"
    assert "Max-Age=0" in (answer.cookie("nlr_session") or "")
    assert "Du er logget ut" in (await v.get("/min-side/logg-inn?utlogget=1")).text
    v.cookies["nlr_session"] = cookie  # the old id is no good any more
    assert (await v.get("/min-side/")).header("location") == "/min-side/logg-inn?utlopt=1"


@pytest_twisted.ensureDeferred
async def test_a_session_ends_after_its_idle_and_its_absolute_timeout(reg: Register,
                                                                     no_daemon_failures: None) -> None:
    card = add_patron(reg, 0, OSLO).card
    idle = serve(reg, WebConfig(session_idle_seconds=1, session_max_seconds=60))
    absolute = serve(reg, WebConfig(session_idle_seconds=5, session_max_seconds=2))
    try:
        v = idle.visitor()
        await v.log_in(card)
        await _sleep(0.5)
        assert (await v.get("/min-side/")).code == 200
        await _sleep(1.6)
        assert (await v.get("/min-side/")).header("location") == "/min-side/logg-inn?utlopt=1"

        w = absolute.visitor()
        await w.log_in(card)
        for _ in range(3):
            await _sleep(0.5)
            assert (await w.get("/min-side/")).code == 200  # in use: the idle timer restarts
        await _sleep(1.0)
        assert (await w.get("/min-side/")).code == 303  # 2 s after the login, in use or not
    finally:
        await idle.port.stopListening()
        await absolute.port.stopListening()


# ---------------------------------------------------------------------- changes
@pytest_twisted.ensureDeferred
async def test_the_home_library_changes_among_the_activated_libraries_only(site: Served) -> None:
    kari = site.cards["kari"]
    v = site.visitor()
    await v.log_in(kari)
    form = await v.get("/min-side/hjemmebibliotek")
    assert f'name="library" value="{OSLO}" checked' in form.text and f'value="{BERGEN}"' in form.text
    assert f'value="{TRONDHEIM}"' not in form.text
    assert "<fieldset" in form.text and "<legend>Velg hjemmebibliotek</legend>" in form.text
    changed = await v.submit("/min-side/hjemmebibliotek", {"library": BERGEN})
    assert changed.code == 303 and changed.header("location") == "/min-side/hjemmebibliotek?lagret=1"
    after = await v.get("/min-side/hjemmebibliotek?lagret=1")
    assert "Hjemmebiblioteket ditt er nå Bergen offentlige bibliotek." in after.text
    assert site.register.find_patron(OPERATOR, kari).home_library_isil == BERGEN
    last = site.register.audit_events(kari, limit=1000)
    assert any(e.action == "home_library" and e.actor.startswith("patron:") for e in last)
    assert any(c.kind == "home_library" and c.card_number == kari for c in site.register.changes())
    for library in (TRONDHEIM, "NO-9999999", "not an isil"):
        refused = await v.submit("/min-side/hjemmebibliotek", {"library": library})
        assert refused.code == 200, library
        assert "Du kan bare velge et bibliotek der lånekortet ditt er aktivert. Ingenting er endret." in refused.text
        assert 'role="alert"' in refused.text and 'aria-describedby="library-error"' in refused.text
        assert site.register.find_patron(OPERATOR, kari).home_library_isil == BERGEN
        assert re.search(r'class="error-summary"[^>]* tabindex="-1" autofocus>', refused.text)
    empty = await v.submit("/min-side/hjemmebibliotek", {})
    assert empty.code == 200 and "Velg et bibliotek" in empty.text


@pytest_twisted.ensureDeferred
async def test_one_library_only_is_said_in_a_sentence_without_a_form(site: Served) -> None:
    secret = site.cards["secret"]  # activated at Bergen only
    v = site.visitor()
    await v.log_in(secret)
    page = await v.get("/min-side/hjemmebibliotek")
    assert page.code == 200
    assert "<form" not in page.text.split("<main", 1)[1].split("</main>", 1)[0]  # only the header's log-out form
    assert 'name="library"' not in page.text and "Lagre hjemmebibliotek" not in page.text
    assert (f"Lånekortet ditt er bare aktivert ved Bergen offentlige bibliotek ({BERGEN}). For å velge et annet "
            "hjemmebibliotek må du først aktivere lånekortet ved det biblioteket.") in page.text
    assert f"Your card is activated at Bergen offentlige bibliotek ({BERGEN}) only." in \
        (await v.get("/min-side/hjemmebibliotek?lang=en")).text
    assert "Lånekortet ditt er berre aktivert ved Bergen offentlige bibliotek" in \
        (await v.get("/min-side/hjemmebibliotek?lang=nn")).text
    # a form posted all the same (an old tab) is refused, said on the page, and changes nothing
    refused = await v.post("/min-side/hjemmebibliotek?lang=nb", {"csrf": await v.csrf(), "library": OSLO})
    assert refused.code == 200 and 'href="#home-only"' in refused.text and 'id="home-only"' in refused.text
    assert site.register.find_patron(OPERATOR, secret).home_library_isil == BERGEN


@pytest_twisted.ensureDeferred
async def test_the_pin_changes_and_its_refusals_change_nothing(site: Served) -> None:
    kari = site.cards["kari"]
    other = site.visitor()
    await other.log_in(kari)  # another session of Kari's: the change ends it
    v = site.visitor()
    await v.log_in(kari)
    form = await v.get("/min-side/pin")
    assert "autofocus" not in form.text  # nothing to correct: the focus is left where the browser puts it
    for name, autocomplete in [("old_pin", "current-password"), ("new_pin", "new-password"),
                               ("new_pin_again", "new-password")]:
        assert f'name="{name}" type="password" autocomplete="{autocomplete}" inputmode="numeric"' in form.text
    refusals = [
        ({"old_pin": "9999", "new_pin": OTHER_PIN, "new_pin_again": OTHER_PIN}, "Nåværende PIN-kode er feil",
         "old_pin"),
        ({"old_pin": PIN, "new_pin": OTHER_PIN, "new_pin_again": "1111"}, "De to nye PIN-kodene er ikke like",
         "new_pin_again"),
        ({"old_pin": PIN, "new_pin": "12", "new_pin_again": "12"}, "4 til 8 sifre. Ingenting er endret", "new_pin"),
        ({"old_pin": PIN, "new_pin": "abcd", "new_pin_again": "abcd"}, "4 til 8 sifre. Ingenting er endret",
         "new_pin"),
    ]
    for fields, text, field_id in refusals:
        answer = await v.submit("/min-side/pin", fields)
        assert answer.code == 200, fields
        assert text in answer.text, fields
        assert re.search(f'id="{field_id}" [^>]*aria-describedby="[^"]*{field_id}-error"', answer.text), fields
        assert 'aria-invalid="true"' in answer.text
        assert 'role="alert"' in answer.text
        assert re.search(r'class="error-summary"[^>]* tabindex="-1" autofocus>', answer.text), fields
        assert site.register.verify_pin(terminal(OSLO), kari, PIN) is PinCheck.OK
    changed = await v.submit("/min-side/pin", {"old_pin": PIN, "new_pin": OTHER_PIN, "new_pin_again": OTHER_PIN})
    assert changed.code == 303 and changed.header("location") == "/min-side/pin?lagret=1"
    assert "PIN-koden din er endret." in (await v.get("/min-side/pin?lagret=1")).text
    assert site.register.verify_pin(terminal(OSLO), kari, OTHER_PIN) is PinCheck.OK
    assert site.register.verify_pin(terminal(OSLO), kari, PIN) is PinCheck.WRONG
    assert (await v.get("/min-side/")).code == 200  # this session goes on
    assert (await other.get("/min-side/")).code == 303  # the other one has ended
    locked = site.visitor()
    await locked.log_in(kari, OTHER_PIN)
    for _ in range(5):
        await locked.submit("/min-side/pin", {"old_pin": "0000", "new_pin": "5555", "new_pin_again": "5555"})
    answer = await locked.submit("/min-side/pin", {"old_pin": OTHER_PIN, "new_pin": "5555", "new_pin_again": "5555"})
    assert "PIN-koden er sperret etter for mange feil forsøk" in answer.text
    assert site.register.verify_pin(terminal(OSLO), kari, OTHER_PIN) is PinCheck.LOCKED  # shared with SIP2


# ---------------------------------------------------------------------- innsyn
@pytest_twisted.ensureDeferred
async def test_the_download_is_an_attachment_with_the_national_id_masked(site: Served) -> None:
    v = site.visitor()
    await v.log_in(site.cards["kari"])
    answer = await v.get("/min-side/innsyn.json")
    assert answer.code == 200
    assert answer.header("content-type") == "application/json; charset=utf-8"
    assert answer.header("content-disposition") == f'attachment; filename="innsyn-{site.cards["kari"]}.json"'
    assert answer.header("cache-control") == "no-store"
    data = json.loads(answer.body)
    full = nid(0, BIRTH)
    assert full not in answer.text and data["national_id_masked"] == full[:6] + "*****"
    assert data["address_line1"] == "Storgata 1" and data["audit"]

    secret = site.visitor()
    await secret.log_in(site.cards["secret"])
    copy = await secret.get("/min-side/innsyn.json")
    assert "Hemmeligveien" not in copy.text and "5003" not in copy.text
    page = await secret.get("/min-side/")
    assert "Hemmeligveien" not in page.text and "5003" not in page.text
    assert "Det er registrert en adresse på deg, men den er skjult" in page.text
    assert "med legitimasjon" in page.text
    english = await secret.get("/min-side/?lang=en")
    assert "An address is held for you, and it is hidden" in english.text


@pytest_twisted.ensureDeferred
async def test_the_downloads_notes_are_in_the_pages_language(site: Served) -> None:
    v = site.visitor()
    await v.log_in(site.cards["secret"])
    for lang in ("nb", "en", "nn"):
        data = json.loads((await v.get(f"/min-side/innsyn.json?lang={lang}")).body)
        assert data["note"] == i18n.CATALOGUES[lang]["export.note"], lang
        assert data["address_note"] == i18n.CATALOGUES[lang]["export.address_note"], lang
    assert "Registeret lagrer ingenting om lån" in i18n.NB["export.note"]
    kari = site.visitor()
    await kari.log_in(site.cards["kari"])
    data = json.loads((await kari.get("/min-side/innsyn.json")).body)
    assert data["note"] == i18n.NB["export.note"] and "address_note" not in data  # no secret address, no note


@pytest_twisted.ensureDeferred
async def test_the_cards_name_their_library_and_when_they_were_retired(site: Served) -> None:
    reg = site.register
    card = add_patron(reg, 6, OSLO, birth=date(1994, 9, 5)).card
    new = reg.replace_card(OPERATOR, card).current_card
    assert new is not None and new != card
    retired = next(c for c in reg.find_patron(OPERATOR, new).cards if c.number == card)
    assert retired.status_changed_at is not None
    v = site.visitor()
    await v.log_in(new)
    html = (await v.get("/min-side/")).text
    table = html.split('<h2 id="cards-h">', 1)[1].split("</table>", 1)[0]
    assert '<th scope="col">Tatt ut av bruk</th>' in table
    rows = {re.search(r'<th scope="row" class="mono">(\w+)</th>', r).group(1): r
            for r in table.split("<tr>")[2:]}
    assert set(rows) == {card, new}
    assert f'Deichman Oslo <span class="isil">({OSLO})</span>' in rows[card]
    assert f'Deichman Oslo <span class="isil">({OSLO})</span>' in rows[new]
    day = re.escape(i18n.Translator("nb").day(retired.status_changed_at))
    assert re.search(rf"<td>Erstattet av nytt kort</td>\s*<td>[^<]+</td>\s*<td>{day}</td>", rows[card])
    assert re.search(r"<td>I bruk</td>\s*<td>[^<]+</td>\s*<td>–</td>", rows[new])


@pytest_twisted.ensureDeferred
async def test_innsyn_names_who_looked_by_channel_and_pages(site: Served) -> None:
    kari = site.cards["kari"]
    reg = site.register
    reg.add_terminal(OPERATOR, "kiosk-oslo-1", "kiosk-pass-1", OSLO, "kiosk")
    reg.add_terminal(OPERATOR, "door-oslo-1", "door-pass-1", OSLO, "door")
    reg.find_patron(terminal(OSLO, "kiosk-oslo-1"), kari)
    reg.decide(terminal(OSLO, "door-oslo-1"), kari, PIN, door=True)
    reg.find_patron(client(BERGEN, name="Bibliofil Bergen"), kari)
    reg.update_patron(OPERATOR, kari, email="ny@example.no")
    v = site.visitor()
    await v.log_in(kari)
    page = await v.get("/min-side/innsyn")
    html = page.text
    assert "<caption>Oppslag og endringer, side 1 av 1</caption>" in html
    assert '<th scope="col">Tid</th>' in html and '<th scope="row"' in html
    assert "Selvbetjeningsautomat (SIP2)" in html and "kiosk-oslo-1" in html
    assert "Meråpen dør (SIP2)" in html and "door-oslo-1" in html and "Vurderte adgang gjennom døren" in html
    assert "Bibliotekssystem (NCIP)" in html and "Bibliofil Bergen" in html
    assert "Slo opp opplysningene dine" in html and "Endret: e-post" in html
    assert "Du, på Min side" in html and "Deichman Oslo" in html and OSLO in html
    assert re.search(r"\d{1,2}\. \w+ \d{4} kl\. \d\d:\d\d", html)  # Europe/Oslo, as people read it
    english = await v.get("/min-side/innsyn?lang=en")
    assert "Self-service kiosk (SIP2)" in english.text and "Looked up your data" in english.text
    assert re.search(r"\d{1,2} [A-Z][a-z]+ \d{4}, \d\d:\d\d", english.text)
    for _ in range(60):
        reg.find_patron(OPERATOR, kari)
    first = await v.get("/min-side/innsyn?lang=nb")
    assert "side 1 av 2" in first.text and 'href="/min-side/innsyn?side=2"' in first.text
    second = await v.get("/min-side/innsyn?side=2")
    assert "side 2 av 2" in second.text and "Selvbetjeningsautomat (SIP2)" in second.text
    assert "side 2 av 2" in (await v.get("/min-side/innsyn?page=2")).text
    assert (await v.get("/min-side/innsyn?side=x")).code == 200


def _pagination(html: str) -> str | None:
    found = re.search(r'<nav class="pagination"[^>]*>.*?</nav>', html, re.S)
    return found.group(0) if found else None


@pytest_twisted.ensureDeferred
async def test_the_trail_pages_at_the_first_the_last_and_a_single_page(site: Served) -> None:
    kari = site.cards["kari"]
    v = site.visitor()
    await v.log_in(kari)
    single = await v.get("/min-side/innsyn")
    assert "<caption>Oppslag og endringer, side 1 av 1</caption>" in single.text
    assert _pagination(single.text) is None  # one page: nothing to page through
    assert (await v.get("/min-side/innsyn?side=7")).text.count("side 1 av 1") == 1  # past the end: the only page
    for _ in range(120):
        site.register.find_patron(OPERATOR, kari)
    total = site.register.patron_trail(OPERATOR, kari).total
    pages = -(-total // 50)
    assert pages == 3, total
    first = _pagination((await v.get("/min-side/innsyn?side=1")).text)
    assert first is not None and 'aria-label="Sider i loggen"' in first
    assert 'rel="prev"' not in first and "Nyere oppføringer" not in first
    assert '<a href="/min-side/innsyn?side=2" rel="next">Eldre oppføringer</a>' in first
    assert '<span aria-current="page">Side 1 av 3</span>' in first
    middle = _pagination((await v.get("/min-side/innsyn?side=2")).text)
    assert middle is not None and '<a href="/min-side/innsyn?side=1" rel="prev">Nyere oppføringer</a>' in middle
    assert '<a href="/min-side/innsyn?side=3" rel="next">' in middle and "Side 2 av 3" in middle
    for asked in (3, 4, 1_000_000):  # the last page, and past it: the register answers the last page
        last = await v.get(f"/min-side/innsyn?side={asked}")
        assert last.code == 200 and "<caption>Oppslag og endringer, side 3 av 3</caption>" in last.text, asked
        nav = _pagination(last.text)
        assert nav is not None and '<a href="/min-side/innsyn?side=2" rel="prev">Nyere oppføringer</a>' in nav
        assert 'rel="next"' not in nav and "Eldre oppføringer" not in nav and "Side 3 av 3" in nav, asked
        assert "Ingen oppføringer" not in last.text
    nn = _pagination((await v.get("/min-side/innsyn?side=3&lang=nn")).text)
    assert nn is not None and "Nyare oppføringar" in nn and "Side 3 av 3" in nn


@pytest_twisted.ensureDeferred
async def test_the_about_page_is_open_and_lists_the_patrons_libraries(site: Served) -> None:
    v = site.visitor()
    page = await v.get("/min-side/om")
    assert page.code == 200
    for text in ("Nasjonalbiblioteket", "folkebibliotekloven", "artikkel 6 nr. 1 bokstav b", "Sletting",
                 "Hvor lenge", "slettes etter 365 dager", "etter 15 minutter uten bruk", "Tilgjengelighetserklæring",
                 "WCAG 2.1"):
        assert text in page.text, text
    await v.log_in(site.cards["kari"])
    mine = await v.get("/min-side/om")
    assert "Bibliotekene dine:" in mine.text and "Bergen offentlige bibliotek" in mine.text


@pytest_twisted.ensureDeferred
async def test_what_a_patron_typed_or_holds_is_escaped(site: Served) -> None:
    card = add_patron(site.register, 5, OSLO, given_name='<script>alert("x")</script>', address_line1="A & B").card
    v = site.visitor()
    await v.log_in(card)
    html = (await v.get("/min-side/")).text
    assert "<script>" not in html and "&lt;script&gt;" in html and "A &amp; B" in html
    typed = await site.visitor().log_in('"><script>x</script>', PIN)
    assert "<script>x" not in typed.text


# ---------------------------------------------------------------------- when things go wrong
@pytest_twisted.ensureDeferred
async def test_an_unavailable_register_is_a_calm_503(site: Served) -> None:
    v = site.visitor()
    await v.log_in(site.cards["kari"])
    site.calls.online = False  # the pool has taken the gateway offline: every call fails at once
    try:
        for path in ("/min-side/", "/min-side/innsyn"):
            answer = await v.get(path)
            assert answer.code == 503
            assert "Registeret er ikke tilgjengelig akkurat nå" in answer.text
            assert answer.header("content-security-policy") == CSP.decode()
        assert (await v.get("/min-side/om")).code == 200  # the about page needs no register
        fresh = site.visitor()
        login = await fresh.log_in(site.cards["kari"])
        assert login.code == 503 and "nlr_session" not in fresh.cookies
    finally:
        site.calls.online = True


@pytest_twisted.ensureDeferred
async def test_an_unexpected_error_is_a_500_without_details(site: Served, logs: list[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    v = site.visitor()
    await v.log_in(site.cards["kari"])

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret detail 2468")

    monkeypatch.setattr(site.register, "patron_trail", broken)
    answer = await v.get("/min-side/innsyn")
    assert answer.code == 500 and "Noe gikk galt" in answer.text
    assert "RuntimeError" not in answer.text and "2468" not in answer.text and "Traceback" not in answer.text
    lines = [line for line in logs if "Min side" in line]
    assert len(lines) == 1 and "RuntimeError" in lines[0] and "2468" not in lines[0]
    assert not any(PIN in line or v.cookies["nlr_session"] in line for line in logs)


# ---------------------------------------------------------------------- TLS and `nlr serve`
def _tls_get(port: int, path: str, method: str = "GET", body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, list[tuple[str, str]], bytes]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=20, context=context)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        conn.close()


@pytest_twisted.ensureDeferred
async def test_over_tls_the_session_cookie_is_secure(reg: Register, tmp_path: Path, no_daemon_failures: None) -> None:
    card = add_patron(reg, 0, OSLO).card
    self_signed(tmp_path)
    context = twisted_ssl.DefaultOpenSSLContextFactory(str(tmp_path / "key.pem"), str(tmp_path / "cert.pem"))
    port = reactor.listenSSL(0, build_site(reg, reactor), context, interface="127.0.0.1")
    number = port.getHost().port
    try:
        status, headers, body = await threads.deferToThread(_tls_get, number, "/min-side/logg-inn")
        assert status == 200
        login = next(v for k, v in headers if k.lower() == "set-cookie" and v.startswith("nlr_login="))
        assert "Secure" in login
        token = re.search(rb'name="login_token" value="([^"]+)"', body).group(1).decode()
        form = urllib.parse.urlencode({"login_token": token, "card": card, "pin": PIN}).encode()
        status, headers, _ = await threads.deferToThread(
            _tls_get, number, "/min-side/logg-inn", "POST", form,
            {"content-type": "application/x-www-form-urlencoded", "origin": f"https://127.0.0.1:{number}",
             "cookie": f"nlr_login={token}"})
        assert status == 303
        session = next(v for k, v in headers if k.lower() == "set-cookie" and v.startswith("nlr_session="))
        assert {"Secure", "HttpOnly", "SameSite=Strict", "Path=/min-side"} <= {f.strip() for f in session.split(";")}
        assert any(k.lower() == "strict-transport-security" for k, _ in headers)
    finally:
        await port.stopListening()


def test_nlr_serve_takes_the_web_section_of_its_config(reg: Register, database_url: str, keys_path: Path,
                                                       tmp_path: Path, daemons: list[Daemon]) -> None:
    """`nlr serve` with ``web: session_idle_seconds: 1``: the page, its session and its expiry."""
    card = add_patron(reg, 0, OSLO).card
    port = free_port()
    config = write_config(tmp_path / "nlr.yaml", database_url, keys_path, http=[f"tcp:{port}:interface=127.0.0.1"],
                          extra="web:\n  session_idle_seconds: 1\n  session_max_seconds: 60\n"
                                "  login_throttle: {failures: 5, window_seconds: 60}\n")
    daemon = start(daemons, config, tmp_path)
    daemon.health(f"http://127.0.0.1:{port}", 200)

    def request(method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        response.read()
        conn.close()
        return response

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    conn.request("GET", "/min-side/logg-inn")
    form_page = conn.getresponse()
    html = form_page.read().decode()
    conn.close()
    token = re.search(r'name="login_token" value="([^"]+)"', html).group(1)
    login = request("POST", "/min-side/logg-inn",
                    urllib.parse.urlencode({"login_token": token, "card": card, "pin": PIN}).encode(),
                    {"content-type": "application/x-www-form-urlencoded", "cookie": f"nlr_login={token}"})
    assert login.status == 303
    session = login.getheader("set-cookie", "").split(";", 1)[0]
    assert session.startswith("nlr_session=")
    assert request("GET", "/min-side/", headers={"cookie": session}).status == 200
    time.sleep(1.5)
    assert request("GET", "/min-side/", headers={"cookie": session}).status == 303
    assert request("GET", "/").getheader("location") == "/min-side/"
    assert daemon.stop() == 0
