"""The SIP2 server: a thin Twisted adapter (sip2.md Part A).

bytes → ``Framer`` → ``parse`` → one handler (``handlers.HANDLERS``), one register call in the
reactor's thread pool → ``answers`` → ``encode`` → bytes. Requests on a connection are answered one
at a time, in order. The reactor thread never waits; nothing but SIP2 messages is ever written to a
client, and no PIN, password or national id is logged.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum
from typing import Any, Protocol, TypeVar, runtime_checkable

from twisted.internet import interfaces, protocol
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

import protocols.sip2 as sip2
from gateway import logs, metrics
from gateway.blocking import RegisterCalls
from gateway.config import SIP2Config
from gateway.endpoints import source_group, total_cap
from gateway.hot_path import HotPath
from gateway.quiet import Quiet
from gateway.register import Register
from gateway.register.accounts import terminal_admission
from gateway.register.views import Actor, Decision, DecisionRequest, TerminalView
from gateway.sip2 import answers, handlers
from gateway.sip2.handlers import Answer
from gateway.throttle import LoginThrottle
from protocols.sip2 import Message

log = Logger(namespace="nlr.sip2")
T = TypeVar("T")

_CLOSE: Any = object()  # queue marker: close once everything before it is answered


@runtime_checkable
class Connection(Protocol):
    """What a SIP2 connection asks of its transport: TCP and TLS transports (and Twisted's
    ``StringTransport``) do all of it; ``ITransport`` alone promises less."""

    def write(self, data: bytes) -> None: ...
    def loseConnection(self) -> None: ...
    def abortConnection(self) -> None: ...
    def pauseProducing(self) -> None: ...
    def resumeProducing(self) -> None: ...
    def getPeer(self) -> interfaces.IAddress: ...


class Phase(StrEnum):
    """Where a SIP2 connection is; exactly one at a time (after wsproto's ``ConnectionState``)."""

    #: Open, no terminal logged in: only 93 and 99 are answered; anything else closes the connection.
    AWAITING_LOGIN = "awaiting login"
    #: A terminal is logged in; the next queued request is handled at once.
    READY = "ready"
    #: A register call for the current request is under way; later requests wait in the queue, in order.
    BUSY = "busy"
    #: Closing gracefully: no request is read or handled any more; the answers written go out, then
    #: the connection closes (at once after a half-close, else after a FIN and at most ``LINGER`` s).
    DRAINING = "draining"
    #: Aborted or lost: nothing more is read or written.
    CLOSED = "closed"


class SIP2Factory(protocol.Factory):
    """Shared by every SIP2 listener: the register, the settings, the login throttle, the open
    connections (in total and per source, each capped) and the last known database state (answered
    to a 99 before login).

    ``calls`` is the daemon's one pool of register calls, when it shares one between SIP2, NCIP and
    the health check; without it the factory makes its own, bounded by ``register_timeout``."""

    noisy = False
    # encoded answers to decisions from memory (`SIP2Protocol.respond_decision`): as many as the
    # memory holds cards (an answer is a few hundred bytes; a card's facts a few KiB), at least this
    ANSWERS_KEPT = 4096

    def __init__(self, register: Register, reactor: Any, settings: SIP2Config, *,
                 register_timeout: float = 8.0, throttle: LoginThrottle | None = None,
                 calls: RegisterCalls | None = None, hot: HotPath | None = None) -> None:
        self.register, self.reactor, self.settings = register, reactor, settings
        self.hot = hot  # decisions without a PIN from memory, audited behind (gateway.hot_path)
        self.answers: dict[tuple[Any, ...], tuple[Decision, TerminalView | None, bytes, str]] = {}
        self.answers_kept = max(self.ANSWERS_KEPT, hot.memory.size if hot is not None else 0)
        if hot is not None:  # a terminal changed anywhere: the logged-in ones are looked at again
            hot.settings_listeners.append(self.settings_changed)
        self.register_timeout = register_timeout
        self.max_connections = settings.max_connections
        self.max_per_source = settings.max_connections_per_source
        self.throttle = throttle or LoginThrottle(reactor.seconds, limit=settings.login_throttle.failures,
                                                  window=settings.login_throttle.window_seconds)
        self.connections = 0  # open and admitted (and those awaiting their PROXY header)
        self.open: set[SIP2Protocol] = set()  # the connections admitted and open (drained at shutdown)
        self.draining = False
        self.by_source: dict[str, int] = {}  # open and admitted, per source_group
        self.calls = calls if calls is not None else RegisterCalls(reactor, timeout=register_timeout)
        self.online = True
        self._quiet: dict[str, Quiet] = {}  # per kind of log line that a flood could repeat
        self.metrics = metrics.get()

    def log_quietly(self, kind: str, text: str, **fields: Any) -> None:
        """A warning that any number of connections could each cause (refusals, junk before login,
        throttled logins): at most one line per 10 s per ``kind``, saying how many were held back."""
        quiet = self._quiet.get(kind)
        if quiet is None:
            quiet = self._quiet[kind] = Quiet(self.reactor.seconds)
        allowed, held = quiet.allow()
        if allowed:
            log.warn(text + "{more}", more=f" ({held} more such since the last line, not logged)" if held else "",
                     **fields)

    def buildProtocol(self, addr: Any) -> SIP2Protocol:
        return SIP2Protocol(self)

    def drain(self) -> None:
        """Shutting down: every connection answers what it has received, then closes gracefully
        (an idle one at once); what arrives after this is not read."""
        self.draining = True
        for conn in list(self.open):
            conn.drain()

    @property
    def in_flight(self) -> int:
        """Register calls queued or under way (shutdown waits for them); of the whole pool, if shared."""
        return self.calls.in_flight

    def call(self, fn: Callable[..., T], *args: Any, slow: bool = False, **kwargs: Any) -> Deferred[T]:
        """Blocking register work, bounded in time (a register that does not answer within the
        pool's timeout fails the request, not the connection): quick calls go in batches,
        ``slow`` ones (a PIN or password to hash) each in their own thread job."""
        return (self.calls.call_alone if slow else self.calls.call)(fn, *args, **kwargs)

    def decide(self, question: DecisionRequest) -> Decision | Deferred[Decision]:
        """The register's decision (the one function for 23, 63, 25 and doors). Without a PIN it is
        decided from memory when the daemon keeps one (`gateway.hot_path`: at once), else together
        with the others of the same moment (``Register.decide_many``)."""
        if self.hot is not None:
            return self.hot.decide(question)
        if question.pin:
            return self.calls.call_alone(self.register.decide, question.actor, question.card, question.pin,
                                         door=question.door, pin_required=question.pin_required,
                                         institution=question.institution)
        return self.calls.call_many(self.register.decide_many, question)

    def settings_changed(self) -> None:
        """A library, terminal or API client changed (gateway.hot_path): every logged-in connection's
        terminal is read again; one disabled, removed, or no longer allowed from its address or
        over its transport is closed, one changed acts with its new settings from its next request."""
        if any(conn.terminal is not None for conn in self.open):
            self.calls.call(self.register.list_terminals).addCallbacks(self._terminals_read, lambda _: None)

    def _terminals_read(self, terminals: list[TerminalView]) -> None:
        by_login = {t.login: t for t in terminals}
        for conn in list(self.open):
            if conn.terminal is not None:
                conn.terminal_read(by_login.get(conn.terminal.login))

    def set_online(self, online: bool) -> None:
        """What the last register call said about the database; a change is logged once."""
        if online != self.online:
            self.online = online
            if online:
                log.info("the register database answers again: SIP2 service resumed")
            else:
                log.error("the register database does not answer: SIP2 answers 'register unavailable'")

    def admit(self, host: str) -> bool:
        """Count a new connection from ``host`` against the total cap, or refuse it; 127.0.0.1 and
        ::1 have `gateway.endpoints.LOOPBACK_RESERVE` places more (a local health check, the operator)."""
        if self.connections < total_cap(host, self.max_connections):
            self.connections += 1
            return True
        self._refused(host, f"{self.connections} SIP2 connections open, the limit (sip2.max_connections)")
        return False

    def hold(self, host: str) -> bool:
        """A connection from a proxy awaiting its PROXY header: counted against the total cap."""
        return self.admit(host)

    def unhold(self) -> None:
        self.release(None)

    def admit_source(self, source: str) -> bool:
        """Count an admitted connection against its source's cap (``source``: a `source_group`),
        or refuse it."""
        from_source = self.by_source.get(source, 0)
        if from_source < self.max_per_source:
            self.by_source[source] = from_source + 1
            return True
        self._refused(source, f"{from_source} SIP2 connections open from {source}, the limit "
                              "(sip2.max_connections_per_source)")
        return False

    def _refused(self, source: str, why: str) -> None:
        self.log_quietly("refused", "refusing a SIP2 connection from {source}: {why}", source=source, why=why)

    def release(self, source: str | None) -> None:
        self.connections -= 1
        if source is None:
            return
        left = self.by_source.get(source, 1) - 1
        if left > 0:
            self.by_source[source] = left
        else:
            self.by_source.pop(source, None)


@implementer(interfaces.IHalfCloseableProtocol)
class SIP2Protocol(protocol.Protocol, TimeoutMixin):
    """One terminal connection: the login gate, then requests answered strictly in order. A client
    that half-closes (``printf … | nc``) still gets every answer before the connection closes.
    ``phase`` says where the connection is; ``terminal`` says who is logged in."""

    MAX_LOGIN_FAILURES = 3  # per connection, then it is closed (A.1)
    PAUSE_AT = 16  # pipelined requests waiting: stop reading until half of them are answered
    MAX_PENDING = 256  # pipelined requests waiting: give up on the connection
    LINGER = 2.0  # seconds a closing connection waits for the client to read the last answers

    connection: Connection  # self.transport, checked for what is asked of it (connectionMade)

    def __init__(self, factory: SIP2Factory) -> None:
        self.factory = factory
        self.framer = sip2.Framer(factory.settings.max_message_bytes)
        self.phase = Phase.AWAITING_LOGIN
        self.terminal: TerminalView | None = None
        self.actor: Actor | None = None
        self.pending: deque[Any] = deque()  # frames not yet handled (and _CLOSE), in order
        self.paused = False  # reading is paused: too many requests waiting
        self.seen_data = False  # the first bytes have been checked for a TLS ClientHello
        self.read_closed = False  # the client half-closed: it will send nothing more
        self.draining = False  # shutting down: answer what has arrived, read nothing more, close
        self.encrypted = False
        self.host = self.peer = self.source = "?"
        self.admitted = False  # counted against the total cap (released when lost)
        self.counted_source: str | None = None  # the source it is counted against, once known
        self.bad_frames = Quiet(factory.reactor.seconds)  # log lines about unreadable input
        self.login_failures = self.bad_checksums = 0
        self.last_response: bytes | None = None
        self.last_key: tuple[int | None, str] | None = None
        self._key: tuple[int | None, str] | None = None
        self._basis_logged = False
        self._linger: interfaces.IDelayedCall | None = None
        # The request being handled: its id (given to the register, on its log line), when it was
        # read, its command code, and what the handler noted of its outcome.
        self.rid: str | None = None
        self._began = 0.0
        self._code: str | None = None
        self._outcome = "ok"
        self._reason: str | None = None

    def callLater(self, period: float, func: Callable[[], object]) -> interfaces.IDelayedCall:
        """TimeoutMixin's clock, and the linger's: the factory's reactor (a test clock in tests)."""
        return self.factory.reactor.callLater(period, func)

    @property
    def closing(self) -> bool:
        """Draining or closed: no request is read or handled any more."""
        return self.phase in (Phase.DRAINING, Phase.CLOSED)

    def _settle(self) -> None:
        """Between requests, the phase follows the login; a busy or closing phase is left alone."""
        if self.phase in (Phase.AWAITING_LOGIN, Phase.READY):
            self.phase = Phase.READY if self.terminal is not None else Phase.AWAITING_LOGIN

    # ------------------------------------------------------------------ connection
    def connectionMade(self) -> None:
        if not isinstance(self.transport, Connection):
            raise TypeError(f"a SIP2 connection needs a TCP or TLS transport, not {self.transport!r}")
        self.connection = self.transport
        peer = self.connection.getPeer()
        self.host = str(getattr(peer, "host", "?"))
        self.peer = f"{self.host}:{getattr(peer, 'port', '')}"
        self.source = source_group(self.host)
        self.encrypted = interfaces.ISSLTransport.providedBy(self.transport)
        # Behind a ``haproxy:`` listener the connection is made once its PROXY header is read
        # (`gateway.endpoints._ProxyHeaderFirst`): the peer is then the source the header names.
        if not self.factory.admit(self.host):
            self._refuse()
            return
        self.admitted = True
        self.factory.metrics.sip2_connections.inc()
        if not self.factory.admit_source(self.source):
            self._refuse()
            return
        self.counted_source = self.source
        self.factory.open.add(self)
        self.setTimeout(self.factory.settings.login_timeout_seconds)
        if self.factory.draining:  # made as the listener closed: nothing will be answered
            self._close(None, abort=False)

    def _refuse(self) -> None:
        self.phase = Phase.CLOSED
        self.connection.abortConnection()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.factory.open.discard(self)
        if self.admitted:
            self.admitted = False
            self.factory.release(self.counted_source)
            self.factory.metrics.sip2_connections.dec()
        if held := self.bad_frames.flush():
            log.warn("SIP2 connection from {peer} ({who}) closed; {n} more unreadable message(s) from it were "
                     "not logged one by one", peer=self.peer, who=self._who(), n=held)
        self.phase = Phase.CLOSED
        self.pending.clear()
        self.setTimeout(None)
        if self._linger is not None and self._linger.active():
            self._linger.cancel()

    def readConnectionLost(self) -> None:
        """The client will send nothing more: answer what it sent, then close."""
        self.read_closed = True
        if not self.closing:
            self.pending.append(_CLOSE)
            self._pump()

    def writeConnectionLost(self) -> None:
        self._close(None)

    def timeoutConnection(self) -> None:
        if self.terminal is None:
            self._close(f"no successful login within {self.factory.settings.login_timeout_seconds} s",
                        kind="login timeout")
        else:
            self._close(f"idle for {self.factory.settings.idle_timeout_seconds} s")

    def _close(self, why: str | None, *, abort: bool = True, kind: str = "closed") -> None:
        """Close, aborting or gracefully; ``why`` is logged (before login at most once per 10 s per
        ``kind``: any number of connections can send junk)."""
        if self.closing:
            return
        if why:
            self._warn(kind, "closing SIP2 connection from {peer} ({who}): {why}", peer=self.peer, who=self._who(),
                       why=why)
        self.phase = Phase.CLOSED if abort else Phase.DRAINING
        self.pending.clear()
        self.setTimeout(None)
        if abort:
            self.connection.abortConnection()
            return
        if self.read_closed:
            self.connection.loseConnection()
            return
        # Gracefully: send what is written, then FIN; read and drop whatever still arrives (closing
        # with unread input would reset the connection and lose the answers), for at most LINGER s.
        getattr(self.connection, "loseWriteConnection", self.connection.loseConnection)()
        if self.paused:
            self.connection.resumeProducing()
        self._linger = self.callLater(self.LINGER, self.connection.abortConnection)

    def _who(self) -> str:
        return self.terminal.login if self.terminal else "not logged in"

    def _warn(self, kind: str, text: str, **fields: Any) -> None:
        """A warning about this connection: before login, one of a kind that a flood of connections
        could repeat, so at most one line per 10 s per ``kind`` (`SIP2Factory.log_quietly`)."""
        if self.terminal is None:
            self.factory.log_quietly(kind, text, **fields)
        else:
            log.warn(text, **fields)

    # ------------------------------------------------------------------ bytes in, in order
    def drain(self) -> None:
        """Shutting down (`SIP2Factory.drain`): answer what has arrived, then close gracefully."""
        self.draining = True
        if self.phase in (Phase.AWAITING_LOGIN, Phase.READY) and not self.pending:
            self._close(None, abort=False)

    def dataReceived(self, data: bytes) -> None:
        if self.closing or self.draining:
            return
        if not self.seen_data:
            self.seen_data = True
            if not self.encrypted and sip2.looks_like_tls_client_hello(data):
                self._close("a TLS ClientHello arrived on a plaintext SIP2 port; the client must connect "
                            "without TLS here, or to an ssl: listener", abort=False,  # FIN: clients fall back
                            kind="tls hello")
                return
        try:
            frames = self.framer.feed(data)
        except sip2.FrameTooLarge as exc:
            self._warn("too long", "SIP2 message from {peer} ({who}) is longer than {limit} bytes: closing after "
                       "{n} earlier message(s)", peer=self.peer, who=self._who(), limit=exc.limit, n=len(exc.frames))
            self.pending.extend(exc.frames)
            self.pending.append(_CLOSE)
            self.connection.pauseProducing()
            self.paused = True
        else:
            self.pending.extend(frames)
            if len(self.pending) > self.MAX_PENDING:
                self._close(f"more than {self.MAX_PENDING} pipelined requests waiting", kind="pipelined")
                return
            if len(self.pending) >= self.PAUSE_AT and not self.paused:
                self.connection.pauseProducing()
                self.paused = True
        self._pump()

    def _pump(self) -> None:
        while self.pending and self.phase in (Phase.AWAITING_LOGIN, Phase.READY):
            frame = self.pending.popleft()
            if frame is _CLOSE:
                self._close(None, abort=False)
                return
            self._begin()
            try:
                result = self._handle(frame)
            except Exception:  # noqa: BLE001 - a bug must cost one connection, never the daemon
                log.failure("SIP2 request from {peer} failed; closing the connection", peer=self.peer)
                self.note("error")
                self._done()
                self._close(None)
                return
            if isinstance(result, Deferred):
                if not self.closing:
                    self.phase = Phase.BUSY
                result.addCallbacks(self._answered, self._broken)
                return
            self._done()
            self._write(result)
        if self.draining and not self.pending and self.phase in (Phase.AWAITING_LOGIN, Phase.READY):
            self._close(None, abort=False)  # shutting down: everything received is answered
            return
        if self.paused and not self.closing and len(self.pending) < self.PAUSE_AT // 2 and _CLOSE not in self.pending:
            self.paused = False
            self.connection.resumeProducing()

    def _answered(self, data: Answer) -> None:
        self._done()
        if self.phase is Phase.BUSY:
            self.phase = Phase.READY if self.terminal is not None else Phase.AWAITING_LOGIN
            self._write(data)
            self._pump()

    def _broken(self, failure: Failure) -> None:
        log.failure("SIP2 request from {peer} failed; closing the connection", failure, peer=self.peer)
        self.note("error")
        self._done()
        self._close(None)

    # ------------------------------------------------------------------ one request's id, metrics and line
    def _begin(self) -> None:
        self.rid = logs.new_request_id()
        self._began = time.perf_counter()
        self._code, self._outcome, self._reason = None, "ok", None

    def note(self, outcome: str, reason: str | None = None) -> None:
        """What a handler says of the request's outcome (``ok``, ``refused``, ``error``) and why
        (the register's reason code): for the metrics and the request's log line."""
        self._outcome, self._reason = outcome, reason

    def _done(self) -> None:
        """The request is answered (or given up): its metrics, and its line for a logged-in terminal
        (before login any number of connections could each cause one: those are only counted)."""
        code = self._code
        if code is None:  # no request was read (junk that is not answered): nothing to count
            return
        self._code = None
        elapsed = time.perf_counter() - self._began
        m, label = self.factory.metrics, metrics.command_label(code)
        m.sip2_requests(label, self._outcome).inc()
        m.sip2_duration(label).observe(elapsed)
        terminal = self.terminal
        if terminal is not None and logs.wants(self._outcome):
            logs.request("sip2", self._outcome, elapsed, self.rid, command=label, terminal=terminal.login,
                         library=terminal.library_isil, reason=self._reason)

    def asking(self) -> Actor:
        """The logged-in terminal's actor, asking in the current request (its audit rows carry its id)."""
        assert self.actor is not None, "the login gate lets only 93 and 99 through"
        return self.actor.asking(self.rid)

    def _write(self, data: Answer) -> None:
        if data and not self.closing:
            self.connection.write(data)

    # ------------------------------------------------------------------ one request
    def _handle(self, frame: bytes) -> Answer | Deferred[Answer]:
        try:
            request = sip2.parse(frame, self.terminal.encoding if self.terminal else None)
        except sip2.ChecksumError as exc:
            self._code = exc.command or "other"
            self.note("refused", "checksum")
            return self._bad_checksum(exc)
        except sip2.SIP2Error as exc:
            self._code = exc.command or "other"
            self.note("refused", "unreadable")
            return self._unparsable(frame, exc)
        self._code = request.code
        self.bad_checksums = 0
        if self.phase is Phase.READY:
            self.resetTimeout()
        if request.checksum_basis not in (None, "bytes") and not self._basis_logged:
            self._basis_logged = True
            log.info("SIP2 client {peer} ({who}) checksums over {basis}, not the bytes sent",
                     peer=self.peer, who=self._who(), basis=request.checksum_basis)
        code = request.code
        if code == "97":
            return self.last_response or self._resend_request(request.error_detection)
        self._key = (request.sequence, request.checksum) if request.checksum is not None else None
        if self._key is not None and self._key == self.last_key and self.last_response is not None:
            return self.last_response  # a retransmission: replay, never re-execute (B.7)
        if self.phase is Phase.AWAITING_LOGIN and code not in handlers.BEFORE_LOGIN:
            self.note("refused", "not_logged_in")
            self._close(f"message {code} before a successful login (93 must come first)", kind="before login")
            return None
        handler = handlers.HANDLERS.get(code)
        if handler is None:
            self.note("refused", "not_a_request")
            self._bad_frame("ignored SIP2 message {code} from {peer} ({who}): not a request", code=code,
                            peer=self.peer, who=self._who())
            return None
        return handler(self, request)

    # ------------------------------------------------------------------ the session, for the handlers
    def logged_in(self, terminal: TerminalView) -> None:
        """A successful 93: from now on the connection acts for ``terminal``'s library (A.1)."""
        self.terminal, self.actor = terminal, Actor("terminal", terminal.login, terminal.library_isil)
        self.login_failures = 0
        self._settle()
        self.setTimeout(self.factory.settings.idle_timeout_seconds)
        log.info("SIP2 terminal {login} ({profile}, {library}) logged in from {peer}", login=terminal.login,
                 profile=terminal.profile, library=terminal.library_isil, peer=self.peer)

    def terminal_read(self, fresh: TerminalView | None) -> None:
        """The logged-in terminal as the register holds it now (`SIP2Factory.settings_changed`)."""
        terminal = self.terminal
        if terminal is None or self.closing or fresh == terminal:
            return
        outcome = terminal_admission(fresh, self.host, self.encrypted)
        if outcome != "ok":
            self._close(f"terminal {terminal.login} may no longer connect ({outcome})", abort=False)
            return
        assert fresh is not None
        self.terminal, self.actor = fresh, Actor("terminal", fresh.login, fresh.library_isil)
        log.info("SIP2 terminal {login} ({peer}): its settings changed; its next request uses them",
                 login=fresh.login, peer=self.peer)

    def login_failed(self, request: Message, why: str | None = None, *, counted: bool = True,
                     kind: str = "failed login") -> Answer:
        """A failed 93: logged out, one strike for the connection and, when ``counted`` (the
        register judged it: not the throttle, not an encrypted algorithm), for the source address;
        answered 940. ``why`` is logged at most once per 10 s per ``kind``."""
        self.terminal = self.actor = None
        self._settle()
        self.login_failures += 1
        if counted:
            self.factory.throttle.failed(self.source)
        if why:
            self._warn(kind, "SIP2 login from {peer} failed ({why}); failure {n} of {max}", peer=self.peer, why=why,
                       n=self.login_failures, max=self.MAX_LOGIN_FAILURES)
        answer = self.respond(request, answers.login_answer(False))
        if self.login_failures >= self.MAX_LOGIN_FAILURES:
            self._warn("failed logins", "closing SIP2 connection from {peer}: {n} failed logins", peer=self.peer,
                       n=self.login_failures)
            self.pending.clear()
            self.pending.append(_CLOSE)
        return answer

    # ------------------------------------------------------------------ errors (B.7, C.3, C.4)
    def _bad_checksum(self, exc: sip2.ChecksumError) -> Answer:
        self.bad_checksums += 1
        if self.bad_checksums > answers.MAX_RETRIES:
            self._close(f"{self.bad_checksums} messages in a row with a wrong checksum", kind="checksums")
            return None
        self._bad_frame("SIP2 message {code} from {peer} ({who}) has a wrong checksum: asking for a resend (96)",
                        code=exc.command, peer=self.peer, who=self._who())
        return self._resend_request(True)

    def _bad_frame(self, text: str, **fields: Any) -> None:
        """A log line about unreadable input: at most one per connection every 10 s; the next says
        how many were not logged (and so does the connection's close)."""
        allowed, held = self.bad_frames.allow()
        if allowed:
            more = f" ({held} more unreadable message(s) from this connection not logged one by one)" if held else ""
            log.warn(text + "{more}", more=more, **fields)

    def _resend_request(self, checksum: bool) -> bytes:
        return sip2.encode(sip2.build("96"), checksum=checksum, terminator=self._terminator())

    def _unparsable(self, frame: bytes, exc: sip2.SIP2Error) -> Answer | Deferred[Answer]:
        code = exc.command or ""
        if self.phase is Phase.AWAITING_LOGIN:
            self._close(f"unreadable message before login ({exc.reason})", kind="unreadable before login")
            return None
        self.resetTimeout()
        layout = sip2.LAYOUTS.get(code)
        if layout is None or layout.response is None:
            self._bad_frame("ignored SIP2 input from {peer} ({who}): {why}, {n} bytes", peer=self.peer,
                            who=self._who(), why=exc.reason, n=len(frame))
            return None
        self._bad_frame("refused unreadable SIP2 message {code} from {peer} ({who}): {why}", code=code,
                        peer=self.peer, who=self._who(), why=exc.reason)
        self._key = None
        if code == "99":  # a malformed status request still gets the status
            return handlers.status(self, Message("99"))
        return self.respond(Message(code), answers.invalid_refusal(code, answers.now()))

    # ------------------------------------------------------------------ bytes out
    def _terminator(self) -> bytes:
        return b"\r\n" if self.terminal is not None and self.terminal.terminator == "CRLF" else b"\r"

    def respond_decision(self, request: Message, decision: Decision, answer: Callable[[str], Message]) -> bytes:
        """``respond(request, answer(now))`` for a decision taken from memory, from the factory's
        answers: the same decision object asked the same way by the same terminal gets the bytes
        made before, with this second's transaction date (`sip2.restamp`). An entry keeps its
        decision, so its id cannot be reused while it is kept; terminals are compared by their
        settings (every connection of a terminal shares its answers)."""
        terminal = self.terminal
        key = (id(decision), terminal, request.code, request.fixed.get("language"), request.get("AO"),
               request.get("AA"), "AD" in request, request.sequence, request.checksum is not None)
        cache = self.factory.answers
        when = answers.now()
        entry = cache.get(key)
        if entry is not None and entry[0] is decision:
            data = entry[2] if entry[3] == when else sip2.restamp(entry[2], when)
            self.last_response, self.last_key = data, self._key
            return data
        data = self.respond(request, answer(when))
        if data[:2] in (b"24", b"26", b"64"):
            cache[key] = (decision, terminal, data, when)
            if len(cache) > self.factory.answers_kept:
                del cache[next(iter(cache))]  # the oldest
        return data

    def respond(self, request: Message, message: Message) -> bytes:
        """Encode in the terminal's encoding and error-detection style; remember it for 97 and
        for replaying a retransmitted request."""
        encoding = self.terminal.encoding if self.terminal else "utf-8"
        try:
            data = sip2.encode(message, encoding, reply_to=request, terminator=self._terminator())
        except sip2.SIP2Error as exc:  # e.g. an echoed identifier the encoding cannot carry
            log.warn("SIP2 answer {code} to {peer} not encodable ({why}): answering a refusal",
                     code=message.code, peer=self.peer, why=exc.reason)
            data = sip2.encode(answers.invalid_refusal(request.code, answers.now()), encoding,
                               reply_to=request, terminator=self._terminator())
        self.last_response, self.last_key = data, self._key
        return data
