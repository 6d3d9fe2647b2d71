"""`nlr serve`: the Twisted daemon as a service tree.

One MultiService holds a listener service per configured endpoint string. The HTTP listeners serve
``GET /healthz`` (NCIP at ``/ncip`` and the patron page plug into the same site). Blocking register
work runs in the reactor's thread pool; the reactor thread never waits on the database.

Start-up checks everything it can before it touches the database: the listen strings (plain text
only on loopback unless ``allow_plaintext``), and that each is a valid endpoint. On SIGTERM or
SIGINT the daemon stops accepting, lets requests in flight finish, and exits 0 within 10 seconds.
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet import defer, endpoints, task, threads
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.web import resource, server

from gateway.config import Config, ConfigError

if TYPE_CHECKING:
    from gateway.register import Register

log = Logger(namespace="nlr")

# Endpoint types that carry plain text over the network.
_PLAINTEXT_KINDS = {"tcp", "tcp6"}
# Endpoint parameters that name files: relative ones are resolved against the config file's folder.
_BACKLOG_KINDS = {"tcp", "tcp6", "ssl", "unix"}
DEFAULT_BACKLOG = 1024
_PATH_PARAMS = {"privateKey", "certKey", "extraCertChain", "dhParameters", "caCertsDir"}
# How long in-flight requests may take to finish after SIGTERM; the process is gone within 10 s.
SHUTDOWN_GRACE_SECONDS = 7.0
SHUTDOWN_DEADLINE_SECONDS = 9.0


# ---------------------------------------------------------------------- endpoint strings
def _split_endpoint(description: str) -> list[str]:
    """Split an endpoint string on unescaped colons, keeping escapes (Twisted's own syntax)."""
    parts, current, i = [], "", 0
    while i < len(description):
        ch = description[i]
        if ch == "\\" and i + 1 < len(description):
            current += description[i:i + 2]
            i += 2
            continue
        if ch == ":":
            parts.append(current)
            current = ""
        else:
            current += ch
        i += 1
    parts.append(current)
    return parts


def _unescape(text: str) -> str:
    out, i = "", 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out += text[i + 1]
            i += 2
        else:
            out += text[i]
            i += 1
    return out


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def _param(part: str) -> tuple[str | None, str]:
    """``key=value`` → (key, raw value); a positional argument → (None, raw part)."""
    i = 0
    while i < len(part):
        if part[i] == "\\":
            i += 2
            continue
        if part[i] == "=":
            return _unescape(part[:i]), part[i + 1:]
        i += 1
    return None, part


def _is_loopback(interface: str) -> bool:
    if interface.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(interface.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def check_listen(descriptions: list[str], key: str, source: str = "config", *, allow_plaintext: bool = False) -> None:
    """Refuse plaintext TCP listeners that are reachable from other machines (PRODUCT §2.12)."""
    if allow_plaintext:
        return
    section = key.split(".", 1)[0]
    for i, description in enumerate(descriptions):
        parts = _split_endpoint(description.strip())
        kind = _unescape(parts[0]).lower()
        if kind not in _PLAINTEXT_KINDS:
            continue
        params = dict(_param(p) for p in parts[1:])
        interface = _unescape(params.get("interface", ""))
        if not _is_loopback(interface):
            raise ConfigError(
                f"{source}: key '{key}[{i}]' listens in plain text on {interface or 'every interface'} "
                f"({description}); use an ssl: endpoint, bind to 127.0.0.1, "
                f"or set {section}.allow_plaintext: true (e.g. for a VPN-only interface)"
            )


def resolve_endpoint(description: str, base_dir: Path) -> str:
    """The endpoint string with relative file names (TLS keys, unix socket paths) made absolute
    against ``base_dir``, the config file's folder (PRODUCT §4.1)."""
    parts = _split_endpoint(description.strip())
    kind = _unescape(parts[0]).lower()
    out = [parts[0]]
    for index, part in enumerate(parts[1:]):
        name, raw = _param(part)
        is_path = name in _PATH_PARAMS or (kind == "unix" and (name == "address" or (name is None and index == 0)))
        value = _unescape(raw)
        if is_path and value and not os.path.isabs(value):
            resolved = _escape(str(base_dir / value))
            out.append(resolved if name is None else f"{_escape(name)}={resolved}")
        else:
            out.append(part)
    return ":".join(out)


def with_backlog(description: str, backlog: int = DEFAULT_BACKLOG) -> str:
    """A listening endpoint string with a connection backlog of ``backlog`` unless it names one.
    Twisted's default of 50 lets a burst of connects (a building's door controllers after a
    network outage) overflow the kernel's queue, and those clients wait seconds to retry."""
    parts = _split_endpoint(description.strip())
    if _unescape(parts[0]).lower() not in _BACKLOG_KINDS or any(_param(p)[0] == "backlog" for p in parts[1:]):
        return description
    return f"{description.strip()}:backlog={backlog}"


def check_config(config: Config, reactor: Any) -> dict[str, list[tuple[str, Any]]]:
    """Every listen string checked and parsed into an endpoint, before the database is opened.

    Returns ``{"http": [(description, endpoint), …], "sip2": […]}``; raises ConfigError naming
    the file and the key.
    """
    source = config.source
    if not config.http.listen and not config.sip2.listen:
        raise ConfigError(f"{source}: keys 'http.listen' and 'sip2.listen' are both empty; nothing to serve")
    parsed: dict[str, list[tuple[str, Any]]] = {}
    for section in ("http", "sip2"):
        settings = getattr(config, section)
        check_listen(settings.listen, f"{section}.listen", source, allow_plaintext=settings.allow_plaintext)
        parsed[section] = []
        for i, description in enumerate(settings.listen):
            resolved = with_backlog(resolve_endpoint(description, config.base_dir))
            try:
                endpoint = endpoints.serverFromString(reactor, resolved)
            except Exception as exc:  # noqa: BLE001 - any parse or certificate problem: one line
                why = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
                raise ConfigError(
                    f"{source}: key '{section}.listen[{i}]' is not a usable endpoint string ({description}): {why:.200}"
                ) from None
            parsed[section].append((description, endpoint))
    return parsed


# ---------------------------------------------------------------------- HTTP
class Health(resource.Resource):
    """``GET /healthz``: 200 with JSON when the database answers, 503 when it does not.

    The answer never waits longer than ``timeout`` seconds; concurrent requests share one database
    ping, and a new ping starts at most once per ``timeout`` while the database hangs, so a hung
    database cannot use up the thread pool.
    """

    isLeaf = True

    def __init__(self, register: Register, reactor: Any, timeout: float = 5.0) -> None:
        super().__init__()
        self.register = register
        self.reactor = reactor
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

        d = threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self.register.ping)
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
    def getChild(self, path: bytes, request: server.Request) -> resource.Resource:
        return resource.NoResource("Not found")


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


class TrackingSite(server.Site):
    """A Site that counts requests in flight, so shutdown can wait for them, and keeps request
    bodies only up to ``max_body_bytes`` (+1)."""

    def __init__(self, root: resource.Resource, *, max_body_bytes: int = 256 * 1024, **kwargs: Any) -> None:
        super().__init__(root, **kwargs)
        self.in_flight = 0
        self.max_body_bytes = max_body_bytes
        site = self

        class TrackedRequest(server.Request):
            def process(self) -> None:
                site.in_flight += 1

                def finished(_: Any) -> None:
                    site.in_flight -= 1

                self.notifyFinish().addBoth(finished)
                super().process()

        self.requestFactory = TrackedRequest

    def getContentFile(self, length: int | None) -> CappedBody:
        return CappedBody(self.max_body_bytes)


def build_site(register: Register, reactor: Any, *, health_timeout: float = 5.0,
               max_body_bytes: int = 256 * 1024) -> TrackingSite:
    from gateway.ncip import NCIPResource

    root = Root()
    root.putChild(b"healthz", Health(register, reactor, timeout=health_timeout))
    root.putChild(b"ncip", NCIPResource(register, reactor, max_body_bytes=max_body_bytes))
    # twisted.web would parse every POST's Content-Type (with the email package) to fill request.args
    # from forms; /ncip reads its few form posts itself, and so must any page added here that takes
    # a form (request.args holds only the query string).
    site = TrackingSite(root, max_body_bytes=max_body_bytes, parsePOSTFormSubmission=False)
    site.displayTracebacks = False
    return site


def build_service(config: Config, register: Register, reactor: Any,
                  parsed: dict[str, list[tuple[str, Any]]] | None = None) -> MultiService:
    """The daemon's service tree: one listener service per endpoint string."""
    if parsed is None:
        parsed = check_config(config, reactor)
    top = MultiService()
    site = build_site(register, reactor, health_timeout=float(config.database.connect_timeout),
                      max_body_bytes=config.http.max_body_bytes)
    top.site = site  # type: ignore[attr-defined]  # shutdown waits for its requests
    for description, endpoint in parsed["http"]:
        svc = StreamServerEndpointService(endpoint, site)
        svc._raiseSynchronously = True
        svc.setName(f"http {description}")
        svc.setServiceParent(top)
    from gateway.sip2 import SIP2Factory  # here, not at the top: config errors answer without the register

    sip2_factory = SIP2Factory(register, reactor, config.sip2)
    top.sip2 = sip2_factory  # type: ignore[attr-defined]  # shutdown waits for its register calls too
    for description, endpoint in parsed["sip2"]:
        svc = StreamServerEndpointService(endpoint, sip2_factory)
        svc._raiseSynchronously = True
        svc.setName(f"sip2 {description}")
        svc.setServiceParent(top)
    return top


def _in_flight(top: MultiService) -> int:
    site, sip2 = getattr(top, "site", None), getattr(top, "sip2", None)
    return (site.in_flight if site is not None else 0) + (sip2.in_flight if sip2 is not None else 0)


def serve(config: Config) -> None:
    """Run the daemon in the foreground until SIGTERM or SIGINT."""
    from twisted.internet import reactor

    from gateway.cli import Failure, open_configured_register

    parsed = check_config(config, reactor)  # before the database: config errors are exit 2
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)], redirectStandardIO=False)
    register = open_configured_register(config)
    reactor.suggestThreadPoolSize(max(4, config.database.pool_size * 2))
    top = build_service(config, register, reactor, parsed)
    failed: list[str] = []

    def start() -> None:
        try:
            top.startService()
        except Exception as exc:  # noqa: BLE001 - one line, then stop
            failed.append(str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__)
            log.error("cannot listen: {why}", why=failed[0])
            reactor.stop()
            return
        log.info("NLR gateway serving HTTP on {http} and SIP2 on {sip2}", http=config.http.listen, sip2=config.sip2.listen)

    def watchdog() -> None:
        # Work stuck in a thread (a database that stopped answering) must not keep the process
        # alive past the 10 seconds the contract allows.
        sys.stdout.write("shutdown: in-flight work did not finish in time; exiting anyway\n")
        sys.stdout.flush()
        os._exit(0)

    @defer.inlineCallbacks
    def stop() -> Any:
        if failed:
            return
        timer = threading.Timer(SHUTDOWN_DEADLINE_SECONDS, watchdog)
        timer.daemon = True
        timer.start()
        log.info("shutting down: no new connections, finishing what is in flight")
        yield top.stopService()
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
        while _in_flight(top) and time.monotonic() < deadline:
            yield task.deferLater(reactor, 0.05, lambda: None)
        if _in_flight(top):
            log.warn("shutdown: {n} requests still in flight after {s} s; closing them", n=_in_flight(top),
                     s=SHUTDOWN_GRACE_SECONDS)
        register.engine.dispose()

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", stop)
    reactor.run()
    if failed:
        raise Failure(f"cannot listen: {failed[0]}")
