"""The daemon's HTTP site: ``GET /healthz``, ``POST /ncip`` (and, later, the patron page).

Every register call the site makes goes through the daemon's one `RegisterCalls` pool, the same one
the SIP2 listeners use, so the reactor thread never waits on the database and shutdown counts one
pool. Request bodies are kept in memory only up to the cap (+1 byte).
"""

from __future__ import annotations

import io
import json
import time
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import pages, resource, server

from gateway.blocking import RegisterCalls
from gateway.ncip import NCIPResource

if TYPE_CHECKING:
    from gateway.register import Register

log = Logger(namespace="nlr")


class Health(resource.Resource):
    """``GET /healthz``: 200 with JSON when the database answers, 503 when it does not.

    The answer never waits longer than ``timeout`` seconds; concurrent requests share one database
    ping, and a new ping starts at most once per ``timeout`` while the database hangs, so a hung
    database cannot fill the pool of register calls with pings.
    """

    isLeaf = True

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

    def render_GET(self, request: server.Request) -> Any:
        gone: list[bool] = []
        request.notifyFinish().addBoth(lambda _: gone.append(True))

        def answer(ok: bool) -> None:
            if gone:
                return
            request.setResponseCode(200 if ok else 503)
            request.setHeader(b"content-type", b"application/json")
            request.setHeader(b"cache-control", b"no-store")
            body = {"status": "ok" if ok else "unavailable", "database": "ok" if ok else "unreachable"}
            request.write(json.dumps(body).encode())
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


class Root(resource.Resource):
    """``/``: the site's children; any other path is a 404."""

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
    """A request its site counts while it is in flight."""

    def process(self) -> None:
        site: TrackingSite = self.channel.site  # type: ignore[attr-defined]  # as Request.process reads it
        site.in_flight += 1
        self.notifyFinish().addBoth(site.request_done)
        super().process()


class TrackingSite(server.Site):
    """A Site that counts requests in flight, so shutdown can wait for them, and keeps request
    bodies only up to ``max_body_bytes`` (+1)."""

    requestFactory = TrackedRequest

    def __init__(self, root: resource.Resource, *, max_body_bytes: int = 256 * 1024, **kwargs: Any) -> None:
        super().__init__(root, **kwargs)
        self.in_flight = 0
        self.max_body_bytes = max_body_bytes

    def request_done(self, result: Any) -> None:
        """A request finished, or its client hung up first."""
        self.in_flight -= 1

    def getContentFile(self, length: int | None) -> CappedBody:
        return CappedBody(self.max_body_bytes)


def build_site(register: Register, reactor: Any, *, calls: RegisterCalls | None = None, health_timeout: float = 5.0,
               max_body_bytes: int = 256 * 1024) -> TrackingSite:
    """The HTTP site over ``register``. ``calls`` is the daemon's pool of register calls; without
    one (tests, benchmarks) the site gets a pool of its own."""
    if calls is None:
        calls = RegisterCalls(reactor)
    root = Root()
    root.putChild(b"healthz", Health(register, reactor, calls, timeout=health_timeout))
    root.putChild(b"ncip", NCIPResource(register, reactor, calls=calls, max_body_bytes=max_body_bytes))
    # twisted.web would parse every POST's Content-Type (with the email package) to fill request.args
    # from forms; /ncip reads its few form posts itself, and so must any page added here that takes
    # a form (request.args holds only the query string).
    site = TrackingSite(root, max_body_bytes=max_body_bytes, parsePOSTFormSubmission=False)
    site.displayTracebacks = False
    return site
