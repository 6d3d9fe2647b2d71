"""`nlr serve` with workers or under a fake systemd, black box: which process holds a connection
(from /proc), the supervisor's children, a launcher that passes sockets as systemd does, and a
datagram socket that reads what the daemon tells systemd."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from daemon_helpers import Daemon, _env

# Execs the daemon with the given descriptors at 3, 4, … and LISTEN_PID its own pid, as systemd does.
LAUNCHER = """
import fcntl, os, sys
fds = [int(fd) for fd in sys.argv[1].split(",") if fd]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i)
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = str(len(fds))
os.execv(sys.executable, [sys.executable] + sys.argv[2:])
"""


class Serve(Daemon):
    """`nlr --config FILE serve ARGS…` in the background, with extra environment and sockets
    passed as systemd passes them (``sockets``: at 3, 4, … with LISTEN_FDNAMES ``names``)."""

    def __init__(self, config: Path, cwd: Path, *args: str, env: dict[str, str] | None = None,
                 sockets: list[socket.socket] | None = None, names: list[str] | None = None) -> None:
        self.log = cwd / f"serve-{time.monotonic_ns()}.log"
        self.err = self.log.with_suffix(".err")
        environ = {**_env(), **(env or {})}
        command = [sys.executable, "-m", "gateway.cli", "--config", str(config), "serve", *args]
        fds = [s.fileno() for s in sockets or []]
        if sockets is not None:
            environ["LISTEN_FDNAMES"] = ":".join(names or [])
            command = [sys.executable, "-c", LAUNCHER, ",".join(map(str, fds)), *command[1:]]
        with self.log.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen(command, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=cwd,
                                         env=environ, pass_fds=fds)

    def wait_log(self, pattern: str, timeout: float = 30.0, count: int = 1) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.findall(pattern, self.log.read_text(errors="replace"))
            if len(found) >= count:
                return found
            assert self.proc.poll() is None, f"exited with {self.proc.returncode}\n{self.output()}"
            time.sleep(0.1)
        raise AssertionError(f"no {count} × {pattern!r} in the log within {timeout} s\n{self.output()}")

    def workers(self) -> set[int]:
        return children(self.proc.pid)


def children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry))
    return found


def serving_pid(client: socket.socket, pids: set[int]) -> int | None:
    """The process (among ``pids``) that holds the server's end of ``client``'s TCP connection."""
    server_port, client_port = client.getpeername()[1], client.getsockname()[1]
    want = f":{server_port:04X}", f":{client_port:04X}"
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(want[0]) and fields[2].endswith(want[1]):
                inode = fields[9]
    if inode is None:
        return None
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid
        except OSError:
            continue
    return None


class NotifySocket:
    """A datagram socket standing in for systemd's ``$NOTIFY_SOCKET``."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages: list[str] = []

    def read(self, timeout: float = 0.2) -> list[str]:
        self.sock.settimeout(timeout)
        try:
            while True:
                self.messages.append(self.sock.recv(4096).decode())
        except (TimeoutError, BlockingIOError):
            pass
        return self.messages

    def wait(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.read():
                if text in message:
                    return message
        raise AssertionError(f"systemd never heard {text!r}: {self.messages}")

    def close(self) -> None:
        self.sock.close()


def stop(daemon: Daemon, within: float = 10.0) -> int:
    return daemon.stop(signal.SIGTERM, within=within)
