"""Retention while the gateway serves (issue 11, item 6): every minute, the register deletes what it
keeps for a time only (gateway.register.retention), one short batch per call through the daemon's
pool, until nothing more is due. With several gateways on PostgreSQL one of them does it at a time."""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.logger import Logger

from gateway.blocking import RegisterCalls
from gateway.config import Config

log = Logger(namespace="nlr.housekeeping")


class Housekeeping(Service):
    every = 60.0  # seconds between rounds
    max_batches = 50  # per round; the rest waits for the next round
    pause = 0.05  # seconds between batches, so that requests go first

    def __init__(self, register: Any, calls: RegisterCalls, config: Config, reactor: Any) -> None:
        self.register, self.calls, self.reactor = register, calls, reactor
        self.audit_days = config.register.audit_retention_days
        self.change_days = config.register.change_retention_days
        self.quarantine_days = config.register.quarantine_retention_days
        self.session_seconds = config.web.session_max_seconds
        self._loop = task.LoopingCall(self.round)
        self._loop.clock = reactor
        self._running: defer.Deferred[None] | None = None

    def startService(self) -> None:
        super().startService()
        self._loop.start(self.every, now=False)

    def stopService(self) -> None:
        super().stopService()
        if self._loop.running:
            self._loop.stop()

    def round(self) -> defer.Deferred[None] | None:
        if self._running is not None or not self.calls.online:
            return None  # a round still under way, or the register is away: next time
        self._running = defer.ensureDeferred(self._round())
        self._running.addBoth(self._done)
        return None

    def _done(self, result: Any) -> None:
        self._running = None

    async def _round(self) -> None:
        deleted = [0, 0, 0, 0]
        try:
            for _ in range(self.max_batches):
                run = await self.calls.call(self.register.apply_retention, audit_days=self.audit_days,
                                            change_days=self.change_days, session_seconds=self.session_seconds,
                                            quarantine_days=self.quarantine_days)
                deleted = [deleted[0] + run.audit_rows, deleted[1] + run.changes, deleted[2] + run.sessions,
                           deleted[3] + run.quarantine]
                if not run.more or not self.running:
                    break
                await task.deferLater(self.reactor, self.pause, lambda: None)
        except Exception as exc:  # noqa: BLE001 - the register was away or busy: the next round tries again
            log.warn("retention: a round stopped early ({error}); the next one goes on", error=type(exc).__name__)
        if any(deleted):
            log.info("retention: deleted {audit} audit rows, {changes} changes, {sessions} ended sessions and "
                     "{quarantine} settled quarantine entries", audit=deleted[0], changes=deleted[1],
                     sessions=deleted[2], quarantine=deleted[3])
