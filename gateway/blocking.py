"""How the reactor thread calls the blocking register: in batches, in the reactor's thread pool.

A call per thread-pool hop costs more than a quick register call itself once many terminals and
library systems are busy: a queue put, a thread woken, a ``callFromThread`` back, and every hop a
fight for the GIL (and, on SQLite, for the one writer lock). So quick calls made during one reactor
turn are queued and handed to one thread job, which runs them one after another and returns every
result to the reactor at once. At most ``max_jobs`` such jobs run at the same time (default one:
a second job only fights the first for the GIL and, on SQLite, the writer lock; measured with
bench/ncip.py, one job beat two on SQLite and on PostgreSQL); what arrives meanwhile waits for the
next one. Under load a batch holds everything that arrived while the last
one ran; an idle gateway sends a batch of one at the next reactor turn, so nothing waits for a timer.

Slow calls (anything that hashes a PIN or a password: about 35 ms of scrypt) run alone, each in its
own thread-pool job, so that they never hold up a batch and several hashes run in parallel.

Every call is bounded in time: a register that does not answer within ``timeout`` seconds fails the
call with ``defer.TimeoutError``, and a call that timed out while still queued is never started, so
a hung database does not pile up work. A call also carries its deadline into the register (less a
margin for the commit itself), which rolls back rather than commit late: a caller answered with a
failure finds nothing committed.

A hung register marks the gateway offline: when calls are under way and none has been answered
for ``offline_after`` seconds (a wait for SQLite's write lock does not count, within SQLite's own
timeout: ``lock_waits`` says how many calls wait for it), every new call fails at once with
``RegisterUnavailable``, and so do the calls still queued, so that every channel answers "register
unavailable" at once instead of after its timeout. A probe (``probe``, a quick register call such
as ``Register.ping``) runs in the pool every half second meanwhile; the first that succeeds brings
the gateway back online. ``listeners`` hear every change (True: online).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway import metrics
from gateway.register.errors import RegisterUnavailable
from gateway.register.store import deadline

log = Logger(namespace="nlr.register")
_OFFLINE = "the register does not answer; try again shortly"

T = TypeVar("T")

# (deferred, function, args, kwargs, commit-by as time.monotonic()); kwargs None: an item for a
# ``call_many`` function
_Call = tuple[Deferred[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any] | None, float]


def _answered(callers: list[Deferred[Any]]) -> bool:
    """Whether any of these callers has been answered already (a timeout, or offline)."""
    return any(d.called for d in callers)


class RegisterCalls:
    PROBE_EVERY = 0.5  # seconds between probes while offline
    PROBES_AT_ONCE = 3  # probes that may hang at the same time (a hung connection each)

    def __init__(self, reactor: Any, *, timeout: float = 8.0, max_batch: int = 128, max_jobs: int = 1,
                 offline_after: float = 1.0, probe: Callable[[], Any] | None = None,
                 lock_waits: Callable[[], int] | None = None) -> None:
        self.reactor = reactor
        self.offline_after = offline_after
        self.probe = probe
        self.lock_waits = lock_waits
        self.online = True
        self.listeners: list[Callable[[bool], None]] = []
        self._running = 0  # thread jobs started and not yet delivered
        self._last_answer = reactor.seconds()
        self._watch: Any = None
        self._probes = 0
        self.timeout = timeout
        self.max_batch = max_batch
        self.max_jobs = max_jobs
        self.in_flight = 0  # calls queued or running (shutdown waits for them)
        self.jobs = 0  # batch jobs running in the thread pool
        self._queue: deque[_Call] = deque()
        self._deadlines: dict[Deferred[Any], float] = {}  # in the order the calls came
        self._tick = min(0.5, timeout / 4)
        # A commit must start this long before the caller's deadline, so that it has finished (or
        # not begun) by the time the sweep answers the caller with a timeout.
        self._commit_margin = min(1.0, timeout / 8)
        self._sweeper: Any = None
        self._flush_scheduled = False
        self.metrics = metrics.get()
        self.metrics.register_state(True)

    # ------------------------------------------------------------------ the reactor side
    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        """Run a quick blocking call with the next batch."""
        return self._enqueue((Deferred(), fn, args, kwargs, self._commit_by()))

    def call_many(self, fn_many: Callable[[list[Any]], list[Any]], item: Any) -> Deferred[Any]:
        """Put ``item`` with the next batch; the batch hands all items queued for ``fn_many`` to one
        call of it, which returns one outcome per item, in order: a result, or an exception for
        that item alone. If ``fn_many`` itself raises, each of its items fails with that error."""
        return self._enqueue((Deferred(), fn_many, (item,), None, self._commit_by()))

    def _enqueue(self, call: _Call) -> Deferred[Any]:
        if not self.online:
            return defer.fail(RegisterUnavailable(_OFFLINE))
        self._queue.append(call)
        if not self._flush_scheduled:  # one flush at the end of this reactor turn
            self._flush_scheduled = True
            self.reactor.callLater(0, self._flush)
        return self._bounded(call[0])

    def call_alone(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        """Run a slow blocking call (a PIN or password hash) in its own thread-pool job."""
        if not self.online:
            return defer.fail(RegisterUnavailable(_OFFLINE))
        d: Deferred[T] = Deferred()
        self._started()
        self.reactor.getThreadPool().callInThread(self._run, [(d, fn, args, kwargs, self._commit_by())], False)
        return self._bounded(d)

    def _commit_by(self) -> float:
        return time.monotonic() + self.timeout - self._commit_margin

    def _bounded(self, d: Deferred[T]) -> Deferred[T]:
        # One timer for all calls (a sweep a few times per timeout), not a timer per call.
        self.in_flight += 1
        self._deadlines[d] = self.reactor.seconds() + self.timeout
        if self._sweeper is None:
            self._sweeper = self.reactor.callLater(self._tick, self._sweep)

        def finished(result: Any) -> Any:
            self.in_flight -= 1
            self._deadlines.pop(d, None)
            return result

        return d.addBoth(finished)

    def _sweep(self) -> None:
        now = self.reactor.seconds()
        while self._deadlines:
            d, deadline = next(iter(self._deadlines.items()))
            if deadline > now:
                break  # the rest came later
            del self._deadlines[d]
            if not d.called:
                d.errback(Failure(defer.TimeoutError(self.timeout, "register call")))
        self._sweeper = self.reactor.callLater(self._tick, self._sweep) if self._deadlines else None

    def _flush(self) -> None:
        self._flush_scheduled = False
        pool = self.reactor.getThreadPool()
        while self._queue and self.jobs < self.max_jobs:
            batch: list[_Call] = []
            while self._queue and len(batch) < self.max_batch:
                item = self._queue.popleft()
                if not item[0].called:  # not timed out while queued
                    batch.append(item)
            if batch:
                self.jobs += 1
                self._started()
                pool.callInThread(self._run, batch, True)

    def _deliver(self, batch: list[_Call], results: list[tuple[bool, Any]], counted: bool) -> None:
        if counted:
            self.jobs -= 1
        self._running -= 1
        self._last_answer = self.reactor.seconds()
        for (d, *_), (ok, value) in zip(batch, results, strict=True):
            if d.called:  # timed out meanwhile: the caller has its answer already
                if not ok:
                    value.cleanFailure()
                continue
            if ok:
                d.callback(value)
            else:
                d.errback(value)
        if self._queue and not self._flush_scheduled:
            self._flush()

    # ------------------------------------------------------------------ online and offline
    def _started(self) -> None:
        if self._running == 0:
            self._last_answer = self.reactor.seconds()  # an idle register owed nobody an answer
        self._running += 1
        if self._watch is None:
            self._watch = self.reactor.callLater(min(0.25, self.offline_after / 4), self._check)

    def _check(self) -> None:
        """While jobs are under way: offline once none has been answered for ``offline_after`` s."""
        self._watch = None
        if not self.online or self._running == 0:
            return
        now = self.reactor.seconds()
        if self.lock_waits is not None and self.lock_waits() > 0:
            self._last_answer = now  # waiting for SQLite's write lock is not hanging
        if now - self._last_answer >= self.offline_after:
            self._go_offline(now - self._last_answer)
            return
        self._watch = self.reactor.callLater(min(0.25, self.offline_after / 4), self._check)

    def _go_offline(self, silent: float) -> None:
        self.online = False
        log.error("the register has not answered for {s:.1f} s: offline, every request is refused at once "
                  "until it answers a probe", s=silent)
        # Every caller still waiting is answered now; a call under way can no longer commit (its
        # transaction checks, before the commit, whether its caller was answered) and one queued
        # never starts.
        self._tell(False)
        self._queue.clear()
        for d in list(self._deadlines):
            if not d.called:
                d.errback(Failure(RegisterUnavailable(_OFFLINE)))
        self._probe_soon(0)

    def _probe_soon(self, delay: float) -> None:
        self.reactor.callLater(delay, self._probe)

    def _probe(self) -> None:
        if self.online:
            return
        if self.probe is None:  # nothing to ask: try the register again with the next call
            self._back_online()
            return
        if self._probes < self.PROBES_AT_ONCE:
            self._probes += 1
            self.reactor.getThreadPool().callInThread(self._run_probe)
        self._probe_soon(self.PROBE_EVERY)

    def _run_probe(self) -> None:
        assert self.probe is not None
        try:
            self.probe()
            ok = True
        except Exception:  # noqa: BLE001 - any failure: still offline
            ok = False
        self.reactor.callFromThread(self._probed, ok)

    def _probed(self, ok: bool) -> None:
        self._probes -= 1
        if ok and not self.online:
            self._back_online()

    def _back_online(self) -> None:
        self.online = True
        self._last_answer = self.reactor.seconds()
        log.info("the register answers again: online")
        self._tell(True)

    def _tell(self, online: bool) -> None:
        self.metrics.register_state(online)
        for listener in list(self.listeners):
            try:
                listener(online)
            except Exception:  # noqa: BLE001 - a listener's bug must not stop the others
                log.failure("register state listener failed")

    # ------------------------------------------------------------------ the thread side
    def _run(self, batch: list[_Call], counted: bool) -> None:
        observe = self.metrics.register_calls.observe  # each call's time (a group's: once)
        clock = time.perf_counter
        results: list[tuple[bool, Any]] = [(False, None)] * len(batch)
        together: dict[Callable[..., Any], list[int]] = {}
        for n, (d, fn, args, kwargs, commit_by) in enumerate(batch):
            if d.called:  # timed out before its turn: do not start it
                results[n] = (False, Failure(defer.CancelledError("register call abandoned")))
            elif kwargs is None:
                together.setdefault(fn, []).append(n)
            else:
                began = clock()
                try:
                    with deadline(commit_by, cancelled=partial(_answered, [d])):
                        results[n] = (True, fn(*args, **kwargs))
                except BaseException:  # noqa: BLE001 - handed to the caller's errback, as deferToThread does
                    results[n] = (False, Failure())
                observe(clock() - began)
        for fn_many, members in together.items():
            began = clock()
            try:
                # One transaction for the group: it commits only while every member's caller waits.
                waiting = [batch[n][0] for n in members]
                with deadline(min(batch[n][4] for n in members), cancelled=partial(_answered, waiting)):
                    outcomes = fn_many([batch[n][2][0] for n in members])
                observe(clock() - began)
                if len(outcomes) != len(members):
                    raise RuntimeError(f"{fn_many!r} returned {len(outcomes)} outcomes for {len(members)} items")
            except BaseException:  # noqa: BLE001
                failure = Failure()
                for n in members:
                    results[n] = (False, Failure(failure.value, failure.type, failure.getTracebackObject()))
                continue
            for n, outcome in zip(members, outcomes, strict=True):
                results[n] = (False, Failure(outcome)) if isinstance(outcome, BaseException) else (True, outcome)
        self.reactor.callFromThread(self._deliver, batch, results, counted)
