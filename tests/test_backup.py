"""`nlr backup FILE` (issue 11, item 6): a consistent copy of an SQLite register while a gateway
serves and writes to it; restored, it is a working register; a PostgreSQL register is refused with
how to back it up instead."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from daemon_helpers import Daemon, _env, free_port, start, write_config
from register_helpers import OSLO, add_patron, setup_libraries

from gateway.register import Register
from gateway.register.database import SCHEMA_HEAD


def _nlr(config: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(config), *args], cwd=cwd,
                          env=_env(), capture_output=True, text=True, timeout=120)


def test_a_copy_while_serving_and_writing_restores_to_a_working_register(
        register: Register, database_url: str, keys_path: Path, tmp_path: Path, daemons: list[Daemon]) -> None:
    if not database_url.startswith("sqlite"):
        result = _nlr(write_config(tmp_path / "pg.yaml", database_url, keys_path, http=[]), "backup",
                      str(tmp_path / "copy.db"), cwd=tmp_path)
        assert result.returncode == 2 and "pg_dump" in result.stderr and "keys file" in result.stderr
        assert not (tmp_path / "copy.db").exists()
        return
    setup_libraries(register)
    first = add_patron(register, 0, OSLO).card
    port = free_port()
    config = write_config(tmp_path / "nlr.yaml", database_url, keys_path, http=[f"tcp:{port}:interface=127.0.0.1"])
    daemon = start(daemons, config, tmp_path)
    daemon.health(f"http://127.0.0.1:{port}", 200)
    stop = threading.Event()
    written: list[str] = []

    def write() -> None:  # registrations go on while the copy is made
        k = 1
        while not stop.is_set() and k < 18:
            written.append(add_patron(register, k, OSLO).card)
            k += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        result = _nlr(config, "backup", str(tmp_path / "copy.db"), cwd=tmp_path)
    finally:
        stop.set()
        writer.join(timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"backup: {tmp_path / 'copy.db'} (") and f"schema {SCHEMA_HEAD}" in result.stdout
    assert "keys" in result.stderr and str(keys_path) in result.stderr  # the reminder
    copy = tmp_path / "copy.db"
    assert copy.stat().st_mode & 0o777 == 0o600 and not (tmp_path / "copy.db.partial").exists()
    with sqlite3.connect(copy) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        held = db.execute("SELECT count(*) FROM patrons").fetchone()[0]
    assert 1 <= held <= 1 + len(written)
    assert daemon.health(f"http://127.0.0.1:{port}", 200)  # it kept serving
    assert daemon.stop() == 0
    # Restored: the copy as the register of a new config (with the same keys file) works.
    restored = tmp_path / "restored"
    restored.mkdir()
    (restored / "register.db").write_bytes(copy.read_bytes())
    config2 = write_config(restored / "nlr.yaml", f"sqlite:///{restored / 'register.db'}", keys_path, http=[])
    shown = _nlr(config2, "patron", "show", first, "--json", cwd=restored)
    assert shown.returncode == 0, shown.stderr
    assert '"surname": "Nordmann0"' in shown.stdout
    again = _nlr(config2, "init", cwd=restored)
    assert again.returncode == 0 and f"current at {SCHEMA_HEAD}" in again.stdout


def test_an_existing_target_is_never_overwritten(tmp_path: Path, keys_path: Path) -> None:
    db = tmp_path / "register.db"
    config = write_config(tmp_path / "nlr.yaml", f"sqlite:///{db}", keys_path, http=[])
    assert _nlr(config, "init", cwd=tmp_path).returncode == 0
    target = tmp_path / "copy.db"
    target.write_text("precious")
    result = _nlr(config, "backup", str(target), cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "exists" in result.stderr
    assert target.read_text() == "precious"


@pytest.mark.parametrize("args", [[], ["a", "b"]])
def test_usage(tmp_path: Path, args: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "backup", *args], cwd=tmp_path, env=_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "error:" in result.stderr
