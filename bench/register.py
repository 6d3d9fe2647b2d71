"""Register benchmark: operations per second with a register of 100,000 patrons.

    .venv/bin/python bench/register.py [--patrons 100000] [--seconds 3] [--backends sqlite,postgres]

For each backend it loads the patrons in bulk (the seeding is not measured), then runs each
operation through the public Register API, one caller at a time, for a fixed time. The baseline
is the cheapest database round trip (``Register.ping``: one ``SELECT 1``) measured in the same run;
every figure is also given as a ratio to it, so runs on different machines compare. The rows
"50 at once" hand the register 50 questions in one call, as the SIP2 and NCIP adapters do under
load (gateway/register_calls.py); their figure is per lookup or decision, not per call.
PIN figures use the production scrypt cost (config ``register.pin_hash_cost``, default 14).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, insert, text  # noqa: E402

from gateway.config import RegisterConfig  # noqa: E402
from gateway.register import Register, Settings  # noqa: E402
from gateway.register.crypto import KeyRing, hash_secret  # noqa: E402
from gateway.register.database import make_engine, upgrade  # noqa: E402
from gateway.register.identifiers import card_number_from_int  # noqa: E402
from gateway.register.models import Activation, Card, NumberSeries, Patron, utcnow  # noqa: E402
from gateway.register.views import OPERATOR, Actor, DecisionRequest  # noqa: E402

PG_URL = os.environ.get("NLR_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ISIL = "NO-2030000"
FIRST_CARD = 100_000


def national_ids(count: int) -> list[str]:
    """``count`` distinct valid synthetic national ids (month + 80), born from 1930 on: every
    individnummer of the 1900s (000-499, and 900-999 from 1940) whose check digits work, day by day,
    so that Norway's population (5.5 million) fits in about thirty years of birth dates."""
    w1, w2 = (3, 7, 6, 1, 8, 9, 4, 5, 2), (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
    out: list[str] = []
    day = date(1930, 1, 1).toordinal()
    while len(out) < count:
        birth = date.fromordinal(day)
        head = [int(c) for c in f"{birth.day:02d}{birth.month + 80:02d}{birth.year % 100:02d}"]
        individuals = list(range(0, 500)) + (list(range(900, 1000)) if birth.year >= 1940 else [])
        for ind in individuals:
            digits = head + [ind // 100, ind // 10 % 10, ind % 10]
            k1 = 11 - sum(w * d for w, d in zip(w1, digits, strict=True)) % 11
            k1 = 0 if k1 == 11 else k1
            if k1 == 10:
                continue
            k2 = 11 - sum(w * d for w, d in zip(w2, digits + [k1], strict=True)) % 11
            k2 = 0 if k2 == 11 else k2
            if k2 == 10:
                continue
            out.append("".join(map(str, digits)) + f"{k1}{k2}")
            if len(out) == count:
                break
        day += 1
    return out


def seed(register: Register, ids: list[str], pin_hash: str) -> None:
    """Bulk-load libraries, a series and ``len(ids)`` patrons straight into the tables."""
    register.add_library(OPERATOR, ISIL, "Deichman Oslo", door_min_age=15)
    # One series wide enough for everyone seeded (the register holds Norway's population: 5.5 M).
    register.reserve_series(OPERATOR, ISIL, first=card_number_from_int(FIRST_CARD),
                            last=card_number_from_int(FIRST_CARD + max(899_999, 2 * len(ids))))
    now = utcnow()
    with register.engine.begin() as conn:
        lib_id = conn.execute(text("SELECT id FROM libraries WHERE isil = :i"), {"i": ISIL}).scalar_one()
        batch = 5000
        for start in range(0, len(ids), batch):
            chunk = ids[start:start + batch]
            patrons = [
                {"id": start + i + 1, "home_library_id": lib_id, "surname": f"Etternavn{start + i}",
                 "given_name": "Kari", "national_id_ciphertext": register.keys.encrypt(nid),
                 "national_id_index": register.keys.lookup_hash(nid), "national_id_kind": "fnr",
                 "birth_date": date(1980, 1, 1), "pin_hash": pin_hash, "pin_failures": 0,
                 "secret_address": False, "blocked": False, "created_at": now, "updated_at": now, "version": 1}
                for i, nid in enumerate(chunk)
            ]
            conn.execute(insert(Patron), patrons)
            conn.execute(insert(Card), [
                {"number": card_number_from_int(FIRST_CARD + p["id"]), "patron_id": p["id"], "library_id": lib_id,
                 "status": "active", "issued_at": now} for p in patrons])
            conn.execute(insert(Activation), [
                {"patron_id": p["id"], "library_id": lib_id, "activated_at": now, "channel": "operator",
                 "rules_version": "1"} for p in patrons])
        conn.execute(NumberSeries.__table__.update().values(next_number=FIRST_CARD + len(ids) + 1))
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT setval(pg_get_serial_sequence('patrons', 'id'), :n)"), {"n": len(ids)})
    if register.engine.dialect.name == "postgresql":
        with register.engine.begin() as conn:
            conn.execute(text("ANALYZE"))


def sqlite_register(work: Path, cost: int) -> tuple[Register, Path, Path]:
    """An empty SQLite register in ``work`` with a new keys file, as the other benchmarks start from:
    the register, its database file and its keys file."""
    db, keys = work / "register.db", work / "keys.yaml"
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    KeyRing.create(keys)
    return Register(engine, KeyRing.load(keys), Settings(allow_synthetic_ids=True, pin_hash_cost=cost)), db, keys


@contextmanager
def backend_url(name: str, work: Path) -> Iterator[str]:
    """A database URL for one benchmark backend: an SQLite file in ``work``, or a private
    PostgreSQL schema that is dropped afterwards."""
    if name == "sqlite":
        yield f"sqlite:///{work / f'bench-{os.getpid()}.db'}"
        return
    if name != "postgres":
        raise SystemExit(f"error: unknown backend {name!r} (sqlite or postgres)")
    admin = create_engine(PG_URL)
    schema = f"nlr_bench_{os.getpid()}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        sep = "&" if "?" in PG_URL else "?"
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


BATCH = 50  # what the adapters hand the register at once under load (gateway/register_calls.py)


def measure(op: Callable[[int], object], seconds: float) -> float:
    """Operations per second of ``op(i)`` called in a loop for about ``seconds``."""
    op(0)  # warm up
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        op(count + 1)
        count += 1
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def run_backend(name: str, url: str, args: argparse.Namespace, ids: list[str], pin_hash: str,
                work: Path) -> dict[str, float]:
    engine = make_engine(url)
    upgrade(engine)
    keys = KeyRing.create(work / f"keys-{name}.yaml")
    settings = Settings(allow_synthetic_ids=True, pin_hash_cost=args.pin_cost, pin_max_failures=10**6)
    register = Register(engine, keys, settings)
    t0 = time.perf_counter()
    seed(register, ids, pin_hash)
    print(f"  {name}: seeded {len(ids):,} patrons in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    rng = random.Random(7)
    n = len(ids)
    terminal = Actor("terminal", "bench-kiosk", ISIL)
    fresh = iter(national_ids(n + 200_000)[n:])
    cards = lambda: card_number_from_int(FIRST_CARD + 1 + rng.randrange(n))  # noqa: E731
    ops: list[tuple[str, Callable[[int], object]]] = [
        ("baseline: SELECT 1 round trip", lambda i: register.ping()),
        ("lookup by card", lambda i: register.find_patron(OPERATOR, cards())),
        ("lookup by national id", lambda i: register.find_patron_by_national_id(OPERATOR, ids[rng.randrange(n)])),
        ("lookups by card, 50 at once", lambda i: register.find_patrons(OPERATOR, [cards() for _ in range(BATCH)])),
        ("decision without PIN", lambda i: register.decide(terminal, cards(), None, pin_required=False)),
        ("decisions without PIN, 50 at once", lambda i: register.decide_many(
            [DecisionRequest(terminal, cards(), pin_required=False) for _ in range(BATCH)])),
        ("PIN verification", lambda i: register.verify_pin(terminal, cards(), "1234")),
        ("patron decision (card + PIN)", lambda i: register.decide(terminal, cards(), "1234", pin_required=True)),
        ("registration (no PIN)", lambda i: register.register_patron(
            OPERATOR, ISIL, national_id=next(fresh), surname="Ny", given_name="Patron")),
        ("registration with PIN", lambda i: register.register_patron(
            OPERATOR, ISIL, national_id=next(fresh), surname="Ny", given_name="Patron", pin="1234")),
    ]
    # A batched operation counts its items: "ops/s" is lookups or decisions per second throughout.
    results = {label: measure(op, args.seconds) * (BATCH if "at once" in label else 1) for label, op in ops}
    engine.dispose()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patrons", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per operation")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--pin-cost", type=int, default=RegisterConfig().pin_hash_cost, help="scrypt log2(N)")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    print(f"generating {args.patrons:,} synthetic national ids …", file=sys.stderr)
    ids = national_ids(args.patrons)
    pin_hash = hash_secret("1234", args.pin_cost)
    table: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in backends:
            with backend_url(name, work) as url:
                table[name] = run_backend(name, url, args, ids, pin_hash, work)
    labels = list(next(iter(table.values())))
    print(f"\nNLR register, {args.patrons:,} patrons, one caller, {args.seconds:g} s per operation, "
          f"scrypt cost 2^{args.pin_cost}")
    header = f"{'operation':32}" + "".join(f"{b + ' ops/s':>16}{'× baseline':>12}" for b in table)
    print(header)
    print("-" * len(header))
    for label in labels:
        row = f"{label:32}"
        for b in table:
            ops = table[b][label]
            base = table[b][labels[0]]
            row += f"{ops:16,.1f}{ops / base:12.3f}"
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
