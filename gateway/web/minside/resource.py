"""``/min-side/``: the patron's own page, as one twisted.web resource (issue 10).

Each request: the language (``?lang=``, the ``nlr_lang`` cookie, ``Accept-Language``, bokmål), the
session (cookie ``nlr_session`` → ``Register.web_session``), at most one register call for what the
page does, a template, the bytes. Register calls go through the daemon's one pool; a PIN is hashed
in a call of its own (`RegisterCalls.call_alone`). The register decides everything about patrons;
this module decides only what the page says and the web's own defences:

- every POST carries a hidden token (the session's ``csrf``; the login form its own double-submit
  token, cookie ``nlr_login``) and is refused with 403, before anything changes, when the token is
  wrong or the ``Origin`` header names another site (``Origin: null`` is judged by the token);
- failed logins are throttled per source address (`gateway.throttle.LoginThrottle`, as SIP2's);
- every answer carries the security headers; every page ``Cache-Control: no-store``;
- a register refusal is a page with the form again and the reason; an unavailable register a calm
  503; anything unexpected a 500 without details, logged once without personal data.

Routes (under ``/min-side``): ``/`` overview, ``/logg-inn`` (GET, POST ``card``, ``pin``),
``/logg-ut`` (POST), ``/innsyn`` (``?side=N``), ``/innsyn.json``, ``/hjemmebibliotek`` (GET, POST
``library``), ``/pin`` (GET, POST ``old_pin``, ``new_pin``, ``new_pin_again``), ``/om``,
``/static/<file>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
import traceback
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server

from gateway import logs
from gateway.blocking import RegisterCalls
from gateway.endpoints import source_group
from gateway.register.actors import Actor
from gateway.register.errors import (
    AuthenticationFailed,
    InvalidInput,
    NotAffiliated,
    NotFound,
    PermissionDenied,
    PinLocked,
    RegisterUnavailable,
    SessionEnded,
    VersionConflict,
)
from gateway.throttle import LoginThrottle
from gateway.web.minside.i18n import LANGUAGES, Translator, choose, trail_words

if TYPE_CHECKING:
    from gateway.register import Register
    from gateway.register.views import PatronView, WebSession

log = Logger(namespace="nlr.web")

HERE = Path(__file__).resolve().parent
PREFIX = "/min-side"
SESSION_COOKIE = b"nlr_session"
LOGIN_COOKIE = b"nlr_login"
LANG_COOKIE = b"nlr_lang"
# A page's form is a few short fields: a body over this, or with more fields, is refused before it
# is decoded (the site caps every body; this keeps the decoding on the reactor thread tiny).
MAX_FORM_BYTES = 8192
MAX_FORM_FIELDS = 16
MAX_FIELD_CHARS = 256
PER_PAGE = 50
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,100}")

CSP = b"default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
SECURITY_HEADERS = (
    (b"content-security-policy", CSP),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
STATIC_TYPES = {".css": b"text/css; charset=utf-8", ".svg": b"image/svg+xml", ".png": b"image/png",
                ".ico": b"image/x-icon"}
LANGUAGE_NAMES = {"nb": "Bokmål", "nn": "Nynorsk", "en": "English"}
NAV = (("overview", "/min-side/"), ("trail", "/min-side/innsyn"), ("home", "/min-side/hjemmebibliotek"),
       ("pin", "/min-side/pin"), ("about", "/min-side/om"))
NAV_ANONYMOUS = (("login", "/min-side/logg-inn"), ("about", "/min-side/om"))


@dataclass
class Page:
    """An answer: status, body, and what it adds to the headers."""

    code: int
    body: bytes = b""
    content_type: bytes = b"text/html; charset=utf-8"
    cache: bytes = b"no-store"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


class _FormRefused(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class _Ctx:
    """One request as the handlers see it."""

    request: server.Request
    route: str
    t: Translator
    remember_lang: bool
    cookies: list[bytes] = field(default_factory=list)
    session: WebSession | None = None
    token: str | None = None
    # The request's id (the patron's audit rows of it carry it, and so does its log line), and what
    # the log line says of its outcome when the page alone does not tell (a login refused).
    rid: str = field(default_factory=logs.new_request_id)
    outcome: str | None = None
    reason: str | None = None

    @property
    def secure(self) -> bool:
        return bool(self.request.isSecure())

    def cookie(self, name: bytes, value: str, *, path: str = PREFIX, max_age: int | None = None,
               same_site: str = "Strict", http_only: bool = True) -> None:
        parts = [f"{name.decode()}={value}", f"Path={path}", f"SameSite={same_site}"]
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        if http_only:
            parts.append("HttpOnly")
        if self.secure:
            parts.append("Secure")
        self.cookies.append("; ".join(parts).encode("ascii"))

    def arg(self, name: bytes) -> str | None:
        values = (self.request.args or {}).get(name)
        return values[0].decode("utf-8", "replace")[:MAX_FIELD_CHARS] if values else None


Handler = Callable[[_Ctx], Awaitable[Page]]


def _load_static() -> dict[str, tuple[bytes, bytes]]:
    files: dict[str, tuple[bytes, bytes]] = {}
    for path in sorted((HERE / "static").iterdir()):
        if path.is_file() and path.suffix in STATIC_TYPES:
            files[path.name] = (path.read_bytes(), STATIC_TYPES[path.suffix])
    return files


def environment() -> jinja2.Environment:
    """The templates, loaded and compiled once: autoescape on, an unknown variable an error."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             auto_reload=False)
    for name in env.list_templates(extensions=["html"]):
        env.get_template(name)
    return env


class MinSide(resource.Resource):
    """Everything under ``/min-side``: one leaf resource with a table of routes."""

    isLeaf = True
    answers_too_large = True  # a body refused as too large (the site's cap) gets this site's 413 page
    LOGINS_AT_ONCE = 4  # the page's PIN checks (logins, PIN changes) running at once in this process

    def __init__(self, register: Register, reactor: Any, calls: RegisterCalls, *, idle_seconds: int = 900,
                 max_seconds: int = 28800, throttle_failures: int = 10, throttle_window: float = 300.0) -> None:
        super().__init__()
        self.register = register
        self.calls = calls
        self.idle_seconds, self.max_seconds = idle_seconds, max_seconds
        self.throttle = LoginThrottle(reactor.seconds, limit=throttle_failures, window=throttle_window)
        self.pin_checks = defer.DeferredSemaphore(self.LOGINS_AT_ONCE)
        self.env = environment()
        self.static = _load_static()
        css = self.static.get("minside.css", (b"", b""))[0]
        self.css_url = f"{PREFIX}/static/minside.css?v={hashlib.sha256(css).hexdigest()[:12]}"
        self.routes: dict[str, dict[bytes, Handler]] = {
            "": {b"GET": self.overview},
            "logg-inn": {b"GET": self.login_form, b"POST": self.login},
            "logg-ut": {b"POST": self.logout},
            "innsyn": {b"GET": self.trail},
            "innsyn.json": {b"GET": self.download},
            "hjemmebibliotek": {b"GET": self.home_form, b"POST": self.home_change},
            "pin": {b"GET": self.pin_form, b"POST": self.pin_change},
            "om": {b"GET": self.about},
        }

    # ------------------------------------------------------------------ the request's life
    def render(self, request: server.Request) -> Any:
        defer.ensureDeferred(self._answer(request)).addErrback(_unwritten)
        return server.NOT_DONE_YET

    async def _answer(self, request: server.Request) -> None:
        gone: list[bool] = []
        request.notifyFinish().addBoth(lambda _: gone.append(True))
        segments = [s.decode("utf-8", "replace") for s in request.postpath or []]
        route = segments[0] if segments else ""
        lang, remember = choose(self._query_lang(request), _cookie(request, LANG_COOKIE),
                                _header(request, b"accept-language"))
        ctx = _Ctx(request, route, Translator(lang), remember)
        began = time.perf_counter()
        try:
            page = self._error(ctx, 413) if getattr(request, "body_too_large", False) else \
                await self._route(ctx, segments)
        except (RegisterUnavailable, defer.TimeoutError):
            page = self._error(ctx, 503)
        except Exception as exc:  # noqa: BLE001 - a 500 without details; logged once, without data
            where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            log.error("Min side: {method} /min-side/{route} failed: {error} at {where}",
                      method=request.method.decode("latin-1"), route=route[:40], error=type(exc).__name__,
                      where=f"{Path(where.filename).name}:{where.lineno}" if where else "?")
            page = self._error(ctx, 500)
        if not gone:
            self._write(ctx, page)
        self._log(ctx, page, time.perf_counter() - began)

    def _log(self, ctx: _Ctx, page: Page, elapsed: float) -> None:
        """The request's line (`gateway.logs.request`): the route, never the card, the PIN or the
        session. A 4xx answer gets none: the site counts those, a line per 10 s, as for every path."""
        if 400 <= page.code < 500:
            return
        outcome = ctx.outcome or ("error" if page.code >= 500 else "ok")
        if logs.wants(outcome):
            route = ctx.route if ctx.route in self.routes or ctx.route == "static" else "other"
            logs.request("web", outcome, elapsed, ctx.rid, service=f"{ctx.request.method.decode('latin-1')[:8]} "
                         f"/min-side/{route}", reason=ctx.reason, status=str(page.code))

    async def _route(self, ctx: _Ctx, segments: list[str]) -> Page:
        request = ctx.request
        if not segments:  # /min-side without the slash
            return _redirect(f"{PREFIX}/", code=301)
        method = b"GET" if request.method == b"HEAD" else request.method
        if ctx.route == "static" and len(segments) == 2 and method == b"GET":
            return self._static(segments[1])
        methods = self.routes.get(ctx.route) if len(segments) == 1 else None
        if methods is None:
            return self._error(ctx, 404)
        handler = methods.get(method)
        if handler is None:
            page = self._error(ctx, 405)
            page.headers.append((b"allow", b", ".join(sorted(methods))))
            return page
        return await handler(ctx)

    def _write(self, ctx: _Ctx, page: Page) -> None:
        request = ctx.request
        request.setResponseCode(page.code)
        headers = request.responseHeaders
        headers.setRawHeaders(b"content-type", [page.content_type])
        for name, value in SECURITY_HEADERS:
            headers.setRawHeaders(name, [value])
        if ctx.secure:
            headers.setRawHeaders(b"strict-transport-security", [b"max-age=31536000"])
        headers.setRawHeaders(b"cache-control", [page.cache])
        if page.content_type.startswith(b"text/html"):
            headers.setRawHeaders(b"content-language", [ctx.t.lang.encode()])
        for name, value in page.headers:
            headers.addRawHeader(name, value)
        if ctx.remember_lang:
            ctx.cookie(LANG_COOKIE, ctx.t.lang, path="/", max_age=365 * 86400, same_site="Lax")
        for cookie in ctx.cookies:
            headers.addRawHeader(b"set-cookie", cookie)
        headers.setRawHeaders(b"content-length", [str(len(page.body)).encode()])
        request.write(page.body)
        request.finish()

    # ------------------------------------------------------------------ rendering
    def _page(self, ctx: _Ctx, template: str, code: int = 200, **values: Any) -> Page:
        session = ctx.session
        values.setdefault("title_key", "")
        body = self.env.get_template(template).render(
            t=ctx.t, lang=ctx.t.lang, route=ctx.route, session=session, css=self.css_url,
            languages=self._languages(ctx), nav=NAV if session is not None else NAV_ANONYMOUS,
            nav_current={"": "overview", "innsyn": "trail", "hjemmebibliotek": "home", "pin": "pin", "om": "about",
                         "logg-inn": "login"}.get(ctx.route), **values)
        return Page(code, body.encode("utf-8"))

    def _languages(self, ctx: _Ctx) -> list[dict[str, Any]]:
        """The language switcher: the same page with ``?lang=``, the other query arguments kept."""
        args = [(k, v) for k, vs in sorted((ctx.request.args or {}).items()) if k != b"lang" for v in vs[:1]][:4]
        path = ctx.request.path.decode("latin-1") if ctx.route in self.routes else f"{PREFIX}/"
        if b"GET" not in self.routes.get(ctx.route, {b"GET": None}):  # a POST-only path: its GET is a 405
            path = f"{PREFIX}/"
        out = []
        for code in LANGUAGES:
            query = urllib.parse.urlencode([*args, (b"lang", code.encode())])
            out.append({"code": code, "label": LANGUAGE_NAMES[code], "href": f"{path}?{query}",
                        "current": code == ctx.t.lang})
        return out

    def _error(self, ctx: _Ctx, code: int) -> Page:
        try:
            return self._page(ctx, "message.html", code, kind=str(code))
        except Exception:  # noqa: BLE001 - the error page itself failed: plain text
            log.error("Min side: the {code} page could not be rendered", code=code)
            return Page(code, f"{code}\n".encode(), content_type=b"text/plain; charset=utf-8")

    def _static(self, name: str) -> Page:
        found = self.static.get(name)
        if found is None:
            return Page(404, b"not found\n", content_type=b"text/plain; charset=utf-8")
        body, content_type = found
        return Page(200, body, content_type=content_type, cache=b"public, max-age=31536000, immutable")

    # ------------------------------------------------------------------ sessions and forms
    @staticmethod
    def _query_lang(request: server.Request) -> str | None:
        values = (request.args or {}).get(b"lang")
        return values[0].decode("ascii", "replace").strip().lower() if values else None

    async def _session(self, ctx: _Ctx) -> WebSession | None:
        """The live session of the cookie (its idle timer restarted), or None."""
        token = _cookie(ctx.request, SESSION_COOKIE)
        if token is None or not _TOKEN.fullmatch(token):
            return None
        session: WebSession | None = await self.calls.call(self.register.web_session, token,
                                                           idle_seconds=self.idle_seconds,
                                                           max_seconds=self.max_seconds)
        if session is not None:
            ctx.session, ctx.token = session, token
        return session

    def _to_login(self, ctx: _Ctx) -> Page:
        """303 to the login form; a cookie that named no live session is cleared, and the form says
        the session ended."""
        if _cookie(ctx.request, SESSION_COOKIE) is not None:
            ctx.cookie(SESSION_COOKIE, "", max_age=0)
            return _redirect(f"{PREFIX}/logg-inn?utlopt=1")
        return _redirect(f"{PREFIX}/logg-inn")

    @staticmethod
    def _form(request: server.Request) -> dict[str, str]:
        """The urlencoded body: at most `MAX_FORM_BYTES`, `MAX_FORM_FIELDS` fields of at most
        `MAX_FIELD_CHARS` characters each (first value of each name). 400 or 413 otherwise."""
        content_type = (_header(request, b"content-type") or "").split(";", 1)[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            raise _FormRefused(400)
        content = request.content
        raw = b""
        if content is not None:
            content.seek(0)
            raw = content.read(MAX_FORM_BYTES + 1)
        if len(raw) > MAX_FORM_BYTES:
            raise _FormRefused(413)
        try:
            parsed = urllib.parse.parse_qs(raw.decode("ascii"), keep_blank_values=True,
                                           max_num_fields=MAX_FORM_FIELDS, encoding="utf-8", errors="replace")
        except (UnicodeDecodeError, ValueError):
            raise _FormRefused(400) from None
        form = {name: values[0] for name, values in parsed.items()}
        if any(len(value) > MAX_FIELD_CHARS for value in form.values()):
            raise _FormRefused(400)
        return form

    @staticmethod
    def _foreign_origin(request: server.Request) -> bool:
        """An ``Origin`` header that names another site (absent or ``null``: judged by the token)."""
        origin = (_header(request, b"origin") or "").strip().lower()
        if not origin or origin == "null":
            return False
        host = (_header(request, b"host") or "").strip().lower()
        if not host:
            return True
        scheme, port = ("https", ":443") if request.isSecure() else ("http", ":80")
        host = host.removesuffix(port)
        return origin not in (f"{scheme}://{host}", f"{scheme}://{host}{port}")

    async def _posted(self, ctx: _Ctx) -> tuple[WebSession | None, dict[str, str], Page | None]:
        """A logged-in page's POST: (session, form, None), or a refusal page to answer at once."""
        try:
            form = self._form(ctx.request)
        except _FormRefused as refused:
            return None, {}, self._error(ctx, refused.code)
        if self._foreign_origin(ctx.request):
            return None, {}, self._error(ctx, 403)
        session = await self._session(ctx)
        if session is None:
            return None, {}, self._to_login(ctx)
        if not hmac.compare_digest(form.get("csrf", "").encode(), session.csrf.encode()):
            return None, {}, self._error(ctx, 403)
        return session, form, None

    @staticmethod
    def _actor(ctx: _Ctx, session: WebSession) -> Actor:
        """The patron, asking in this request (its audit rows carry the request's id)."""
        return Actor("patron", session.card).asking(ctx.rid)

    # ------------------------------------------------------------------ log in, log out
    def _login_page(self, ctx: _Ctx, code: int = 200, *, error: str | None = None, card: str = "",
                    notice: str | None = None) -> Page:
        token = _cookie(ctx.request, LOGIN_COOKIE)
        if token is None or not _TOKEN.fullmatch(token):
            token = secrets.token_urlsafe(24)
            ctx.cookie(LOGIN_COOKIE, token)
        return self._page(ctx, "login.html", code, error=error, card=card, login_token=token, notice=notice)

    async def login_form(self, ctx: _Ctx) -> Page:
        notice = ("login.logged_out" if ctx.arg(b"utlogget") else "login.expired" if ctx.arg(b"utlopt") else None)
        return self._login_page(ctx, notice=notice)

    async def login(self, ctx: _Ctx) -> Page:
        request = ctx.request
        try:
            form = self._form(request)
        except _FormRefused as refused:
            return self._error(ctx, refused.code)
        if self._foreign_origin(request):
            return self._error(ctx, 403)
        card, pin = form.get("card", "").strip(), form.get("pin", "")
        cookie = _cookie(request, LOGIN_COOKIE) or ""
        if not cookie or not hmac.compare_digest(form.get("login_token", "").encode(), cookie.encode()):
            return self._login_page(ctx, 403, error=ctx.t("login.stale"), card=card)
        source = _source(request)
        # Attempts still being judged count toward the limit, so a burst meets it as a sequence would;
        # and at most LOGINS_AT_ONCE PIN checks of the page run at once, so that a burst of logins
        # never holds every thread of the pool that SIP2 and NCIP need.
        if not self.throttle.begin(source):
            return self._login_page(ctx, 429, error=ctx.t("login.throttled"), card=card)
        judged = False
        try:
            login = await self.pin_checks.run(self.calls.call_alone, self.register.web_login, card, pin,
                                              max_seconds=self.max_seconds, request_id=ctx.rid)
            judged = True
        except (AuthenticationFailed, PinLocked, InvalidInput) as exc:
            judged = True
            self.throttle.end(source, failed=True)
            ctx.outcome, ctx.reason = "refused", "pin_locked" if isinstance(exc, PinLocked) else "login_failed"
            return self._login_page(ctx, 200, error=ctx.t("login.failed"), card=card)
        finally:
            if not judged:
                self.throttle.end(source, failed=False)  # unjudged (the register away): not counted
        self.throttle.end(source, failed=False)
        ctx.cookie(SESSION_COOKIE, login.token, max_age=self.max_seconds)
        return _redirect(f"{PREFIX}/")

    async def logout(self, ctx: _Ctx) -> Page:
        session, _form, refusal = await self._posted(ctx)
        if refusal is not None:
            return refusal
        assert session is not None and ctx.token is not None
        await self.calls.call(self.register.web_logout, ctx.token)
        ctx.cookie(SESSION_COOKIE, "", max_age=0)
        return _redirect(f"{PREFIX}/logg-inn?utlogget=1")

    # ------------------------------------------------------------------ pages
    async def overview(self, ctx: _Ctx) -> Page:
        session = await self._session(ctx)
        if session is None:
            return self._to_login(ctx)
        return self._page(ctx, "overview.html", patron=session.patron, home_name=_home_name(session.patron))

    async def trail(self, ctx: _Ctx) -> Page:
        session = await self._session(ctx)
        if session is None:
            return self._to_login(ctx)
        page = _page_number(ctx.arg(b"side") or ctx.arg(b"page"))
        found = await self.calls.call(self.register.patron_trail, self._actor(ctx, session), session.card, page=page,
                                      per_page=PER_PAGE)
        pages = max(1, -(-found.total // found.per_page))
        rows = []
        for entry in found.entries:
            what, detail, outcome = trail_words(ctx.t, entry.action, entry.outcome, entry.detail)
            channel = f"ch.{entry.channel}"
            rows.append({"at": entry.at, "library_name": entry.library_name, "library_isil": entry.library_isil,
                         "channel": ctx.t(channel) if ctx.t.has(channel) else entry.channel, "who": entry.who,
                         "what": what, "detail": detail, "outcome": outcome})
        return self._page(ctx, "trail.html", rows=rows, page=found.page, pages=pages, total=found.total)

    async def download(self, ctx: _Ctx) -> Page:
        session = await self._session(ctx)
        if session is None:
            return self._to_login(ctx)
        data = await self.calls.call(self.register.export_patron, self._actor(ctx, session), session.card)
        for key in ("note", "address_note"):  # the register's words, in the page's language (the keys stay)
            if key in data:
                data[key] = ctx.t(f"export.{key}")
        body = json.dumps(data, ensure_ascii=False, indent=2, default=str).encode("utf-8") + b"\n"
        name = re.sub(r"[^A-Za-z0-9-]", "", session.card) or "patron"
        return Page(200, body, content_type=b"application/json; charset=utf-8",
                    headers=[(b"content-disposition", f'attachment; filename="innsyn-{name}.json"'.encode())])

    async def home_form(self, ctx: _Ctx) -> Page:
        session = await self._session(ctx)
        if session is None:
            return self._to_login(ctx)
        saved = ctx.t("home.saved", library=_home_name(session.patron)) if ctx.arg(b"lagret") else None
        return self._home_page(ctx, session.patron, notice=saved)

    def _home_page(self, ctx: _Ctx, patron: PatronView, code: int = 200, *, error: str | None = None,
                   notice: str | None = None) -> Page:
        return self._page(ctx, "home.html", code, patron=patron, error=error, notice=notice)

    async def home_change(self, ctx: _Ctx) -> Page:
        session, form, refusal = await self._posted(ctx)
        if refusal is not None:
            return refusal
        assert session is not None
        library = form.get("library", "").strip()
        if not library:
            return self._home_page(ctx, session.patron, error=ctx.t("home.choose"))
        try:
            await self.calls.call(self.register.set_home_library, self._actor(ctx, session), session.card, library)
        except (NotAffiliated, PermissionDenied, NotFound, InvalidInput, VersionConflict):
            return self._home_page(ctx, session.patron, error=ctx.t("home.refused"))
        return _redirect(f"{PREFIX}/hjemmebibliotek?lagret=1")

    async def pin_form(self, ctx: _Ctx) -> Page:
        session = await self._session(ctx)
        if session is None:
            return self._to_login(ctx)
        return self._page(ctx, "pin.html", errors={}, notice=ctx.t("pin.saved") if ctx.arg(b"lagret") else None)

    async def pin_change(self, ctx: _Ctx) -> Page:
        session, form, refusal = await self._posted(ctx)
        if refusal is not None:
            return refusal
        assert session is not None
        old, new, again = form.get("old_pin", ""), form.get("new_pin", ""), form.get("new_pin_again", "")
        try:
            await self.pin_checks.run(self.calls.call_alone, self.register.change_own_pin, self._actor(ctx, session),
                                      session.card, old, new, again, keep_session=ctx.token)
        except InvalidInput:
            errors = {"new_pin_again": "pin.err_differ"} if new != again else {"new_pin": "pin.err_format"}
        except AuthenticationFailed:
            errors = {"old_pin": "pin.err_old"}
        except PinLocked:
            errors = {"old_pin": "pin.err_locked"}
        except SessionEnded:  # ended meanwhile (a PIN change in another session won): log in again
            return self._to_login(ctx)
        else:
            return _redirect(f"{PREFIX}/pin?lagret=1")
        return self._page(ctx, "pin.html", errors={k: ctx.t(v) for k, v in errors.items()}, notice=None)

    async def about(self, ctx: _Ctx) -> Page:
        """Open to all; for a logged-in patron it lists their libraries (the page still answers,
        without them, when the register does not)."""
        try:
            session = await self._session(ctx)
        except (RegisterUnavailable, defer.TimeoutError):
            session = None
        settings = self.register.settings
        retention = {"audit_days": settings.audit_retention_days, "change_days": settings.change_retention_days,
                     "idle_minutes": max(1, self.idle_seconds // 60), "max_hours": max(1, self.max_seconds // 3600)}
        return self._page(ctx, "about.html", patron=session.patron if session is not None else None,
                          retention=retention)


# ---------------------------------------------------------------------- small helpers
def _unwritten(failure: Failure) -> None:
    """The answer itself failed to be written (the client went away mid-write): one line, no trace."""
    log.error("Min side: an answer could not be written ({error})", error=getattr(failure.type, "__name__", "?"))


def _redirect(location: str, code: int = 303) -> Page:
    return Page(code, b"", content_type=b"text/plain; charset=utf-8", headers=[(b"location", location.encode())])


def _header(request: server.Request, name: bytes) -> str | None:
    value = request.getHeader(name)
    if isinstance(value, bytes):
        return value.decode("latin-1")[:1000]
    return value[:1000] if isinstance(value, str) else None


def _cookie(request: server.Request, name: bytes) -> str | None:
    value = request.getCookie(name)
    if value is None:
        return None
    return value.decode("latin-1")[:200]


def _source(request: server.Request) -> str:
    """What the login throttle counts against: the client's address, IPv6 by /64 (as SIP2's)."""
    host = getattr(request.getClientAddress(), "host", None)
    return source_group(host) if isinstance(host, str) else "local"


def _page_number(value: str | None) -> int:
    try:
        return min(max(1, int(value or "1")), 1_000_000)
    except ValueError:
        return 1


def _home_name(patron: PatronView) -> str:
    home = next((a for a in patron.activations if a.library_isil == patron.home_library_isil), None)
    return home.library_name if home is not None else patron.home_library_isil
