"""The SIP2 server over real TCP (tests/test_sip2_server*.py).

`sip` is the daemon's own `SIP2Factory` listening on 127.0.0.1:0 in the test process (pytest-twisted
runs the reactor), over a register holding the patrons and terminals below. Tests are blocking
functions run in a plain thread (`over_tcp`), talking SIP2 through `Client` sockets, so the
reactor's thread pool stays free for the server's own register calls.
"""

from __future__ import annotations

import functools
import re
import shutil
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest_twisted
from register_helpers import BERGEN, OSLO, TEST_SETTINGS, TRONDHEIM, add_patron, raw_exec, setup_libraries
from twisted.internet import defer, endpoints, reactor, threads
from twisted.python.failure import Failure

from gateway.blocking import RegisterCalls
from gateway.config import SIP2Config
from gateway.hot_path import HotPath
from gateway.register import Register
from gateway.register.crypto import KeyRing
from gateway.register.database import make_engine
from gateway.register.views import OPERATOR, Actor
from gateway.sip2 import LoginThrottle, SIP2Factory
from protocols.sip2 import Message, parse

D = "20250301    101500"  # a transaction date (B.11 {D})
DRE = r"\d{8} {4}\d{6}"  # B.11 {Dre}
PIN = "1234"  # the PIN of the B.11 vectors
PASSWORD = "secret"  # every terminal's password ("9300CNkiosk1|COsecret|…" of B.7)
UNKNOWN = "N000199999"

# The patrons, all at Oslo (door age 15, self-activation) unless said otherwise.
KARI = "N000123456"  # granted everywhere in Oslo, door agreement; æøå name; the vectors' patron
NO_AGREEMENT = "N000100011"  # active in Oslo, no meråpent agreement
CHILD = "N000100012"  # agreement, but ten years old
REVOKED = "N000100013"  # agreement, door access revoked
BLOCKED = "N000100014"
LOST = "N000100015"  # reported lost
REPLACED = "N000100016"  # replaced by N000100026
LOCKED = "N000100017"  # PIN locked
SECRET = "N000100018"  # secret address
FOREIGN = "N000100019"  # name with letters cp850 and latin-1 lack
WRONG_PIN = "N000100020"  # for wrong-PIN tests (counts failures)
BERGEN_PATRON = "N000200011"  # home Bergen, not activated in Oslo
KARI_NAME = ("Åse Kari", "Bjørnstad-Ærø")

# login → (library, profile, options)
TERMINALS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "kiosk1": (OSLO, "kiosk", {}),
    "door1": (OSLO, "door", {}),
    "ils1": (OSLO, "ils", {"pin_required": False}),
    "kiosk-nopin": (OSLO, "kiosk", {"pin_required": False}),
    "kiosk-cp850": (OSLO, "kiosk", {"encoding": "cp850"}),
    "kiosk-latin1": (OSLO, "kiosk", {"encoding": "latin-1"}),
    "kiosk-crlf": (OSLO, "kiosk", {"terminator": "CRLF"}),
    "kiosk-tls": (OSLO, "kiosk", {"tls_only": True}),
    "kiosk-net": (OSLO, "kiosk", {"allowed_networks": ["10.20.0.0/16"]}),
    "kiosk-local": (OSLO, "kiosk", {"allowed_networks": ["127.0.0.0/8"]}),
    "kiosk-off": (OSLO, "kiosk", {}),
    "kiosk-bergen": (BERGEN, "kiosk", {}),
    "kiosk-trondheim": (TRONDHEIM, "kiosk", {}),
}


def populate(reg: Register) -> dict[str, str]:
    """The libraries, patrons and terminals above; returns card → national id (never to be logged)."""
    setup_libraries(reg)
    ids: dict[str, str] = {}

    def patron(k: int, card: str, library: str = OSLO, **kw: Any) -> None:
        view = add_patron(reg, k, library, card=card, pin=PIN, **kw)
        ids[card] = reg.find_patron(OPERATOR, view.card, with_national_id=True).national_id or ""

    patron(0, KARI, given_name=KARI_NAME[0], surname=KARI_NAME[1], address_line1="Storgata 1",
           postal_code="0155", city="Oslo", email="kari@example.org", phone="22334455")
    reg.activate(OPERATOR, KARI, OSLO, door_agreement=True)
    patron(1, NO_AGREEMENT, given_name="Ola", surname="Hansen")
    patron(2, CHILD, given_name="Emma", surname="Berg", birth=date.today() - timedelta(days=10 * 365))
    reg.activate(OPERATOR, CHILD, OSLO, door_agreement=True)
    patron(3, REVOKED, given_name="Rune", surname="Stengt")
    reg.activate(OPERATOR, REVOKED, OSLO, door_agreement=True)
    reg.revoke_door(OPERATOR, REVOKED, OSLO)
    patron(4, BLOCKED, given_name="Per", surname="Blokk")
    reg.set_blocked(OPERATOR, BLOCKED, True, "test: sperret")
    patron(5, LOST, given_name="Lise", surname="Mistet")
    reg.report_lost(OPERATOR, LOST)
    patron(6, REPLACED, given_name="Nils", surname="Ny")
    reg.replace_card(OPERATOR, REPLACED, new_card="N000100026")
    patron(7, LOCKED, given_name="Liv", surname="Laas")
    raw_exec(reg, "UPDATE patrons SET pin_locked_until = :t WHERE id = (SELECT patron_id FROM cards WHERE number = :c)",
             t=datetime(2099, 1, 1), c=LOCKED)
    patron(8, SECRET, given_name="Sofie", surname="Skjult", address_line1="Hemmelig vei 1", postal_code="0150",
           city="Oslo", secret_address=True)
    reg.activate(OPERATOR, SECRET, OSLO, door_agreement=True)
    patron(9, FOREIGN, given_name="Mirosław", surname="Čapek")
    patron(10, WRONG_PIN, given_name="Feil", surname="Tast")
    patron(11, BERGEN_PATRON, BERGEN, given_name="Berit", surname="Bergen")
    for login, (library, profile, options) in TERMINALS.items():
        reg.add_terminal(OPERATOR, login, PASSWORD, library, profile, **options)
    reg.update_terminal(OPERATOR, "kiosk-off", enabled=False)
    return ids


@dataclass
class Template:
    db: Path
    keys: Path
    national_ids: dict[str, str]


def open_register(url: str, keys: Path) -> Register:
    return Register(make_engine(url), KeyRing.load(keys), TEST_SETTINGS)


# ---------------------------------------------------------------------- the server
@dataclass
class Server:
    register: Register
    factory: SIP2Factory
    port: int
    national_ids: dict[str, str] = field(default_factory=dict)
    tls_cafile: str | None = None

    def client(self, **kwargs: Any) -> Client:
        return Client(self.port, cafile=self.tls_cafile, **kwargs)

    def login(self, login: str = "kiosk1", **kwargs: Any) -> Client:
        c = self.client(**kwargs)
        assert c.ask(f"9300CN{login}|CO{PASSWORD}|CPtest|") == b"941", f"login {login}"
        return c

    def settle(self, timeout: float = 5.0) -> None:
        """With a hot path (gateway.hot_path): wait until it follows the feed and has written its audit queue."""
        hot = self.factory.hot
        deadline = time.monotonic() + timeout
        while hot is not None and not (hot.fresh and not hot.queue and not hot._writing):  # noqa: SLF001
            assert time.monotonic() < deadline, "the hot path did not settle"
            time.sleep(0.01)

    def audit(self, action: str | None = None) -> list[Any]:
        self.settle()
        events = self.register.audit_events(limit=10_000)
        return [e for e in events if action is None or e.action == action]


class Servers:
    """Starts servers for a test and stops them afterwards."""

    def __init__(self, template: Template, tmp_path: Path) -> None:
        self.template, self.tmp_path = template, tmp_path
        self.ports: list[Any] = []
        self.registers: list[Register] = []
        self.hot_paths: list[HotPath] = []

    def start(self, *, register: Register | None = None, endpoint: str = "tcp:0:interface=127.0.0.1",
              cafile: str | None = None, throttle: LoginThrottle | None = None, register_timeout: float = 5.0,
              hot: dict[str, Any] | None = None, **settings: Any) -> Server:
        if register is None:
            n = len(self.registers)
            db = self.tmp_path / f"register-{n}.db"
            shutil.copy(self.template.db, db)
            register = open_register(f"sqlite:///{db}", self.template.keys)
        self.registers.append(register)
        calls = hot_path = None
        if hot is not None:  # decisions from memory, audited behind: gateway.hot_path, as `nlr serve` has it
            calls = RegisterCalls(reactor, timeout=register_timeout, probe=register.ping)
            hot_path = HotPath(register, calls, reactor, **hot)
            if threading.current_thread() is threading.main_thread():
                hot_path.start()
            else:  # a test body in a thread (over_tcp): its timers belong to the reactor's thread
                threads.blockingCallFromThread(reactor, hot_path.start)
            self.hot_paths.append(hot_path)
        factory = SIP2Factory(register, reactor, SIP2Config(**settings), register_timeout=register_timeout,
                              throttle=throttle, calls=calls, hot=hot_path)
        port = pytest_twisted.blockon(endpoints.serverFromString(reactor, endpoint).listen(factory))
        self.ports.append(port)
        return Server(register, factory, port.getHost().port, self.template.national_ids, cafile)

    def stop(self) -> None:
        for port in self.ports:
            pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))
        for hot in self.hot_paths:
            if threading.current_thread() is threading.main_thread():
                pytest_twisted.blockon(hot.flush(5.0))
            else:
                threads.blockingCallFromThread(reactor, hot.flush, 5.0)
        for reg in self.registers:
            reg.engine.dispose()


def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> defer.Deferred[Any]:
    """Run blocking ``fn`` in a fresh thread (not the reactor's pool, which the server needs)."""
    d: defer.Deferred[Any] = defer.Deferred()

    def run() -> None:
        try:
            result = fn(*args, **kwargs)
        except BaseException:  # noqa: BLE001 - handed to the test
            failure = Failure()
            reactor.callFromThread(d.errback, failure)
        else:
            reactor.callFromThread(d.callback, result)

    threading.Thread(target=run, daemon=True).start()
    return d


def over_tcp(test: Callable[..., Any]) -> Callable[..., Any]:
    """A blocking test body, run in a thread while the reactor serves."""

    @pytest_twisted.ensureDeferred
    @functools.wraps(test)
    async def run(*args: Any, **kwargs: Any) -> Any:
        return await in_thread(test, *args, **kwargs)

    return run


# ---------------------------------------------------------------------- a blocking SIP2 client
class Client:
    def __init__(self, port: int, *, tls: bool = False, cafile: str | None = None, timeout: float = 10.0,
                 encoding: str = "utf-8", terminator: bytes = b"\r") -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls:
            context = ssl.create_default_context(cafile=cafile)
            sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
        self.sock = sock
        self.encoding, self.terminator = encoding, terminator
        self.buffer = b""
        self.received: list[bytes] = []

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode(self.encoding) if isinstance(data, str) else data)

    def frame(self) -> bytes:
        """The next frame, without its terminator (CR, or CRLF for such terminals)."""
        while self.terminator not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed by the server; unread {self.buffer!r}")
            self.buffer += chunk
        frame, _, self.buffer = self.buffer.partition(self.terminator)
        assert b"\r" not in frame and b"\n" not in frame, frame
        self.received.append(frame + self.terminator)
        return frame

    def ask(self, message: bytes | str, *, seq: int | None = None) -> bytes:
        """Send one message (with ``AY seq AZ checksum`` when ``seq`` is given) and read the answer."""
        data = message.encode(self.encoding) if isinstance(message, str) else message
        self.send((signed(data, seq) if seq is not None else data) + self.terminator)
        return self.frame()

    def ask_text(self, message: str, **kwargs: Any) -> str:
        return self.ask(message, **kwargs).decode(self.encoding)

    def closed(self, timeout: float = 5.0) -> bool:
        """True once the server has closed the connection; bytes sent before that land in ``buffer``."""
        self.sock.settimeout(timeout)
        try:
            while chunk := self.sock.recv(65536):
                self.buffer += chunk
            return True
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def signed(message: bytes | str, seq: int | None, encoding: str = "utf-8") -> bytes:
    """``message`` + ``AY<seq>AZ<checksum>``, checksummed over the encoded bytes (B.7)."""
    data = message.encode(encoding) if isinstance(message, str) else message
    data += (b"AY%dAZ" % seq) if seq is not None else b"AZ"
    return data + f"{-sum(data) & 0xFFFF:04X}".encode()


def checksum_ok(frame: bytes) -> bool:
    """The frame's AZ verifies over the bytes on the wire."""
    at = frame.rindex(b"AZ")
    return len(frame) == at + 6 and (sum(frame[:at + 2]) + int(frame[at + 2:], 16)) & 0xFFFF == 0


def fields(frame: bytes | str, encoding: str = "utf-8") -> Message:
    """Parse an answer with our codec (its checksum verified over the bytes)."""
    data = frame.encode(encoding) if isinstance(frame, str) else frame
    message = parse(data, encoding)
    assert message.checksum is None or message.checksum_basis == "bytes"
    return message


def patron_status(card: str, pin: str | None = PIN, *, ao: str = OSLO, language: str = "012") -> str:
    return f"23{language}{D}AO{ao}|AA{card}|AC|" + (f"AD{pin}|" if pin is not None else "")


def patron_information(card: str, pin: str | None = PIN, *, ao: str = OSLO, summary: str = " " * 10) -> str:
    return f"63012{D}{summary}AO{ao}|AA{card}|AC|" + (f"AD{pin}|" if pin is not None else "")


def patron_enable(card: str, pin: str | None = PIN, *, ao: str = OSLO) -> str:
    return f"25{D}AO{ao}|AA{card}|AC|" + (f"AD{pin}|" if pin is not None else "")


def matches(pattern: str, frame: bytes | str) -> bool:
    text = frame.decode("utf-8", "replace") if isinstance(frame, bytes) else frame
    return re.match(pattern, text) is not None


def terminal(login: str) -> Actor:
    library = TERMINALS[login][0]
    return Actor("terminal", login, library)


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (key, certificate), generated for the test."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now().astimezone()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    key_path, cert_path = folder / "server.key", folder / "server.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def tls_endpoint(key: Path, cert: Path) -> str:
    return f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
