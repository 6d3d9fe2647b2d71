"""Soak (issue 11, item 8): idle SIP2 connections held open for a long time beside a steady load.

    .venv/bin/python bench/soak.py [--minutes 10] [--idle 5000] [--terminals 20] [--rate 200]
                                   [--patrons 100000] [--workers 1]

`nlr serve` on SQLite with ``--patrons`` patrons (seeded in bulk by bench/register.py); ``--idle``
logged-in SIP2 connections that say nothing but a 99 every minute (as a real kiosk does); beside
them ``--terminals`` terminals sending 23 without PIN at ``--rate`` requests a second in all. Every
minute it prints the server's memory (RSS of the daemon and its workers), the round trips and
errors of that minute and the p99; at the end the memory at start and end and their ratio. A
leak shows as memory that keeps growing while the load stays the same.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

_spec = importlib.util.spec_from_file_location("bench_sip2", HERE / "sip2.py")
assert _spec is not None and _spec.loader is not None
bench_sip2 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_sip2)

ISIL, DATE, FIRST_CARD = bench_sip2.ISIL, bench_sip2.DATE, bench_sip2.FIRST_CARD

from gateway.register.identifiers import card_number_from_int  # noqa: E402


def tree_rss(pid: int) -> float:
    """RSS in MiB of ``pid`` and its children (the supervisor's workers)."""
    total = bench_sip2.rss(pid)
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        for child in children.read_text().split():
            try:
                total += bench_sip2.rss(int(child))
            except (FileNotFoundError, RuntimeError):
                pass
    return total


async def soak(port: int, pid: int, args: argparse.Namespace) -> list[tuple[float, int, int, float]]:
    login = b"9300CNbench-23|CObench-password|\r"
    idle = await bench_sip2.open_terminals(port, login, args.idle)
    print(f"{len(idle):,} idle connections open", file=sys.stderr)
    busy = await bench_sip2.open_terminals(port, login, args.terminals)
    latencies: list[float] = []
    counts = {"done": 0, "errors": 0}
    stop = asyncio.Event()
    interval = args.terminals / args.rate  # seconds between one terminal's requests

    async def terminal(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seed: int) -> None:
        """One terminal at its steady rate; a request that fails is counted, and the terminal logs in
        again on a new connection and goes on (as a kiosk does)."""
        rng = random.Random(seed)
        next_at = time.monotonic() + rng.random() * interval
        while not stop.is_set():
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at = max(next_at + interval, time.monotonic())
            card = card_number_from_int(FIRST_CARD + 1 + rng.randrange(args.patrons))
            began = time.perf_counter()
            try:
                writer.write(f"23012{DATE}AO{ISIL}|AA{card}|AC|\r".encode())
                answer = await asyncio.wait_for(reader.readuntil(b"\r"), 10)
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                counts["errors"] += 1
                writer.close()
                reader, writer = await bench_sip2.open_terminal(port, login)
                continue
            latencies.append(time.perf_counter() - began)
            counts["done" if answer.startswith(b"24") else "errors"] += 1

    async def keepalive() -> None:
        while not stop.is_set():
            await asyncio.sleep(60)
            for _, writer in idle:
                writer.write(b"9900302.00\r")
            for reader, _ in idle:
                try:
                    await asyncio.wait_for(reader.readuntil(b"\r"), 30)
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    counts["errors"] += 1

    tasks = [asyncio.create_task(terminal(r, w, i)) for i, (r, w) in enumerate(busy)]
    tasks.append(asyncio.create_task(keepalive()))
    samples = [(0.0, 0, 0, tree_rss(pid))]
    print(f"minute  round trips  errors  p99 ms  RSS MiB (start {samples[0][3]:.1f})", file=sys.stderr)
    began = time.monotonic()
    for minute in range(1, args.minutes + 1):
        await asyncio.sleep(max(0.0, began + 60 * minute - time.monotonic()))
        done, errors, window = counts["done"], counts["errors"], sorted(latencies)
        counts["done"] = counts["errors"] = 0
        latencies.clear()
        p99 = 1000 * window[int(0.99 * (len(window) - 1))] if window else float("nan")
        samples.append((p99, done, errors, tree_rss(pid)))
        print(f"{minute:6d}  {done:11,d}  {errors:6d}  {p99:6.1f}  {samples[-1][3]:.1f}", file=sys.stderr)
    stop.set()
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            print(f"a load task failed: {task.exception()!r}", file=sys.stderr)
        task.cancel()
    for _, writer in idle + busy:
        writer.close()
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--idle", type=int, default=5000)
    parser.add_argument("--terminals", type=int, default=20)
    parser.add_argument("--rate", type=float, default=200.0, help="23 requests per second in all")
    parser.add_argument("--patrons", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    from register import national_ids, seed, sqlite_register  # bench/register.py

    from gateway.config import RegisterConfig
    from gateway.register import Register, Settings
    from gateway.register.crypto import hash_secret
    from gateway.register.views import OPERATOR

    cost = RegisterConfig().pin_hash_cost
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        register, db, keys = sqlite_register(work, cost)
        engine = register.engine
        print(f"seeding {args.patrons:,} patrons …", file=sys.stderr)
        seed(register, national_ids(args.patrons), hash_secret("1234", cost))
        Register(engine, register.keys, Settings(pin_hash_cost=10)).add_terminal(
            OPERATOR, "bench-23", "bench-password", ISIL, "kiosk", pin_required=False)
        engine.dispose()
        sip_port, http_port = bench_sip2.free_port(), bench_sip2.free_port()
        config = work / "nlr.yaml"
        config.write_text(
            f"database:\n  url: sqlite:///{db}\nkeys_file: {keys}\n"
            f"register:\n  allow_synthetic_ids: true\n  pin_hash_cost: {cost}\n"
            f"sip2:\n  listen: [\"tcp:{sip_port}:interface=127.0.0.1:backlog=4096\"]\n"
            # every load terminal comes from 127.0.0.1: the per-source cap must fit them all
            f"  max_connections: 20000\n  max_connections_per_source: 20000\n"
            f"  idle_timeout_seconds: 3600\n"
            f"http:\n  listen: [\"tcp:{http_port}:interface=127.0.0.1\"]\n"
            f"server:\n  workers: {args.workers}\nlogging:\n  requests: refused\n")
        log = work / "serve.log"
        server = subprocess.Popen([str(Path(sys.executable).parent / "nlr"), "--config", str(config), "serve"],
                                  stdout=log.open("wb"), stderr=subprocess.STDOUT)
        try:
            bench_sip2.wait_for(sip_port, server, log)
            time.sleep(1.0)
            samples = asyncio.run(soak(sip_port, server.pid, args))
        finally:
            bench_sip2.stop(server)
        offline = log.read_text(errors="replace").count("offline, every request is refused")
    start, end = samples[1][3] if len(samples) > 1 else samples[0][3], samples[-1][3]
    total = sum(s[1] for s in samples[1:])
    errors = sum(s[2] for s in samples[1:])
    p99s = [s[0] for s in samples[1:]]
    print(f"\nNLR gateway soak: {args.minutes} min, {args.idle:,} idle SIP2 connections, {args.terminals} terminals "
          f"at {args.rate:g} requests/s (23 without PIN), {args.workers} worker(s), {args.patrons:,} patrons")
    print(f"round trips answered: {total:,}  errors: {errors}  p99 per minute: "
          f"{min(p99s):.1f}–{max(p99s):.1f} ms")
    print(f"times the gateway went offline (no register answer for 1 s): {offline}")
    print(f"memory (RSS): before the load {samples[0][3]:.1f} MiB, after minute 1 {start:.1f} MiB, "
          f"at the end {end:.1f} MiB: end / minute 1 = {end / start:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
