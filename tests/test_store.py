"""The store's view of SQLite's write lock: a call waiting for it is a busy register, not a hung
one, but only within SQLite's own timeout; past it, the writer holding the lock has hung, and the
gateway may go offline (gateway.blocking)."""

from __future__ import annotations

import threading
import time

import pytest

from gateway.register import store


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_wait_for_the_write_lock_counts_only_within_sqlites_timeout(register, monkeypatch):
    monkeypatch.setattr(store, "LOCK_WAIT_SECONDS", 0.5)
    holding, release = threading.Event(), threading.Event()

    def hung_writer() -> None:
        with register.store.session():
            holding.set()
            release.wait(10)  # a writer that hangs with the lock held

    def waiting_writer() -> None:
        with register.store.session():
            pass

    threads = [threading.Thread(target=hung_writer)]
    threads[0].start()
    assert holding.wait(5)
    threads.append(threading.Thread(target=waiting_writer))
    threads[1].start()
    time.sleep(0.2)
    assert register.store.lock_waits() == 1  # queued for the lock: busy, not hung
    time.sleep(0.6)
    assert register.store.lock_waits() == 0  # waiting longer than SQLite would: the holder hung
    release.set()
    for t in threads:
        t.join(5)
    assert register.store.lock_waits() == 0
