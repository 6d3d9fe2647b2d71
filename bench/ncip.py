"""NCIP benchmark: LookupUser over HTTP, by card (from memory, and without it) and by card + PIN.

    .venv/bin/python bench/ncip.py [--patrons 100000] [--seconds 5] [--clients 10,100] [--backends sqlite,postgres]

For each backend the patrons are loaded in bulk (as bench/register.py does; not measured), then a
server process runs the daemon's own site (`gateway.web.site.build_site`, thread pool as `nlr serve`
sizes it) and, beside it in the same reactor, a minimal twisted.web resource that answers every
POST with a fixed NCIP response: the ceiling of twisted.web on this machine, measured in the same
run, twice: on a default ``Site``, and on a lean one that, like the gateway's, does not parse form
posts (``parsePOSTFormSubmission`` off; twisted.web otherwise works out every POST's Content-Type
with the email package, about half of that ceiling's cost). The load comes from this process: N
keep-alive HTTP/1.1 connections, each sending its next request as soon as the answer is in.
The gateway answers lookups by card from its memory of decision facts (gateway.hot_path, issue
13), warmed first by asking every card of the load once; "no memory" is the same site without it
(``register.cache_size: 0``), every lookup read from the register and audited in its transaction.
Reported: requests per second, p50 and p99 latency, answers that were not a successful
LookupUserResponse, and the share of the ceiling at the same concurrency.
PIN figures use the production scrypt cost (config ``register.pin_hash_cost``, default 14).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

import register as register_bench  # noqa: E402  (bench/register.py: seed(), national_ids())

from gateway.config import DatabaseConfig, RegisterConfig  # noqa: E402
from gateway.register import Register, Settings  # noqa: E402
from gateway.register.crypto import KeyRing, hash_secret  # noqa: E402
from gateway.register.database import make_engine, upgrade  # noqa: E402
from gateway.register.identifiers import card_number_from_int  # noqa: E402
from gateway.register.views import OPERATOR  # noqa: E402

ISIL, FIRST_CARD = register_bench.ISIL, register_bench.FIRST_CARD
EXAMPLES = BENCH.parent / "tests" / "data" / "ncip" / "examples"
PIN = "1234"


def settings(pin_cost: int) -> Settings:
    return Settings(allow_synthetic_ids=True, pin_hash_cost=pin_cost, pin_max_failures=10**6)


# --- the server process ----------------------------------------------------------------------------

def serve(url: str, keys: str, pin_cost: int) -> None:
    from twisted.internet import reactor
    from twisted.web import resource, server

    from gateway.web.site import build_site

    fixed_answer = (EXAMPLES / "03-LookupUserResponse-success.xml").read_bytes()

    class Fixed(resource.Resource):
        isLeaf = True

        def render_POST(self, request: server.Request) -> bytes:
            request.setHeader(b"content-type", b"application/xml; charset=utf-8")
            return fixed_answer

    from gateway.blocking import RegisterCalls
    from gateway.hot_path import HotPath

    pool = DatabaseConfig().pool_size
    register = Register(make_engine(url, pool_size=pool), KeyRing.load(Path(keys)), settings(pin_cost))
    reactor.suggestThreadPoolSize(max(4, pool * 2))  # as `nlr serve` does
    # as `nlr serve` builds it: one pool of register calls, the memory of decision facts (issue 13)
    calls = RegisterCalls(reactor, probe=register.ping, lock_waits=register.store.lock_waits)
    hot = HotPath(register, calls, reactor, cache_size=RegisterConfig().cache_size,
                  audit_queue_max=RegisterConfig().audit_queue_max)
    hot.start()
    ncip = reactor.listenTCP(0, build_site(register, reactor, calls=calls, hot=hot), interface="127.0.0.1",
                             backlog=1024)
    # the same site without the memory (register.cache_size: 0): every lookup asks the register
    cold = reactor.listenTCP(0, build_site(register, reactor, calls=calls), interface="127.0.0.1", backlog=1024)
    ceiling = reactor.listenTCP(0, server.Site(Fixed()), interface="127.0.0.1", backlog=1024)
    lean = reactor.listenTCP(0, server.Site(Fixed(), parsePOSTFormSubmission=False), interface="127.0.0.1",
                             backlog=1024)
    print(json.dumps({"ncip": ncip.getHost().port, "fixed": ceiling.getHost().port, "lean": lean.getHost().port,
                      "cold": cold.getHost().port}), flush=True)
    reactor.run()


# --- the load --------------------------------------------------------------------------------------

def lookup(card: str, pin: str | None) -> bytes:
    who = (f"<ns1:AuthenticationInput><ns1:AuthenticationInputData>{card}</ns1:AuthenticationInputData>"
           "<ns1:AuthenticationDataFormatType>text/plain</ns1:AuthenticationDataFormatType>"
           "<ns1:AuthenticationInputType>Barcode Id</ns1:AuthenticationInputType></ns1:AuthenticationInput>"
           f"<ns1:AuthenticationInput><ns1:AuthenticationInputData>{pin}</ns1:AuthenticationInputData>"
           "<ns1:AuthenticationDataFormatType>text/plain</ns1:AuthenticationDataFormatType>"
           "<ns1:AuthenticationInputType>PIN</ns1:AuthenticationInputType></ns1:AuthenticationInput>"
           if pin else f"<ns1:UserId><ns1:UserIdentifierValue>{card}</ns1:UserIdentifierValue></ns1:UserId>")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<ns1:NCIPMessage xmlns:ns1="http://www.niso.org/2008/ncip" '
            'ns1:version="http://www.niso.org/schemas/ncip/v2_02/ncip_v2_02.xsd"><ns1:LookupUser><ns1:InitiationHeader>'
            f"<ns1:FromAgencyId><ns1:AgencyId>{ISIL}</ns1:AgencyId></ns1:FromAgencyId><ns1:ToAgencyId><ns1:AgencyId>NLR"
            f"</ns1:AgencyId></ns1:ToAgencyId></ns1:InitiationHeader>{who}<ns1:UserElementType>Name Information"
            "</ns1:UserElementType><ns1:UserElementType>User Privilege</ns1:UserElementType></ns1:LookupUser>"
            "</ns1:NCIPMessage>").encode()


_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


async def _connection(port: int, path: bytes, token: str, bodies: list[bytes], start: float, stop: float,
                      latencies: list[float], failures: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    requests = [b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\nContent-Type: application/xml"
                b"\r\nContent-Length: %d\r\n\r\n%s" % (path, token.encode(), len(b), b) for b in bodies]
    i = random.randrange(len(requests))
    try:
        while (now := time.perf_counter()) < stop:
            writer.write(requests[i % len(requests)])
            i += 1
            head = await reader.readuntil(b"\r\n\r\n")
            body = await reader.readexactly(int(_LENGTH.search(head).group(1)))
            done = time.perf_counter()
            if now >= start:  # after the warm-up
                latencies.append(done - now)
                if not head.startswith(b"HTTP/1.1 200") or b"Problem>" in body or b"UserId>" not in body:
                    failures.append(1)
    finally:
        writer.close()


def load(port: int, path: bytes, token: str, bodies: list[bytes], clients: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    failures: list[int] = []
    warm_up = min(1.0, seconds / 4)

    async def run() -> None:
        start = time.perf_counter() + warm_up
        await asyncio.gather(*(_connection(port, path, token, bodies, start, start + seconds, latencies, failures)
                               for _ in range(clients)))

    asyncio.run(run())
    latencies.sort()
    n = len(latencies)
    return {"rps": n / seconds, "p50": latencies[n // 2] * 1000 if n else 0.0,
            "p99": latencies[min(n - 1, int(n * 0.99))] * 1000 if n else 0.0, "failed": len(failures)}


def warm(port: int, token: str, bodies: list[bytes]) -> None:
    """Ask every body once, over 10 connections."""
    async def one(chunk: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for b in chunk:
            writer.write(b"POST /ncip HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                         b"Content-Type: application/xml\r\nContent-Length: %d\r\n\r\n%s" % (token.encode(), len(b), b))
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(int(_LENGTH.search(head).group(1)))
        writer.close()

    async def run() -> None:
        await asyncio.gather(*(one(bodies[i::10]) for i in range(10)))

    asyncio.run(run())


# --- one backend -----------------------------------------------------------------------------------

def run_backend(name: str, url: str, args: argparse.Namespace, ids: list[str], pin_hash: str,
                work: Path) -> list[tuple[int, str, dict[str, float]]]:
    engine = make_engine(url)
    upgrade(engine)
    keys_path = work / f"keys-{name}.yaml"
    register = Register(engine, KeyRing.create(keys_path), settings(args.pin_cost))
    t0 = time.perf_counter()
    register_bench.seed(register, ids, pin_hash)
    _, token = register.add_client(OPERATOR, "bench-ils", ISIL, ["lookup"])
    engine.dispose()
    print(f"  {name}: seeded {len(ids):,} patrons in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    rng = random.Random(7)
    cards = [card_number_from_int(FIRST_CARD + 1 + rng.randrange(len(ids))) for _ in range(5000)]
    by_card = [lookup(c, None) for c in cards]
    # (label, server, path, bodies)
    workloads = [("fixed response (ceiling)", "fixed", b"/fixed", [lookup(c, None) for c in cards[:100]]),
                 ("fixed, no form parsing", "lean", b"/lean", [lookup(c, None) for c in cards[:100]]),
                 ("LookupUser by card, no memory", "cold", b"/ncip", by_card),
                 ("LookupUser by card", "ncip", b"/ncip", by_card),
                 ("LookupUser by card + PIN", "ncip", b"/ncip", [lookup(c, PIN) for c in cards])]
    server = subprocess.Popen([sys.executable, __file__, "--serve", url, str(keys_path), str(args.pin_cost)],
                              stdout=subprocess.PIPE, text=True)
    rows = []
    try:
        ports = json.loads(server.stdout.readline())
        # every card asked once: the memory holds what a day's lookups would have put in it
        warm(ports["ncip"], token, by_card)
        for clients in args.clients:
            for label, which, path, bodies in workloads:
                port = ports[which]
                result = load(port, path, token, bodies, clients, args.seconds)
                print(f"  {name} {clients:>3} clients  {label:31} {result['rps']:9,.1f} req/s", file=sys.stderr)
                rows.append((clients, label, result))
    finally:
        server.terminate()
        server.wait(15)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patrons", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per row (after a warm-up)")
    parser.add_argument("--clients", default="10,100", help="concurrent connections, comma-separated")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--pin-cost", type=int, default=RegisterConfig().pin_hash_cost, help="scrypt log2(N)")
    parser.add_argument("--serve", nargs=3, metavar=("URL", "KEYS", "PIN_COST"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], args.serve[1], int(args.serve[2]))
        return 0
    args.clients = [int(c) for c in args.clients.split(",")]
    print(f"generating {args.patrons:,} synthetic national ids …", file=sys.stderr)
    ids = register_bench.national_ids(args.patrons)
    pin_hash = hash_secret(PIN, args.pin_cost)
    table: dict[str, list[tuple[int, str, dict[str, float]]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in [b.strip() for b in args.backends.split(",") if b.strip()]:
            with register_bench.backend_url(name, work) as url:
                table[name] = run_backend(name, url, args, ids, pin_hash, work)
    print(f"\nNCIP LookupUser over HTTP, {args.patrons:,} patrons, {args.seconds:g} s per row, "
          f"scrypt cost 2^{args.pin_cost}, {os.cpu_count()} CPUs (server and load on the same machine)")
    header = (f"{'backend':9}{'clients':>8}  {'request':31}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'failed':>8}"
              f"{'of ceiling':>12}{'of lean':>9}")
    print(header)
    print("-" * len(header))
    for backend, rows in table.items():
        ceilings = {clients: r["rps"] for clients, label, r in rows if label.startswith("fixed response")}
        leans = {clients: r["rps"] for clients, label, r in rows if label.startswith("fixed, no form")}
        for clients, label, r in rows:
            share = r["rps"] / ceilings[clients] if ceilings[clients] else 0.0
            lean = r["rps"] / leans[clients] if leans[clients] else 0.0
            print(f"{backend:9}{clients:>8}  {label:31}{r['rps']:10,.1f}{r['p50']:9.1f}{r['p99']:9.1f}"
                  f"{r['failed']:>8,}{share:12.1%}{lean:9.1%}")
    print("of ceiling: share of the minimal twisted.web resource on a default Site; of lean: share of the\n"
          "same resource on a Site that, like the gateway's, does not parse form posts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
