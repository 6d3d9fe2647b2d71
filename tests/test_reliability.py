"""Reliability under load (issue 11, item 7), black box: real `nlr serve` processes, real SIP2 and
NCIP traffic from many clients at once, and the register read back afterwards.

- **The database cut** (PostgreSQL through tests/db_proxy.py, connections dropped or held): while
  NCIP CreateUser / UpdateUser and SIP2 23 / 63 / 25 keep coming, every answer during the cut is the
  clean "register unavailable" (SIP2 98 online N, NCIP Temporary Processing Failure); the service is
  back within 5 s of the database without a restart; every acknowledged write is in the register and
  every refused one is either absent or whole.
- **kill -9 of one worker** (`--workers 2`): no connection is ever refused, answers keep coming, a
  connection the other worker holds never notices, the supervisor starts the dead one again, and no
  acknowledged write is lost.
- **SIGTERM under load** (`--workers 2`): every request sent before the signal is answered, exit 0
  within 10 s, and every acknowledged write is in the register.
- **Two gateways of two workers each** (PostgreSQL): ``NLR_RELIABILITY_REGISTRATIONS`` (default
  5,000) concurrent NCIP registrations over keep-alive connections, with the same national id and
  the same explicit card number sent several times at once: one person per national id, one use of
  each card number, every acknowledged registration present, every duplicate answered as NCIP's
  duplicate Problem ("Duplicate User", "Card Number In Use").

"An acknowledged write" is a change answered as done: CreateUser / UpdateUser answered without a
Problem, SIP2 25 answered "Kortet er aktivt ved dette biblioteket.".
"""

from __future__ import annotations

import http.client
import itertools
import os
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import Daemon, free_port, start, write_config
from db_proxy import DatabaseProxy
from ncip_gateway_helpers import create_user, electronic, update_user
from register_helpers import BERGEN, OSLO, PIN, raw_rows, setup_libraries
from sip2_server_helpers import Client, fields, patron_enable, patron_information, patron_status
from workers_helpers import Serve, serving_pid

from gateway.demo import synthetic_fnr
from gateway.register import Register
from gateway.register.errors import NotFound
from gateway.register.views import OPERATOR, PatronView, Reason
from gateway.sip2 import answers

PASSWORD = "kiosk-pass-1"
LOGIN = f"9300CNkiosk|CO{PASSWORD}|"
UNAVAILABLE = answers.SCREEN[Reason.REGISTER_UNAVAILABLE]
ACTIVATED = answers.ACTIVATED
TEMPORARY = ("Temporary Processing Failure", "Register Unavailable")  # NCIP's "try again"
REGISTRATIONS = int(os.environ.get("NLR_RELIABILITY_REGISTRATIONS", "5000"))
EPOCH = time.monotonic()


def person(k: int) -> str:
    """The k-th distinct synthetic national id (0 <= k < 20,000): one birth date each, 1940-1994."""
    return synthetic_fnr(date(1940, 1, 1) + timedelta(days=k), 100)


def _now() -> float:
    return time.monotonic()


# ---------------------------------------------------------------------- clients
class Ncip:
    """An NCIP client on one keep-alive connection, opened again after a failure."""

    def __init__(self, port: int, token: str, *, pids: set[int] | None = None) -> None:
        self.port, self.token, self.pids = port, token, pids
        self.conn: http.client.HTTPConnection | None = None
        self.owner: int | None = None  # the worker that holds the connection (with ``pids``)

    def post(self, body: bytes) -> str:
        if self.conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            conn.connect()
            self.conn = conn
            self.owner = serving_pid(conn.sock, self.pids) if self.pids else None
        try:
            self.conn.request("POST", "/ncip", body, {"Authorization": f"Bearer {self.token}",
                                                      "Content-Type": "application/xml"})
            response = self.conn.getresponse()
            text = response.read().decode()
            assert response.status == 200, (response.status, text[:300])
            if response.will_close:
                self.close()
            return text
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None


def ncip_outcome(body: str) -> tuple[str, str | None]:
    """("ack", card) for an answer without a Problem, (the Problem's type, its value) otherwise."""
    assert "Traceback" not in body, body
    problem = re.search(r"<ns1:ProblemType[^>]*>([^<]+)</ns1:ProblemType>", body)
    if problem:
        value = re.search(r"<ns1:ProblemValue>([^<]*)</ns1:ProblemValue>", body)
        return problem.group(1), value.group(1) if value else None
    card = re.search(r"<ns1:UserIdentifierValue>(N\d{9})</ns1:UserIdentifierValue>", body)
    assert card and ("CreateUserResponse" in body or "UpdateUserResponse" in body), body[:500]
    return "ack", card.group(1)


@dataclass
class Write:
    kind: str  # create | update | activate
    key: str  # the national id (create) or the card (update, activate)
    value: str = ""  # create: the surname; update: the e-mail address
    sent: float = 0.0
    answered: float | None = None
    outcome: str = "unsent"  # ack | the Problem | unavailable | error …
    card: str | None = None  # create: the card it was given
    owner: int | None = None  # the worker that held the connection


@dataclass
class Ledger:
    """Every write sent and every answer received, with the times (monotonic)."""

    writes: list[Write] = field(default_factory=list)
    reads: list[tuple[float, float | None, str]] = field(default_factory=list)  # sent, answered, outcome
    refused_connections: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def write(self, w: Write) -> None:
        with self.lock:
            self.writes.append(w)

    def read(self, sent: float, answered: float | None, outcome: str) -> None:
        with self.lock:
            self.reads.append((sent, answered, outcome))

    def answers(self) -> list[tuple[float, float, str]]:
        """(sent, answered, outcome) of everything answered, in answer order."""
        with self.lock:
            got = [(r[0], r[1], r[2]) for r in self.reads if r[1] is not None]
            got += [(w.sent, w.answered, w.outcome) for w in self.writes if w.answered is not None]
        return sorted(got, key=lambda a: a[1])  # type: ignore[arg-type, return-value]


class Load:
    """Steady load from several clients until ``stop``: NCIP writers (CreateUser and UpdateUser of
    their own patron, alternately), SIP2 readers (23 and 63 of one patron) and SIP2 self-activations
    (25, each of a Bergen patron not yet active in Oslo)."""

    def __init__(self, ledger: Ledger, *, http_ports: list[int], sip2_ports: list[int], token: str,
                 own_cards: list[str], bergen_cards: list[str], reader_card: str, first_person: int,
                 sip2_readers: int = 3, activators: int = 1, pids: set[int] | None = None) -> None:
        self.ledger, self.token, self.pids = ledger, token, pids
        self.http_ports, self.sip2_ports = http_ports, sip2_ports
        self.stopping = threading.Event()
        self.people = itertools.count(first_person)
        self.bergen = iter(bergen_cards)
        self.people_lock = threading.Lock()
        self.threads = [threading.Thread(target=self._ncip, args=(i, card), daemon=True)
                        for i, card in enumerate(own_cards)]
        self.threads += [threading.Thread(target=self._sip2, args=(i, reader_card, False), daemon=True)
                         for i in range(sip2_readers)]
        self.threads += [threading.Thread(target=self._sip2, args=(i, reader_card, True), daemon=True)
                         for i in range(activators)]
        self.failures: list[str] = []

    def start(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in self.threads), "a load thread hangs"
        assert not self.failures, self.failures[:5]

    def _next_person(self) -> int:
        with self.people_lock:
            return next(self.people)

    def _connected(self, make: Callable[[], Any]) -> Any:
        """``make()`` a connection; a refused one is noted (it must never happen) and tried again."""
        while not self.stopping.is_set():
            try:
                return make()
            except ConnectionRefusedError as exc:
                self.ledger.refused_connections.append(f"{_now() - EPOCH:.2f} {exc!r}")
                time.sleep(0.05)
        return None

    def _ncip(self, i: int, own_card: str) -> None:
        try:
            client = Ncip(self.http_ports[i % len(self.http_ports)], self.token, pids=self.pids)
            for n in itertools.count():
                if self.stopping.is_set():
                    break
                if n % 2 == 0:
                    k = self._next_person()
                    w = Write("create", person(k), f"Last{k}")
                    body = create_user(w.key, surname=w.value, given_name="Reliable")
                else:
                    w = Write("update", own_card, f"c{i}-{n:06d}@example.org")
                    body = update_user(own_card, electronic("mailto", w.value))
                if client.conn is None and self._connected(lambda: self._open(client)) is None:
                    break
                w.owner, w.sent = client.owner, _now()
                self.ledger.write(w)
                try:
                    text = client.post(body)
                except (OSError, http.client.HTTPException) as exc:
                    w.outcome, w.answered = f"error {exc!r}", None
                    time.sleep(0.02)
                    continue
                w.answered = _now()
                outcome, value = ncip_outcome(text)
                w.outcome = "unavailable" if outcome in TEMPORARY else outcome
                if outcome == "ack":
                    w.card = value
                    assert w.kind == "update" or value != own_card
            client.close()
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.failures.append(f"NCIP writer {i}: {exc!r}")

    def _open(self, client: Ncip) -> Ncip:
        conn = http.client.HTTPConnection("127.0.0.1", client.port, timeout=30)
        conn.connect()
        client.conn = conn
        client.owner = serving_pid(conn.sock, client.pids) if client.pids else None
        return client

    def _login(self, port: int) -> Client | None:
        c = self._connected(lambda: Client(port, timeout=30))
        if c is None:
            return None
        try:
            answer = c.ask(LOGIN)
        except (OSError, ConnectionError):
            c.close()
            return None
        assert answer == b"941", answer  # the login is a register call too: done before any cut
        return c

    def _sip2(self, i: int, card: str, activate: bool) -> None:
        try:
            port = self.sip2_ports[i % len(self.sip2_ports)]
            c, retry = None, None
            for n in itertools.count():
                if self.stopping.is_set():
                    break
                if c is None:
                    c = self._login(port)
                    if c is None:
                        time.sleep(0.02)
                        continue
                w = None
                if activate:  # the same patron again after "register unavailable", as a patron would
                    if retry is None:
                        bergen = next(self.bergen, None)
                        if bergen is None:
                            activate = False
                            continue
                    else:
                        bergen, retry = retry, None
                    w = Write("activate", bergen)
                    request = patron_enable(bergen, PIN)
                else:
                    request = patron_status(card, None) if n % 2 else patron_information(card, None)
                sent = _now()
                if w is not None:
                    w.sent = sent
                    self.ledger.write(w)
                try:
                    frame = c.ask(request)
                except (OSError, ConnectionError) as exc:
                    c.close()
                    c = None
                    if w is not None:
                        w.outcome, retry = f"error {exc!r}", w.key
                    else:
                        self.ledger.read(sent, None, f"error {exc!r}")
                    continue
                answered, m = _now(), fields(frame)
                screen = m.get("AF")
                if screen == UNAVAILABLE:
                    outcome = "unavailable"
                elif w is not None:
                    outcome = "ack" if screen == ACTIVATED else f"refused {screen}"
                else:
                    outcome = "ok" if m.get("BL") == "Y" and frame[:2] in (b"24", b"64") else f"? {frame!r}"
                if w is not None:
                    w.answered, w.outcome = answered, outcome
                    if outcome == "unavailable":
                        retry = w.key
                        time.sleep(0.05)
                else:
                    self.ledger.read(sent, answered, outcome)
            if c is not None:
                c.close()
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.failures.append(f"SIP2 client {i}: {exc!r}")


# ---------------------------------------------------------------------- the register afterwards
def check_writes(register: Register, ledger: Ledger) -> Counter[str]:
    """Every acknowledged write is in the register; every other one is absent or whole."""
    seen: Counter[str] = Counter()
    activated = {w.key for w in ledger.writes if w.kind == "activate" and w.outcome == "ack"}
    latest: dict[str, tuple[int, str]] = {}  # card → (index of the last acknowledged update, address)
    sent_updates: dict[str, list[str]] = {}
    for w in ledger.writes:
        seen[f"{w.kind} {w.outcome.split(' ')[0]}"] += 1
        if w.kind == "create":
            try:
                view = register.find_patron_by_national_id(OPERATOR, w.key)
            except NotFound:
                assert w.outcome != "ack", f"an acknowledged registration is lost: {w}"
                continue
            # present: whole (a name, a card, the home library), and the card it was answered with
            assert (view.surname, view.given_name, view.home_library_isil) == (w.value, "Reliable", OSLO), (w, view)
            assert [a.library_isil for a in view.activations if a.home] == [OSLO], (w, view.activations)
            assert register.find_patron(OPERATOR, view.card).surname == w.value
            if w.outcome == "ack":
                assert view.card == w.card, (w, view.card)
            else:
                seen["create committed, not acknowledged"] += 1
        elif w.kind == "update":
            sent_updates.setdefault(w.key, []).append(w.value)
            if w.outcome == "ack":
                latest[w.key] = (len(sent_updates[w.key]) - 1, w.value)
        elif w.kind == "activate":
            view = register.find_patron(OPERATOR, w.key)
            active = {a.library_isil for a in view.activations}
            assert view.home_library_isil == BERGEN
            if w.outcome == "ack":
                assert OSLO in active, f"an acknowledged activation is lost: {w}"
            elif OSLO in active and w.key not in activated:
                seen["activate committed, not acknowledged"] += 1
    for card, values in sent_updates.items():
        email = register.find_patron(OPERATOR, card).email
        last, value = latest.get(card, (-1, None))
        if value is not None:  # each writer sends its updates one after another
            assert email in values[last:], f"an acknowledged update of {card} is lost: {value!r}, now {email!r}"
        else:
            assert email is None or email in values, (card, email)
        if email in values[last + 1:]:
            seen["update committed, not acknowledged"] += 1
    return seen


# ---------------------------------------------------------------------- set-up
@dataclass
class Setup:
    token: str
    own_cards: list[str]
    bergen_cards: list[str]
    reader_card: str


def prepare(register: Register, *, writers: int, bergen: int) -> Setup:
    """The libraries, a kiosk at Oslo (no PIN asked for 23/63), an Oslo library system that may create
    and update, a patron per NCIP writer, one for the SIP2 readers and ``bergen`` Bergen patrons."""
    setup_libraries(register)
    register.add_terminal(OPERATOR, "kiosk", PASSWORD, OSLO, "kiosk", pin_required=False)
    token = register.add_client(OPERATOR, "ils", OSLO, ["lookup", "create", "update"]).token
    assert token is not None
    own = [register.register_patron(OPERATOR, OSLO, national_id=person(k), surname=f"Own{k}",
                                    given_name="Writer").card for k in range(writers)]
    reader = register.register_patron(OPERATOR, OSLO, national_id=person(writers), surname="Reader",
                                      given_name="Kari").card
    berg = [register.register_patron(OPERATOR, BERGEN, national_id=person(100 + k), surname=f"Berg{k}",
                                     given_name="Ola", pin=PIN).card for k in range(bergen)]
    return Setup(token, own, berg, reader)


def _ports() -> tuple[int, int]:
    return free_port(), free_port()


def _config(tmp_path: Path, name: str, url: str, keys: Path, http_port: int, sip2_port: int,
            extra: str = "") -> Path:
    return write_config(tmp_path / name, url, keys, http=[f"tcp:{http_port}:interface=127.0.0.1"],
                        sip2=[f"tcp:{sip2_port}:interface=127.0.0.1"], extra=extra)


def _serve(daemons: list[Daemon], cfg: Path, cwd: Path, *args: str) -> Serve:
    daemon = Serve(cfg, cwd, *args)
    daemons.append(daemon)
    return daemon


def _workers_ready(daemon: Serve, http_port: int, workers: int = 2) -> set[int]:
    daemon.wait_log(rf"serving with {workers} workers", timeout=60)
    daemon.health(f"http://127.0.0.1:{http_port}", 200)
    pids = daemon.workers()
    assert len(pids) == workers, pids
    return pids


def _no_tracebacks(*daemons: Daemon) -> None:
    for d in daemons:
        for path in (d.log, d.err):
            assert "Traceback" not in path.read_text(errors="replace"), d.output()


def _acked(ledger: Ledger) -> Counter[str]:
    return Counter(w.kind for w in ledger.writes if w.outcome == "ack")


@pytest.fixture
def proxy(database_url: str) -> Iterator[DatabaseProxy]:
    p = DatabaseProxy(database_url)
    yield p
    p.close()


# ---------------------------------------------------------------------- 1. the database cut under load
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
@pytest.mark.parametrize("cut", ["down", "hang"])
def test_the_database_cut_under_load(register: Register, database_url: str, proxy: DatabaseProxy, keys_path: Path,
                                     tmp_path: Path, daemons: list[Daemon], cut: str) -> None:
    """Cut for 3 s (``down``: every database connection dropped and new ones refused; ``hang``: every
    byte held, then dropped): answers during the cut are "unavailable", at once; back within 5 s."""
    s = prepare(register, writers=4, bergen=150)
    http_port, sip2_port = _ports()
    daemon = start(daemons, _config(tmp_path, "nlr.yaml", proxy.url, keys_path, http_port, sip2_port), tmp_path)
    daemon.health(f"http://127.0.0.1:{http_port}", 200)
    probe = Client(sip2_port, timeout=20)
    assert probe.ask(LOGIN) == b"941"
    probe_ncip = Ncip(http_port, s.token)
    ledger = Ledger()
    load = Load(ledger, http_ports=[http_port], sip2_ports=[sip2_port], token=s.token, own_cards=s.own_cards,
                bergen_cards=s.bergen_cards, reader_card=s.reader_card, first_person=1000).start()
    time.sleep(2.5)
    before = _acked(ledger)
    assert before["create"] > 5 and before["update"] > 5 and before["activate"] > 0, before
    cut_at = _now()
    proxy.down() if cut == "down" else proxy.hang()
    try:
        time.sleep(1.5)  # offline by now (1 s of silence for a hang)
        t0 = _now()
        status = fields(probe.ask("9900302.00"))
        assert (status.fixed["online_status"], status.get("AF")) == ("N", UNAVAILABLE), status
        assert fields(probe.ask(patron_status(s.reader_card, None))).get("AF") == UNAVAILABLE
        outcome, _ = ncip_outcome(probe_ncip.post(create_user(person(9999), surname="Probe")))
        assert outcome in TEMPORARY, outcome
        assert _now() - t0 < 1.5  # answered at once, not after a timeout
        time.sleep(1.5)
    finally:
        proxy.down()
        proxy.up()
    up_at = _now()
    while True:  # back by itself, without a restart
        assert _now() - up_at < 5, f"not back within 5 s of the database\n{daemon.output()}"
        status = fields(probe.ask("9900302.00"))
        if status.fixed["online_status"] == "Y":
            break
        time.sleep(0.1)
    back_at = _now()
    outcome, _ = ncip_outcome(probe_ncip.post(create_user(person(9998), surname="Probe", given_name="Reliable")))
    assert outcome == "ack" and _now() - up_at < 5
    time.sleep(2.5)
    load.stop()
    probe.close()
    probe_ncip.close()
    assert daemon.proc.poll() is None  # never restarted
    after = _acked(ledger) - before
    assert after["create"] > 5 and after["update"] > 5, after  # the load went on

    answered = ledger.answers()
    assert not ledger.refused_connections, ledger.refused_connections
    assert [a for a in answered if a[2] not in ("ok", "ack", "unavailable")] == [], "unexpected answers"
    errors = [r for r in ledger.reads if r[1] is None] + [w for w in ledger.writes if w.outcome.startswith("error")]
    assert errors == [], errors[:5]  # no connection of a client was dropped by the cut
    # before the cut every answer was a success; after it settled, too
    assert [a for a in answered if a[1] < cut_at and a[2] == "unavailable"] == []
    assert [a for a in answered if a[0] > back_at + 1 and a[2] == "unavailable"] == []
    # while the register was cut, nothing was answered as done once the gateway knew it
    during = [a for a in answered if cut_at + 1.2 < a[0] and a[1] < up_at]
    assert during and all(a[2] == "unavailable" for a in during), Counter(a[2] for a in during)
    assert max(a[1] - a[0] for a in during) < 1.5, "answered at once while offline"
    seen = check_writes(register, ledger)
    print(f"\n{cut}: back {back_at - up_at:.2f} s after the database; writes {dict(seen)}")
    assert daemon.stop() == 0
    log = daemon.log.read_text(errors="replace")
    assert re.search(r"offline|does not answer", log) and "answers again" in log, log[-3000:]


# ---------------------------------------------------------------------- 2. kill -9 of one worker under load
def test_kill_9_of_one_worker_under_load(register: Register, database_url: str, keys_path: Path, tmp_path: Path,
                                         daemons: list[Daemon]) -> None:
    s = prepare(register, writers=4, bergen=150)
    http_port, sip2_port = _ports()
    daemon = _serve(daemons, _config(tmp_path, "nlr.yaml", database_url, keys_path, http_port, sip2_port), tmp_path,
                    "--workers", "2")
    pids = _workers_ready(daemon, http_port)
    ledger = Ledger()
    load = Load(ledger, http_ports=[http_port], sip2_ports=[sip2_port], token=s.token, own_cards=s.own_cards,
                bergen_cards=s.bergen_cards, reader_card=s.reader_card, first_person=1000, pids=pids).start()
    time.sleep(2.5)
    before = _acked(ledger)
    assert before["create"] > 5 and before["update"] > 5, before
    # the victim: the worker of the first NCIP writer's connection; a SIP2 connection of the other
    # one stays up throughout
    owners = {w.owner for w in ledger.writes if w.owner}
    assert owners <= pids, owners
    victim = next(iter(owners)) if owners else min(pids)
    (survivor,) = pids - {victim}
    kept = None
    for _ in range(60):
        c = Client(sip2_port, timeout=20)
        assert c.ask(LOGIN) == b"941"
        if serving_pid(c.sock, pids) == survivor:
            kept = c
            break
        c.close()
    assert kept is not None, "no SIP2 connection reached the other worker"
    killed_at = _now()
    os.kill(victim, signal.SIGKILL)
    kept_answers = 0
    while _now() - killed_at < 5:  # the survivor's connection never notices
        frame = kept.ask(patron_status(s.reader_card, None))
        assert fields(frame).get("BL") == "Y", frame
        kept_answers += 1
        time.sleep(0.05)
    daemon.wait_log(rf"\(pid {victim}\) died \(killed by signal 9\); starting it again in [\d.]+ s")
    deadline = _now() + 60
    while _now() < deadline and not (len(now := daemon.workers()) == 2 and victim not in now):
        time.sleep(0.2)
    now = daemon.workers()
    assert survivor in now and victim not in now and len(now) == 2, now
    (newcomer,) = now - {survivor}
    daemon.wait_log(rf"worker pid {newcomer} serving HTTP on", timeout=60)
    time.sleep(1.5)
    load.stop()
    kept.close()
    after = _acked(ledger) - before
    assert after["create"] > 5 and after["update"] > 5, after

    assert not ledger.refused_connections, ledger.refused_connections  # the listener never went away
    answered = ledger.answers()
    assert [a for a in answered if a[2] not in ("ok", "ack")] == [], Counter(a[2] for a in answered)
    # answers kept coming: no second without one, the kill included
    times = [killed_at - 1] + [a[1] for a in answered if a[1] > killed_at - 1] + [_now()]
    gap = max(b - a for a, b in itertools.pairwise(times))
    assert gap < 1.5, f"{gap:.2f} s without an answer"
    # only requests in flight on the killed worker's connections went unanswered
    lost = [w for w in ledger.writes if w.outcome.startswith("error")]
    assert all(w.owner in (victim, None) and abs(w.sent - killed_at) < 1 for w in lost), lost
    failed_reads = [r for r in ledger.reads if r[1] is None]
    assert all(abs(r[0] - killed_at) < 1 for r in failed_reads), failed_reads
    seen = check_writes(register, ledger)
    print(f"\nkill -9: {kept_answers} answers on the survivor's connection, longest gap {gap:.2f} s, "
          f"writes {dict(seen)}")
    assert daemon.stop() == 0
    _no_tracebacks(daemon)


# ---------------------------------------------------------------------- 3. SIGTERM under load
def test_sigterm_under_load_answers_every_write_in_flight(register: Register, database_url: str, keys_path: Path,
                                                         tmp_path: Path, daemons: list[Daemon]) -> None:
    s = prepare(register, writers=6, bergen=150)
    http_port, sip2_port = _ports()
    daemon = _serve(daemons, _config(tmp_path, "nlr.yaml", database_url, keys_path, http_port, sip2_port), tmp_path,
                    "--workers", "2")
    _workers_ready(daemon, http_port)
    ledger = Ledger()
    load = Load(ledger, http_ports=[http_port], sip2_ports=[sip2_port], token=s.token, own_cards=s.own_cards,
                bergen_cards=s.bergen_cards, reader_card=s.reader_card, first_person=1000, sip2_readers=4).start()
    time.sleep(2.5)
    before = _acked(ledger)
    assert before["create"] > 5 and before["update"] > 5, before
    signalled = _now()
    daemon.proc.send_signal(signal.SIGTERM)
    rc = daemon.stop(None, within=10)
    stopped = _now() - signalled
    load.stopping.set()
    load.stop()
    assert rc == 0, daemon.output()
    # every request sent before the signal (10 ms for it to arrive) was answered, and as done
    early = signalled - 0.01
    unanswered = [w for w in ledger.writes if w.sent < early and w.answered is None]
    unanswered += [r for r in ledger.reads if r[0] < early and r[1] is None]  # type: ignore[misc]
    assert unanswered == [], (unanswered[:5], daemon.output())
    assert [a for a in ledger.answers() if a[2] not in ("ok", "ack")] == []
    seen = check_writes(register, ledger)
    print(f"\nSIGTERM: stopped in {stopped:.2f} s; writes {dict(seen)}")
    assert len(daemon.wait_log(r"worker \d \(pid \d+\) stopped \(exit status 0\)", count=2)) == 2
    _no_tracebacks(daemon)
    # A request a worker takes up after the signal is answered too: while it drains, a worker takes
    # no new request on a connection that stays open (HTTP answers with Connection: close, SIP2
    # closes after its answer), so the drain ends and never cuts a request it has read — a write
    # done and never answered, which its client then sends again.
    cut = re.findall(r"shutdown: \d+ requests still in flight after [\d.]+ s; closing them",
                     daemon.log.read_text(errors="replace"))
    committed = sum(n for what, n in seen.items() if what.endswith("committed, not acknowledged"))
    assert not cut and not committed, (
        f"SIGTERM under steady load: the workers went on taking requests on open connections while draining "
        f"({stopped:.1f} s), then closed them with requests taken up ({cut or 'without a log line'}); "
        f"{committed} write(s) committed and never answered")


# ---------------------------------------------------------------------- 4. concurrent registrations, two gateways
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_concurrent_registrations_over_two_gateways(register: Register, database_url: str, keys_path: Path,
                                                    tmp_path: Path, daemons: list[Daemon]) -> None:
    setup_libraries(register)
    token = register.add_client(OPERATOR, "ils", OSLO, ["lookup", "create"]).token
    assert token is not None
    gateways = []
    for n in range(2):
        http_port, sip2_port = _ports()
        cfg = _config(tmp_path, f"nlr-{n}.yaml", database_url, keys_path, http_port, sip2_port)
        gateways.append((http_port, _serve(daemons, cfg, tmp_path, "--workers", "2")))
    for http_port, daemon in gateways:
        _workers_ready(daemon, http_port)

    # the jobs: unique people, a national id sent 5 times, an explicit card number sent 5 times
    # (with different people); the copies one after another, so that they are sent at the same time
    copies, groups = 5, max(2, REGISTRATIONS // 100)
    jobs: list[tuple[str, str | None, str]] = []  # national id, card, what it tests
    k = 0
    for g in range(groups):
        jobs += [(person(k), None, "same-id")] * copies
        k += 1
        card = f"N00019{g:04d}"
        for _ in range(copies):
            jobs.append((person(k), card, "same-card"))
            k += 1
    while len(jobs) < REGISTRATIONS:
        jobs.append((person(k), None, "unique"))
        k += 1
    threads = 16
    # interleave: the copies of one group land in different threads at the same moment
    queue = iter(jobs)
    queue_lock = threading.Lock()
    results: list[tuple[str, str | None, str, str, str | None]] = []  # nid, card, kind, outcome, value
    failures: list[str] = []
    barrier = threading.Barrier(threads)

    def work(i: int) -> None:
        client = Ncip(gateways[i % 2][0], token)
        mine: list[tuple[str, str | None, str, str, str | None]] = []
        try:
            client.post(create_user(person(19000 + i), surname="Warm", given_name="Up"))  # connected, warm
            barrier.wait(timeout=60)
            while True:
                with queue_lock:
                    job = next(queue, None)
                if job is None:
                    break
                nid, card, kind = job
                outcome, value = ncip_outcome(client.post(create_user(nid, card, surname="Many", given_name="Reg")))
                mine.append((nid, card, kind, outcome, value))
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(f"client {i}: {exc!r}")
        finally:
            client.close()
            with queue_lock:
                results.extend(mine)

    workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    started = _now()
    for w in workers:
        w.join(timeout=300)
    took = _now() - started
    assert not failures, failures[:5]
    assert len(results) == len(jobs), (len(results), len(jobs))

    by_kind: dict[str, Counter[str]] = {}
    for _, _, kind, outcome, _ in results:
        by_kind.setdefault(kind, Counter())[outcome] += 1
    print(f"\n{len(jobs)} registrations over 2 gateways × 2 workers, {threads} clients: {took:.1f} s "
          f"({len(jobs) / took:.0f}/s); {by_kind}")
    # every national id and every card: one registration acknowledged, the copies refused as duplicates
    per_id: dict[str, Counter[str]] = {}
    per_card: dict[str, Counter[str]] = {}
    for nid, card, kind, outcome, _ in results:
        if kind == "same-id":
            per_id.setdefault(nid, Counter())[outcome] += 1
        elif kind == "same-card":
            assert card is not None
            per_card.setdefault(card, Counter())[outcome] += 1
    assert all(c == Counter({"ack": 1, "Duplicate User": copies - 1}) for c in per_id.values()), per_id
    assert all(c == Counter({"ack": 1, "Card Number In Use": copies - 1}) for c in per_card.values()), per_card
    assert by_kind["unique"] == Counter({"ack": by_kind["unique"].total()}), by_kind["unique"]
    for _, card, _, outcome, value in results:
        if outcome == "ack":
            assert card is None or value == card
    # the register: no person twice, no card number twice, every acknowledged registration present
    acked = {value: nid for nid, _, _, outcome, value in results if outcome == "ack"}
    assert len(acked) == sum(1 for r in results if r[3] == "ack")  # no card number answered twice
    assert raw_rows(register, "SELECT national_id_index FROM patrons GROUP BY national_id_index "
                              "HAVING COUNT(*) > 1") == []
    assert raw_rows(register, "SELECT number FROM cards GROUP BY number HAVING COUNT(*) > 1") == []
    assert raw_rows(register, "SELECT COUNT(*) FROM patrons WHERE surname = 'Many'") == [(len(acked),)]
    cards = list(acked)
    for i in range(0, len(cards), 500):
        chunk = cards[i:i + 500]
        views = register.find_patrons(OPERATOR, chunk, with_national_id=True)
        found = {v.card: v.national_id for v in views if isinstance(v, PatronView)}
        assert found == {c: acked[c] for c in chunk}
    for _, daemon in gateways:
        assert daemon.stop() == 0
    _no_tracebacks(*(d for _, d in gateways))
    assert took < 150, f"{len(jobs)} registrations took {took:.0f} s"
