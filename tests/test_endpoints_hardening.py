"""Issue 9, the listeners: the PROXY protocol believed only from `proxy_from` and judged as plain
text (finding 5), TLS 1.2 with forward-secret AEAD suites only (finding 7), and connection caps that
fit the descriptor limit (finding 3). Through `nlr serve` (exit codes, real TLS clients) and SIP2
over TCP on the listeners `nlr serve` builds."""

from __future__ import annotations

import resource
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from daemon_helpers import Daemon, _env, free_port, run_serve, self_signed, write_config
from sip2_server_helpers import PASSWORD, Client, open_register, over_tcp
from twisted.internet import reactor
from twisted.internet.threads import blockingCallFromThread

from gateway import endpoints
from gateway.config import Config, ConfigError, HTTPConfig, LoginThrottleConfig, SIP2Config
from gateway.endpoints import check_config, check_listen
from gateway.sip2 import SIP2Factory
from gateway.web.site import build_site

pytestmark = pytest.mark.usefixtures("no_daemon_failures")
DB_DOWN_URL = "postgresql+psycopg://postgres@127.0.0.1:1/x"  # nothing listens: the database is never reached


# ---------------------------------------------------------------------- finding 5: start-up refusals
@pytest.mark.parametrize("description", [
    "haproxy:tcp:6001:interface=0.0.0.0", "haproxy:tcp:6001", "HAPROXY:tcp6:6001:interface=\\:\\:",
])
def test_a_proxy_listener_is_judged_by_the_interface_it_binds(description: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_listen([description], "sip2.listen", "/etc/nlr.yaml")
    assert "sip2.listen[0]" in str(err.value) and "allow_plaintext" in str(err.value)
    check_listen([description], "sip2.listen", "/etc/nlr.yaml", allow_plaintext=True)
    check_listen(["haproxy:tcp:6001:interface=127.0.0.1", "haproxy:ssl:6002:privateKey=k.pem"], "sip2.listen")


def test_serve_refuses_proxy_listeners_in_clear_or_without_proxy_from(tmp_path: Path, keys_path: Path) -> None:
    """Exit 2, one line naming the file and the key, before the database (down here) is asked."""
    port = free_port()
    cases = {
        "sip2-everywhere": ({"sip2": [f"haproxy:tcp:{port}:interface=0.0.0.0"]},
                            "sip2:\n  proxy_from: [10.0.0.5/32]\n", "sip2.listen[0]"),
        "http-everywhere": ({"http": [f"haproxy:tcp:{port}:interface=0.0.0.0"]}, "  proxy_from: [10.0.0.5/32]\n",
                            "http.listen[0]"),
        "no-proxy-from": ({"sip2": [f"haproxy:tcp:{port}:interface=127.0.0.1"]}, "", "sip2.proxy_from"),
        "bad-network": ({"http": [f"tcp:{port}:interface=127.0.0.1"]}, "  proxy_from: [10.0.0.500]\n",
                        "http.proxy_from[0]"),
        "bad-ciphers": ({"http": [f"tcp:{port}:interface=127.0.0.1"]}, "tls:\n  ciphers: NO-SUCH-CIPHER\n",
                        "tls.ciphers"),
    }
    procs = {}
    for name, (listen, extra, _) in cases.items():
        cfg = write_config(tmp_path / f"{name}.yaml", DB_DOWN_URL, keys_path, http=listen.get("http", []),
                           sip2=listen.get("sip2"), extra="" if extra.startswith("sip2:") else extra)
        if extra.startswith("sip2:"):  # the key belongs in the sip2 section write_config wrote
            cfg.write_text(cfg.read_text().replace("sip2:\n", extra, 1))
        procs[name] = (cfg, run_serve(cfg, tmp_path))
    for name, (cfg, proc) in procs.items():
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, (name, out, err)
        assert len(err.splitlines()) == 1 and err.startswith("error: "), (name, err)
        assert str(cfg) in err and cases[name][2] in err and "Traceback" not in out + err, (name, err)


# ---------------------------------------------------------------------- finding 5: who may send a PROXY header
def serve_sip2(servers, **settings) -> int:
    """A SIP2 listener built from the config as `nlr serve` builds it, over a copy of the populated
    register; returns its port."""
    db = servers.tmp_path / f"register-{len(servers.registers)}.db"
    shutil.copy(servers.template.db, db)
    register = open_register(f"sqlite:///{db}", servers.template.keys)
    servers.registers.append(register)
    config = Config(sip2=SIP2Config(**settings), http=HTTPConfig(listen=[]), base_dir=servers.tmp_path,
                    source="nlr.yaml")
    parsed = check_config(config, reactor)
    factory = SIP2Factory(register, reactor, config.sip2)
    port = blockingCallFromThread(reactor, parsed["sip2"][0][1].listen, factory)
    servers.ports.append(port)
    return port.getHost().port


class Proxied(Client):
    """A client behind a proxy: the PROXY v1 header names the source it claims."""

    def __init__(self, port: int, claimed: str) -> None:
        super().__init__(port)
        family = "TCP6" if ":" in claimed else "TCP4"
        here = "::1" if family == "TCP6" else "127.0.0.1"
        self.send(f"PROXY {family} {claimed} {here} 40000 6001\r\n")


def refused_at_once(c: Client) -> bool:
    started = time.monotonic()
    return c.closed(timeout=2) and not c.buffer and time.monotonic() - started < 0.5


@over_tcp
def test_a_proxy_header_from_outside_proxy_from_is_refused(servers, logs):
    port = serve_sip2(servers, listen=["haproxy:tcp:0:interface=127.0.0.1"], proxy_from=["10.0.0.5/32"])
    with Proxied(port, "10.20.1.1") as c:  # 127.0.0.1 is not the proxy: it may claim nothing
        assert refused_at_once(c)
    assert any("not in sip2.proxy_from" in line and "127.0.0.1" in line for line in logs)


@over_tcp
def test_the_source_a_configured_proxy_names_is_the_one_judged(servers):
    """From a proxy in proxy_from, the claimed source is what allowed_networks, the login throttle
    and the per-source caps judge (IPv6 sources by /64)."""
    port = serve_sip2(servers, listen=["haproxy:tcp:0:interface=127.0.0.1"], proxy_from=["127.0.0.1/32"],
                      login_throttle=LoginThrottleConfig(failures=2, window_seconds=300),
                      max_connections_per_source=2)
    with Proxied(port, "10.20.1.1") as c:  # kiosk-net may log in from 10.20.0.0/16 only
        assert c.ask(f"9300CNkiosk-net|CO{PASSWORD}|") == b"941"
    for _ in range(2):
        with Proxied(port, "192.0.2.1") as c:
            assert c.ask("9300CNkiosk1|COwrong|") == b"940"
    with Proxied(port, "192.0.2.1") as c:
        assert c.ask(f"9300CNkiosk1|CO{PASSWORD}|") == b"940"  # that source is throttled
    with Proxied(port, "192.0.2.2") as c:
        assert c.ask(f"9300CNkiosk1|CO{PASSWORD}|") == b"941"  # another one behind the same proxy is not
    held = [Proxied(port, "2001:db8::1"), Proxied(port, "2001:db8::2")]
    for c in held:
        assert c.ask("9900302.00").startswith(b"98")
    with Proxied(port, "2001:db8::ffff:1") as c:  # the same /64: over its cap of 2; closed unanswered
        assert refused_at_once(c)  # (behind a proxy the source is counted as soon as the header is read)
    with Proxied(port, "2001:db8:0:1::1") as c:  # the next /64 is another source
        assert c.ask(f"9300CNkiosk1|CO{PASSWORD}|") == b"941"
    for c in held:
        c.close()


def proxy_connection(port: int, proxy: str, claimed: str | None) -> socket.socket:
    """A connection from ``proxy`` (a loopback alias) with a PROXY v1 header claiming ``claimed``,
    or without any header (``None``): as a proxy that is slow to send it."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(proxy, 0))
    if claimed is not None:
        sock.sendall(f"PROXY TCP4 {claimed} 127.0.0.1 40000 6001\r\n".encode())
    return sock


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """The server closes ``sock`` (EOF or reset) within ``seconds``, having written nothing."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def opened_and_closed_at_once(port: int, proxy: str, claimed: str | None) -> bool:
    started = time.monotonic()
    try:
        sock = proxy_connection(port, proxy, claimed)
    except ConnectionResetError:
        return time.monotonic() - started < 0.5
    with sock:
        return closed_within(sock, 2) and time.monotonic() - started < 0.5


@over_tcp
def test_a_proxied_connection_counts_against_its_claimed_source_at_once(servers):
    """Review: header-only connections claiming one source all stayed open until the login timeout.
    Now the source the PROXY header names is counted as soon as the header is read."""
    port = serve_sip2(servers, listen=["haproxy:tcp:0:interface=127.0.0.1"], proxy_from=["127.0.0.1/32"],
                      max_connections_per_source=3)
    held = [proxy_connection(port, "127.0.0.1", "192.0.2.9") for _ in range(3)]
    try:
        time.sleep(0.2)
        for _ in range(7):  # header only, nothing after it: over the cap, closed at once
            assert opened_and_closed_at_once(port, "127.0.0.1", "192.0.2.9")
        with Proxied(port, "192.0.2.10") as c:  # another source behind the same proxy is served
            assert c.ask(f"9300CNkiosk1|CO{PASSWORD}|") == b"941"
        for sock in held:  # the three within the cap are still open
            assert not closed_within(sock, 0.05)
    finally:
        for sock in held:
            sock.close()


@over_tcp
def test_a_connection_without_a_proxy_header_has_a_short_deadline_and_counts_meanwhile(servers, monkeypatch):
    """Until its PROXY header is complete a connection counts against the total cap (as the proxy's),
    for at most PROXY_HEADER_TIMEOUT seconds (5; 0.5 here)."""
    monkeypatch.setattr(endpoints, "PROXY_HEADER_TIMEOUT", 0.5)
    port = serve_sip2(servers, listen=["haproxy:tcp:0:interface=127.0.0.1"], proxy_from=["127.0.0.2/32"],
                      max_connections=3)
    silent = [proxy_connection(port, "127.0.0.2", None) for _ in range(3)]
    try:
        time.sleep(0.1)
        assert opened_and_closed_at_once(port, "127.0.0.2", "192.0.2.20")  # the total cap is full
        for sock in silent:  # each closed at its deadline
            assert closed_within(sock, 2)
    finally:
        for sock in silent:
            sock.close()
    time.sleep(0.1)
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=("127.0.0.2", 0)) as sock:
        sock.sendall(b"PROXY TCP4 192.0.2.20 127.0.0.1 40000 6001\r\n9900302.00\r")
        assert sock.recv(1024).startswith(b"98")  # room again


# ---------------------------------------------------------------------- the HTTP side: caps under PROXY, reserve
def serve_http(servers, *, listen: str = "tcp:0:interface=127.0.0.1", **settings) -> int:
    """An HTTP site built as `nlr serve` builds it (caps from the http: keys), on a listener from
    the config; returns its port."""
    db = servers.tmp_path / f"register-{len(servers.registers)}.db"
    shutil.copy(servers.template.db, db)
    register = open_register(f"sqlite:///{db}", servers.template.keys)
    servers.registers.append(register)
    http_settings = {k: v for k, v in settings.items() if k == "proxy_from"}
    config = Config(sip2=SIP2Config(listen=[]), http=HTTPConfig(listen=[listen], **http_settings),
                    base_dir=servers.tmp_path, source="nlr.yaml")
    parsed = check_config(config, reactor)
    caps = {k: v for k, v in settings.items() if k.startswith("max_connections")}
    site = blockingCallFromThread(reactor, lambda: build_site(register, reactor, **caps))
    port = blockingCallFromThread(reactor, parsed["http"][0][1].listen, site)
    servers.ports.append(port)
    return port.getHost().port


def healthz(sock: socket.socket, prefix: bytes = b"") -> bytes:
    """The status line of GET /healthz over ``sock`` (after ``prefix``, e.g. a PROXY header)."""
    sock.settimeout(10)
    sock.sendall(prefix + b"GET /healthz HTTP/1.1\r\nHost: nlr\r\nConnection: close\r\n\r\n")
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0]


@over_tcp
def test_http_behind_a_proxy_counts_the_source_the_header_names(servers):
    port = serve_http(servers, listen="haproxy:tcp:0:interface=127.0.0.1", proxy_from=["127.0.0.1/32"],
                      max_connections_per_source=2)
    held = [proxy_connection(port, "127.0.0.1", "192.0.2.5") for _ in range(2)]
    try:
        time.sleep(0.2)
        assert opened_and_closed_at_once(port, "127.0.0.1", "192.0.2.5")  # that source's cap: 2
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:  # another source, same proxy
            assert healthz(sock, b"PROXY TCP4 192.0.2.6 127.0.0.1 40000 80\r\n") == b"HTTP/1.1 200 OK"
    finally:
        for sock in held:
            sock.close()


@over_tcp
def test_at_the_total_cap_healthz_from_127_0_0_1_is_still_answered(servers):
    """Review: 1,000 connections from 50 addresses filled the total and /healthz got a reset. The
    last LOOPBACK_RESERVE places above the total are kept for 127.0.0.1 and ::1; 127.0.0.x (x > 1),
    loopback too, meets the cap like any source."""
    port = serve_http(servers, max_connections=4, max_connections_per_source=2)
    held = [socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(f"127.0.0.{2 + i // 2}", 0))
            for i in range(4)]
    try:
        time.sleep(0.2)
        assert opened_and_closed_at_once(port, "127.0.0.4", None)  # the total is full
        with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=("127.0.0.1", 0)) as sock:
            assert healthz(sock) == b"HTTP/1.1 200 OK"
        mine = [socket.create_connection(("127.0.0.1", port), timeout=10, source_address=("127.0.0.1", 0))
                for _ in range(2)]
        try:  # 127.0.0.1 still has its per-source cap
            time.sleep(0.2)
            assert opened_and_closed_at_once(port, "127.0.0.1", None)
        finally:
            for sock in mine:
                sock.close()
    finally:
        for sock in held:
            sock.close()


# ---------------------------------------------------------------------- finding 7: TLS suites
def handshake(port: int, ciphers: str | None = None, tls12: bool = True) -> tuple[str, str]:
    """A real TLS client offering only ``ciphers`` (TLS 1.2 at most, unless not ``tls12``): the
    version and suite agreed, or ssl.SSLError."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if tls12:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    if ciphers:
        context.set_ciphers(ciphers + ":@SECLEVEL=0")  # the client offers what the test says, weak or not
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, context.wrap_socket(raw) as tls:
        version, suite = tls.version(), tls.cipher()
        assert version is not None and suite is not None
        return version, suite[0]


WEAK_SUITES = ["AES128-GCM-SHA256", "AES256-SHA", "ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA384"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_tls_listeners_refuse_suites_without_forward_secrecy_or_aead(database_url: str, keys_path: Path,
                                                                     tmp_path: Path, daemons: list[Daemon]) -> None:
    """Static RSA key exchange and CBC with SHA-1 are refused on SIP2 and HTTP ssl: listeners;
    ECDHE with AES-GCM, and TLS 1.3, are accepted; tls.ciphers narrows the TLS 1.2 list."""
    self_signed(tmp_path / "tls", rsa=True)
    http, sip2 = free_port(), free_port()
    tls = ":privateKey=tls/key.pem:certKey=tls/cert.pem"
    cfg = write_config(tmp_path / "nlr.yaml", database_url, keys_path, http=[f"ssl:{http}:interface=127.0.0.1{tls}"],
                       sip2=[f"ssl:{sip2}:interface=0.0.0.0{tls}"])
    daemon = Daemon(cfg, tmp_path)
    daemons.append(daemon)
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    daemon.health(f"https://127.0.0.1:{http}", 200, context=context)
    for port in (http, sip2):
        for suite in WEAK_SUITES:
            with pytest.raises(ssl.SSLError):
                handshake(port, suite)
        assert handshake(port, "ECDHE-RSA-AES128-GCM-SHA256") == ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256")
        assert handshake(port, "ECDHE-RSA-CHACHA20-POLY1305")[1] == "ECDHE-RSA-CHACHA20-POLY1305"
        assert handshake(port, tls12=False)[0] == "TLSv1.3"
    assert daemon.stop(signal.SIGTERM) == 0

    narrow = write_config(tmp_path / "narrow.yaml", database_url, keys_path,
                          http=[f"ssl:{http}:interface=127.0.0.1{tls}"],
                          extra="tls:\n  ciphers: ECDHE-RSA-AES256-GCM-SHA384\n")
    daemon = Daemon(narrow, tmp_path)
    daemons.append(daemon)
    daemon.health(f"https://127.0.0.1:{http}", 200, context=context)
    with pytest.raises(ssl.SSLError):
        handshake(http, "ECDHE-RSA-AES128-GCM-SHA256")
    assert handshake(http, "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384")[1] == \
        "ECDHE-RSA-AES256-GCM-SHA384"
    assert daemon.stop(signal.SIGTERM) == 0


# ---------------------------------------------------------------------- finding 3: caps fit the descriptors
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_caps_are_lowered_to_fit_the_descriptor_limit(database_url: str, keys_path: Path, tmp_path: Path,
                                                      daemons: list[Daemon]) -> None:
    """Under a descriptor limit of 300 the daemon starts, says it lowered its caps, and refuses
    connections beyond them at once, so a flood never takes the descriptors /healthz needs."""
    http, sip2 = free_port(), free_port()
    cfg = write_config(tmp_path / "nlr.yaml", database_url, keys_path, http=[f"tcp:{http}:interface=127.0.0.1"],
                       sip2=[f"tcp:{sip2}:interface=127.0.0.1"])

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (300, 300))

    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "--config", str(cfg), "serve"], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp_path, env=_env(),
                                preexec_fn=low_limit)
    daemon = Daemon.__new__(Daemon)
    daemon.proc, daemon.log, daemon.err = proc, log, log
    daemons.append(daemon)
    daemon.health(f"http://127.0.0.1:{http}", 200)
    text = log.read_text()
    assert "RLIMIT_NOFILE 300" in text and "sip2.max_connections 10000 →" in text, text
    opened: list[socket.socket] = []
    refused = 0
    try:
        for _ in range(400):  # more than the process has descriptors
            try:
                opened.append(socket.create_connection(("127.0.0.1", sip2), timeout=5))
            except ConnectionResetError:  # refused before connect() returned
                refused += 1
        time.sleep(0.5)
        daemon.health(f"http://127.0.0.1:{http}", 200, timeout=5)  # still answering
        try:
            with Client(sip2) as c:  # one more SIP2 connection is refused at once, not left hanging
                assert c.closed(timeout=2) and not c.buffer
        except ConnectionResetError:
            pass  # refused before connect() even returned: at once too
        closed, _, _ = select.select(opened, [], [], 0.5)  # those over the lowered cap: closed by the daemon
        still_open = len(opened) - len(closed)
        assert still_open < 300 and refused + (len(opened) - still_open) > 100, (still_open, refused)
    finally:
        for s in opened:
            s.close()
    time.sleep(0.5)
    with Client(sip2) as c:  # room again
        assert c.ask(f"9300CNnobody|CO{PASSWORD}|") == b"940"
    assert "Too many open files" not in log.read_text()
    assert daemon.stop(signal.SIGTERM) == 0
