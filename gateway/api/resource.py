"""``/api/``: the library systems' JSON API, as a twisted.web resource (issue 12, item 1).

``GET /api/v1/changes``: the query string is read on the reactor thread (`changes.parse_query`), the
bearer token and the query go to the daemon's pool of register calls as one call
(`changes.answer`), and its bytes are written back. ``GET /api/v1/openapi.json``: the OpenAPI 3.1
document beside this module, as it is. Every answer is JSON (``{"error": "…"}`` when refused), with
``Cache-Control: no-store`` and ``X-Content-Type-Options: nosniff``; no stack trace reaches a client.

Order of the checks: no bearer token at all is 401 and a query refused by `parse_query` is 400, both
without asking the register; then the register authenticates the token (401) and decides (403, 400).
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server

from gateway import logs
from gateway.api import changes
from gateway.blocking import RegisterCalls
from gateway.register import Register
from gateway.register.errors import RegisterUnavailable

log = Logger(namespace="nlr.api")

CONTENT_TYPE = b"application/json; charset=utf-8"
RETRY_AFTER = b"2"  # seconds: an offline register is probed twice a second (gateway.blocking)
_ROUTES: dict[tuple[bytes, ...], str] = {(b"v1", b"changes"): "changes", (b"v1", b"openapi.json"): "openapi.json"}


def openapi_document() -> bytes:
    """The OpenAPI 3.1 document of this API, as shipped with the package."""
    return resources.files("gateway.api").joinpath("openapi.json").read_bytes()


def bearer(request: server.Request) -> str | None:
    """The token of ``Authorization: Bearer <token>``, or None."""
    value = (request.getHeader(b"authorization") or b"").strip()
    scheme, _, token = value.partition(b" ")
    if scheme.lower() != b"bearer" or not token.strip():
        return None
    return token.strip().decode("latin-1")


def _where(failure: Failure) -> str:
    """The frames of a failure, without its message or locals (either might hold a secret)."""
    return " < ".join(f"{name} ({file.rpartition('/')[2]}:{line})" for name, file, line, *_ in reversed(failure.frames))


class ApiResource(resource.Resource):
    isLeaf = True

    def __init__(self, register: Register, reactor: Any, calls: RegisterCalls) -> None:
        super().__init__()
        self.register = register
        self.reactor = reactor
        self.calls = calls
        self.document = openapi_document()

    def render(self, request: server.Request) -> Any:
        request.nlr_request_id = logs.new_request_id()  # type: ignore[attr-defined]
        request.nlr_began = time.perf_counter()  # type: ignore[attr-defined]
        route = _ROUTES.get(tuple(request.postpath or ()))
        if route is None:
            return self._send(request, changes.Answer(404, changes.error_body("no such API address")))
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"allow", b"GET, HEAD")
            return self._send(request, changes.Answer(405, changes.error_body("only GET is answered here")))
        if route == "openapi.json":
            return self._send(request, changes.Answer(200, self.document), service=route)
        return self._changes(request)

    def _changes(self, request: server.Request) -> Any:
        token = bearer(request)
        if token is None:
            return self._send(request, changes.Answer(401, changes.error_body(changes.UNAUTHENTICATED)))
        try:
            query = changes.parse_query(request.uri.partition(b"?")[2])
        except changes.BadQuery as exc:
            return self._send(request, changes.Answer(400, changes.error_body(str(exc))))
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        d = self.calls.call(changes.answer, self.register, token, query, request.nlr_request_id)  # type: ignore[attr-defined]
        d.addErrback(self._failed)
        d.addCallback(self._write, request, gone)
        d.addErrback(lambda f: log.error("API answer not written: {kind}", kind=type(f.value).__name__))
        return server.NOT_DONE_YET

    def _failed(self, failure: Failure) -> changes.Answer:
        if failure.check(RegisterUnavailable):
            pass  # the pool of register calls logs an offline register once, not per request
        elif failure.check(defer.TimeoutError):
            log.warn("API request not answered: the register did not answer within {s} s", s=self.calls.timeout)
        else:
            log.error("API request failed: {kind} in {where}", kind=type(failure.value).__name__,
                      where=_where(failure))
            return changes.Answer(500, changes.error_body("the request could not be answered"))
        return changes.Answer(503, changes.error_body("the register does not answer; try again shortly"))

    def _write(self, answer: changes.Answer, request: server.Request, gone: list[bool]) -> None:
        if gone:  # the client hung up meanwhile
            self._account(request, answer, "changes")
            return
        body = self._send(request, answer)
        request.setHeader(b"content-length", b"%d" % len(body))  # not chunked: the whole answer is here
        request.write(body)
        request.finish()

    def _send(self, request: server.Request, answer: changes.Answer, service: str = "changes") -> bytes:
        self._account(request, answer, service)
        request.setResponseCode(answer.status)
        request.setHeader(b"content-type", CONTENT_TYPE)
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-content-type-options", b"nosniff")
        if answer.status == 401:
            invalid = answer.body != changes.error_body(changes.UNAUTHENTICATED)
            request.setHeader(b"www-authenticate", b'Bearer error="invalid_token"' if invalid else b"Bearer")
        elif answer.status == 503:
            request.setHeader(b"retry-after", RETRY_AFTER)
        return answer.body

    def _account(self, request: server.Request, answer: changes.Answer, service: str) -> None:
        """The request's line (`gateway.logs.request`) once a client credential was accepted, or for the
        document; refused before that, the site counts it instead (one line per 10 s)."""
        outcome = "ok" if answer.status < 400 else "error" if answer.status >= 500 else "refused"
        if answer.client is None and service == "changes":
            request.nlr_anonymous = True  # type: ignore[attr-defined]
            if outcome != "error":
                return
        if logs.wants(outcome):
            elapsed = time.perf_counter() - getattr(request, "nlr_began", time.perf_counter())
            logs.request("api", outcome, elapsed, getattr(request, "nlr_request_id", None), service=service,
                         client=answer.client, library=answer.library, reason=answer.reason,
                         status=str(answer.status))
