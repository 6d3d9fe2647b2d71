"""SIP2 benchmark (issue 3 item 6): one table, every figure next to its same-run baseline.

    .venv/bin/python bench/sip2.py [--patrons 100000] [--seconds 5] [--terminals 1,50,500] [--idle 5000]
                                   [--workers 1,2]

* codec: messages parsed and encoded per second, against pysip2's codec on the same messages;
* end to end over loopback, against `nlr serve` on SQLite with ``--patrons`` patrons (seeded in bulk
  by bench/register.py): 23 without PIN and 63 with PIN (production scrypt cost), round trips per
  second and p50/p99 latency at each number of concurrent logged-in terminals, against a minimal
  Twisted server answering every message with a fixed 24 (the ceiling), driven by the same client.
  The gateway answers 23 without PIN from its memory of decision facts (gateway.hot_path, issue 13),
  warmed first by asking every card once; "no memory" is a second `nlr serve` with
  ``register.cache_size: 0`` on the same register, every decision read and audited in the database;
* memory: what the decision facts of one card take in that memory (tracemalloc);
* memory (RSS growth) of ``--idle`` idle logged-in connections, against the same for the ceiling;
* with ``--workers 1,2``: 23 without PIN again with each further number of worker processes
  (`nlr serve --workers N`: a supervisor, N workers sharing the listener), against the same ceiling.

The load generator is one asyncio process on the same machine: it shares the CPUs with the server,
as does the ceiling's, so the ratio is the figure that carries over to other machines.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

ISIL = "NO-2030000"
FIRST_CARD = 100_000  # bench/register.py seeds cards FIRST_CARD + 1 …
DATE = "20250301    101500"
PIN = "1234"


# ---------------------------------------------------------------------- the ceiling server
def ceiling_server(port_file: str) -> None:
    """A minimal Twisted SIP2 'server': every CR-terminated message gets one fixed 24."""
    from twisted.internet import protocol, reactor

    from protocols.sip2 import build, encode

    answer = encode(build("24", patron_status=" " * 14, language="012", transaction_date=DATE, AO=ISIL,
                          AA="N000100001", AE="Kari Etternavn1", BL="Y"), "utf-8")

    class Fixed(protocol.Protocol):
        def dataReceived(self, data: bytes) -> None:
            n = data.count(b"\r")
            if n:
                self.transport.write(answer * n)

    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Fixed), backlog=4096, interface="127.0.0.1")
    Path(port_file).write_text(str(port.getHost().port))
    reactor.run()


def adapter_server(port_file: str) -> None:
    """The gateway's own SIP2 factory over a register stub that answers at once: what the adapter
    (framing, codec, thread pool hop, profiles) costs without the database."""
    from datetime import date, datetime

    from twisted.internet import reactor

    from gateway.config import SIP2Config
    from gateway.register.views import Decision, PatronView, Reason, TerminalLogin, TerminalView
    from gateway.sip2 import SIP2Factory

    now = datetime.now()
    patron = PatronView(card="N000100001", card_status="active", current_card="N000100001", surname="Etternavn1",
                        given_name="Kari", national_id_masked="", birth_date=date(1980, 1, 1), gender=None,
                        address_line1=None, address_line2=None, postal_code=None, city=None, country=None,
                        temp_address_line1=None, temp_postal_code=None, temp_city=None, temp_address_until=None,
                        email=None, phone=None, preferred_contact=None, secret_address=False, home_library_isil=ISIL,
                        blocked=False, block_reason=None, has_pin=True, pin_locked_until=None, version=1,
                        created_at=now, updated_at=now)
    terminal = TerminalView("stub", ISIL, "kiosk", "utf-8", "CR", (), False, False, True)

    class Stub:
        def terminal_login(self, login: str, password: str, **_: object) -> TerminalLogin:
            return TerminalLogin(terminal, "ok")

        def decide(self, *args: object, **kwargs: object) -> Decision:
            return Decision(Reason.GRANTED, patron, False, False, False)

        def decide_many(self, requests: list[object], **_: object) -> list[Decision]:
            return [Decision(Reason.GRANTED, patron, False, False, False) for _ in requests]

        def ping(self) -> None:
            return None

    reactor.suggestThreadPoolSize(10)  # as `nlr serve` with the default pool
    port = reactor.listenTCP(0, SIP2Factory(Stub(), reactor, SIP2Config()), backlog=4096,  # type: ignore[arg-type]
                             interface="127.0.0.1")
    Path(port_file).write_text(str(port.getHost().port))
    reactor.run()


def memory_per_card(register: object, count: int) -> tuple[int, int]:
    """Bytes the decision memory (gateway.register.memory) takes for ``count`` cards' facts, as the
    daemon fills it (tracemalloc: what stays allocated once they are remembered)."""
    import tracemalloc

    from gateway.register.identifiers import card_number_from_int
    from gateway.register.memory import DecisionMemory

    mind = DecisionMemory(count)
    mind.follow(register.news(None))  # type: ignore[attr-defined]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for start in range(0, count, 500):
        asked = [(card_number_from_int(FIRST_CARD + 1 + i), ISIL) for i in range(start, min(count, start + 500))]
        mind.remember(register.recall_many(asked)[0], mind.epoch)  # type: ignore[attr-defined]
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used, len(mind)


async def warm(port: int, login: bytes, cards: list[str]) -> None:
    """Ask every card once, over 20 terminals."""
    conns = await open_terminals(port, login, 20)

    async def terminal(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, mine: list[str]) -> None:
        for number in mine:
            writer.write(f"23012{DATE}AO{ISIL}|AA{number}|AC|\r".encode())
            await reader.readuntil(b"\r")
        writer.close()

    await asyncio.gather(*[terminal(r, w, cards[i::20]) for i, (r, w) in enumerate(conns)])


# ---------------------------------------------------------------------- codec
def codec_rates(seconds: float) -> dict[str, float]:
    import pysip2

    from protocols.sip2 import build, encode, parse

    frames = [
        encode(parse(f"23012{DATE}AO{ISIL}|AAN000123456|AC|AD1234|".encode()), sequence=2, checksum=True),
        encode(parse(f"63012{DATE}Y         AO{ISIL}|AAN000123456|AC|AD1234|BP1|BQ5|".encode()), sequence=3,
               checksum=True),
        encode(build("24", patron_status=" " * 14, language="012", transaction_date=DATE, AO=ISIL, AA="N000123456",
                     AE="Åse Bjørnstad", BL="Y", CQ="Y", AF="Lånekortet er gyldig."), sequence=1, checksum=True),
        encode(build("64", patron_status=" " * 14, language="012", transaction_date=DATE, AO=ISIL, AA="N000123456",
                     AE="Åse Bjørnstad", BL="Y", CQ="Y", BD="Storgata 1, 0155 Oslo", BE="kari@example.org",
                     BF="+4722334455", AF="Lånekortet er gyldig."), sequence=4, checksum=True),
        encode(build("98", online_status="Y", timeout_period="999", retries_allowed="010", date_time_sync=DATE,
                     AO=ISIL, BX="YNNYYYYYYNNNYNNN"), sequence=5, checksum=True),
        encode(build("94", ok="1"), sequence=0, checksum=True),
    ]
    ours = [parse(f, "utf-8") for f in frames]
    theirs = [pysip2.decode_message(f, encoding="utf-8") for f in frames]
    for mine, other in zip(ours, theirs, strict=True):  # the same messages, both ways
        assert encode(mine, "utf-8", reply_to=mine) == pysip2.encode_message(
            other.message, sequence_number=other.sequence_number, checksum=True, encoding="utf-8")

    def rate(op: Callable[[int], object], seconds: float) -> float:
        count, start = 0, time.perf_counter()
        deadline = start + seconds
        while (now := time.perf_counter()) < deadline:
            for i in range(600):
                op(i)
            count += 600
        return count / (now - start)

    n = len(frames)
    ops: dict[str, Callable[[int], object]] = {
        "parse": lambda i: parse(frames[i % n], "utf-8"),
        "pysip2 parse": lambda i: pysip2.decode_message(frames[i % n], encoding="utf-8"),
        "encode": lambda i: encode(ours[i % n], "utf-8", reply_to=ours[i % n]),
        "pysip2 encode": lambda i: pysip2.encode_message(
            theirs[i % n].message, sequence_number=theirs[i % n].sequence_number, checksum=True, encoding="utf-8"),
    }
    best = dict.fromkeys(ops, 0.0)
    for _ in range(5):  # interleaved, best of five: the two codecs see the same machine
        for name, op in ops.items():
            best[name] = max(best[name], rate(op, seconds / 5))
    return best


# ---------------------------------------------------------------------- load over loopback
Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def open_terminal(port: int, login: bytes) -> Stream:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(login)
    await writer.drain()
    answer = await reader.readuntil(b"\r")
    if not answer.startswith((b"941", b"24")):
        raise RuntimeError(f"login refused: {answer!r}")
    return reader, writer


async def open_terminals(port: int, login: bytes, count: int) -> list[Stream]:
    out = []
    for start in range(0, count, 250):
        out += await asyncio.gather(*[open_terminal(port, login) for _ in range(start, min(count, start + 250))])
    return out


async def load(port: int, login: bytes, request: Callable[[random.Random], bytes], terminals: int,
               seconds: float) -> tuple[float, float, float]:
    """Round trips per second, p50 and p99 latency (ms) with ``terminals`` concurrent terminals, each
    sending its next request as soon as the answer to the last one arrived."""
    conns = await open_terminals(port, login, terminals)
    latencies: list[float] = []
    done = 0
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.2
    end = start + seconds

    async def terminal(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seed: int) -> None:
        nonlocal done
        rng = random.Random(seed)
        await asyncio.sleep(max(0.0, start - loop.time()))
        while (t0 := loop.time()) < end:
            writer.write(request(rng))
            await reader.readuntil(b"\r")
            t1 = loop.time()
            latencies.append(t1 - t0)
            done += t1 <= end

    await asyncio.gather(*[terminal(r, w, i) for i, (r, w) in enumerate(conns)])
    for _, writer in conns:
        writer.close()
    latencies.sort()
    p = lambda q: 1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
    return done / seconds, p(0.50), p(0.99)


async def idle_memory(port: int, login: bytes, count: int, pid: int) -> float:
    """RSS growth (MiB) of the server with ``count`` idle logged-in connections."""
    before = rss(pid)
    conns = await open_terminals(port, login, count)
    await asyncio.sleep(1.0)
    grown = rss(pid) - before
    for _, writer in conns:
        writer.close()
    await asyncio.sleep(0.5)
    return grown


def rss(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("server did not start")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


# ---------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patrons", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=5.0, help="time per measurement")
    parser.add_argument("--terminals", default="1,50,500")
    parser.add_argument("--idle", type=int, default=5000)
    parser.add_argument("--workers", default="1", help="worker counts for 23 without PIN, e.g. 1,2")
    parser.add_argument("--ceiling", metavar="PORT_FILE", help=argparse.SUPPRESS)
    parser.add_argument("--adapter", metavar="PORT_FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ceiling:
        ceiling_server(args.ceiling)
        return 0
    if args.adapter:
        adapter_server(args.adapter)
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it
    levels = [int(x) for x in args.terminals.split(",")]
    worker_counts = [int(x) for x in args.workers.split(",")]

    from register import national_ids, seed, sqlite_register  # bench/register.py

    from gateway.config import RegisterConfig
    from gateway.register import Register, Settings
    from gateway.register.crypto import hash_secret
    from gateway.register.identifiers import card_number_from_int
    from gateway.register.views import OPERATOR

    cost = RegisterConfig().pin_hash_cost
    print("codec …", file=sys.stderr)
    codec = codec_rates(min(args.seconds, 3.0))

    rows: list[tuple[str, str, str, str]] = [
        ("codec: parse, messages/s", f"{codec['parse']:,.0f}", f"pysip2 {codec['pysip2 parse']:,.0f}",
         f"{codec['parse'] / codec['pysip2 parse']:.2f}×"),
        ("codec: encode, messages/s", f"{codec['encode']:,.0f}", f"pysip2 {codec['pysip2 encode']:,.0f}",
         f"{codec['encode'] / codec['pysip2 encode']:.2f}×"),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        register, db, keys = sqlite_register(work, cost)
        engine = register.engine
        print(f"seeding {args.patrons:,} patrons …", file=sys.stderr)
        seed(register, national_ids(args.patrons), hash_secret(PIN, cost))
        # Terminal passwords hashed cheaply: logins are not what is measured, and 5,000 of them at
        # the production cost would take minutes.
        cheap = Register(engine, register.keys, Settings(pin_hash_cost=10))
        cheap.add_terminal(OPERATOR, "bench-23", "bench-password", ISIL, "kiosk", pin_required=False)
        cheap.add_terminal(OPERATOR, "bench-63", "bench-password", ISIL, "kiosk")
        facts_bytes, remembered = memory_per_card(cheap, min(args.patrons, 20_000))
        engine.dispose()

        sip_port, http_port = free_port(), free_port()
        config = work / "nlr.yaml"
        config.write_text(
            f"database:\n  url: sqlite:///{db}\nkeys_file: {keys}\n"
            f"register:\n  allow_synthetic_ids: true\n  pin_hash_cost: {cost}\n"
            f"sip2:\n  listen: [\"tcp:{sip_port}:interface=127.0.0.1:backlog=4096\"]\n"
            # every load terminal comes from 127.0.0.1: the per-source cap must fit them all
            f"  max_connections: 20000\n  max_connections_per_source: 20000\n"
            f"http:\n  listen: [\"tcp:{http_port}:interface=127.0.0.1\"]\n"
            f"server:\n  workers: {worker_counts[0]}\n")
        log = work / "serve.log"
        nlr = Path(sys.executable).parent / "nlr"
        server = subprocess.Popen([str(nlr), "--config", str(config), "serve"], stdout=log.open("wb"),
                                  stderr=subprocess.STDOUT)
        # the same gateway without its memory (register.cache_size: 0): every decision asks the register
        cold_port, cold_http = free_port(), free_port()
        cold_config = work / "cold.yaml"
        cold_config.write_text(config.read_text().replace(f"tcp:{sip_port}:", f"tcp:{cold_port}:")
                               .replace(f"tcp:{http_port}:", f"tcp:{cold_http}:")
                               .replace("register:\n", "register:\n  cache_size: 0\n"))
        cold_log = work / "cold.log"
        cold = subprocess.Popen([str(nlr), "--config", str(cold_config), "serve"], stdout=cold_log.open("wb"),
                                stderr=subprocess.STDOUT)
        port_file, stub_file = work / "ceiling.port", work / "adapter.port"
        ceiling = subprocess.Popen([sys.executable, __file__, "--ceiling", str(port_file)])
        adapter = subprocess.Popen([sys.executable, __file__, "--adapter", str(stub_file)])
        try:
            wait_for(sip_port, server, log)
            while not (port_file.exists() and port_file.read_text() and stub_file.exists() and stub_file.read_text()):
                time.sleep(0.1)
            ceiling_port, adapter_port = int(port_file.read_text()), int(stub_file.read_text())
            n = args.patrons
            card = lambda rng: card_number_from_int(FIRST_CARD + 1 + rng.randrange(n))  # noqa: E731
            req23 = lambda rng: f"23012{DATE}AO{ISIL}|AA{card(rng)}|AC|\r".encode()  # noqa: E731
            req63 = lambda rng: f"63012{DATE}{' ' * 10}AO{ISIL}|AA{card(rng)}|AC|AD{PIN}|\r".encode()  # noqa: E731
            login = lambda name: f"9300CN{name}|CObench-password|\r".encode()  # noqa: E731
            results: dict[tuple[str, int], tuple[float, float, float]] = {}
            asyncio.run(load(sip_port, login("bench-23"), req23, 10, 1.0))  # warm up
            # every card asked once: the memory holds what a day of kiosks would have put in it
            print("warming the memory …", file=sys.stderr)
            asyncio.run(warm(sip_port, login("bench-23"), [card_number_from_int(FIRST_CARD + 1 + i) for i in range(n)]))
            wait_for(cold_port, cold, cold_log)
            for level in levels:
                print(f"{level} terminals …", file=sys.stderr)
                results[("ceiling", level)] = asyncio.run(load(ceiling_port, req23(random.Random(0)), req23, level,
                                                               args.seconds))
                results[("stub", level)] = asyncio.run(load(adapter_port, login("stub"), req23, level, args.seconds))
                results[("23", level)] = asyncio.run(load(sip_port, login("bench-23"), req23, level, args.seconds))
                results[("cold", level)] = asyncio.run(load(cold_port, login("bench-23"), req23, level, args.seconds))
                results[("63", level)] = asyncio.run(load(sip_port, login("bench-63"), req63, level, args.seconds))
            print(f"{args.idle:,} idle connections …", file=sys.stderr)
            idle_nlr = asyncio.run(idle_memory(sip_port, login("bench-23"), args.idle, server.pid))
            idle_ceiling = asyncio.run(idle_memory(ceiling_port, req23(random.Random(0)), args.idle, ceiling.pid))
            for workers in worker_counts[1:]:
                stop(server)
                config.write_text(config.read_text().replace(f"workers: {worker_counts[0]}", f"workers: {workers}"))
                server = subprocess.Popen([str(nlr), "--config", str(config), "serve"], stdout=log.open("ab"),
                                          stderr=subprocess.STDOUT)
                wait_for(sip_port, server, log)
                time.sleep(2.0)  # every worker ready
                asyncio.run(load(sip_port, login("bench-23"), req23, 10, 1.0))  # warm up
                for level in levels:
                    print(f"{workers} workers, {level} terminals …", file=sys.stderr)
                    results[("ceiling", level)] = results.get(("ceiling", level)) or asyncio.run(
                        load(ceiling_port, req23(random.Random(0)), req23, level, args.seconds))
                    results[(f"23w{workers}", level)] = asyncio.run(load(sip_port, login("bench-23"), req23, level,
                                                                         args.seconds))
        finally:
            stop(server)
            stop(cold)
            stop(ceiling)
            stop(adapter)

    first = f", {worker_counts[0]} worker{'s' * (worker_counts[0] > 1)}"
    for what, label in (("23", f"23 no PIN{first}"), ("cold", f"23 no PIN, no memory{first}"),
                        ("63", f"63 PIN (scrypt 2^{cost}){first}"),
                        ("stub", "23, register stub (adapter alone)"),
                        *((f"23w{w}", f"23 no PIN, {w} workers") for w in worker_counts[1:])):
        for level in levels:
            ops, p50, p99 = results[(what, level)]
            c_ops, c50, c99 = results[("ceiling", level)]
            rows.append((f"{label}, {level} terminal{'s' * (level > 1)}: round trips/s", f"{ops:,.0f}",
                         f"ceiling {c_ops:,.0f}", f"{100 * ops / c_ops:.1f}%"))
            rows.append((f"{label}, {level} terminal{'s' * (level > 1)}: p50 / p99 ms", f"{p50:.1f} / {p99:.1f}",
                         f"ceiling {c50:.1f} / {c99:.1f}", ""))
    rows.append((f"memory: {args.idle:,} idle logged-in connections, MiB", f"{idle_nlr:.1f}",
                 f"ceiling {idle_ceiling:.1f}", f"{1024 * idle_nlr / args.idle:.1f} KiB each"))
    rows.append((f"memory: decision facts of {remembered:,} cards (register.cache_size), MiB",
                 f"{facts_bytes / 2**20:.1f}", "", f"{facts_bytes / remembered / 1024:.1f} KiB each"))

    print(f"\nNLR gateway SIP2 benchmark: {args.patrons:,} patrons in SQLite, {os.cpu_count()} CPUs, "
          f"{args.seconds:g} s per measurement, load generator on the same machine")
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    header = ("measure", "NLR gateway", "baseline (same run)", "ratio")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    line = lambda r: f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:>{widths[3]}}"  # noqa: E731
    print(line(header))
    print("-" * (sum(widths) + 6))
    for r in rows:
        print(line(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
