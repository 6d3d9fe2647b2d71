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
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from twisted.application.service import MultiService, Service
from twisted.internet import defer, interfaces, task
from twisted.logger import FileLogObserver, Logger

from gateway import logs
from gateway.blocking import RegisterCalls
from gateway.config import Config
from gateway.endpoints import check_config, fit_descriptor_limit, tls_options
from gateway.hot_path import HotPath, HotPathService
from gateway.runtime import Failure, open_register_for_serving
from gateway.systemd import Notifier

if TYPE_CHECKING:
    from gateway.register import Register

log = Logger(namespace="nlr")

# A register call that takes longer fails (the caller answers "register unavailable").
REGISTER_TIMEOUT_SECONDS = 8.0
# How long in-flight requests may take to finish after SIGTERM; the process is gone within 10 s.
SHUTDOWN_GRACE_SECONDS = 7.0
SHUTDOWN_DEADLINE_SECONDS = 9.0

#: Called on SIGHUP, after the TLS certificates are read again (e.g. the log level's reload). A hook
#: that raises is logged in one line; the others still run.
RELOAD_HOOKS: list[Callable[[], None]] = []

#: What ``STATUS=`` says (systemd), by whether the register answers.
STATUS_TEXT = {True: "serving; the register answers", False: "serving offline: the register does not answer"}


class Announcer(Protocol):
    """Who hears how the daemon is doing: systemd (`gateway.systemd.Notifier`, through `_SystemdAnnouncer`),
    or a worker's supervisor (`gateway.supervisor.WorkerChannel`)."""

    #: descriptors bound already for listen keys (``sip2.listen[0]``): a worker's, from its supervisor
    fds: dict[str, int]

    def ready(self, online: bool) -> None: ...
    def register_state(self, online: bool) -> None: ...
    def alive(self) -> None: ...
    def stopping(self) -> None: ...


class _SystemdAnnouncer:
    """A process on its own: tells systemd (``$NOTIFY_SOCKET``; nothing without it)."""

    fds: dict[str, int] = {}

    def __init__(self, reactor: Any) -> None:
        self.notifier = Notifier(reactor)

    def ready(self, online: bool) -> None:
        self.notifier.ready(STATUS_TEXT[online])

    def register_state(self, online: bool) -> None:
        self.notifier.status(STATUS_TEXT[online])

    def alive(self) -> None:
        pass  # systemd's watchdog has its own timer (Notifier.start_watchdog)

    def stopping(self) -> None:
        self.notifier.stopping()


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
    # decisions and lookups without a PIN from memory, their audit rows written behind (issue 13)
    hot = HotPath(register, calls, reactor, cache_size=config.register.cache_size,
                  audit_queue_max=config.register.audit_queue_max)
    top.hot = hot  # type: ignore[attr-defined]  # shutdown writes its queue
    HotPathService(hot).setServiceParent(top)
    http = config.http
    site = build_site(register, reactor, calls=calls, health_timeout=float(config.database.connect_timeout),
                      max_body_bytes=http.max_body_bytes, header_timeout=http.header_timeout,
                      body_timeout=http.body_timeout, idle_timeout=http.idle_timeout,
                      max_connections=http.max_connections, max_connections_per_source=http.max_connections_per_source,
                      web=config.web, metrics_networks=config.metrics.allowed_networks, hot=hot)
    top.site = site  # type: ignore[attr-defined]  # shutdown waits for its requests
    # /healthz/ready: ready only while every listener listens
    site.health.listeners_up = lambda: all(  # type: ignore[attr-defined]
        child.port is not None for child in top if isinstance(child, Listener))
    sip2_factory = SIP2Factory(register, reactor, config.sip2, calls=calls, hot=hot)
    calls.listeners.append(sip2_factory.set_online)  # 98 says "offline" as soon as the pool does
    top.sip2 = sip2_factory  # type: ignore[attr-defined]  # shutdown drains its connections
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
    """The text log's observer: lines stamped in UTC, and saying so (`gateway.logs.text_observer`)."""
    return logs.text_observer(out)


def reload_tls(top: MultiService) -> None:
    """Read every TLS listener's certificate and key again (SIGHUP): new connections get the new
    ones, open connections keep theirs; a file that does not load keeps the old pair, in one line."""
    for listener in top:
        options = tls_options(getattr(listener, "endpoint", None))
        if options is None:
            continue
        try:
            options.reload()
        except Exception as exc:  # noqa: BLE001 - the old certificate stays; one line
            why = str(exc).splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            log.error("SIGHUP: the TLS certificate of {name} did not load ({why:.200}); keeping the old one",
                      name=listener.name, why=why)
        else:
            log.info("SIGHUP: TLS certificate of {name} read again", name=listener.name)


def run_reload_hooks() -> None:
    for hook in list(RELOAD_HOOKS):
        try:
            hook()
        except Exception as exc:  # noqa: BLE001 - a hook's bug must not stop the others
            log.error("SIGHUP: reload hook {hook} failed: {why:.200}", hook=getattr(hook, "__name__", hook),
                      why=str(exc).splitlines()[0] if str(exc).strip() else exc.__class__.__name__)


def serve(config: Config, announcer: Announcer | None = None) -> None:
    """Run the daemon in the foreground until SIGTERM or SIGINT; SIGHUP reloads (TLS certificates,
    then `RELOAD_HOOKS`).

    ``announcer`` is a worker's link to its supervisor (`gateway.supervisor`); without one the
    process is on its own and tells systemd, when systemd started it (``$NOTIFY_SOCKET``). Under
    systemd, and in a worker, a database that does not answer at start is served offline (READY
    all the same) until it answers; a plain foreground `nlr serve` refuses to start instead.

    Raises:
        ConfigError: a listen string is unusable (before the database is opened).
        Failure: the register cannot be opened, or a listener cannot listen.
    """
    from twisted.internet import reactor

    worker = announcer is not None
    announce: Announcer = announcer if announcer is not None else _SystemdAnnouncer(reactor)
    # before the database: config errors are exit 2
    parsed = check_config(config, reactor, adopted=announce.fds if worker else None)
    # text (UTC, the default) or JSON lines, from logging.level; SIGHUP reads the level again
    logs.install(config.logging.format, config.logging.level, config.logging.requests)
    RELOAD_HOOKS.append(logs.level_reloader(config.source))
    offline_ok = worker or bool(os.environ.get("NOTIFY_SOCKET"))
    register, answers = open_register_for_serving(config, offline_ok=offline_ok)
    interfaces.IReactorThreads(reactor).suggestThreadPoolSize(max(4, config.database.pool_size * 2))
    top = build_service(config, register, reactor, parsed)
    calls = top.calls  # type: ignore[attr-defined]
    calls.listeners.append(announce.register_state)
    if not answers:
        log.error("the register does not answer at start: serving offline until it answers a probe")
        calls.online = False  # as RegisterCalls goes offline, without a hung call to blame
        calls._tell(False)  # noqa: SLF001
        calls._probe_soon(0)  # noqa: SLF001
    failed: list[str] = []
    heartbeat = task.LoopingCall(announce.alive)
    parent = os.getppid()

    def alive() -> None:
        announce.alive()
        if worker and os.getppid() != parent:  # the supervisor is gone (kill -9): stop, as on SIGTERM
            log.warn("the supervisor (pid {pid}) is gone: shutting down", pid=parent)
            reactor.stop()

    heartbeat.f = alive

    def reload() -> None:
        log.info("SIGHUP: reloading")
        reload_tls(top)
        run_reload_hooks()

    def cannot_listen(why: str) -> None:
        if failed or not reactor.running:
            return
        failed.append(why)
        log.error("cannot listen: {why}", why=why)
        reactor.stop()

    def serving(_: Any) -> None:
        who = f"worker pid {os.getpid()}" if worker else "NLR gateway"
        log.info("{who} serving HTTP on {http} and SIP2 on {sip2}",
                 who=who, http=config.http.listen, sip2=config.sip2.listen)
        announce.ready(calls.online)
        heartbeat.start(1.0, now=False)

    def start() -> None:
        signal.signal(signal.SIGHUP, lambda *_: interfaces.IReactorFromThreads(reactor).callFromThread(reload))
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
        stopping = time.monotonic()
        timer = threading.Timer(SHUTDOWN_DEADLINE_SECONDS, watchdog)
        timer.daemon = True
        timer.start()
        if heartbeat.running:
            heartbeat.stop()
        announce.stopping()
        if not failed:
            log.info("shutting down: no new connections, finishing what is in flight")
        yield top.stopService()
        # No new request on the connections still open: each answers what it owes, then closes.
        for drained in (getattr(top, "site", None), getattr(top, "sip2", None)):
            if drained is not None:
                drained.drain()
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
        while not failed and _in_flight(top) and time.monotonic() < deadline:
            yield task.deferLater(reactor, 0.05, lambda: None)
        if not failed and _in_flight(top):
            log.warn("shutdown: {n} requests still in flight after {s} s; closing them", n=_in_flight(top),
                     s=SHUTDOWN_GRACE_SECONDS)
        # every answered lookup and decision audited: the rows written behind, in what time is left
        yield top.hot.flush(max(0.5, SHUTDOWN_DEADLINE_SECONDS - 0.5 - (time.monotonic() - stopping)))  # type: ignore[attr-defined]
        register.engine.dispose()
        logs.flush()

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", stop)
    reactor.run()
    if failed:
        raise Failure(f"cannot listen: {failed[0]}")
