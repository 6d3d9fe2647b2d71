"""The daemon's HTTP site: ``GET /healthz``, ``POST /ncip``, the patron page under ``/min-side/``
(`gateway.web.minside`), and ``GET /``, which redirects there.

Every register call the site makes goes through the daemon's one `RegisterCalls` pool, the same one
the SIP2 listeners use, so the reactor thread never waits on the database and shutdown counts one
pool. Request bodies are kept in memory only up to the cap (+1 byte).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from twisted.internet import defer, protocol
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, pages, resource, server
from twisted.web.iweb import IAccessLogFormatter
from zope.interface import provider

from gateway.api import ApiResource
from gateway.blocking import RegisterCalls
from gateway.config import WebConfig
from gateway.endpoints import source_group, total_cap
from gateway.hot_path import HotPath
from gateway.metrics import DEFAULT_ALLOWED, MetricsResource
from gateway.ncip import NCIPResource
from gateway.quiet import Quiet
from gateway.web.minside import MinSide

if TYPE_CHECKING:
    from gateway.register import Register

log = Logger(namespace="nlr")


class Health(resource.Resource):
    """``GET /healthz``: 200 with JSON when the database answers, 503 when it does not.
    ``GET /healthz/live``: 200 whenever the process answers at all (a liveness probe: restart me only
    when this fails). ``GET /healthz/ready``: 200 when the register answers and every listener is
    up (``listeners_up``, set by the service tree), else 503 (a readiness probe: send me traffic).

    The answer never waits longer than ``timeout`` seconds; concurrent requests share one database
    ping, and a new ping starts at most once per ``timeout`` while the database hangs, so a hung
    database cannot fill the pool of register calls with pings.
    """

    isLeaf = True
    #: Whether every listener of the daemon listens (`gateway.server.build_service` sets it).
    listeners_up: Callable[[], bool] = staticmethod(lambda: True)

    def __init__(self, register: Register, reactor: Any, calls: RegisterCalls, timeout: float = 5.0) -> None:
        super().__init__()
        self.register = register
        self.reactor = reactor
        self.calls = calls
        self.timeout = timeout
        self._ping: tuple[float, list[defer.Deferred[bool]]] | None = None

    def _start_ping(self) -> list[defer.Deferred[bool]]:
        waiters: list[defer.Deferred[bool]] = []
        self._ping = (time.monotonic(), waiters)

        def failed(failure: Any) -> bool:
            log.warn("health check: database does not answer ({why})", why=failure.type.__name__)
            return False

        def done(ok: bool) -> None:
            if self._ping is not None and self._ping[1] is waiters:
                self._ping = None
            for waiter in waiters:
                if not waiter.called:
                    waiter.callback(ok)

        d: defer.Deferred[Any] = self.calls.call(self.register.ping)
        d.addCallbacks(lambda _: True, failed)
        d.addCallback(done)
        d.addErrback(lambda f: log.failure("health ping failed", f))
        return waiters

    @staticmethod
    def _json(request: server.Request, code: int, body: dict[str, str]) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(body).encode()

    def render_GET(self, request: server.Request) -> Any:
        probe = b"/".join(request.postpath or [])
        if probe == b"live":
            return self._json(request, 200, {"status": "ok"})
        if probe not in (b"", b"ready"):
            return pages.notFound().render(request)
        ready = probe == b"ready"
        listening = self.listeners_up() if ready else True
        gone: list[bool] = []
        request.notifyFinish().addBoth(lambda _: gone.append(True))

        def answer(ok: bool) -> None:
            if gone:
                return
            if ready:
                up = ok and listening
                body = {"status": "ready" if up else "not ready", "database": "ok" if ok else "unreachable",
                        "listeners": "up" if listening else "down"}
                request.write(self._json(request, 200 if up else 503, body))
            else:
                body = {"status": "ok" if ok else "unavailable", "database": "ok" if ok else "unreachable"}
                request.write(self._json(request, 200 if ok else 503, body))
            request.finish()

        if self._ping is not None and time.monotonic() - self._ping[0] < self.timeout:
            waiters = self._ping[1]
        else:
            waiters = self._start_ping()
        waiter: defer.Deferred[bool] = defer.Deferred()
        waiters.append(waiter)

        def timed_out(_result: Any, timeout: float) -> bool:
            log.warn("health check: database did not answer within {timeout} s", timeout=timeout)
            return False

        waiter.addTimeout(self.timeout, self.reactor, onTimeoutCancel=timed_out)
        waiter.addCallback(answer)
        waiter.addErrback(lambda f: log.failure("health answer failed", f))
        return server.NOT_DONE_YET


class ToMinSide(resource.Resource):
    """``GET /``: 303 to the patron page."""

    isLeaf = True

    def render_GET(self, request: server.Request) -> bytes:
        request.setResponseCode(303)
        request.setHeader(b"location", b"/min-side/")
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return b"See /min-side/\n"


class Root(resource.Resource):
    """``/``: the site's children; any other path is a 404. A request whose body was refused as too
    large (`HardenedChannel`) gets 413 from every child but ``/ncip``, which answers its Problem."""

    def getChildWithDefault(self, path: bytes, request: server.Request) -> resource.IResource:
        child = super().getChildWithDefault(path, request)
        if getattr(request, "body_too_large", False) and not getattr(child, "answers_too_large", False):
            return pages.errorPage(413, "Request Entity Too Large", "The request body is larger than this site takes.")
        return child

    def getChild(self, path: bytes, request: server.Request) -> resource.IResource:
        return pages.notFound()


class CappedBody(io.BytesIO):
    """A request body kept in memory up to ``cap`` + 1 bytes; the rest is counted and dropped, so a
    10 MB POST costs neither memory nor a spool file. One byte over the cap is kept, so whoever
    reads the body still sees that it was too large."""

    def __init__(self, cap: int) -> None:
        super().__init__()
        self.cap = cap
        self.kept = 0

    def write(self, data: Any) -> int:
        room = self.cap + 1 - self.kept
        if room > 0:
            self.kept += super().write(bytes(data[:room]))
        return len(data)


class TrackedRequest(server.Request):
    """A request its site counts while it is in flight.

    ``body_too_large`` is set when the channel refused the body before it arrived (a declared length
    or a chunk over the cap): the request is answered at once, without its body, and the connection
    closes after the answer. ``body_received`` counts the body's bytes as they arrive."""

    body_too_large = False
    body_received = 0

    def handleContentChunk(self, data: bytes) -> None:
        self.body_received += len(data)
        super().handleContentChunk(data)

    def process(self) -> None:
        site: TrackingSite = self.channel.site  # type: ignore[attr-defined]  # as Request.process reads it
        site.in_flight += 1
        self.notifyFinish().addBoth(site.request_done)
        if self.path == b"*":  # `OPTIONS *` (or any method on `*`): nothing here answers for the server
            self.setResponseCode(400)
            self.setHeader(b"content-type", b"text/plain; charset=utf-8")
            self.setHeader(b"connection", b"close")
            self.channel.persistent = False
            self.write(b"Bad Request: the request target * is not served here\n")
            self.finish()
            return
        if getattr(getattr(self.channel, "site", None), "draining", False):  # shutting down: this one, then close
            self.setHeader(b"connection", b"close")
            self.channel.persistent = False
        super().process()


class _Tally:
    """Counts an event and logs it at most once per ``every`` seconds (`Quiet`, the SIP2 side's
    limiter), with the count since the last line: an attacker opening 20,000 connections costs a
    few log lines, not 20,000."""

    def __init__(self, what: str, every: float = 10.0, clock: Any = time.monotonic) -> None:
        self.what, self.every = what, every
        self.quiet = Quiet(clock, every)

    def note(self, **fields: Any) -> None:
        allowed, held = self.quiet.allow()
        if allowed:
            log.warn("HTTP: {n} {what} in the last {s:.0f} s (last from {source})", n=held + 1, what=self.what,
                     s=self.every, **fields)


def source_key(addr: Any) -> str:
    """The source a connection counts against for the per-source cap: `gateway.endpoints.source_group`
    of its host (IPv6 by /64), the SIP2 listeners' rule; a UNIX socket counts as one source."""
    host = getattr(addr, "host", None)
    return source_group(host) if isinstance(host, str) else "local"


class _Refused(protocol.Protocol):
    """The protocol of a connection over a cap: closed as soon as it is made (under TLS too, where
    a wrapping factory cannot be handed None)."""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.abortConnection()  # type: ignore[attr-defined]  # ITCPTransport


class HardenedChannel(http.HTTPChannel):
    """An HTTP/1.1 channel with deadlines that trickling bytes cannot stretch.

    Phases: *headers* (from the connection's first moment, or a keep-alive request's first byte,
    until the blank line): ``header_timeout``; *body* (until the last byte of the body):
    ``body_timeout``; answering: the register's own timeout; idle between keep-alive requests:
    ``timeOut`` (Twisted's idle timeout, which every byte restarts, ``http.idle_timeout``). A
    deadline that passes answers 408 and closes. A declared Content-Length, a chunk size, or a body
    so far over ``max_body_bytes`` is refused as soon as it is seen: the request is answered without
    its body (`TrackedRequest.body_too_large`) and the connection closes.

    The limits are class attributes; the site sets them on every channel from the config.
    """

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_body_bytes: int = 256 * 1024
    source: str = ""
    LINGER_IDLE_SECONDS = 2.0
    LINGER_SECONDS = 10.0
    _deadline: Any = None  # IDelayedCall while a deadline runs
    _refused = False  # a body was refused as too large: the connection closes after the answer
    _lingering: Any = None  # IDelayedCall: the close, while the rest of that body is dropped
    _linger_deadline: Any = None
    _linger_over = False

    def connectionMade(self) -> None:
        super().connectionMade()
        self._arm(self.header_timeout, "headers")

    def dataReceived(self, data: bytes) -> None:
        if self._lingering is not None:  # the rest of a body refused: dropped unread
            self._lingering.reset(self.LINGER_IDLE_SECONDS)
            return
        if self._deadline is None and not self._handlingRequest:  # a keep-alive request's first byte
            self._arm(self.header_timeout, "headers")
        super().dataReceived(data)

    def allHeadersReceived(self) -> None:
        self._disarm()
        request = self.requests[-1]
        too_large = self.length is not None and self.length > self.max_body_bytes
        if too_large:
            request.requestHeaders.removeHeader(b"expect")  # no "100 Continue" for a body refused
        super().allHeadersReceived()
        if too_large:
            self._refuse_body(request)
            self.length = 0  # lineReceived now calls allContentReceived: answered without the body
        elif self.length != 0:
            self._arm(self.body_timeout, "body")

    def rawDataReceived(self, data: bytes) -> None:
        if self._lingering is not None:  # the rest of a chunk dataReceived was handed (LineReceiver's loop)
            return
        super().rawDataReceived(data)
        if self._handlingRequest or not self.requests or getattr(self.transport, "disconnecting", False):
            return
        request = self.requests[-1]
        decoder = self._transferDecoder
        pending = decoder.length if isinstance(decoder, http._ChunkedTransferDecoder) and decoder.state == "BODY" \
            else 0
        if getattr(request, "body_received", 0) + (pending or 0) > self.max_body_bytes:
            self._refuse_body(request)
            self.allContentReceived()

    def allContentReceived(self) -> None:
        self._disarm()
        super().allContentReceived()

    def loseConnection(self) -> None:
        """Close; after a body refused as too large, first drop what the client still sends for up
        to `LINGER_IDLE_SECONDS` of quiet (`LINGER_SECONDS` in all). A client that writes its whole
        body before it reads (curl, Python's http.client) then reads the answer, where an immediate
        close with unread bytes would reset the connection and lose the answer on its way."""
        if not self._refused or self._lingering is not None or self._linger_over:
            super().loseConnection()
            return
        self._lingering = self.callLater(self.LINGER_IDLE_SECONDS, self._stop_lingering)
        self._linger_deadline = self.callLater(self.LINGER_SECONDS, self._stop_lingering)
        self._networkProducer.resumeProducing()  # Twisted pauses reading while a request is answered

    def _stop_lingering(self) -> None:
        for call in (self._lingering, self._linger_deadline):
            if call is not None and call.active():
                call.cancel()
        self._lingering = self._linger_deadline = None
        self._linger_over = True
        self.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._disarm()
        for call in (self._lingering, self._linger_deadline):
            if call is not None and call.active():
                call.cancel()
        super().connectionLost(reason)
        site = getattr(self, "site", None)
        if isinstance(site, TrackingSite):
            site.connection_closed(self)

    def _refuse_body(self, request: Any) -> None:
        self._disarm()
        request.body_too_large = True
        self._refused = True
        request.responseHeaders.setRawHeaders(b"connection", [b"close"])
        self.persistent = False
        site = getattr(self, "site", None)
        if isinstance(site, TrackingSite):
            site.too_large.note(source=self.source)

    def _arm(self, seconds: float, phase: str) -> None:
        self._disarm()
        self._deadline = self.callLater(seconds, lambda: self._expired(phase))

    def _disarm(self) -> None:
        if self._deadline is not None:
            if self._deadline.active():
                self._deadline.cancel()
            self._deadline = None

    def _expired(self, phase: str) -> None:
        self._deadline = None
        site = getattr(self, "site", None)
        if isinstance(site, TrackingSite):
            site.expired.note(source=self.source)
        assert self.transport is not None
        self.transport.write(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        # Twisted's idle timeout does the same: close, and abort if the peer does not read the close.
        if self.abortTimeout is not None:
            self._abortingCall = self.callLater(self.abortTimeout, self.forceAbortClient)
        self.loseConnection()


_FIELD_MAX = {"uri": 200, "referrer": 120, "agent": 120}  # characters of each in an access log line


def _cut(value: bytes | str | None, limit: int) -> str:
    text = value.decode("latin-1") if isinstance(value, bytes) else (value or "-")
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    text = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)
    return text if len(text) <= limit else text[:limit] + "…"


@provider(IAccessLogFormatter)
def bounded_access_line(timestamp: str, request: Any) -> str:
    """twisted.web's combined log line, with the URL, Referer and User-Agent cut to a few hundred
    characters: a client sending 4 KB of each per request no longer writes 12 KB of log per request."""
    addr = request.getClientAddress()
    ip = getattr(addr, "host", "-")
    return (f'"{_cut(ip, 64)}" - - {timestamp} "{_cut(request.method, 16)} {_cut(request.uri, _FIELD_MAX["uri"])} '
            f'{_cut(request.clientproto, 16)}" {request.code} {request.sentLength or "-"} '
            f'"{_cut(request.getHeader(b"referer"), _FIELD_MAX["referrer"])}" '
            f'"{_cut(request.getHeader(b"user-agent"), _FIELD_MAX["agent"])}"')


_OWN_LINES = (b"/ncip", b"/min-side", b"/api")


class TrackingSite(server.Site):
    """A Site that counts requests in flight, so shutdown can wait for them; keeps request bodies
    only up to ``max_body_bytes`` (+1); and caps its open connections, in total and per source
    address (`source_key`): beyond a cap a new connection is closed at once. The caps count this
    process's connections only."""

    requestFactory = TrackedRequest
    protocol = HardenedChannel  # type: ignore[assignment]  # HTTP/1.1 only: no h2 is offered
    noisy = False  # no "Starting factory <… at 0x…>" line

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1000
    max_connections_per_source: int = 200

    def __init__(self, root: resource.Resource, *, max_body_bytes: int = 256 * 1024, **kwargs: Any) -> None:
        super().__init__(root, **kwargs)
        self.in_flight = 0
        self.max_body_bytes = max_body_bytes
        self.open_connections = 0  # channels open, and connections awaiting their PROXY header
        self.channels: set[HardenedChannel] = set()  # the channels open now (drained at shutdown)
        self.draining = False
        self.per_source: dict[str, int] = {}
        clock = self.reactor.seconds
        self.refused = _Tally("connections refused over the connection caps", clock=clock)
        self.expired = _Tally("connections closed: headers or body not complete in time", clock=clock)
        self.too_large = _Tally("request bodies refused as larger than the cap", clock=clock)
        self.anonymous = _Tally("requests refused before any credential was accepted (access lines held back)",
                                clock=clock)

    def log(self, request: Any) -> None:
        """The access line of each request, except requests refused before a credential was
        accepted (``request.nlr_anonymous``; a 4xx answer): those are counted, one line per 10 s,
        so a client looping refused requests cannot fill the disk."""
        if getattr(request, "nlr_anonymous", False) or 400 <= request.code < 500:
            self.anonymous.note(source=str(getattr(request.getClientAddress(), "host", "-")))
            return
        if request.path.startswith(_OWN_LINES):
            return  # /ncip and /min-side write a request line of their own (gateway.logs)
        super().log(request)

    def _room(self, addr: Any) -> bool:
        """Room under the total cap for a connection from ``addr``: 127.0.0.1 and ::1 have
        `gateway.endpoints.LOOPBACK_RESERVE` places more (a local health check, the operator)."""
        return self.open_connections < total_cap(str(getattr(addr, "host", "")), self.max_connections)

    def hold(self, host: str) -> bool:
        """A connection from a proxy awaiting its PROXY header: counted against the total cap (then
        released, and the channel built for the source the header names)."""
        if self.open_connections < total_cap(host, self.max_connections):
            self.open_connections += 1
            return True
        self.refused.note(source=host)
        return False

    def unhold(self) -> None:
        self.open_connections -= 1

    def buildProtocol(self, addr: Any) -> Any:
        source = source_key(addr)
        if not self._room(addr) or self.per_source.get(source, 0) >= self.max_connections_per_source:
            self.refused.note(source=source)
            return _Refused()
        channel = super().buildProtocol(addr)
        channel.header_timeout = self.header_timeout
        channel.body_timeout = self.body_timeout
        channel.max_body_bytes = self.max_body_bytes
        channel.source = source
        self.open_connections += 1
        self.per_source[source] = self.per_source.get(source, 0) + 1
        self.channels.add(channel)
        return channel

    def drain(self) -> None:
        """Shutting down: every keep-alive connection closes after the answer it owes (idle ones at
        once), so that the requests in flight are answered and no new one starts on an open
        connection; a request that arrives meanwhile is answered with ``Connection: close``."""
        self.draining = True
        for channel in list(self.channels):
            channel.persistent = False
            if not channel.requests:
                channel.loseConnection()

    def connection_closed(self, channel: HardenedChannel) -> None:
        """A channel this site built has lost its connection."""
        self.channels.discard(channel)
        self.open_connections -= 1
        left = self.per_source.get(channel.source, 0) - 1
        if left > 0:
            self.per_source[channel.source] = left
        else:
            self.per_source.pop(channel.source, None)

    def request_done(self, result: Any) -> None:
        """A request finished, or its client hung up first."""
        self.in_flight -= 1

    def getContentFile(self, length: int | None) -> CappedBody:
        return CappedBody(self.max_body_bytes)


def build_site(register: Register, reactor: Any, *, calls: RegisterCalls | None = None, health_timeout: float = 5.0,
               max_body_bytes: int = 256 * 1024, header_timeout: float = TrackingSite.header_timeout,
               body_timeout: float = TrackingSite.body_timeout, idle_timeout: float = 60.0,
               max_connections: int = TrackingSite.max_connections,
               max_connections_per_source: int = TrackingSite.max_connections_per_source,
               web: WebConfig | None = None, metrics_networks: Iterable[str] = DEFAULT_ALLOWED,
               hot: HotPath | None = None) -> TrackingSite:
    """The HTTP site over ``register``. ``calls`` is the daemon's pool of register calls; without
    one (tests, benchmarks) the site gets a pool of its own. The limits are the ``http:`` keys of
    the config (seconds, bytes, connections); ``web`` is the patron page's section; ``metrics_networks``
    the sources ``GET /metrics`` answers (``metrics.allowed_networks``); ``hot`` the daemon's memory of
    decision facts, for NCIP lookups by card (gateway.hot_path)."""
    if calls is None:
        calls = RegisterCalls(reactor)
    web = web or WebConfig()
    root = Root()
    root.putChild(b"", ToMinSide())
    health = Health(register, reactor, calls, timeout=health_timeout)
    root.putChild(b"healthz", health)
    root.putChild(b"metrics", MetricsResource(metrics_networks))
    root.putChild(b"ncip", NCIPResource(register, reactor, calls=calls, max_body_bytes=max_body_bytes,
                                             hot=hot))
    root.putChild(b"api", ApiResource(register, reactor, calls))  # the library systems' JSON API (gateway.api)
    root.putChild(b"min-side", MinSide(register, reactor, calls, idle_seconds=web.session_idle_seconds,
                                       max_seconds=web.session_max_seconds,
                                       throttle_failures=web.login_throttle.failures,
                                       throttle_window=web.login_throttle.window_seconds))
    # twisted.web would parse every POST's Content-Type (with the email package) to fill request.args
    # from forms; /ncip and /min-side read their few form posts themselves, and so must any page
    # added here that takes a form (request.args holds only the query string).
    site = TrackingSite(root, max_body_bytes=max_body_bytes, parsePOSTFormSubmission=False, timeout=idle_timeout,
                        logFormatter=bounded_access_line,
                        reactor=reactor)
    site.header_timeout, site.body_timeout = header_timeout, body_timeout
    site.max_connections, site.max_connections_per_source = max_connections, max_connections_per_source
    site.displayTracebacks = False
    site.health = health  # type: ignore[attr-defined]  # the service tree tells it whether the listeners are up
    return site
