"""`nlr serve`: the Twisted daemon as a service tree.

One MultiService holds a `Listener` per configured endpoint string: the HTTP site
(`gateway.web.site`: ``GET /healthz``, ``POST /ncip``) on every ``http.listen`` string, one
``SIP2Factory`` on every ``sip2.listen`` string. Blocking register work goes through ONE pool of
register calls (`gateway.blocking.RegisterCalls`) shared by every adapter; the reactor thread never
waits on the database.

Start-up checks everything it can before it touches the database (`gateway.endpoints`); a
listener that cannot listen (a port in use) stops start-up with one line. On SIGTERM or SIGINT the
daemon stops accepting, lets requests in flight finish, and exits 0 within 10 seconds.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from twisted.application.service import MultiService, Service
from twisted.internet import defer, interfaces, task
from twisted.logger import FileLogObserver, Logger, formatEventAsClassicLogText, globalLogBeginner

from gateway.blocking import RegisterCalls
from gateway.config import Config
from gateway.endpoints import check_config, fit_descriptor_limit
from gateway.runtime import Failure, open_configured_register

if TYPE_CHECKING:
    from gateway.register import Register

log = Logger(namespace="nlr")

# A register call that takes longer fails (the caller answers "register unavailable").
REGISTER_TIMEOUT_SECONDS = 8.0
# How long in-flight requests may take to finish after SIGTERM; the process is gone within 10 s.
SHUTDOWN_GRACE_SECONDS = 7.0
SHUTDOWN_DEADLINE_SECONDS = 9.0


class Listener(Service):
    """One endpoint string's listener. Unlike Twisted's StreamServerEndpointService it never logs
    a failure to listen by itself: ``listening`` fires with the port, or fails (port in use, no
    permission), and whoever starts the tree decides what that means (`serve`: stop, one line)."""

    def __init__(self, endpoint: Any, factory: Any) -> None:
        self.endpoint = endpoint
        self.factory = factory
        self.listening: defer.Deferred[Any] | None = None
        self.port: Any = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self.listening = self.endpoint.listen(self.factory)
        self.listening.addCallbacks(self._listening, self._cancelled)

    def _listening(self, port: Any) -> Any:
        self.port = port
        return port

    @staticmethod
    def _cancelled(failure: Any) -> None:
        failure.trap(defer.CancelledError)  # stopped before it listened: no error; others pass on

    def startService(self) -> None:
        super().startService()
        if self.listening is None:
            self.privilegedStartService()

    def stopService(self) -> defer.Deferred[None] | None:
        super().stopService()
        if self.listening is not None and not self.listening.called:
            self.listening.cancel()  # not listening yet: stop trying
        self.listening = None
        port, self.port = self.port, None
        return defer.maybeDeferred(port.stopListening) if port is not None else None


def build_service(config: Config, register: Register, reactor: Any,
                  parsed: dict[str, list[tuple[str, Any]]] | None = None) -> MultiService:
    """The daemon's service tree: one `Listener` per endpoint string, and one pool of register
    calls (``top.calls``) for the HTTP site and the SIP2 listeners alike."""
    # Here, not at the top: config errors answer without loading the register.
    from gateway.housekeeping import Housekeeping
    from gateway.sip2 import SIP2Factory
    from gateway.web.site import build_site

    if parsed is None:
        parsed = check_config(config, reactor)
    config = fit_descriptor_limit(config)  # caps that fit RLIMIT_NOFILE: raised, or lowered with a warning
    top = MultiService()
    # one pool for every adapter; it takes the gateway offline when the register hangs (gateway.blocking)
    calls = RegisterCalls(reactor, timeout=REGISTER_TIMEOUT_SECONDS, probe=register.ping,
                          lock_waits=register.store.lock_waits)
    top.calls = calls  # type: ignore[attr-defined]  # shutdown waits for its calls
    http = config.http
    site = build_site(register, reactor, calls=calls, health_timeout=float(config.database.connect_timeout),
                      max_body_bytes=http.max_body_bytes, header_timeout=http.header_timeout,
                      body_timeout=http.body_timeout, idle_timeout=http.idle_timeout,
                      max_connections=http.max_connections, max_connections_per_source=http.max_connections_per_source,
                      web=config.web)
    top.site = site  # type: ignore[attr-defined]  # shutdown waits for its requests
    sip2_factory = SIP2Factory(register, reactor, config.sip2, calls=calls)
    calls.listeners.append(sip2_factory.set_online)  # 98 says "offline" as soon as the pool does
    Housekeeping(register, calls, config, reactor).setServiceParent(top)  # retention while serving
    for kind, factory in (("http", site), ("sip2", sip2_factory)):
        for description, endpoint in parsed[kind]:
            listener = Listener(endpoint, factory)
            listener.setName(f"{kind} {description}")
            listener.setServiceParent(top)
    return top


def _in_flight(top: MultiService) -> int:
    """HTTP requests not yet answered, and register calls queued or running (SIP2's among them)."""
    site, calls = getattr(top, "site", None), getattr(top, "calls", None)
    return (site.in_flight if site is not None else 0) + (calls.in_flight if calls is not None else 0)


def _one_line(failure: Any) -> str:
    if failure.check(defer.FirstError):
        failure = failure.value.subFailure
    text = str(failure.value)
    return text.splitlines()[0] if text.strip() else failure.type.__name__


def utc_log_observer(out: TextIO) -> FileLogObserver:
    """Log lines stamped in UTC, and saying so (``2026-12-01T23:45:00Z``), whatever the host's zone:
    the register stores times in UTC and shows them to people in Europe/Oslo; logs are for machines
    and operators comparing hosts."""

    def stamp(when: float | None) -> str:
        if when is None:
            return "-"
        return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    return FileLogObserver(out, lambda event: formatEventAsClassicLogText(event, formatTime=stamp))


def serve(config: Config) -> None:
    """Run the daemon in the foreground until SIGTERM or SIGINT.

    Raises:
        ConfigError: a listen string is unusable (before the database is opened).
        Failure: the register cannot be opened, or a listener cannot listen.
    """
    from twisted.internet import reactor

    parsed = check_config(config, reactor)  # before the database: config errors are exit 2
    globalLogBeginner.beginLoggingTo([utc_log_observer(sys.stdout)], redirectStandardIO=False)
    register = open_configured_register(config)
    interfaces.IReactorThreads(reactor).suggestThreadPoolSize(max(4, config.database.pool_size * 2))
    top = build_service(config, register, reactor, parsed)
    failed: list[str] = []

    def cannot_listen(why: str) -> None:
        if failed or not reactor.running:
            return
        failed.append(why)
        log.error("cannot listen: {why}", why=why)
        reactor.stop()

    def serving(_: Any) -> None:
        log.info("NLR gateway serving HTTP on {http} and SIP2 on {sip2}",
                 http=config.http.listen, sip2=config.sip2.listen)

    def start() -> None:
        try:
            top.startService()
        except Exception as exc:  # noqa: BLE001 - one line, then stop
            cannot_listen(str(exc).splitlines()[0] if str(exc).strip() else exc.__class__.__name__)
            return
        listening = defer.gatherResults(
            [child.listening for child in top if isinstance(child, Listener) and child.listening is not None],
            consumeErrors=True)
        listening.addCallbacks(serving, lambda failure: cannot_listen(_one_line(failure)))

    def watchdog() -> None:
        # Work stuck in a thread (a database that stopped answering) must not keep the process
        # alive past the 10 seconds the contract allows.
        sys.stdout.write("shutdown: in-flight work did not finish in time; exiting anyway\n")
        sys.stdout.flush()
        os._exit(0)

    @defer.inlineCallbacks
    def stop() -> Any:
        timer = threading.Timer(SHUTDOWN_DEADLINE_SECONDS, watchdog)
        timer.daemon = True
        timer.start()
        if not failed:
            log.info("shutting down: no new connections, finishing what is in flight")
        yield top.stopService()
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
        while not failed and _in_flight(top) and time.monotonic() < deadline:
            yield task.deferLater(reactor, 0.05, lambda: None)
        if not failed and _in_flight(top):
            log.warn("shutdown: {n} requests still in flight after {s} s; closing them", n=_in_flight(top),
                     s=SHUTDOWN_GRACE_SECONDS)
        register.engine.dispose()

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", stop)
    reactor.run()
    if failed:
        raise Failure(f"cannot listen: {failed[0]}")
