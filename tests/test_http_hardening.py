"""Issue 9, the HTTP side, black box: `nlr serve` in a subprocess, spoken to over TCP.

Findings 1 and 2 (hostile multipart bodies; and bodies that cost the NCIP parser or the urlencoded
decoder CPU before authentication), 3 (headers or a body trickled in, connections without
end), 8 (a huge Content-Length or chunk size, `OPTIONS *`): each is a regression test here, and the
attacks run while `/healthz` and a SIP2 round trip are timed (p95 under 100 ms).

One daemon serves the module, with short deadlines (headers 2 s, body 3 s, idle 4 s) and small caps
(50 connections, 20 per source). Tests pick their source address in 127.0.0.0/8 (all loopback on
Linux), so one test's connections never count against another's source.
"""

from __future__ import annotations

import http.client
import shutil
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from daemon_helpers import Daemon, free_port, write_config
from lxml import etree
from ncip_gateway_helpers import Q, schema
from sip2_server_helpers import PASSWORD, Template

from gateway.web.site import source_key

HEADER_TIMEOUT, BODY_TIMEOUT, IDLE_TIMEOUT = 2, 3, 4
PER_SOURCE, TOTAL = 20, 50
CAP = 262144  # http.max_body_bytes, the default
SYNTAX = "Invalid Message Syntax Error"


class Served:
    def __init__(self, daemon: Daemon, http_port: int, sip2_port: int) -> None:
        self.daemon, self.http_port, self.sip2_port = daemon, http_port, sip2_port

    def log(self) -> str:
        return self.daemon.log.read_text(errors="replace") + self.daemon.err.read_text(errors="replace")

    def connect(self, source: str = "127.0.0.1", timeout: float = 10.0) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.http_port), timeout=timeout, source_address=(source, 0))

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                source: str = "127.0.0.1", timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout, source_address=(source, 0))
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()

    def healthz_ms(self, source: str = "127.0.0.1") -> float:
        started = time.perf_counter()
        status, _, _ = self.request("GET", "/healthz", source=source, timeout=5)
        assert status == 200
        return (time.perf_counter() - started) * 1000


def ncip_problem(status: int, headers: dict[str, str], body: bytes) -> tuple[str | None, str | None]:
    """The answer is a schema-valid NCIP message with HTTP 200; its (ProblemType, ProblemDetail)."""
    assert status == 200, body[:300]
    assert headers["content-type"] == "application/xml; charset=utf-8"
    root = etree.fromstring(body)
    schema().assertValid(root)
    return root.findtext(f".//{Q}ProblemType"), root.findtext(f".//{Q}ProblemDetail")


def read_all(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """What the server sends until it closes; and the seconds that took. Fails if it never closes."""
    started = time.monotonic()
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"still open after {timeout} s; received {data[:200]!r}") from None
    return data, time.monotonic() - started


def refused_at_once(served: Served, source: str) -> bool:
    """A new connection from ``source`` is closed by the server without a word, within half a
    second (a reset before connect() even returned counts: that is at once too)."""
    started = time.monotonic()
    try:
        sock = served.connect(source)
    except ConnectionResetError:
        return time.monotonic() - started < 0.5
    with sock:
        data, took = read_all(sock, timeout=2)
    return data == b"" and took < 0.5


def still_open(sock: socket.socket, wait: float = 0.3) -> bool:
    sock.settimeout(wait)
    try:
        return sock.recv(1) == b"" and False
    except TimeoutError:
        return True
    except ConnectionResetError:
        return False


@pytest.fixture(scope="module")
def served(sip2_template: Template, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The daemon over a copy of the SIP2 tests' register (terminal kiosk1), HTTP and SIP2 on loopback."""
    folder = tmp_path_factory.mktemp("http-hardening")
    db = folder / "register.db"
    shutil.copy(sip2_template.db, db)
    http_port, sip2_port = free_port(), free_port()
    config = write_config(
        folder / "nlr.yaml", f"sqlite:///{db}", sip2_template.keys, http=[f"tcp:{http_port}:interface=127.0.0.1"],
        sip2=[f"tcp:{sip2_port}:interface=127.0.0.1"],
        extra=(f"  header_timeout: {HEADER_TIMEOUT}\n  body_timeout: {BODY_TIMEOUT}\n  idle_timeout: {IDLE_TIMEOUT}\n"
               f"  max_connections: {TOTAL}\n  max_connections_per_source: {PER_SOURCE}\n"))
    daemon = Daemon(config, folder)
    try:
        daemon.health(f"http://127.0.0.1:{http_port}", 200)
        yield Served(daemon, http_port, sip2_port)
        assert daemon.stop() == 0  # and no traceback in its output, all module long
    finally:
        daemon.kill()


# ---------------------------------------------------------------------- finding 1, 2: hostile forms
def nested_multipart(depth: int = 5000) -> bytes:
    """``depth`` parts, each the multipart container of the next (never closed), in under 256 KB."""
    body = b"".join(b"--%x\r\nContent-Type:multipart/mixed;boundary=%x\r\n\r\n" % (i, i + 1) for i in range(depth))
    assert len(body) <= CAP
    return body


def test_5000_nested_parts_without_a_token_answer_a_problem(served: Served) -> None:
    started = time.monotonic()
    answer = served.request("POST", "/ncip", nested_multipart(),
                            headers={"content-type": "multipart/form-data; boundary=0"})
    assert time.monotonic() - started < 1
    assert ncip_problem(*answer)[0] == SYNTAX
    assert "Traceback" not in served.log() and "RecursionError" not in served.log()


def test_a_form_field_still_reaches_the_responder(served: Served) -> None:
    """The bounded parser still finds the XML of an old NCIP 1 client, after a few other fields."""
    xml = (b'<?xml version="1.0"?><NCIPMessage xmlns="http://www.niso.org/2008/ncip" version="2.02">'
           b"<LookupAgency><InitiationHeader><FromAgencyId><AgencyId>x</AgencyId></FromAgencyId>"
           b"<ToAgencyId><AgencyId>NLR</AgencyId></ToAgencyId></InitiationHeader><AgencyId>NLR</AgencyId>"
           b"</LookupAgency></NCIPMessage>")
    body = b"".join(b'--zz\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nv\r\n' % i for i in range(5))
    body += b'--zz\r\nContent-Disposition: form-data; name="xml"\r\n\r\n' + xml + b"\r\n--zz--\r\n"
    problem, _ = ncip_problem(*served.request("POST", "/ncip", body,
                                              headers={"content-type": "multipart/form-data; boundary=zz"}))
    assert problem != SYNTAX  # the message was read (it is refused for want of a token, not as junk)


# The body (LF line ends: refused at the first boundary), and its CRLF twin: 37,449 empty
# parts, which the parser stops reading after its part cap.
FLOODS = {"LF": b"--z\n\n" * (CAP // 5), "CRLF": b"--z\r\n\r\n" * (CAP // 7)}


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[18]


def sip2_ms(served: Served) -> Callable[[], float]:
    """A logged-in SIP2 terminal; each call times one SC Status (99 → 98) round trip."""
    sock = socket.create_connection(("127.0.0.1", served.sip2_port), timeout=5)
    buffer = b""

    def ask(message: bytes) -> bytes:
        nonlocal buffer
        sock.sendall(message + b"\r")
        while b"\r" not in buffer:
            chunk = sock.recv(4096)
            assert chunk, "SIP2 connection closed"
            buffer += chunk
        frame, _, buffer = buffer.partition(b"\r")
        return frame

    assert ask(f"9300CNkiosk1|CO{PASSWORD}|CPtest|".encode()) == b"941"

    def round_trip() -> float:
        started = time.perf_counter()
        assert ask(b"9900302.00")[:2] == b"98"
        return (time.perf_counter() - started) * 1000

    round_trip.close = sock.close  # type: ignore[attr-defined]
    return round_trip


def under_attack(served: Served, attack: Callable[[threading.Event], None], *, threads: int = 2,
                 seconds: float = 2.5) -> tuple[float, float]:
    """Run ``attack`` in ``threads`` threads for ``seconds`` while /healthz (from 127.0.0.1, a fresh
    connection each time) and a SIP2 round trip are timed every 50 ms; the p95 of each, in ms."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            attack(stop)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    sip2 = sip2_ms(served)
    workers = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
    health: list[float] = []
    round_trips: list[float] = []
    try:
        for worker in workers:
            worker.start()
        time.sleep(0.2)  # the attack is under way
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            health.append(served.healthz_ms())
            round_trips.append(sip2())
            time.sleep(0.05)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=15)
        sip2.close()  # type: ignore[attr-defined]
    assert not errors, errors[0]
    return p95(health), p95(round_trips)


@pytest.mark.parametrize("flood", FLOODS)
def test_a_boundary_flood_is_answered_at_once_and_starves_nothing(served: Served, flood: str) -> None:
    answers: list[float] = []

    def attack(stop: threading.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            answer = served.request("POST", "/ncip", FLOODS[flood], source="127.0.0.2",
                                    headers={"content-type": "multipart/form-data; boundary=z"})
            answers.append(time.monotonic() - started)
            assert ncip_problem(*answer)[0] == SYNTAX

    health, sip2 = under_attack(served, attack)
    assert len(answers) > 10 and max(answers) < 0.5, (len(answers), max(answers, default=None))
    assert health < 100 and sip2 < 100, (health, sip2)


# A body that is XML, or looks like a form, but costs the parser its work before authentication:
# 7,000 UserElementType (35 ms of Python per body, holding the GIL, when walked), and an urlencoded
ELEMENT_FLOOD = (b'<?xml version="1.0"?><NCIPMessage xmlns="http://www.niso.org/2008/ncip"><LookupUser>'
                 b"<UserId><UserIdentifierValue>N000123456</UserIdentifierValue></UserId>"
                 + b"<UserElementType>x</UserElementType>" * 7000 + b"</LookupUser></NCIPMessage>")
# field of escapes (37 ms of urllib on the reactor thread), or of lone "%" (150 ms: each a KeyError).
URLENCODED_FLOODS = {"escapes": b"xml=" + b"%41" * ((CAP - 4) // 3), "lone percents": b"xml=" + b"%" * (CAP - 4)}


@pytest.mark.parametrize("token", [None, "nlr_no-such-token"], ids=["no token", "unknown Bearer token"])
def test_an_element_flood_is_refused_cheaply_and_starves_nothing(served: Served, token: str | None) -> None:
    """Without a token the message is parsed (the token may be in its InitiationHeader), but refused
    as soon as libxml2 has counted its elements; with an unknown Bearer token it is not parsed."""
    assert len(ELEMENT_FLOOD) <= CAP
    headers = {"content-type": "application/xml"} | ({"authorization": f"Bearer {token}"} if token else {})
    expected = SYNTAX if token is None else "Agency Authentication Failed"

    def attack(stop: threading.Event) -> None:
        while not stop.is_set():
            answer = served.request("POST", "/ncip", ELEMENT_FLOOD, source="127.0.0.3", headers=headers)
            assert ncip_problem(*answer)[0] is not None

    health, sip2 = under_attack(served, attack)
    assert health < 100 and sip2 < 100, (health, sip2)
    problem, detail = ncip_problem(*served.request("POST", "/ncip", ELEMENT_FLOOD, headers=headers))
    assert problem == expected, (problem, detail)
    if token is None:
        assert "more than 1000 elements" in (detail or "")


@pytest.mark.parametrize("flood", URLENCODED_FLOODS)
def test_an_urlencoded_flood_starves_nothing(served: Served, flood: str) -> None:
    """256 KB of escapes in the field ``xml``: decoded at C speed, a few ms at most on the reactor;
    malformed ones are not decoded at all when there are thousands."""
    assert len(URLENCODED_FLOODS[flood]) <= CAP
    headers = {"content-type": "application/x-www-form-urlencoded"}

    def attack(stop: threading.Event) -> None:
        while not stop.is_set():
            answer = served.request("POST", "/ncip", URLENCODED_FLOODS[flood], source="127.0.0.4", headers=headers)
            assert ncip_problem(*answer)[0] == SYNTAX  # "AAAA…" is no XML

    health, sip2 = under_attack(served, attack)
    assert health < 100 and sip2 < 100, (health, sip2)
    assert "Traceback" not in served.log()


# ---------------------------------------------------------------------- finding 3: deadlines
def test_headers_trickled_in_are_cut_at_the_header_timeout(served: Served) -> None:
    """One header line every 0.3 s: each byte used to restart the timeout; now the headers have
    ``http.header_timeout`` seconds from the connection's start, and the answer is 408."""
    with served.connect("127.0.0.11") as sock:
        started = time.monotonic()
        sock.sendall(b"POST /ncip HTTP/1.1\r\nHost: x\r\n")
        sock.settimeout(0.3)
        closed_at, data = None, b""
        for i in range(30):  # 9 s of trickling, were the connection kept
            try:
                sock.sendall(b"X-Trickle-%d: 1\r\n" % i)
                data += sock.recv(4096)
                if data:
                    closed_at = time.monotonic()
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed_at = time.monotonic()
                break
        assert closed_at is not None, "the trickle was never cut"
        assert HEADER_TIMEOUT - 0.2 < closed_at - started < HEADER_TIMEOUT + 1.5
        assert data.startswith(b"HTTP/1.1 408 ")


def test_a_body_trickled_in_is_cut_at_the_body_timeout(served: Served) -> None:
    with served.connect("127.0.0.12") as sock:
        sock.sendall(b"POST /ncip HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        started = time.monotonic()
        sock.settimeout(0.3)
        data = b""
        for _ in range(30):
            try:
                sock.sendall(b"<")
                data += sock.recv(4096)
                if data:
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        took = time.monotonic() - started
        assert BODY_TIMEOUT - 0.2 < took < BODY_TIMEOUT + 1.5, took
        assert data.startswith(b"HTTP/1.1 408 ")


def test_keep_alive_serves_requests_then_closes_when_idle(served: Served) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", served.http_port, timeout=10, source_address=("127.0.0.13", 0))
    try:
        for _ in range(3):  # one connection, three requests, each well within the deadlines
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            assert response.status == 200
            response.read()
            time.sleep(HEADER_TIMEOUT / 2 + 0.2)  # together longer than the header timeout: no matter
        assert conn.sock is not None
        _, idle = read_all(conn.sock, timeout=IDLE_TIMEOUT + 3)
        assert IDLE_TIMEOUT - HEADER_TIMEOUT / 2 - 0.5 < idle + HEADER_TIMEOUT / 2 + 0.2 < IDLE_TIMEOUT + 1.5
    finally:
        conn.close()


def test_connections_over_the_per_source_cap_are_refused_at_once(served: Served) -> None:
    held = [served.connect("127.0.0.21") for _ in range(PER_SOURCE)]
    try:
        assert refused_at_once(served, "127.0.0.21")
        assert served.request("GET", "/healthz", source="127.0.0.22")[0] == 200  # another source: served
        assert still_open(held[0])
        held.pop(0).close()
        time.sleep(0.2)
        with served.connect("127.0.0.21") as again:  # one closed, one more may open
            assert still_open(again)
    finally:
        for sock in held:
            sock.close()


def test_connections_over_the_total_cap_are_refused_at_once(served: Served) -> None:
    sources = [f"127.0.0.{31 + i // PER_SOURCE}" for i in range(TOTAL)]
    held = [served.connect(source) for source in sources]
    try:
        assert refused_at_once(served, "127.0.0.40")
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    assert served.request("GET", "/healthz", source="127.0.0.40")[0] == 200


def test_trickling_connections_at_every_cap_starve_nothing(served: Served) -> None:
    """Two attackers keep as many trickling connections as they may (and more, refused); /healthz
    and SIP2 still answer in time."""

    def attack(stop: threading.Event, counter: list[int] = [0]) -> None:  # noqa: B006 - a shared counter
        counter[0] += 1
        source = f"127.0.0.{50 + counter[0]}"
        socks: list[socket.socket] = []
        try:
            while not stop.is_set():
                try:
                    sock = served.connect(source, timeout=2)
                    sock.sendall(b"POST /ncip HTTP/1.1\r\n")
                    socks.append(sock)
                except OSError:
                    pass
                for sock in socks[-PER_SOURCE:]:
                    try:
                        sock.sendall(b"X: 1\r\n")
                    except OSError:
                        pass
                time.sleep(0.02)
        finally:
            for sock in socks:
                sock.close()

    health, sip2 = under_attack(served, attack)
    assert health < 100 and sip2 < 100, (health, sip2)


# ---------------------------------------------------------------------- finding 8: sizes, OPTIONS *
def answer(sock: socket.socket, timeout: float = 5) -> tuple[tuple[int, dict[str, str], bytes], float]:
    """The first response on ``sock`` (status, headers, body by its Content-Length); and the seconds
    it took to come."""
    started = time.monotonic()
    sock.settimeout(timeout)
    data = b""
    while True:
        head, found, body = data.partition(b"\r\n\r\n")
        if found:
            status_line, *lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
            if int(status_line.split()[1]) == 100 or len(body) >= int(headers.get("content-length", "0")):
                return (int(status_line.split()[1]), headers, body), time.monotonic() - started
        chunk = sock.recv(65536)
        assert chunk, f"closed before a whole response: {data[:300]!r}"
        data += chunk


@pytest.mark.parametrize("framing", [
    b"Content-Length: 1000000000000000000\r\n",
    b"Content-Length: 1000000000000000000\r\nExpect: 100-continue\r\n",
    b"Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\nabc",
], ids=["Content-Length", "100-continue", "chunk size"])
def test_a_body_over_the_cap_is_refused_before_it_arrives(served: Served, framing: bytes) -> None:
    """/ncip answers its Problem ("larger than 262144 bytes", HTTP 200) at once; other paths answer
    413; then the connection closes (after a short linger for the rest of the body)."""
    head = b"POST %s HTTP/1.1\r\nHost: x\r\n" + framing + (b"" if b"chunked" in framing else b"\r\n")
    for path in (b"/ncip", b"/healthz"):
        with served.connect("127.0.0.61") as sock:
            sock.sendall(head % path)
            (status, headers, body), took = answer(sock)
            assert took < 1 and status != 100  # no "100 Continue" for a body that will be refused
            if path == b"/ncip":
                problem, detail = ncip_problem(status, headers, body)
                assert problem == SYNTAX and "larger than 262144 bytes" in (detail or "")
            else:
                assert status == 413
            assert headers["connection"] == "close"
            sock.shutdown(socket.SHUT_WR)  # the client is done: the server closes at once
            assert read_all(sock, timeout=1)[0] == b""
    with served.connect("127.0.0.61") as sock:  # a client that just waits: closed after the linger
        sock.sendall(head % b"/ncip")
        answer(sock)
        assert read_all(sock, timeout=4)[1] < 3


def test_a_client_that_sends_all_before_it_reads_gets_the_problem(served: Served) -> None:
    """Python's http.client writes the whole 10 MB before it reads: the rest of the body is dropped,
    not answered with a reset, so the client still reads the Problem."""
    answer = served.request("POST", "/ncip", b"<" * (10 * 1024 * 1024), source="127.0.0.63")
    problem, detail = ncip_problem(*answer)
    assert problem == SYNTAX and "larger than 262144 bytes" in (detail or "")


def test_options_star_is_refused(served: Served) -> None:
    with served.connect("127.0.0.62") as sock:
        sock.sendall(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
        (status, _, _), _ = answer(sock)
    assert status == 400


# ---------------------------------------------------------------------- how sources are grouped
@pytest.mark.parametrize(("host", "key"), [
    ("192.0.2.7", "192.0.2.7"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:1:2:3", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ("::ffff:192.0.2.7", "192.0.2.7"),
    ("fe80::1%eth0", "fe80::/64"),
])
def test_sources_ipv6_by_64(host: str, key: str) -> None:
    class Address:
        def __init__(self, host: str) -> None:
            self.host = host

    assert source_key(Address(host)) == key



# ---------------------------------------------------------------------- the log under refused traffic
def test_refused_requests_cannot_fill_the_log(served: Served) -> None:
    """A client looping unauthenticated NCIP posts and 404s, each with 4 KB of URL, Referer and
    User-Agent, wrote about 12 KB of log per request (40 MB in 3 s). Refused requests are now
    counted (a line per 10 s); an answered request keeps its access line, its long fields cut."""
    before = len(served.log())
    junk = "x" * 4096
    conn = http.client.HTTPConnection("127.0.0.1", served.http_port, timeout=10)
    try:
        for i in range(300):
            path = f"/ncip?{junk}" if i % 2 else f"/nowhere/{junk}"
            conn.request("POST" if i % 2 else "GET", path, body=b"<x/>" if i % 2 else None,
                         headers={"User-Agent": junk, "Referer": junk})
            conn.getresponse().read()
    finally:
        conn.close()
    time.sleep(0.3)
    grown = len(served.log()) - before
    assert grown < 20_000, grown  # a few counted lines, not 300 × 12 KB
    status, _, _ = served.request("GET", "/healthz?" + junk, headers={"User-Agent": junk})
    assert status == 200
    time.sleep(0.3)
    last = served.log().rstrip().splitlines()[-1]
    assert "/healthz?" in last and len(last) < 1000, last[:300]
