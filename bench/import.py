"""Legacy import benchmark (issue 12, item 2): rows per second of `nlr import`'s use case.

    .venv/bin/python bench/import.py [--rows 100000] [--pin-rows 10000] [--backends sqlite,postgres]

For each backend, on an empty register with one library and its series: 100,000 rows without a PIN,
then 10,000 rows with one (scrypt at the production cost, config ``register.pin_hash_cost``, hashed
on every CPU), each through ``Register.import_rows`` as `nlr import` calls it (batches of 200, one
transaction each). One row in a hundred is quarantined (a card outside the series), as legacy data
has them. The same-run baseline is the naive import: ``register_patron`` one row at a time (no
PIN), for ``--seconds``; and the cheapest round trip (``Register.ping``). A re-run of the PIN-less
file (every row already imported or quarantined) is measured too.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tempfile  # noqa: E402

from register import backend_url, measure, national_ids  # noqa: E402

from gateway.config import RegisterConfig  # noqa: E402
from gateway.register import Register, Settings  # noqa: E402
from gateway.register.crypto import KeyRing  # noqa: E402
from gateway.register.database import make_engine, upgrade  # noqa: E402
from gateway.register.identifiers import card_number_from_int  # noqa: E402
from gateway.register.legacy import ImportRow  # noqa: E402
from gateway.register.views import OPERATOR  # noqa: E402

ISIL = "NO-2030000"
FIRST = 1_000_000  # the series: FIRST .. FIRST + 999,999; a row outside it starts at 5,000,000


def rows(ids: list[str], first_card: int, *, pin: bool) -> list[ImportRow]:
    out = []
    for i, nid in enumerate(ids):
        card = card_number_from_int(5_000_000 + first_card + i if i % 100 == 99 else first_card + i)
        values = {"card": card, "national_id": nid, "surname": f"Etternavn{i}", "given_name": "Kari",
                  "birth_date": date(1980, 1, 1).isoformat(), "address": "Storgata 1", "postal_code": "0150",
                  "city": "Oslo", "phone": "+4791234567", "email": f"p{first_card + i}@example.no"}
        if pin:
            values["pin"] = "1234"
        out.append(ImportRow(i + 1, values))
    return out


def run_backend(name: str, url: str, args: argparse.Namespace, ids: list[str], work: Path) -> dict[str, float]:
    engine = make_engine(url)
    upgrade(engine)
    register = Register(engine, KeyRing.create(work / f"keys-{name}.yaml"),
                        Settings(allow_synthetic_ids=True, pin_hash_cost=args.pin_cost))
    register.add_library(OPERATOR, ISIL, "Deichman Oslo")
    register.reserve_series(OPERATOR, ISIL, first=card_number_from_int(FIRST),
                            last=card_number_from_int(FIRST + 999_999))
    plain, pinned = ids[:args.rows], ids[args.rows:args.rows + args.pin_rows]
    results: dict[str, float] = {"baseline: SELECT 1 round trip": measure(lambda i: register.ping(), args.seconds)}
    spare = iter(ids[args.rows + args.pin_rows:])
    results["baseline: register_patron, one row at a time"] = measure(lambda i: register.register_patron(
        OPERATOR, ISIL, national_id=next(spare), surname="Ny", given_name="Patron"), args.seconds)

    def timed(label: str, batch: list[ImportRow]) -> None:
        t0 = time.perf_counter()
        summary = register.import_rows(OPERATOR, ISIL, batch)
        seconds = time.perf_counter() - t0
        results[label] = len(batch) / seconds
        print(f"  {name}: {label}: {len(batch):,} rows in {seconds:.1f} s ({summary.imported:,} imported, "
              f"{summary.already_imported:,} already, {summary.quarantined_total:,} quarantined, "
              f"{summary.already_quarantined:,} already quarantined)", file=sys.stderr)

    plain_rows = rows(plain, FIRST + 100_000, pin=False)
    timed(f"import, {len(plain):,} rows without PIN", plain_rows)
    timed("re-run of the same file", plain_rows)
    timed(f"import, {len(pinned):,} rows with PIN", rows(pinned, FIRST + 100_000 + len(plain), pin=True))
    engine.dispose()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows without a PIN")
    parser.add_argument("--pin-rows", type=int, default=10_000, help="rows with a PIN")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per baseline")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--pin-cost", type=int, default=RegisterConfig().pin_hash_cost, help="scrypt log2(N)")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    ids = national_ids(args.rows + args.pin_rows + 100_000)
    table: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in backends:
            with backend_url(name, work) as url:
                table[name] = run_backend(name, url, args, ids, work)
    labels = list(next(iter(table.values())))
    print(f"\nNLR legacy import, scrypt cost 2^{args.pin_cost}, batches of 200 rows, 1 row in 100 quarantined")
    header = f"{'operation':46}" + "".join(f"{b + ' rows/s':>16}{'× naive':>10}" for b in table)
    print(header)
    print("-" * len(header))
    for label in labels:
        line = f"{label:46}"
        for b in table:
            value, naive = table[b][label], table[b][labels[1]]
            line += f"{value:16,.1f}" + (f"{value / naive:10.2f}" if label != labels[0] else f"{'':10}")
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
