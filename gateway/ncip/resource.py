"""``POST /ncip``: the twisted.web adapter in front of the `Responder` (ncip.md A.1).

The body (or, for old clients, the form field ``xml``) is capped, handed to the thread pool with the
Bearer token, and the answer written back: always ``200 application/xml; charset=utf-8``, a Problem
included. The reactor thread never waits; no stack trace ever reaches a client.
"""

from __future__ import annotations

import email.parser
import email.policy
import urllib.parse
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server

from gateway.blocking import RegisterCalls
from gateway.ncip.responder import Answer, Responder
from gateway.register import Register
from protocols import ncip
from protocols.ncip import schemes as s

log = Logger(namespace="nlr.ncip")

CONTENT_TYPE = b"application/xml; charset=utf-8"
_BOM = b"\xef\xbb\xbf"


def _bearer(request: server.Request) -> str | None:
    value = (request.getHeader(b"authorization") or b"").strip()
    scheme, _, token = value.partition(b" ")
    if scheme.lower() != b"bearer" or not token.strip():
        return None
    return token.strip().decode("latin-1")


def _form_field(body: bytes, content_type: bytes, name: bytes) -> bytes | None:
    """The first value of field ``name`` in a form body (urlencoded or multipart/form-data), as old
    NCIP 1 clients send the XML. The site does not parse forms itself (``parsePOSTFormSubmission``
    off): working out every request's Content-Type with the email package cost more than answering
    it, and only these few clients need it."""
    media_type = content_type.split(b";", 1)[0].strip().lower()
    if media_type == b"application/x-www-form-urlencoded":
        values = urllib.parse.parse_qs(body, keep_blank_values=True).get(name)
        return values[0] if values else None
    if media_type == b"multipart/form-data":
        form = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"MIME-Version: 1.0\r\nContent-Type: " + content_type + b"\r\n\r\n" + body)
        if form.is_multipart():
            for part in form.iter_parts():
                if part.get_param("name", header="content-disposition") == name.decode():
                    payload = part.get_payload(decode=True)  # bytes for a leaf part
                    return payload if isinstance(payload, bytes) else None
    return None


def _may_hash(message: bytes) -> bool:
    """Whether a message may carry a PIN or password, whose hash takes tens of milliseconds: such a
    message is answered in a thread job of its own, never in a batch with quick lookups. A false
    "yes" costs only the batching."""
    lowered = message.lower()
    return b"pin" in lowered or b"password" in lowered


def _where(failure: Failure) -> str:
    """The frames of a failure, without its message or locals (either might hold a secret)."""
    frames = reversed(failure.frames)
    return " < ".join(f"{name} ({file.rpartition('/')[2]}:{line})" for name, file, line, *_ in frames)


class NCIPResource(resource.Resource):
    isLeaf = True

    def __init__(self, register: Register, reactor: Any, *, max_body_bytes: int = ncip.MAX_SIZE,
                 calls: RegisterCalls | None = None, register_timeout: float = 8.0) -> None:
        """``calls`` is the daemon's pool of register calls (shared with the SIP2 listeners and
        ``/healthz``); without one the resource gets its own, whose calls time out after
        ``register_timeout`` seconds."""
        super().__init__()
        self.reactor = reactor
        self.max_body_bytes = max_body_bytes
        self.responder = Responder(register, max_body_bytes=max_body_bytes)
        self.calls = RegisterCalls(reactor, timeout=register_timeout) if calls is None else calls

    def render(self, request: server.Request) -> Any:
        return self.render_POST(request) if request.method == b"POST" else self.not_allowed(request)

    def not_allowed(self, request: server.Request) -> bytes:
        """Any method but POST (GET, HEAD, PUT, …): 405 with ``Allow: POST``."""
        request.setResponseCode(405)
        request.setHeader(b"allow", b"POST")
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"NCIP: POST an NCIPMessage to this address\n"

    def render_POST(self, request: server.Request) -> Any:
        message = self._message(request)
        if message is None:
            problem = ncip.MessageTooLarge(self.max_body_bytes).problem
            return self._send(Answer(ncip.message_problem(problem), problem=problem.type.value), request)
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        d = self.calls.call_alone(self.responder.answer, message, _bearer(request)) if _may_hash(message) \
            else self.calls.call_many(self.responder.answer_many, (message, _bearer(request)))
        d.addErrback(self._crashed)
        d.addCallback(self._write, request, gone)
        d.addErrback(self._not_written)
        return server.NOT_DONE_YET

    def _not_written(self, failure: Failure) -> None:
        log.error("NCIP answer not written: {kind}", kind=type(failure.value).__name__)

    def _write(self, answer: Answer, request: server.Request, gone: list[bool]) -> None:
        if not gone:  # the client may have hung up meanwhile
            request.write(self._send(answer, request))
            request.finish()

    def _message(self, request: server.Request) -> bytes | None:
        """The XML: the body, or the form field ``xml``; None when larger than the cap."""
        declared = request.getHeader(b"content-length")
        if declared and declared.strip().isdigit() and int(declared) > self.max_body_bytes:
            return None
        if request.content is None:  # twisted.web gives every request a body, if only an empty one
            return b""
        request.content.seek(0)
        body = request.content.read(self.max_body_bytes + 1)
        if len(body) > self.max_body_bytes:
            return None
        if not body.lstrip().removeprefix(_BOM).lstrip().startswith(b"<"):
            field = _form_field(body, request.getHeader(b"content-type") or b"", b"xml")
            if field is not None:
                return field
        return body

    def _send(self, answer: Answer, request: server.Request) -> bytes:
        if answer.problem:
            log.info("NCIP {service} from {client}: {problem}", service=answer.service or "message",
                     client=answer.client or "unauthenticated", problem=answer.problem)
        request.setResponseCode(200)
        request.setHeader(b"content-type", CONTENT_TYPE)
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"content-length", b"%d" % len(answer.body))  # not chunked: old clients
        return answer.body

    def _crashed(self, failure: Failure) -> Answer:
        if failure.check(defer.TimeoutError):
            log.warn("NCIP request not answered: the register did not answer within {s} s", s=self.calls.timeout)
        else:
            log.error("NCIP request failed: {kind} in {where}", kind=type(failure.value).__name__,
                      where=_where(failure))
        problem = s.Problem(s.TEMPORARY_PROCESSING_FAILURE, detail="The request could not be processed; try again")
        return Answer(ncip.message_problem(problem), problem=problem.type.value)
