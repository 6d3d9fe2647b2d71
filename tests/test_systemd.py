"""systemd (issue 11, item 2): sd_notify and LISTEN_FDS in `gateway.systemd`, then the daemon under
a fake systemd — sockets the test bound, passed at 3, 4, … by a launcher that execs the daemon
with LISTEN_PID its own pid, and a datagram socket as NOTIFY_SOCKET: READY=1, STATUS=, WATCHDOG=1,
STOPPING=1; a TLS `systemd:` listener; the plain-text rule judged by the adopted socket's address;
a database down at start served offline; and the unit files checked by systemd/check."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from daemon_helpers import REPO, Daemon, get, self_signed, write_config
from register_helpers import OSLO, setup_libraries
from sip2_server_helpers import Client
from workers_helpers import NotifySocket, Serve

from gateway.register import Register
from gateway.register.views import OPERATOR
from gateway.systemd import Notifier, listen_fds, notify

DB_DOWN_URL = "postgresql+psycopg://postgres@127.0.0.1:1/x"


# ---------------------------------------------------------------------- the library
def test_listen_fds_are_this_process_s_only() -> None:
    env = {"LISTEN_PID": "123", "LISTEN_FDS": "3", "LISTEN_FDNAMES": "sip2:http:http"}
    assert listen_fds(env, pid=123) == {"sip2": [3], "http": [4, 5]}
    assert listen_fds(env, pid=124) == {}  # inherited by a child: not its sockets
    assert listen_fds({"LISTEN_PID": "9", "LISTEN_FDS": "2"}, pid=9) == {"unknown": [3, 4]}
    assert listen_fds({}, pid=1) == {} and listen_fds({"LISTEN_PID": "x", "LISTEN_FDS": "1"}, pid=1) == {}


def test_notify_to_a_path_and_an_abstract_name(tmp_path: Path) -> None:
    listener = NotifySocket(tmp_path / "notify")
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    abstract.bind(f"\0nlr-test-{os.getpid()}")
    try:
        assert notify("READY=1", {"NOTIFY_SOCKET": listener.path})
        assert notify("STATUS=x", {"NOTIFY_SOCKET": f"@nlr-test-{os.getpid()}"})
        assert abstract.recv(100) == b"STATUS=x" and listener.wait("READY=1") == "READY=1"
        assert not notify("READY=1", {}) and not notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "nobody")})
    finally:
        listener.close()
        abstract.close()
    interval = Notifier(None, {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "30000000"}).watchdog_interval()
    assert interval == 15.0  # half of WATCHDOG_USEC
    assert Notifier(None, {"WATCHDOG_USEC": "1", "WATCHDOG_PID": "1"}).watchdog_interval() is None  # not ours


# ---------------------------------------------------------------------- the daemon under a fake systemd
def _bound(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen(64)
    return sock


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("workers", ["1", "2"])
def test_socket_activated_with_notify(register: Register, database_url: str, keys_path: Path, tmp_path: Path,
                                      daemons: list[Daemon], workers: str) -> None:
    setup_libraries(register)
    register.add_terminal(OPERATOR, "kiosk", "kiosk-pass-1", OSLO, "kiosk")
    self_signed(tmp_path / "tls")
    sip2, web = _bound(), _bound("0.0.0.0")  # TLS may listen anywhere
    sip2_port, http_port = sip2.getsockname()[1], web.getsockname()[1]
    cfg = write_config(tmp_path / "nlr.yaml", database_url, keys_path, sip2=["systemd:domain=INET:name=sip2"],
                       http=["systemd:domain=INET:name=http:privateKey=tls/key.pem:certKey=tls/cert.pem"])
    notify_socket = NotifySocket(tmp_path / "notify")
    try:
        daemon = Serve(cfg, tmp_path, "--workers", workers, sockets=[web, sip2], names=["http", "sip2"],
                       env={"NOTIFY_SOCKET": notify_socket.path, "WATCHDOG_USEC": "1000000"})
        daemons.append(daemon)
        sip2.close()
        web.close()  # the daemon holds them now
        ready = notify_socket.wait("READY=1", timeout=60)
        assert "STATUS=serving" in ready and "the register answers" in ready, ready
        notify_socket.wait("WATCHDOG=1", timeout=5)  # every 0.5 s
        context = ssl.create_default_context(cafile=str(tmp_path / "tls" / "cert.pem"))
        context.check_hostname = False
        assert get(f"https://127.0.0.1:{http_port}/healthz", context=context)[0] == 200  # the TLS handshake
        with Client(sip2_port, timeout=20) as c:
            assert c.ask("9300CNkiosk|COkiosk-pass-1|") == b"941"
        notify_socket.messages.clear()
        assert daemon.stop() == 0
        assert any("STOPPING=1" in m for m in notify_socket.read()), notify_socket.messages
    finally:
        notify_socket.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_adopted_plain_socket_on_every_interface_is_refused(database_url: str, keys_path: Path,
                                                               tmp_path: Path, daemons: list[Daemon]) -> None:
    anywhere = _bound("0.0.0.0")
    cfg = write_config(tmp_path / "nlr.yaml", database_url, keys_path, http=["systemd:domain=INET:name=http"])
    daemon = Serve(cfg, tmp_path, sockets=[anywhere], names=["http"])
    daemons.append(daemon)
    assert daemon.proc.wait(timeout=60) == 2
    err = daemon.err.read_text()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "0.0.0.0" in err and "allow_plaintext" in err
    missing = write_config(tmp_path / "missing.yaml", database_url, keys_path, http=["systemd:domain=INET:name=web"])
    daemon = Serve(missing, tmp_path, sockets=[anywhere], names=["http"])
    daemons.append(daemon)
    assert daemon.proc.wait(timeout=60) == 2 and "FileDescriptorName" in daemon.err.read_text()
    allowed = write_config(tmp_path / "allowed.yaml", database_url, keys_path, http=["systemd:domain=INET:name=http"],
                           extra="  allow_plaintext: true\n")
    daemon = Serve(allowed, tmp_path, sockets=[anywhere], names=["http"])
    daemons.append(daemon)
    daemon.health(f"http://127.0.0.1:{anywhere.getsockname()[1]}", 200, timeout=60)
    anywhere.close()
    assert daemon.stop() == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_database_down_at_start_is_served_offline(keys_path: Path, tmp_path: Path, daemons: list[Daemon],
                                                   database_url: str) -> None:
    web = _bound()
    cfg = write_config(tmp_path / "nlr.yaml", DB_DOWN_URL, keys_path, http=["systemd:domain=INET:name=http"])
    notify_socket = NotifySocket(tmp_path / "notify")
    try:
        daemon = Serve(cfg, tmp_path, sockets=[web], names=["http"], env={"NOTIFY_SOCKET": notify_socket.path})
        daemons.append(daemon)
        ready = notify_socket.wait("READY=1", timeout=60)  # not a failed start
        assert "offline" in ready and "does not answer" in ready, ready
        assert daemon.health(f"http://127.0.0.1:{web.getsockname()[1]}", 503)["database"] == "unreachable"
        web.close()
        assert daemon.stop() == 0
    finally:
        notify_socket.close()


# ---------------------------------------------------------------------- the unit files
@pytest.mark.skipif(shutil.which("systemd-analyze") is None and os.environ.get("CI") != "true",
                    reason="systemd-analyze is not installed (CI requires it)")
def test_the_units_are_hardened_and_verify_clean() -> None:
    nlr = REPO / ".venv" / "bin" / "nlr"
    if not nlr.exists():
        pytest.skip("no built nlr in .venv")
    done = subprocess.run([str(REPO / "systemd" / "check"), str(nlr)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    score = float(done.stdout.split("rates nlr.service ")[1].split()[0])
    assert score <= 2.5
