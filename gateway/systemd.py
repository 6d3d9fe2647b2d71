"""What the daemon says to systemd, and the listening sockets systemd hands it.

``sd_notify`` is a datagram to ``$NOTIFY_SOCKET`` (a path, or an abstract name when it starts with
``@``): ``READY=1`` once the listeners are up, ``STATUS=…`` whenever the register comes or goes,
``WATCHDOG=1`` at half of ``$WATCHDOG_USEC`` from a reactor timer (so it stops when the reactor
hangs, and a database outage, which leaves the reactor turning, never makes systemd restart us),
``STOPPING=1`` on shutdown. Without ``$NOTIFY_SOCKET`` (not started by systemd) it does nothing.

Socket activation: ``$LISTEN_FDS`` descriptors from 3 on, named by ``$LISTEN_FDNAMES``, for this
process only when ``$LISTEN_PID`` is its pid (a child inherits the variables, not the sockets).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

from twisted.internet import task
from twisted.logger import Logger

log = Logger(namespace="nlr")

LISTEN_FDS_START = 3


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (``"READY=1\\nSTATUS=…"``) to the service manager; False when there is none
    or it cannot be reached (never an exception: systemd's absence is not our failure)."""
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return False
    target = "\0" + address[1:] if address[0] == "@" else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode("utf-8", "replace"), target)
    except OSError:
        return False
    return True


def listen_fds(environ: Mapping[str, str] | None = None, pid: int | None = None) -> dict[str, list[int]]:
    """The sockets systemd passed this process: ``{name: [fd, …]}`` in the order given (an unnamed
    descriptor is named ``unknown``, as systemd does). Empty unless ``$LISTEN_PID`` is ``pid``."""
    env = os.environ if environ is None else environ
    if environ is None and "LISTEN_PID" not in env:
        return _taken_by_twisted()
    try:
        if int(env.get("LISTEN_PID", "")) != (os.getpid() if pid is None else pid):
            return {}
        count = int(env.get("LISTEN_FDS", ""))
    except ValueError:
        return {}
    names = env.get("LISTEN_FDNAMES", "").split(":") if env.get("LISTEN_FDNAMES") else []
    return _named(list(range(LISTEN_FDS_START, LISTEN_FDS_START + max(0, count))), names)


def _named(descriptors: list[int], names: list[str]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for i, fd in enumerate(descriptors):
        name = names[i] if i < len(names) and names[i] else "unknown"
        found.setdefault(name, []).append(fd)
    return found


def _taken_by_twisted() -> dict[str, list[int]]:
    """Importing ``twisted.internet.endpoints`` reads ``$LISTEN_FDS`` (checking ``$LISTEN_PID``) into
    its ``systemd:`` parser and deletes both from the environment; what it read is then ours."""
    from twisted.internet.endpoints import _SystemdParser

    inherited = _SystemdParser._sddaemon
    return _named(inherited.inheritedDescriptors(), list(getattr(inherited, "_names", ())))


class Notifier:
    """The daemon's side of ``Type=notify``: READY, STATUS, the watchdog, STOPPING. Every method
    is a no-op without ``$NOTIFY_SOCKET``."""

    def __init__(self, reactor: Any, environ: Mapping[str, str] | None = None) -> None:
        self.reactor = reactor
        self.environ = dict(os.environ if environ is None else environ)
        self.enabled = bool(self.environ.get("NOTIFY_SOCKET"))
        self._watchdog: task.LoopingCall | None = None
        self.last_status = ""

    def send(self, state: str) -> None:
        if self.enabled:
            notify(state, self.environ)

    def ready(self, status: str) -> None:
        self.last_status = status
        self.send(f"READY=1\nSTATUS={status}\nMAINPID={os.getpid()}")
        self.start_watchdog()

    def status(self, status: str) -> None:
        if status != self.last_status:
            self.last_status = status
            self.send(f"STATUS={status}")

    def stopping(self, status: str = "stopping: finishing what is in flight") -> None:
        self.stop_watchdog()
        self.send(f"STOPPING=1\nSTATUS={status}")

    def watchdog_interval(self) -> float | None:
        """Half of ``$WATCHDOG_USEC`` in seconds, when the watchdog is on for this process."""
        try:
            usec = int(self.environ.get("WATCHDOG_USEC", ""))
        except ValueError:
            return None
        pid = self.environ.get("WATCHDOG_PID")
        if usec <= 0 or (pid and pid.isdigit() and int(pid) != os.getpid()):
            return None
        return usec / 2_000_000

    def start_watchdog(self) -> None:
        interval = self.watchdog_interval()
        if not self.enabled or interval is None or self._watchdog is not None:
            return
        self._watchdog = task.LoopingCall(self.send, "WATCHDOG=1")
        self._watchdog.clock = self.reactor
        self._watchdog.start(interval, now=True)

    def stop_watchdog(self) -> None:
        if self._watchdog is not None and self._watchdog.running:
            self._watchdog.stop()
        self._watchdog = None
