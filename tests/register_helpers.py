"""Plain helpers for every test of the register and the daemons over it (fixtures: tests/conftest.py).

Three libraries as a Norwegian reader would know them, each with its own number series
(`setup_libraries`, the ``reg`` fixture), the register settings of the suite, and helpers that make
valid synthetic national ids, actors and patrons.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from sqlalchemy import text

from gateway.demo import synthetic_fnr
from gateway.register import Register, Settings
from gateway.register.views import DEFAULT_CLIENT_PERMISSIONS, OPERATOR, Actor, PatronView

OSLO = "NO-2030000"  # door minimum age 15, self-activation
BERGEN = "NO-2120100"  # door minimum age 16, neither self- nor auto-activation
TRONDHEIM = "NO-2160100"  # door minimum age 18, auto-activation
PIN = "2468"
OTHER_PIN = "1357"
# Cheap PIN hashes keep the suite fast; the production default (15) is measured by bench/.
TEST_SETTINGS = Settings(allow_synthetic_ids=True, pin_hash_cost=10)


def nid(k: int, birth: date | None = None) -> str:
    """The k-th distinct valid synthetic fødselsnummer (k = 0, 1, 2, …), or one born on ``birth``."""
    if birth is not None:
        return synthetic_fnr(birth, 100 + 50 * k)
    # one birth date per k, so the numbers never collide (synthetic_fnr searches 50 individnummer)
    return synthetic_fnr(date(1960, 1, 1) + timedelta(days=37 * k), 100)


def client(isil: str, *permissions: str, name: str | None = None) -> Actor:
    """An NCIP client (library system) of the library ``isil``."""
    perms = frozenset(permissions) if permissions else frozenset(DEFAULT_CLIENT_PERMISSIONS)
    return Actor("client", name or f"ils-{isil}", isil, perms)


def terminal(isil: str, name: str = "kiosk-1") -> Actor:
    return Actor("terminal", name, isil)


def patron_actor(card: str) -> Actor:
    return Actor("patron", card)


def setup_libraries(register: Register) -> None:
    """Oslo, Bergen and Trondheim, with the demo data's series: the ``reg`` fixture, and the base of the
    NCIP and SIP2 registers."""
    register.add_library(OPERATOR, OSLO, "Deichman Oslo", door_min_age=15, self_activation=True)
    register.add_library(OPERATOR, "2120100", "Bergen offentlige bibliotek", door_min_age=16)
    register.add_library(OPERATOR, TRONDHEIM, "Trondheim folkebibliotek", door_min_age=18, auto_activation=True)
    register.reserve_series(OPERATOR, OSLO, first="N000100000", last="N000199999")
    register.reserve_series(OPERATOR, BERGEN, first="N000200000", last="N000299999")
    register.reserve_series(OPERATOR, TRONDHEIM, first="N000300000", last="N000399999")


def add_patron(register: Register, k: int = 0, library: str = OSLO, *, actor: Actor = OPERATOR,
               birth: date | None = date(1985, 3, 14), pin: str | None = PIN, national_id: str | None = None,
               **fields: Any) -> PatronView:
    """Register the k-th test person (0 <= k < 18) at ``library``: born 1985-03-14 unless told otherwise,
    national id ``nid(k, birth)``, PIN set."""
    values: dict[str, Any] = {"surname": f"Nordmann{k}", "given_name": "Kari", "birth_date": birth, "pin": pin}
    values.update(fields)
    return register.register_patron(actor, library, national_id=national_id or nid(k, birth), **values)


def raw_rows(register: Register, sql: str, **params: Any) -> list[tuple]:
    with register.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def raw_exec(register: Register, sql: str, **params: Any) -> None:
    with register.engine.begin() as conn:
        conn.execute(text(sql), params)


def concurrent_registrations(url: str, keys_path: str, barrier: Any, results: Any,
                             jobs: list[tuple[str, str, str | None]]) -> None:
    """A child process of the concurrency test: its own engine and Register; waits at ``barrier``,
    then registers ``jobs`` (label, national id, explicit card or None) at Oslo, and puts
    (pid, [(label, outcome, card or message), …]) on ``results``. Never raises."""
    import os
    import traceback
    from pathlib import Path

    from gateway.register.crypto import KeyRing
    from gateway.register.database import make_engine
    from gateway.register.errors import CardInUse, DuplicatePatron, RegisterError

    out: list[tuple[str, str, str | None]] = []
    engine = None
    try:
        engine = make_engine(url)
        reg = Register(engine, KeyRing.load(Path(keys_path)), TEST_SETTINGS)
        barrier.wait(timeout=60)
        for label, national_id, card in jobs:
            try:
                view = reg.register_patron(OPERATOR, OSLO, national_id=national_id, surname=label,
                                           given_name="Samtidig", card=card)
                out.append((label, "ok", view.card))
            except DuplicatePatron as exc:
                out.append((label, "duplicate", exc.existing_card))
            except CardInUse as exc:
                out.append((label, "card_in_use", str(exc)))
            except RegisterError as exc:
                out.append((label, "refused", f"{type(exc).__name__}: {exc}"))
            except Exception:  # noqa: BLE001 - the test reports it
                out.append((label, "crash", traceback.format_exc()))
    except Exception:  # noqa: BLE001
        out.append(("setup", "crash", traceback.format_exc()))
    finally:
        if engine is not None:
            engine.dispose()
        results.put((os.getpid(), out))


def at_once(threads: int, call: Callable[[int], Any]) -> list[Any]:
    """``call(i)`` in ``threads`` threads released at the same moment; their results, none failing."""
    barrier = threading.Barrier(threads)
    results, errors = [], []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results.append(call(i))
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert not errors
    return results
