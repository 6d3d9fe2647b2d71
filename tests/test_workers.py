"""`nlr serve --workers N` (issue 11, item 1), black box: a supervisor and N worker processes
sharing its listeners. Both workers answer SIP2 and HTTP (which process holds each connection is
read from /proc); a worker killed with -9 is restarted while the other answers; SIGTERM under load
answers everything in flight and exits 0; SIGHUP reads the TLS certificate again without dropping
open connections; the setting is checked like every other."""

from __future__ import annotations

import http.client
import os
import signal
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import Daemon, free_port, get, self_signed, write_config
from register_helpers import OSLO, setup_libraries
from sip2_server_helpers import Client, patron_status
from workers_helpers import Serve, serving_pid

from gateway.cli import main
from gateway.config import ConfigError, load_config
from gateway.register import Register
from gateway.register.views import OPERATOR
from gateway.supervisor import worker_count

PASSWORD = "kiosk-pass-1"
LOGIN = f"9300CNkiosk|CO{PASSWORD}|"


def _terminal(register: Register) -> None:
    setup_libraries(register)
    register.add_terminal(OPERATOR, "kiosk", PASSWORD, OSLO, "kiosk")


def _serve(daemons: list[Daemon], cfg: Path, cwd: Path, *args: str, **kwargs: Any) -> Serve:
    daemon = Serve(cfg, cwd, *args, **kwargs)
    daemons.append(daemon)
    return daemon


def _ready(daemon: Serve, http_port: int, workers: int = 2) -> set[int]:
    daemon.wait_log(rf"serving with {workers} workers", timeout=60)
    daemon.health(f"http://127.0.0.1:{http_port}", 200)
    pids = daemon.workers()
    assert len(pids) == workers, pids
    return pids


def _sip2_owners(port: int, pids: set[int], *, want: set[int], tries: int = 80) -> dict[int, int]:
    """Logins on new SIP2 connections until every pid in ``want`` has answered one."""
    served: dict[int, int] = {}
    clients = []
    try:
        for _ in range(tries):
            c = Client(port, timeout=20)
            clients.append(c)
            assert c.ask(LOGIN) == b"941"
            assert c.ask(patron_status("N999999999", "0000")).startswith(b"24")  # the register answers
            owner = serving_pid(c.sock, pids)
            assert owner is not None
            served[owner] = served.get(owner, 0) + 1
            if want <= set(served):
                break
    finally:
        for c in clients:
            c.close()
    return served


def _http_owners(port: int, pids: set[int], *, want: set[int], tries: int = 80) -> dict[int, int]:
    served: dict[int, int] = {}
    connections = []
    try:
        for _ in range(tries):
            h = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
            connections.append(h)
            h.request("GET", "/healthz")
            response = h.getresponse()
            assert response.status == 200 and b'"ok"' in response.read()
            owner = serving_pid(h.sock, pids)
            assert owner is not None
            served[owner] = served.get(owner, 0) + 1
            if want <= set(served):
                break
    finally:
        for h in connections:
            h.close()
    return served


# ---------------------------------------------------------------------- both workers answer
def test_two_workers_answer_sip2_and_http(register: Register, database_url: str, keys_path: Path, tmp_path: Path,
                                          daemons: list[Daemon]) -> None:
    _terminal(register)
    http_port, sip2_port = free_port(), free_port()
    cfg = write_config(tmp_path / "nlr.yaml", database_url, keys_path, http=[f"tcp:{http_port}:interface=127.0.0.1"],
                       sip2=[f"tcp:{sip2_port}:interface=127.0.0.1"], extra="server:\n  workers: 2\n")
    daemon = _serve(daemons, cfg, tmp_path)
    pids = _ready(daemon, http_port)
    assert set(_sip2_owners(sip2_port, pids, want=pids)) == pids  # each worker answered SIP2
    assert set(_http_owners(http_port, pids, want=pids)) == pids  # and HTTP
    for pid in pids:
        daemon.wait_log(rf"worker pid {pid} serving HTTP on")
    assert daemon.stop() == 0
    assert len(daemon.wait_log(r"worker \d \(pid \d+\) stopped \(exit status 0\)", count=2)) == 2


# ---------------------------------------------------------------------- kill -9
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_killed_worker_is_restarted_while_the_other_answers(register: Register, database_url: str,
                                                              keys_path: Path, tmp_path: Path,
                                                              daemons: list[Daemon]) -> None:
    _terminal(register)
    http_port, sip2_port = free_port(), free_port()
    cfg = write_config(tmp_path / "nlr.yaml", database_url, keys_path, http=[f"tcp:{http_port}:interface=127.0.0.1"],
                       sip2=[f"tcp:{sip2_port}:interface=127.0.0.1"])
    daemon = _serve(daemons, cfg, tmp_path, "--workers", "2")
    pids = _ready(daemon, http_port)
    victim, survivor = sorted(pids)
    with Client(sip2_port, timeout=20) as kept:  # a connection of the survivor's stays up throughout
        assert kept.ask(LOGIN) == b"941"
        if serving_pid(kept.sock, pids) == victim:
            victim, survivor = survivor, victim
        os.kill(victim, signal.SIGKILL)
        for _ in range(20):  # the other one answers every new connection meanwhile
            assert get(f"http://127.0.0.1:{http_port}/healthz", timeout=10)[0] == 200
            with Client(sip2_port, timeout=20) as c:
                assert c.ask(LOGIN) == b"941"
        assert kept.ask(patron_status("N999999999", "0000")).startswith(b"24")
    daemon.wait_log(rf"\(pid {victim}\) died \(killed by signal 9\); starting it again in [\d.]+ s")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = daemon.workers()
        if len(now) == 2 and victim not in now:
            break
        time.sleep(0.2)
    now = daemon.workers()
    assert survivor in now and victim not in now and len(now) == 2, now
    (newcomer,) = now - {survivor}
    daemon.wait_log(rf"worker pid {newcomer} serving HTTP on", timeout=60)
    assert set(_http_owners(http_port, now, want=now, tries=120)) == now  # and the new one answers too
    assert daemon.stop() == 0


# ---------------------------------------------------------------------- SIGTERM under load
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sigterm_under_load_answers_what_is_in_flight(register: Register, database_url: str, keys_path: Path,
                                                       tmp_path: Path, daemons: list[Daemon]) -> None:
    _terminal(register)
    http_port, sip2_port = free_port(), free_port()
    cfg = write_config(tmp_path / "nlr.yaml", database_url, keys_path, http=[f"tcp:{http_port}:interface=127.0.0.1"],
                       sip2=[f"tcp:{sip2_port}:interface=127.0.0.1"])
    daemon = _serve(daemons, cfg, tmp_path, "--workers", "2")
    _ready(daemon, http_port)
    signalled: list[float] = []
    unanswered: list[tuple[float, str]] = []  # (when the request was sent, what happened)
    answered = [0]
    lock = threading.Lock()

    def sip2_load() -> None:
        try:
            c = Client(sip2_port, timeout=20)
            assert c.ask(LOGIN) == b"941"
        except OSError:
            return
        while not signalled or time.monotonic() < signalled[0] + 3:
            try:
                c.send(patron_status("N999999999", "0000") + "\r")
            except OSError:
                return  # closed before the request was sent: not in flight
            sent = time.monotonic()
            try:
                assert c.frame().startswith(b"24")
                with lock:
                    answered[0] += 1
            except (OSError, ConnectionError) as exc:
                with lock:
                    unanswered.append((sent, repr(exc)))
                return

    def http_load() -> None:
        while not signalled or time.monotonic() < signalled[0] + 3:
            try:
                h = http.client.HTTPConnection("127.0.0.1", http_port, timeout=20)
                h.connect()
                h.request("GET", "/healthz")
            except OSError:
                if signalled:
                    return  # refused after SIGTERM: never in flight
                continue
            sent = time.monotonic()
            try:
                assert h.getresponse().status == 200
                with lock:
                    answered[0] += 1
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    unanswered.append((sent, repr(exc)))
            finally:
                h.close()

    threads = [threading.Thread(target=sip2_load) for _ in range(8)] + [threading.Thread(target=http_load)
                                                                        for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(2)
    before = answered[0]
    signalled.append(time.monotonic())
    daemon.proc.send_signal(signal.SIGTERM)
    rc = daemon.stop(None, within=10)
    for t in threads:
        t.join(timeout=20)
    assert rc == 0, daemon.output()
    assert before > 20, before  # it was under load
    # every request sent before SIGTERM reached the workers was answered (10 ms for the signal)
    assert [u for u in unanswered if u[0] < signalled[0] - 0.01] == [], (unanswered, daemon.output())
    assert len(daemon.wait_log(r"worker \d \(pid \d+\) stopped \(exit status 0\)", count=2)) == 2


# ---------------------------------------------------------------------- SIGHUP: TLS certificates
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("workers", ["1", "2"])
def test_sighup_reads_the_tls_certificate_again(database_url: str, keys_path: Path, tmp_path: Path,
                                                daemons: list[Daemon], workers: str) -> None:
    tls = tmp_path / "tls"
    self_signed(tls)
    http_port = free_port()
    cfg = write_config(tmp_path / "nlr.yaml", database_url, keys_path,
                       http=[f"ssl:{http_port}:interface=127.0.0.1:privateKey=tls/key.pem:certKey=tls/cert.pem"])
    daemon = _serve(daemons, cfg, tmp_path, "--workers", workers)
    context = ssl.create_default_context(cafile=str(tls / "cert.pem"))
    context.check_hostname = False
    daemon.health(f"https://127.0.0.1:{http_port}", 200, timeout=60, context=context)
    if workers != "1":
        daemon.wait_log(rf"serving with {workers} workers", timeout=60)

    def certificate(conn: http.client.HTTPSConnection) -> bytes:
        assert conn.sock is not None
        cert = conn.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
        assert cert is not None
        return cert

    anything = ssl.create_default_context()
    anything.check_hostname, anything.verify_mode = False, ssl.CERT_NONE
    old = http.client.HTTPSConnection("127.0.0.1", http_port, timeout=20, context=anything)
    old.request("GET", "/healthz")
    assert old.getresponse().read()
    first = certificate(old)
    self_signed(tls)  # a new key and certificate in the same files
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_log(r"TLS certificate of http .* read again", count=int(workers))
    new = http.client.HTTPSConnection("127.0.0.1", http_port, timeout=20, context=anything)
    new.request("GET", "/healthz")
    assert new.getresponse().status == 200
    assert certificate(new) != first  # new connections get the new certificate
    old.request("GET", "/healthz")  # and the connection opened before SIGHUP still works
    assert old.getresponse().status == 200 and certificate(old) == first
    old.close()
    new.close()
    (tls / "key.pem").write_text("not a key")  # a broken file keeps the last good certificate
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_log(r"did not load .*keeping the old one", count=int(workers))
    assert daemon.health(f"https://127.0.0.1:{http_port}", 200, context=anything)
    assert daemon.stop() == 0


# ---------------------------------------------------------------------- the setting
def test_the_workers_setting_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for value in ("0", "65", "many", "true", "1.5"):
        (tmp_path / "c.yaml").write_text(f"server:\n  workers: {value}\n")
        with pytest.raises(ConfigError, match="server.workers"):
            load_config(tmp_path / "c.yaml")
    for value, count in (("1", 1), ("8", 8), ("auto", None)):
        (tmp_path / "c.yaml").write_text(f"server:\n  workers: {value}\n")
        assert worker_count(load_config(tmp_path / "c.yaml").server.workers) == (count or worker_count("auto"))
    assert load_config(None).server.workers == 1  # the default: one process, no supervisor
    for bad in ("0", "65", "two"):
        assert main(["serve", "--workers", bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "--workers" in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "--workers" in capsys.readouterr().out
