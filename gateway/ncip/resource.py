"""``POST /ncip``: the twisted.web adapter in front of the `Responder` (ncip.md A.1).

The body (or, for old clients, the form field ``xml``) is capped, handed to the thread pool with the
Bearer token, and the answer written back: always ``200 application/xml; charset=utf-8``, a Problem
included. The reactor thread never waits; no stack trace ever reaches a client.
"""

from __future__ import annotations

import binascii
import logging
import re
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server

from gateway import logs, metrics
from gateway.blocking import RegisterCalls
from gateway.hot_path import HotPath
from gateway.ncip.responder import Answer, Recall, Responder
from gateway.quiet import Quiet
from gateway.register import Register
from gateway.register.errors import RegisterUnavailable
from protocols import ncip
from protocols.ncip import schemes as s

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

log = Logger(namespace="nlr.ncip")

CONTENT_TYPE = b"application/xml; charset=utf-8"
# Problems that say the gateway or the register failed, not the request: the outcome ``error``.
_ERRORS = frozenset({s.TEMPORARY_PROCESSING_FAILURE.value, s.REGISTER_UNAVAILABLE.value})
_BOM = b"\xef\xbb\xbf"


def _bearer(request: server.Request) -> str | None:
    value = (request.getHeader(b"authorization") or b"").strip()
    scheme, _, token = value.partition(b" ")
    if scheme.lower() != b"bearer" or not token.strip():
        return None
    return token.strip().decode("latin-1")


FORM_CPU_SECONDS = 0.01


class _Tally:
    """Counts an event and logs it at most once per ``every`` seconds, with the count since the last
    line (as the site's refusal lines): a client looping hostile requests costs a line per 10 s."""

    def __init__(self, what: str, every: float = 10.0) -> None:
        self.what, self.every = what, every
        self.quiet = Quiet(time.monotonic, every)

    def note(self, last: str = "") -> None:
        allowed, held = self.quiet.allow()
        if allowed:
            log.warn("NCIP: {n} {what} in the last {s:.0f} s{last}", n=held + 1, what=self.what, s=self.every,
                     last=f" (last: {last})" if last else "")


_over_budget = _Tally(f"form(s) not parsed, over their CPU budget of {FORM_CPU_SECONDS} s")
_anonymous = _Tally("message(s) refused before a client credential was accepted")


class _FormDone(Exception):
    """The field was found, or the form is refused: stop parsing."""


# The form cap: a real NCIP 1 client sends one field (``xml``), at most a few besides. Together with
# the body cap these bound the parser's work to about a millisecond of CPU on the reactor thread
# (tests/test_http_hardening.py measures it); the CPU-time check is the multipart parser's backstop.
# The urlencoded decoder needs none: it runs at C speed (a few ms at most for 256 KB of escapes).
MAX_FORM_PARTS = 16
MAX_FORM_FIELDS = 64
_FORM_SLICE = 4096
# A value with a malformed escape ("%" not followed by two hex digits) is decoded by urllib, in
# Python, at about 0.4 µs an escape: only when it holds at most this many (2 ms at most).
_SLOW_ESCAPES = 4096
_LONE_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
# python-multipart logs every malformed body as a warning through the stdlib logging; a hostile body
# is a client's mistake, answered with a Problem, not one stderr line per request.
_QUIET = logging.getLogger("nlr.ncip.forms")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def _multipart_field(body: bytes, boundary: bytes, name: bytes) -> bytes | None:
    """The first value of field ``name`` in a multipart/form-data body, or None (no such field, a
    malformed body, more than `MAX_FORM_PARTS` parts before it, or over the CPU budget).

    python-multipart is a streaming state machine: it never recurses, so a part that is itself
    multipart (nested 5,000 deep) is only data here, and its cost grows with the bytes, not the depth.
    """
    found: list[bytes] = []
    parts = 0
    header_field, header_value = bytearray(), bytearray()
    headers: dict[bytes, bytes] = {}
    data: bytearray | None = None

    def part_begin() -> None:
        nonlocal parts, data
        parts += 1
        if parts > MAX_FORM_PARTS:
            raise _FormDone
        headers.clear()
        data = None

    def header_end() -> None:
        headers.setdefault(bytes(header_field).strip().lower(), bytes(header_value).strip())
        header_field.clear()
        header_value.clear()

    def headers_finished() -> None:
        nonlocal data
        disposition, params = parse_options_header(headers.get(b"content-disposition", b""))
        if disposition == b"form-data" and params.get(b"name") == name:
            data = bytearray()

    def part_data(chunk: bytes, start: int, end: int) -> None:
        if data is not None:
            data.extend(chunk[start:end])

    def part_end() -> None:
        if data is None:
            return
        encoding = headers.get(b"content-transfer-encoding", b"").lower()
        try:
            if encoding == b"base64":
                found.append(binascii.a2b_base64(bytes(data)))
            elif encoding == b"quoted-printable":
                found.append(binascii.a2b_qp(bytes(data)))
            else:
                found.append(bytes(data))
        except (binascii.Error, ValueError):
            pass
        raise _FormDone

    callbacks: MultipartCallbacks = {
        "on_part_begin": part_begin, "on_part_data": part_data, "on_part_end": part_end,
        "on_header_field": lambda chunk, start, end: header_field.extend(chunk[start:end]),
        "on_header_value": lambda chunk, start, end: header_value.extend(chunk[start:end]),
        "on_header_end": header_end, "on_headers_finished": headers_finished,
    }
    started = time.thread_time()
    try:
        parser = MultipartParser(boundary, callbacks, max_size=len(body))
        parser.logger = _QUIET
        view = memoryview(body)
        for at in range(0, len(body), _FORM_SLICE):
            parser.write(bytes(view[at:at + _FORM_SLICE]))
            if time.thread_time() - started > FORM_CPU_SECONDS:
                _over_budget.note()
                return None
        parser.finalize()
    except _FormDone:
        pass
    except (FormParserError, ValueError):  # MultipartParseError is a FormParserError
        return None
    return found[0] if found else None


def _unquote_plus(raw: bytes) -> bytes | None:
    """``urllib.parse.unquote_to_bytes`` of ``raw`` with ``+`` as space, byte for byte, but at C speed:
    once every ``=`` is itself escaped, the %XX escapes are quoted-printable's =XX, which binascii
    decodes. None: malformed escapes, more than `_SLOW_ESCAPES` of them (urllib would take too long)."""
    raw = raw.replace(b"+", b" ")
    if b"%" not in raw:
        return raw
    if _LONE_PERCENT.search(raw) is None:
        return binascii.a2b_qp(raw.replace(b"=", b"=3D").replace(b"%", b"="))
    if raw.count(b"%") > _SLOW_ESCAPES:
        return None
    return urllib.parse.unquote_to_bytes(raw)


def _urlencoded_field(body: bytes, name: bytes) -> bytes | None:
    """The first value of field ``name`` in an application/x-www-form-urlencoded body (urllib's
    ``parse_qsl`` rules, ``&`` between fields, a field without ``=`` has the empty value), or None:
    no such field, more than `MAX_FORM_FIELDS` fields, or a value that cannot be decoded in time.
    Only what is needed is decoded: the names up to the field, and its value."""
    if body.count(b"&") >= MAX_FORM_FIELDS:
        return None
    for field in body.split(b"&"):
        if not field:
            continue
        key, _, value = field.partition(b"=")
        if _unquote_plus(key) == name:
            return _unquote_plus(value)
    return None


def _form_field(body: bytes, content_type: bytes, name: bytes) -> bytes | None:
    """The first value of field ``name`` in a form body (urlencoded or multipart/form-data), as old
    NCIP 1 clients send the XML; None when there is none or the form cannot be read (the caller then
    answers the body itself, which is no NCIP message: a syntax Problem). The site does not parse
    forms itself (``parsePOSTFormSubmission`` off): twisted.web would do it with the email package,
    which recurses into nested parts and costs seconds on a hostile body; only these few clients need
    it, and they get the bounded parsers here."""
    media_type, params = parse_options_header(content_type)
    if media_type == b"application/x-www-form-urlencoded":
        return _urlencoded_field(body, name)
    if media_type == b"multipart/form-data":
        boundary = params.get(b"boundary")
        return _multipart_field(body, boundary, name) if boundary else None
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
    # A body the site refused before it arrived (over the cap) is answered here with the NCIP Problem
    # "larger than N bytes" (HTTP 200, as every NCIP answer), not with the site's 413.
    answers_too_large = True

    def __init__(self, register: Register, reactor: Any, *, max_body_bytes: int = ncip.MAX_SIZE,
                 calls: RegisterCalls | None = None, register_timeout: float = 8.0, hot: HotPath | None = None) -> None:
        """``calls`` is the daemon's pool of register calls (shared with the SIP2 listeners and
        ``/healthz``); without one the resource gets its own, whose calls time out after
        ``register_timeout`` seconds."""
        super().__init__()
        self.reactor = reactor
        self.max_body_bytes = max_body_bytes
        self.responder = Responder(register, max_body_bytes=max_body_bytes)
        self.calls = RegisterCalls(reactor, timeout=register_timeout) if calls is None else calls
        self.hot = hot  # lookups by card from memory, audited behind (gateway.hot_path)
        self.metrics = metrics.get()

    def render(self, request: server.Request) -> Any:
        return self.render_POST(request) if request.method == b"POST" else self.not_allowed(request)

    def not_allowed(self, request: server.Request) -> bytes:
        """Any method but POST (GET, HEAD, PUT, …): 405 with ``Allow: POST``."""
        request.setResponseCode(405)
        request.setHeader(b"allow", b"POST")
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"NCIP: POST an NCIPMessage to this address\n"

    def render_POST(self, request: server.Request) -> Any:
        # The request's id (its audit rows and its log line carry it) and when it began.
        rid = request.nlr_request_id = logs.new_request_id()  # type: ignore[attr-defined]
        request.nlr_began = time.perf_counter()  # type: ignore[attr-defined]
        message = self._message(request)
        if message is None:
            problem = ncip.MessageTooLarge(self.max_body_bytes).problem
            return self._send(Answer(ncip.message_problem(problem), problem=problem.type.value), request)
        hashing = _may_hash(message)
        hot = self.hot
        if hot is not None and not hashing and hot.fresh and hot.serving:  # from memory (gateway.hot_path)
            answered = self.responder.answer_from_memory(message, _bearer(request), rid, hot.memory, hot.queue)
            if isinstance(answered, Answer):
                hot.hits += 1
                return self._send(answered, request)
            if isinstance(answered, Recall):  # read what it lacks, then answer from memory or the pool
                gone: list[bool] = []
                request.notifyFinish().addErrback(lambda _: gone.append(True))
                recalled: Deferred[Answer] = hot.recall(token=answered.token, card=answered.card).addCallback(
                    lambda _: self._after_recall(message, request, rid))
                recalled.addErrback(self._crashed)
                recalled.addCallback(self._write, request, gone)
                recalled.addErrback(self._not_written)
                return server.NOT_DONE_YET
        gone = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        d: Deferred[Answer] = self.calls.call_alone(self.responder.answer, message, _bearer(request), rid) if hashing \
            else self.calls.call_many(self.responder.answer_many, (message, _bearer(request), rid))
        d.addErrback(self._crashed)
        d.addCallback(self._write, request, gone)
        d.addErrback(self._not_written)
        return server.NOT_DONE_YET

    def _after_recall(self, message: bytes, request: server.Request, rid: str) -> Answer | Deferred[Answer]:
        """Memory filled: answered from it now, or (still lacking, or no longer fresh) by the pool."""
        hot = self.hot
        if hot is not None and hot.fresh and hot.serving:
            answered = self.responder.answer_from_memory(message, _bearer(request), rid, hot.memory, hot.queue)
            if isinstance(answered, Answer):
                return answered
        return self.calls.call_many(self.responder.answer_many, (message, _bearer(request), rid))

    def _not_written(self, failure: Failure) -> None:
        log.error("NCIP answer not written: {kind}", kind=type(failure.value).__name__)

    def _write(self, answer: Answer, request: server.Request, gone: list[bool]) -> None:
        if not gone:  # the client may have hung up meanwhile
            request.write(self._send(answer, request))
            request.finish()
        else:
            self._account(answer, request)

    def _message(self, request: server.Request) -> bytes | None:
        """The XML: the body, or the form field ``xml``; None when larger than the cap."""
        if getattr(request, "body_too_large", False):  # refused by the site's channel (gateway.web.site)
            return None
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

    def _account(self, answer: Answer, request: server.Request) -> None:
        """The request's metrics, and its line (`gateway.logs.request`) when a client credential was
        accepted; refused before that, it is counted, not a line each (nor an access line each)."""
        outcome = "ok" if answer.problem is None else "error" if answer.problem in _ERRORS else "refused"
        elapsed = time.perf_counter() - getattr(request, "nlr_began", time.perf_counter())
        service = metrics.service_label(answer.service)
        self.metrics.ncip_requests(service, outcome).inc()
        self.metrics.ncip_duration(service).observe(elapsed)
        if answer.problem and answer.client is None:
            request.nlr_anonymous = True  # type: ignore[attr-defined]
            _anonymous.note(answer.problem)
        elif logs.wants(outcome):
            logs.request("ncip", outcome, elapsed, getattr(request, "nlr_request_id", None), service=service,
                         client=answer.client, library=answer.library, reason=answer.problem)

    def _send(self, answer: Answer, request: server.Request) -> bytes:
        self._account(answer, request)
        request.setResponseCode(200)
        request.setHeader(b"content-type", CONTENT_TYPE)
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"content-length", b"%d" % len(answer.body))  # not chunked: old clients
        return answer.body

    def _crashed(self, failure: Failure) -> Answer:
        if failure.check(RegisterUnavailable):
            pass  # the gateway is offline: the pool of register calls logs that once, not per request
        elif failure.check(defer.TimeoutError):
            log.warn("NCIP request not answered: the register did not answer within {s} s", s=self.calls.timeout)
        else:
            log.error("NCIP request failed: {kind} in {where}", kind=type(failure.value).__name__,
                      where=_where(failure))
        problem = s.Problem(s.TEMPORARY_PROCESSING_FAILURE, detail="The request could not be processed; try again")
        return Answer(ncip.message_problem(problem), problem=problem.type.value)
