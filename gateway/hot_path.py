"""The hot path (issue 13): patron checks without a PIN answered from memory on the reactor thread,
their audit rows written behind.

One ``HotPath`` per gateway process, shared by the SIP2 listeners and the NCIP resource:

- **The memory** (`gateway.register.memory.DecisionMemory`, ``register.cache_size`` cards) holds
  the facts of decisions and lookups without a PIN. A request whose facts are in memory is answered
  in the reactor turn that read it: no thread hop, no Deferred. A miss asks the register (batched
  with the others of the moment, `Register.recall_many`), fills the memory and is decided from what
  was read. An unknown card is remembered as unknown, like a known one.
- **Following the feed.** Every ``FOLLOW_EVERY`` s the process reads what the change feed says since
  its position (`Register.news`) and forgets the patrons and cards named, and everything when a
  library, terminal or API client changed. The memory is used only while the last news read was
  asked for less than ``FRESH_FOR`` (1 s) ago: a change committed by any process is honoured by
  every process within 1 s, and when the feed cannot be read, decisions go to the register as before.
- **Doors without a PIN** are refused whatever the card (a door needs a PIN: sip2.md A.4), and the
  refusal must not tell whether the card exists: it is answered at once, for every card alike, and
  decided from the register's facts as its audit row is written.
- **Audit written behind.** Lookup and decision audit rows are queued and inserted in batches, one
  multi-row insert every ``WRITE_EVERY`` s (250 ms) and at shutdown (``flush``). The queue holds at
  most ``register.audit_queue_max`` rows: full, every decision and lookup is answered "register
  unavailable" rather than answered unaudited. A crash (kill -9, power loss) may lose the rows of
  the last 250 ms; a clean stop writes them, or counts in the log those it could not.
- **Offline is offline**: while the pool of register calls is offline, every decision says so,
  whether its facts are in memory or not.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway import metrics
from gateway.blocking import RegisterCalls
from gateway.register import Register, crypto, memory
from gateway.register.errors import RegisterUnavailable
from gateway.register.memory import DecisionMemory, News, Recollection
from gateway.register.models import utcnow
from gateway.register.views import ClientView, Decision, DecisionRequest
from gateway.register.vocabulary import Reason

log = Logger(namespace="nlr.register")

UNAVAILABLE = memory.UNAVAILABLE_DECISION
#: What a door asked without a PIN is answered, for every card (its audit row says the real reason).
DOOR_WITHOUT_PIN = Decision(Reason.PIN_MISSING, None, False, False, False)

Queued = dict[str, Any] | tuple[DecisionRequest, datetime]


class HotPath:
    FOLLOW_EVERY = 0.2  # seconds between reads of the change feed
    FRESH_FOR = 1.0  # the memory is used while the last news read was asked for less than this ago
    WRITE_EVERY = 0.25  # seconds between audit inserts
    WRITE_BATCH = 5000  # audit rows per insert at most

    def __init__(self, register: Register, calls: RegisterCalls, reactor: Any, *, cache_size: int = 100_000,
                 audit_queue_max: int = 20_000) -> None:
        self.register, self.calls, self.reactor = register, calls, reactor
        self.memory = DecisionMemory(cache_size)
        self.enabled = cache_size > 0
        self.audit_queue_max = audit_queue_max
        self.queue: deque[Queued] = deque()
        self.fresh_until = 0.0
        self.lost = 0  # audit rows that could not be written by the end of a clean stop
        self._following = self._writing = False
        self._batch = 0  # rows of the batch being written
        self.hits = self.misses = 0  # answers from memory and from facts read, since the metrics were told
        self._follower = task.LoopingCall(self._follow)
        self._writer = task.LoopingCall(self._write)
        self._follower.clock = self._writer.clock = reactor
        self._full_logged = False
        self._write_failed = False  # the last batch could not be written (said once, until one is)
        #: Told when a library, terminal or API client changed (the SIP2 listeners look again at
        #: their logged-in terminals).
        self.settings_listeners: list[Callable[[], None]] = []
        self.metrics = metrics.get()
        # What this process commits is forgotten at once, before its caller hears it is done.
        register.store.committed.append(self._committed)

    # ------------------------------------------------------------------ life
    def start(self) -> None:
        self._follower.start(self.FOLLOW_EVERY, now=True)  # with no memory too: settings changes
        self._writer.start(self.WRITE_EVERY, now=False)

    def stop(self, *, writing: bool = False) -> None:
        """Stop following the feed, and (unless ``writing``: the shutdown drains, then flushes)
        writing the audit."""
        if not writing and self._committed in self.register.store.committed:
            self.register.store.committed.remove(self._committed)
        for loop in (self._follower,) if writing else (self._follower, self._writer):
            if loop.running:
                loop.stop()

    @property
    def fresh(self) -> bool:
        """The memory may answer: it followed the feed less than ``FRESH_FOR`` ago."""
        return self.enabled and self.reactor.seconds() < self.fresh_until

    @property
    def unwritten(self) -> int:
        """Audit rows queued, and being written (a batch that fails goes back to the queue)."""
        return len(self.queue) + self._batch

    @property
    def full(self) -> bool:
        return self.unwritten >= self.audit_queue_max

    @property
    def serving(self) -> bool:
        """Decisions may be answered: the register is online and their audit rows have room."""
        if not self.calls.online:
            return False
        if self.full:
            if not self._full_logged:
                self._full_logged = True
                log.error("the audit queue is full ({n} rows not yet written): answering 'register unavailable' "
                          "until they are", n=self.unwritten)
            return False
        if self._full_logged:
            self._full_logged = False
            log.info("the audit queue has room again: answering decisions again")
        return True

    # ------------------------------------------------------------------ decisions
    def decide(self, question: DecisionRequest) -> Decision | Deferred[Decision]:
        """The register's decision: from memory when it can, at once; else a Deferred of it."""
        if question.pin:
            return self.calls.call_alone(self.register.decide, question.actor, question.card, question.pin,
                                         door=question.door, pin_required=question.pin_required,
                                         institution=question.institution)
        if not self.serving:
            return UNAVAILABLE
        now = utcnow()
        checked = memory.precheck(question, now)
        if not isinstance(checked, str):
            decision, row = checked
            self.queue.append(row)
            return decision
        if question.door:  # the same answer, the same path, for every card (see the module docstring)
            self.queue.append((question, now))
            return DOOR_WITHOUT_PIN
        if not self.fresh:  # the feed was not read lately: the register decides and audits, as before
            return self.calls.call_many(self.register.decide_many, question)
        decided = memory.decide(self.memory, question, now, checked)
        if decided is not None:
            self.queue.append(decided[1])
            self.hits += 1
            return decided[0]
        self.misses += 1
        epoch = self.memory.epoch
        d = self.calls.call_many(self.register.recall_many, (checked, question.actor.library_isil))
        return d.addCallback(self._recalled, epoch, question, now, checked)

    def _recalled(self, facts: Recollection, epoch: int, question: DecisionRequest, now: datetime,
                  number: str) -> Decision:
        self.memory.remember(facts, epoch)
        if not self.serving:
            return UNAVAILABLE
        decided = memory.decide(facts, question, now, number)
        assert decided is not None, "the card and the library asked about were read"
        self.queue.append(decided[1])
        return decided[0]

    # ------------------------------------------------------------------ lookups (NCIP)
    def recall(self, *, token: str | None = None, card: str | None = None) -> Deferred[None]:
        """Read into memory the client holding ``token``, or the facts of ``card``, as the memory's
        epoch allows (`DecisionMemory.remember`)."""
        epoch = self.memory.epoch
        if token is not None:
            def client_read(client: ClientView | None) -> None:
                self.memory.remember_client(crypto.token_hash(token), client, epoch)

            return self.calls.call(self.register.authenticate_client, token).addCallback(client_read)
        assert card is not None
        self.misses += 1

        def card_read(facts: Recollection) -> None:
            self.memory.remember(facts, epoch)

        return self.calls.call_many(self.register.recall_many, (card, None)).addCallback(card_read)

    # ------------------------------------------------------------------ following the feed
    def _follow(self) -> None:
        if self._following:
            return
        self._following = True
        asked = self.reactor.seconds()
        # its own thread job: never behind a batch or an audit insert waiting for SQLite's write lock
        d = self.calls.call_alone(self.register.news, self.memory.position)

        def followed(news: News) -> None:
            moved = self.memory.follow(news)
            self.fresh_until = asked + self.FRESH_FOR
            self._count()
            if moved:
                self._settings_changed()

        def not_followed(failure: Failure) -> None:
            # not fresh for long: decisions go to the register, which says what is wrong (a bug is logged)
            if not failure.check(RegisterUnavailable, defer.TimeoutError, defer.CancelledError):
                log.failure("reading the change feed for the decision memory failed", failure)

        d.addCallbacks(followed, not_followed).addBoth(self._followed)

    def _followed(self, _: Any) -> None:
        self._following = False

    def _committed(self, written: list[Any], settings: bool) -> None:
        """A commit of this process (any thread): forgotten in the reactor's thread, before the
        result of the call that committed it is delivered there."""
        patrons = {p.patron_id for p in written}
        cards = {p.card for p in written} | {p.previous_card for p in written if p.previous_card}
        self.reactor.callFromThread(self._forget, patrons, cards, settings)

    def _forget(self, patrons: set[int], cards: set[str], settings: bool) -> None:
        if settings:
            self.memory.forget_all()
            self._settings_changed()
        else:
            self.memory.forget(patrons, cards)

    def _settings_changed(self) -> None:
        for listener in list(self.settings_listeners):
            try:
                listener()
            except Exception:  # noqa: BLE001 - one listener's bug must not stop the others or the memory
                log.failure("a settings listener failed")

    def _count(self) -> None:
        """The metrics, a few times a second rather than a lock or two per request."""
        m = self.metrics
        m.memory_cards.set(len(self.memory))
        m.audit_queued.set(self.unwritten)
        if self.hits:
            m.memory_answers("hit").inc(self.hits)
        if self.misses:
            m.memory_answers("miss").inc(self.misses)
        self.hits = self.misses = 0

    # ------------------------------------------------------------------ writing the audit behind
    def _write(self) -> Deferred[int] | None:
        if self._writing or not self.queue:
            return None
        self._writing = True
        batch = [self.queue.popleft() for _ in range(min(len(self.queue), self.WRITE_BATCH))]
        self._batch = len(batch)

        def written(n: int) -> int:
            self.metrics.audit_written.inc(n)
            self.metrics.audit_queued.set(len(self.queue))
            if self._write_failed:
                self._write_failed = False
                log.info("lookup and decision audit rows are written again")
            return n

        def failed(failure: Failure) -> int:
            self.queue.extendleft(reversed(batch))  # in their order, before what came since
            if not self._write_failed:  # the first failure says why (its type: a message may quote rows)
                self._write_failed = True
                log.warn("lookup and decision audit rows could not be written ({error}); {n} queued, trying "
                         "again every {s} s", error=type(failure.value).__name__, n=self.unwritten, s=self.WRITE_EVERY)
            return 0

        def done(result: int) -> int:
            self._writing, self._batch = False, 0
            return result

        d = self.calls.call_alone(self.register.write_audit, batch)  # its own job: a lock wait holds no batch
        return d.addCallbacks(written, failed).addBoth(done)

    @defer.inlineCallbacks
    def flush(self, seconds: float) -> Any:
        """Shutting down: write every queued row within ``seconds``; what cannot be written is
        counted in the log as lost."""
        self.stop()
        deadline = time.monotonic() + seconds
        while self.queue and time.monotonic() < deadline:
            if self._writing:
                yield task.deferLater(self.reactor, 0.02, lambda: None)
                continue
            result = self._write()
            if result is not None:
                written = yield result
                if not written:  # the register refused: try again shortly, while time is left
                    yield task.deferLater(self.reactor, 0.1, lambda: None)
        if self.queue:
            self.lost = len(self.queue)
            log.error("shutdown: {n} lookup and decision audit rows could not be written and are lost",
                      n=self.lost)
        self.metrics.audit_queued.set(len(self.queue))


class HotPathService(Service):
    """Follows the feed and writes the audit behind while the daemon runs; the daemon's shutdown
    writes what is left (``HotPath.flush``) once the connections are drained."""

    def __init__(self, hot: HotPath) -> None:
        self.hot = hot

    def startService(self) -> None:
        super().startService()
        self.hot.start()

    def stopService(self) -> None:
        super().stopService()
        self.hot.stop(writing=True)  # the drain's answers are written behind too, then `flush`
