"""`nlr serve`: the Twisted daemon as a service tree.

One MultiService holds a listener service per configured endpoint string. The HTTP listeners serve
``GET /healthz`` (NCIP at ``/ncip`` and the patron page plug into the same site). Blocking register
work runs in the reactor's thread pool; the reactor thread never waits on the database.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet import defer, endpoints, threads
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.web import resource, server

from gateway.config import Config, ConfigError
from gateway.register import Register

log = Logger(namespace="nlr")

_LOOPBACK = ("127.", "::1", "localhost")


def check_listen(descriptions: list[str], key: str, source: str = "config") -> None:
    """Refuse plaintext TCP listeners that are reachable from other machines (PRODUCT §2.12)."""
    for description in descriptions:
        kind, _, rest = description.partition(":")
        if kind != "tcp":
            continue
        params = dict(p.split("=", 1) for p in rest.split(":") if "=" in p)
        interface = params.get("interface", "")
        if not interface.startswith(_LOOPBACK):
            raise ConfigError(
                f"{source}: key '{key}' listens in plain text on {interface or 'every interface'} "
                f"({description}); use an ssl: endpoint, or bind to 127.0.0.1"
            )


class Health(resource.Resource):
    """``GET /healthz``: 200 with JSON when the database answers, 503 when it does not."""

    isLeaf = True

    def __init__(self, register: Register, reactor: Any) -> None:
        super().__init__()
        self.register = register
        self.reactor = reactor

    def render_GET(self, request: server.Request) -> Any:
        def answer(ok: bool) -> None:
            request.setResponseCode(200 if ok else 503)
            request.setHeader(b"content-type", b"application/json")
            request.setHeader(b"cache-control", b"no-store")
            body = {"status": "ok" if ok else "unavailable", "database": "ok" if ok else "unreachable"}
            request.write(json.dumps(body).encode())
            request.finish()

        d = threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self.register.ping)
        d.addCallbacks(lambda _: True, lambda failure: (log.warn("health check: database does not answer ({why})",
                                                                  why=failure.type.__name__), False)[1])
        d.addCallback(answer)
        d.addErrback(lambda f: log.failure("health answer failed", f))
        return server.NOT_DONE_YET


class Root(resource.Resource):
    def getChild(self, path: bytes, request: server.Request) -> resource.Resource:
        return resource.NoResource("Not found")


def build_site(register: Register, reactor: Any) -> server.Site:
    root = Root()
    root.putChild(b"healthz", Health(register, reactor))
    site = server.Site(root)
    site.displayTracebacks = False
    return site


def build_service(config: Config, register: Register, reactor: Any) -> MultiService:
    """The daemon's service tree: one listener service per endpoint string."""
    check_listen(config.http.listen, "http.listen")
    check_listen(config.sip2.listen, "sip2.listen")
    top = MultiService()
    site = build_site(register, reactor)
    for description in config.http.listen:
        try:
            endpoint = endpoints.serverFromString(reactor, description)
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"http.listen: {description!r} is not a valid endpoint string ({exc})") from None
        svc = StreamServerEndpointService(endpoint, site)
        svc._raiseSynchronously = True
        svc.setName(f"http {description}")
        svc.setServiceParent(top)
    return top


def serve(config: Config) -> None:
    """Run the daemon in the foreground until SIGTERM or SIGINT."""
    from twisted.internet import reactor

    from gateway.cli import open_configured_register

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)], redirectStandardIO=False)
    register = open_configured_register(config)
    reactor.suggestThreadPoolSize(max(4, config.database.pool_size * 2))
    top = build_service(config, register, reactor)
    failed: list[str] = []

    def start() -> None:
        try:
            top.startService()
        except Exception as exc:  # noqa: BLE001 - one line, then stop
            failed.append(str(exc))
            log.error("cannot listen: {why}", why=str(exc))
            reactor.stop()
            return
        log.info("NLR gateway serving HTTP on {http} and SIP2 on {sip2}", http=config.http.listen, sip2=config.sip2.listen)

    @defer.inlineCallbacks
    def stop() -> Any:
        log.info("shutting down: no new connections, finishing what is in flight")
        yield top.stopService()
        register.engine.dispose()

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", stop)
    reactor.run()
    if failed:
        from gateway.cli import Failure

        raise Failure(f"cannot listen: {failed[0]}")
