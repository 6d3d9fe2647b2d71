"""`nlr serve --workers N`: one supervisor process and N workers sharing its listening sockets.

The supervisor binds every listener once (or takes it from systemd: ``systemd:`` strings), then
starts N workers (``python -m gateway.cli … serve --worker``) that adopt those sockets: the kernel
hands each new connection to one of them. The supervisor serves nothing itself and opens no
register; it

- restarts a worker that dies, after 0.5 s, doubling up to 30 s while they keep dying (logged);
  a worker that stops at start before any worker was ever ready stops everything (a bad register,
  a listener that cannot be adopted: restarting would not help);
- kills a worker whose reactor has not said it is alive for `Supervisor.HEARTBEAT_TIMEOUT` s
  (then restarts it);
- passes SIGTERM (and SIGINT) on: every worker drains and exits within 10 s, then the supervisor
  exits 0; and SIGHUP (reload);
- talks to systemd (``Type=notify``, ``NotifyAccess=main``): ``READY=1`` once every worker listens,
  ``STATUS=`` whether the register answers in every worker, ``WATCHDOG=1`` from its reactor,
  ``STOPPING=1``.

A worker reports to the supervisor in lines over a pipe (`WorkerChannel`): ``ready online``,
``online``, ``offline``, ``alive`` (every second), ``stopping``. Caps and throttles hold per worker.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer, interfaces, protocol, task
from twisted.logger import Logger
from twisted.python.failure import Failure as TwistedFailure

from gateway import metrics
from gateway.config import Config
from gateway.endpoints import AdoptedEndpoint, bind_address, check_config, listen_kind
from gateway.runtime import Failure
from gateway.systemd import Notifier

log = Logger(namespace="nlr.supervisor")

ENV_FDS = "NLR_WORKER_FDS"  # JSON {listen key: descriptor}
ENV_PIPE = "NLR_WORKER_PIPE"  # the descriptor a worker writes its report lines to
# systemd's variables are the supervisor's: a worker must not take them for its own
_SYSTEMD_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def worker_count(setting: int | str, cpus: int | None = None) -> int:
    """``server.workers`` or ``--workers``: a number, or ``auto`` for the number of CPUs."""
    if setting == "auto":
        return max(1, cpus if cpus is not None else (os.cpu_count() or 1))
    return int(setting)


class WorkerChannel:
    """A worker's side of the pipe to its supervisor (`gateway.server.Announcer`)."""

    def __init__(self, fds: dict[str, int], pipe: int) -> None:
        self.fds, self.pipe = fds, pipe

    @classmethod
    def from_environment(cls) -> WorkerChannel:
        try:
            fds = {str(k): int(v) for k, v in json.loads(os.environ[ENV_FDS]).items()}
            pipe = int(os.environ[ENV_PIPE])
        except (KeyError, ValueError, TypeError, AttributeError):
            raise Failure("serve --worker is started by `nlr serve --workers N`, not by hand") from None
        return cls(fds, pipe)

    def _say(self, line: str) -> None:
        try:
            os.write(self.pipe, line.encode("ascii") + b"\n")
        except OSError:
            pass  # the supervisor is gone; the heartbeat notices (getppid)

    def ready(self, online: bool) -> None:
        self._say("ready online" if online else "ready offline")

    def register_state(self, online: bool) -> None:
        self._say("online" if online else "offline")

    def alive(self) -> None:
        self._say("alive")

    def stopping(self) -> None:
        self._say("stopping")


@dataclass
class _Worker:
    index: int
    process: Any = None  # IProcessTransport while it runs
    pid: int = 0
    started: float = 0.0
    heard: float = 0.0
    ready: bool = False
    online: bool = True
    restart: Any = None  # the pending callLater of a restart
    buffer: bytes = b""
    statuses: list[int] = field(default_factory=list)


class _WorkerProtocol(protocol.ProcessProtocol):
    def __init__(self, supervisor: Supervisor, worker: _Worker, pipe: int) -> None:
        self.supervisor, self.worker, self.pipe = supervisor, worker, pipe

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD != self.pipe:
            return
        worker = self.worker
        worker.buffer += data
        *lines, worker.buffer = worker.buffer.split(b"\n")
        worker.buffer = worker.buffer[-256:]
        for line in lines:
            self.supervisor.heard(worker, line.decode("ascii", "replace").strip())

    def processEnded(self, reason: TwistedFailure) -> None:
        self.supervisor.ended(self.worker, reason.value)


class Supervisor:
    """The parent of the workers; see the module's docstring."""

    RESTART_FIRST_SECONDS = 0.5
    RESTART_MAX_SECONDS = 30.0
    STABLE_SECONDS = 30.0  # a worker that lived this long resets the backoff
    HEARTBEAT_TIMEOUT = 10.0  # seconds a ready worker may go without a word
    START_TIMEOUT = 60.0  # seconds a starting worker has to say anything at all
    STOP_DEADLINE_SECONDS = 9.5  # after SIGTERM: then the workers left are killed

    def __init__(self, reactor: Any, config: Config, count: int, sockets: dict[str, int],
                 command: list[str], environ: dict[str, str]) -> None:
        self.reactor, self.config, self.count = reactor, config, count
        self.sockets = sockets  # listen key → descriptor, kept open for restarts
        self.command, self.environ = command, environ
        self.workers = [_Worker(i) for i in range(count)]
        self.notifier = Notifier(reactor)
        self.failures = 0
        self.ever_ready = False
        self.stopping = False
        self.fatal: int | None = None
        self._all_ended: defer.Deferred[None] | None = None
        self._checks = task.LoopingCall(self._check_heartbeats)
        self._checks.clock = reactor
        self._devnull = os.open(os.devnull, os.O_RDONLY)

    # ------------------------------------------------------------------ starting workers
    def start(self) -> None:
        for worker in self.workers:
            self.spawn(worker)
        self._checks.start(1.0, now=False)

    def spawn(self, worker: _Worker) -> None:
        worker.restart = None
        if self.stopping:
            return
        keys = list(self.sockets)
        child_fds: dict[int, int | str] = {0: self._devnull, 1: 1, 2: 2}
        for i, key in enumerate(keys):
            child_fds[3 + i] = self.sockets[key]
        pipe = 3 + len(keys)
        child_fds[pipe] = "r"
        env = {k: v for k, v in self.environ.items() if k not in _SYSTEMD_VARIABLES}
        env[ENV_FDS] = json.dumps({key: 3 + i for i, key in enumerate(keys)})
        env[ENV_PIPE] = str(pipe)
        env["NLR_WORKER_INDEX"] = str(worker.index)
        worker.ready, worker.online, worker.buffer = False, True, b""
        worker.started = worker.heard = self.reactor.seconds()
        worker.process = self.reactor.spawnProcess(_WorkerProtocol(self, worker, pipe), self.command[0],
                                                   self.command, env=env, childFDs=child_fds)
        worker.pid = worker.process.pid
        log.info("worker {n} started (pid {pid})", n=worker.index + 1, pid=worker.pid)

    # ------------------------------------------------------------------ what workers say
    def heard(self, worker: _Worker, line: str) -> None:
        worker.heard = self.reactor.seconds()
        if line.startswith("ready"):
            worker.ready, worker.online = True, line != "ready offline"
            if not self.ever_ready and all(w.ready for w in self.workers):
                self.ever_ready = True
                log.info("serving with {n} workers (pids {pids})", n=self.count,
                         pids=", ".join(str(w.pid) for w in self.workers))
                self.notifier.ready(self.status_text())
            else:
                self.notifier.status(self.status_text())
        elif line in ("online", "offline"):
            worker.online = line == "online"
            self.notifier.status(self.status_text())

    def status_text(self) -> str:
        running = [w for w in self.workers if w.ready]
        offline = sum(1 for w in running if not w.online)
        if offline == 0:
            return f"serving with {len(running)} of {self.count} workers; the register answers"
        return (f"serving offline with {len(running)} of {self.count} workers: the register does not answer "
                f"in {offline} of them")

    def _check_heartbeats(self) -> None:
        now = self.reactor.seconds()
        for worker in self.workers:
            if worker.process is None or worker.pid == 0:
                continue
            limit = self.HEARTBEAT_TIMEOUT if worker.ready else self.START_TIMEOUT
            if now - worker.heard > limit:
                log.error("worker {n} (pid {pid}) has not said it is alive for {s:.0f} s: killing it",
                          n=worker.index + 1, pid=worker.pid, s=now - worker.heard)
                worker.heard = now  # one kill, one line
                self._signal(worker, "KILL")

    # ------------------------------------------------------------------ a worker ended
    def ended(self, worker: _Worker, why: Any) -> None:
        code = getattr(why, "exitCode", None)
        sig = getattr(why, "signal", None)
        pid, lived = worker.pid, self.reactor.seconds() - worker.started
        metrics.worker_died(pid)  # its live gauges (connections, register up) count no more
        worker.process, worker.pid, was_ready, worker.ready = None, 0, worker.ready, False
        how = f"killed by signal {sig}" if sig is not None else f"exit status {code}"
        if self.stopping:
            # a worker still starting has nothing in flight: Python's default SIGTERM is a clean end for it
            worker.statuses.append(0 if code == 0 or (sig == signal.SIGTERM and not was_ready) else 1)
            log.info("worker {n} (pid {pid}) stopped ({how})", n=worker.index + 1, pid=pid, how=how)
            if all(w.process is None for w in self.workers) and self._all_ended is not None:
                done, self._all_ended = self._all_ended, None
                done.callback(None)
            return
        if not self.ever_ready or code == 2:
            # nothing has served yet, or the config is refused: restarting would not help
            log.error("worker {n} (pid {pid}) stopped at start ({how}); stopping", n=worker.index + 1, pid=pid,
                      how=how)
            self.fatal = 2 if code == 2 else 1
            self.reactor.stop()
            return
        if lived >= self.STABLE_SECONDS and was_ready:
            self.failures = 0
        delay = min(self.RESTART_MAX_SECONDS, self.RESTART_FIRST_SECONDS * 2 ** self.failures)
        self.failures += 1
        log.error("worker {n} (pid {pid}) died ({how}); starting it again in {delay:.1f} s", n=worker.index + 1,
                  pid=pid, how=how, delay=delay)
        self.notifier.status(self.status_text())
        worker.restart = self.reactor.callLater(delay, self.spawn, worker)

    # ------------------------------------------------------------------ signals
    def _signal(self, worker: _Worker, name: str) -> None:
        if worker.process is not None:
            try:
                worker.process.signalProcess(name)
            except Exception:  # noqa: BLE001, S110 - already gone: processEnded follows
                pass

    def reload(self) -> None:
        from gateway.server import run_reload_hooks

        # a worker still starting reads the files anyway
        running = [w for w in self.workers if w.process is not None and w.ready]
        log.info("SIGHUP: passing it on to {n} workers", n=len(running))
        run_reload_hooks()
        for worker in running:
            self._signal(worker, "HUP")

    @defer.inlineCallbacks
    def stop(self) -> Any:
        """SIGTERM or SIGINT: every worker drains and exits; then the supervisor does."""
        self.stopping = True
        self.notifier.stopping()
        if self._checks.running:
            self._checks.stop()
        for worker in self.workers:
            if worker.restart is not None and worker.restart.active():
                worker.restart.cancel()
            worker.restart = None
        for fd in self.sockets.values():  # the workers hold their own copies until they stop listening
            try:
                os.close(fd)
            except OSError:
                pass
        running = [w for w in self.workers if w.process is not None]
        if self.fatal is None:
            log.info("shutting down: passing SIGTERM on to {n} workers", n=len(running))
        if running:
            self._all_ended = defer.Deferred()
            for worker in running:
                self._signal(worker, "TERM")
            timer = self.reactor.callLater(self.STOP_DEADLINE_SECONDS, self._kill_the_rest)
            yield self._all_ended
            if timer.active():
                timer.cancel()

    def _kill_the_rest(self) -> None:
        for worker in self.workers:
            if worker.process is not None:
                log.error("worker {n} (pid {pid}) did not stop in time: killing it", n=worker.index + 1,
                          pid=worker.pid)
                worker.statuses.append(1)
                self._signal(worker, "KILL")

    def exit_status(self) -> int:
        if self.fatal is not None:
            return self.fatal
        return 0 if all(s == 0 for w in self.workers for s in w.statuses) else 1


def bind_listeners(config: Config, parsed: dict[str, list[tuple[str, Any]]]) -> dict[str, int]:
    """One listening socket per listen key, bound here (or systemd's, from ``parsed``)."""
    sockets: dict[str, int] = {}
    try:
        for section in ("http", "sip2"):
            for i, (description, endpoint) in enumerate(parsed[section]):
                key = f"{section}.listen[{i}]"
                inner = endpoint
                while not isinstance(inner, AdoptedEndpoint) and getattr(inner, "inner", None) is not None:
                    inner = inner.inner
                if isinstance(inner, AdoptedEndpoint):
                    os.set_inheritable(inner.fd, False)
                    sockets[key] = inner.fd  # systemd's socket: passed on as it is
                    continue
                kind, resolved, _ = listen_kind(description, config.base_dir)
                family, address, backlog = bind_address(resolved)
                sock = socket.socket(family, socket.SOCK_STREAM)
                try:
                    if family != socket.AF_UNIX:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.bind(address)
                    sock.listen(backlog)
                    sock.setblocking(False)  # one file description for every worker: accept() never waits
                except OSError as exc:
                    sock.close()
                    raise Failure(f"cannot listen: {key} ({description}): {exc.strerror or exc}") from None
                sockets[key] = sock.detach()
    except BaseException:
        for fd in sockets.values():
            os.close(fd)
        raise
    return sockets


def _command(config: Config) -> list[str]:
    command = [sys.executable, "-m", "gateway.cli"]
    if config.source != "built-in defaults":
        command += ["--config", os.path.abspath(config.source)]
    return [*command, "serve", "--worker"]


def supervise(config: Config, count: int) -> int:
    """Run the supervisor of ``count`` workers in the foreground until SIGTERM or SIGINT.

    Returns the exit status (0: every worker stopped cleanly).

    Raises:
        ConfigError: a listen string is unusable.
        Failure: a listener cannot listen.
    """
    from twisted.internet import reactor

    from gateway import logs

    parsed = check_config(config, reactor)  # exit 2 before anything starts, as for one process
    sockets = bind_listeners(config, parsed)
    logs.install(config.logging.format, config.logging.level, config.logging.requests)
    # One /metrics view over every worker: prometheus_client's multiprocess mode, in a fresh folder
    # (systemd's RuntimeDirectory when there is one), emptied at every start; dead workers marked.
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    folder = metrics.prepare_multiprocess_dir(os.path.join(runtime, "metrics") if runtime
                                              else tempfile.mkdtemp(prefix="nlr-metrics-"))
    reactor.addSystemEventTrigger("after", "shutdown", shutil.rmtree, folder, True)
    environ = dict(os.environ)
    environ.pop("NLR_CONFIG", None) if config.source != "built-in defaults" else None
    supervisor = Supervisor(reactor, config, count, sockets, _command(config), environ)
    threads = interfaces.IReactorFromThreads(reactor)

    def start() -> None:
        signal.signal(signal.SIGHUP, lambda *_: threads.callFromThread(supervisor.reload))
        supervisor.start()

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", supervisor.stop)
    reactor.run()
    return supervisor.exit_status()
