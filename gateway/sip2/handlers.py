"""What each SIP2 request does (sip2.md A.3): one table from command code to handler, beside the
codec's ``LAYOUTS`` (after Koha's ``%handlers`` and invenio-sip2's message table).

A handler gets the connection and the parsed request, asks the register (through the factory's
pool of register calls, never blocking the reactor) and returns the encoded answer, a Deferred of
it, or ``None`` for no answer. The connection owns the session (phase, login, queue); a handler
only reads it and reports a login through ``logged_in`` / ``login_failed``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway.register.errors import RegisterError
from gateway.register.views import (
    Actor,
    Decision,
    DecisionRequest,
    Reason,
    SelfActivation,
    TerminalLogin,
    TerminalView,
)
from gateway.register.vocabulary import Profile
from gateway.sip2 import answers
from protocols.sip2 import Message

if TYPE_CHECKING:
    from gateway.sip2.protocol import SIP2Protocol

log = Logger(namespace="nlr.sip2")
T = TypeVar("T")
Answer = bytes | None
Handler = Callable[["SIP2Protocol", Message], "Answer | Deferred[Answer]"]

#: What may come before a successful login (A.1); anything else closes the connection.
BEFORE_LOGIN = frozenset({"93", "99"})


def _session(conn: SIP2Protocol) -> tuple[TerminalView, Actor]:
    """The terminal logged in, and its actor asking in this request (its audit rows carry the id)."""
    terminal = conn.terminal
    assert terminal is not None, "the login gate lets only 93 and 99 through"
    return terminal, conn.asking()


# ---------------------------------------------------------------------- the handlers
def patron(conn: SIP2Protocol, request: Message) -> Answer | Deferred[Answer]:
    """23 → 24 and 63 → 64: the register's decision for this terminal's library (A.4)."""
    terminal, actor = _session(conn)
    # "a door needs a PIN" is the decision table's rule (gateway.register.decisions), not ours
    question = DecisionRequest(actor, request.get("AA") or "", request.get("AD"), door=terminal.profile == Profile.DOOR,
                               pin_required=terminal.pin_required, institution=request.get("AO") or None)
    decided = conn.factory.decide(question)
    if isinstance(decided, Decision):  # from memory (gateway.hot_path): answered in this reactor turn
        _noted(conn, request, decided)
        return conn.respond_decision(request, decided,
                                     lambda when: answers.patron_answer(request, terminal, decided, when))
    return _decision(conn, decided, request, lambda dec: answers.patron_answer(request, terminal, dec, answers.now()))


def enable(conn: SIP2Protocol, request: Message) -> Answer | Deferred[Answer]:
    """25 → 26: self-activation at the terminal's library, if the library allows it."""
    terminal, actor = _session(conn)
    register = conn.factory.register
    d = conn.factory.call(register.self_activate, actor, request.get("AA") or "", request.get("AD"), slow=True)
    return _decision(conn, d, request,
                     lambda res: answers.enable_answer(request, terminal, res.decision, res.library_allows,
                                                       answers.now()),
                     lambda: SelfActivation(answers.unavailable(), True))


def block(conn: SIP2Protocol, request: Message) -> Answer | Deferred[Answer]:
    """01 → 24: block the card (retained or tampered with), audited."""
    terminal, actor = _session(conn)
    d = conn.factory.call(conn.factory.register.block_card, actor, request.get("AA") or "", request.get("AL"),
                          institution=request.get("AO") or None)
    return _decision(conn, d, request, lambda dec: answers.block_answer(request, terminal, dec, answers.now()))


def status(conn: SIP2Protocol, request: Message) -> Answer | Deferred[Answer]:
    """99 → 98. Before login: the last known database state, for no library; after: asks the database."""
    terminal = conn.terminal
    if terminal is None:
        conn.note("ok" if conn.factory.online else "error")
        return conn.respond(request, answers.status_answer(conn.factory.online, "", answers.now()))

    def answer(online: bool) -> Answer:
        conn.factory.set_online(online)
        conn.note("ok" if online else "error", None if online else str(Reason.REGISTER_UNAVAILABLE))
        return conn.respond(request, answers.status_answer(online, terminal.library_isil, answers.now()))

    ping = conn.factory.call(conn.factory.register.ping)
    return ping.addCallbacks(lambda _: True, lambda f: register_failed(conn, f, False)).addCallback(answer)


def login(conn: SIP2Protocol, request: Message) -> Answer | Deferred[Answer]:
    """93 → 94 (A.1): plain-text algorithms only; throttled per source address."""
    factory = conn.factory
    if factory.throttle.blocked(conn.source):
        factory.log_quietly("throttled", "SIP2 login from {peer} refused: too many failed logins from this address",
                            peer=conn.peer)
        conn.note("refused", "throttled")
        return conn.login_failed(request, counted=False)  # refusals never extend the block
    if request.fixed.get("uid_algorithm", "0") not in "0 " or request.fixed.get("pwd_algorithm", "0") not in "0 ":
        # Refused unread: the register never judged the password, so no strike for the source
        # address (a misconfigured device must not lock its neighbours out); one for the connection.
        conn.note("refused", "encrypted")
        return conn.login_failed(request, "encrypted login algorithms are not supported", counted=False,
                                 kind="encrypted login")
    d = factory.call(factory.register.terminal_login, request.get("CN") or "", request.get("CO") or "",
                     source=conn.host, encrypted=conn.encrypted, request_id=conn.rid, slow=True)

    def done(result: TerminalLogin) -> Answer:
        terminal, outcome = result.terminal, result.outcome
        factory.set_online(True)
        if terminal is None:
            conn.note("refused", outcome)
            return conn.login_failed(request, outcome)
        conn.note("ok")
        conn.logged_in(terminal)
        return conn.respond(request, answers.login_answer(True))

    def failed(failure: Failure) -> Answer:
        register_failed(conn, failure, None)
        return conn.respond(request, answers.login_answer(False))  # not the terminal's fault: no strike

    return d.addCallbacks(done, failed)


def end_session(conn: SIP2Protocol, request: Message) -> Answer:
    """35 → 36Y."""
    terminal, _ = _session(conn)
    return conn.respond(request, answers.end_session_answer(request, terminal, answers.now()))


def circulation(conn: SIP2Protocol, request: Message) -> Answer:
    """Loans, returns, holds, fees: a protocol-valid refusal; nothing stored or logged (A.3)."""
    conn.note("refused", "not_supported")
    return conn.respond(request, answers.circulation_refusal(request, answers.now()))


#: Command code → handler. A code that is not here is logged and not answered.
HANDLERS: dict[str, Handler] = {
    "93": login,
    "99": status,
    "23": patron,
    "63": patron,
    "25": enable,
    "01": block,
    "35": end_session,
    **{code: circulation for code in sorted(answers.CIRCULATION)},
}


# ---------------------------------------------------------------------- register results
def _decision(conn: SIP2Protocol, d: T | Deferred[T], request: Message, answer: Callable[[T], Message],
              fallback: Callable[[], T] | None = None) -> Answer | Deferred[Answer]:
    """The answer to a register decision: at once when it was decided from memory (gateway.hot_path);
    a failed call is answered as "register unavailable"."""
    def failed(failure: Failure) -> T:
        register_failed(conn, failure, None)
        return fallback() if fallback else answers.unavailable()  # type: ignore[return-value]

    def done(result: T) -> Answer:
        dec = result.decision if isinstance(result, SelfActivation) else result
        if isinstance(dec, Decision):
            _noted(conn, request, dec)
        return conn.respond(request, answer(result))

    if not isinstance(d, Deferred):
        return done(d)
    return d.addErrback(failed).addCallback(done)


def _noted(conn: SIP2Protocol, request: Message, dec: Decision) -> None:
    """What a decision says of the register's state, and the request's outcome and reason."""
    conn.factory.set_online(dec.reason is not Reason.REGISTER_UNAVAILABLE)
    blocked = request.code == "01" and dec.reason is Reason.PATRON_BLOCKED  # 01 done as asked
    conn.note("ok" if blocked else _OUTCOMES.get(dec.reason, "refused"), str(dec.reason))


#: A decision's reason → the request's outcome (every other reason: ``refused``).
_OUTCOMES = {Reason.GRANTED: "ok", Reason.REGISTER_UNAVAILABLE: "error"}


def register_failed(conn: SIP2Protocol, failure: Failure, value: T) -> T:
    """A register call that failed or timed out: logged (type only: an error's text may quote
    parameters), and the request answered as "register unavailable" (``value``)."""
    conn.note("error", str(Reason.REGISTER_UNAVAILABLE))
    if not failure.check(RegisterError, defer.TimeoutError, defer.CancelledError):
        log.failure("unexpected error in a register call for {peer}", failure, peer=conn.peer)
    elif conn.factory.online:  # the first failure says why; the state line says the rest
        log.warn("register call for SIP2 {peer} failed: {error}", peer=conn.peer, error=type(failure.value).__name__)
    conn.factory.set_online(False)
    return value
