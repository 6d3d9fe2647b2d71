"""The `nlr` command, black box (PRODUCT §4.1, §4.3): the real command in a subprocess, on SQLite and
PostgreSQL, with the exit codes and one-line errors scripts rely on.

Every run is checked for the same invariants: no traceback anywhere, and a failing run prints
exactly one line ``error: …`` on stderr. Runs cost about half a second each, so independent runs
go in parallel and the long scenarios run on SQLite only; PostgreSQL runs the core scenario.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from gateway.demo import synthetic_fnr

REPO = Path(__file__).resolve().parent.parent
CARD_RE = re.compile(r"N\d{9}")
DB_DOWN_URL = "postgresql+psycopg://postgres@127.0.0.1:1/x"


@dataclass
class Result:
    args: tuple[str, ...]
    rc: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)

    def __repr__(self) -> str:
        return f"nlr {' '.join(self.args)} → {self.rc}\nstdout: {self.out!r}\nstderr: {self.err!r}"


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NLR_CONFIG", "NLR_DEBUG")}
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra or {})
    return env


def _command(config: Path | None, args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "gateway.cli", *(["--config", str(config)] if config else []), *args]


def _check(result: Result) -> Result:
    assert "Traceback" not in result.err and "Traceback" not in result.out, result
    if result.rc != 0:
        lines = result.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result
    return result


def run(config: Path | None, *args: str, stdin: str = "", cwd: Path, env: dict[str, str] | None = None) -> Result:
    """One `nlr` run. stdin is a closed pipe unless given: nothing ever waits for a prompt."""
    proc = subprocess.run(_command(config, args), input=stdin, capture_output=True, text=True, cwd=cwd,
                          env=_env(env), timeout=120)
    return _check(Result(tuple(args), proc.returncode, proc.stdout, proc.stderr))


def run_parallel(config: Path | None, *commands: Sequence[str] | tuple[Sequence[str], str], cwd: Path,
                 env: dict[str, str] | None = None) -> list[Result]:
    """Independent runs side by side (each run is mostly imports). A command is a list of
    arguments, or (arguments, stdin text)."""
    procs = []
    for command in commands:
        args, stdin = command if isinstance(command, tuple) else (command, "")
        proc = subprocess.Popen(_command(config, args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=cwd, env=_env(env))
        procs.append((args, stdin, proc))
    results = []
    for args, stdin, proc in procs:
        out, err = proc.communicate(stdin, timeout=120)
        results.append(_check(Result(tuple(args), proc.returncode, out, err)))
    return results


def ok(result: Result) -> Result:
    assert result.rc == 0, result
    return result


def usage_error(result: Result, *needles: str) -> str:
    assert result.rc == 2, result
    for needle in needles:
        assert needle in result.err, result
    return result.err


def write_config(path: Path, database_url: str, keys_path: Path, **extra: str) -> Path:
    lines = [
        "database:", f"  url: {json.dumps(database_url)}",
        f"keys_file: {json.dumps(str(keys_path))}",
        "register:", "  allow_synthetic_ids: true", "  pin_hash_cost: 10",
    ]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


Nlr = Callable[..., Result]


@pytest.fixture
def config_file(database_url: str, keys_path: Path, tmp_path: Path) -> Path:
    return write_config(tmp_path / "nlr.yaml", database_url, keys_path)


@pytest.fixture
def nlr(config_file: Path, tmp_path: Path) -> Nlr:
    """`nlr --config FILE …` against the fixture's empty migrated database, run in tmp_path."""
    def call(*args: str, stdin: str = "") -> Result:
        return run(config_file, *args, stdin=stdin, cwd=tmp_path)
    call.parallel = lambda *commands: run_parallel(config_file, *commands, cwd=tmp_path)  # type: ignore[attr-defined]
    call.config = config_file  # type: ignore[attr-defined]
    return call


def nid(year: int, individual: int, month: int = 5, day: int = 17) -> str:
    return synthetic_fnr(date(year, month, day), individual)


# ---------------------------------------------------------------------- usage and config errors
def test_usage_and_config_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    good = write_config(tmp_path / "good.yaml", f"sqlite:///{tmp_path}/r.db", tmp_path / "keys.yaml")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("database:\n  url: [unclosed\n")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("database:\n  url: sqlite:///r.db\n  pool: 3\n")
    wrong_type = tmp_path / "wrong.yaml"
    wrong_type.write_text("register:\n  allow_synthetic_ids: maybe\n")
    missing = tmp_path / "missing.yaml"
    results = run_parallel(
        None,
        [],                                                     # no command at all
        ["--config", str(good), "frobnicate"],                  # unknown command
        ["--config", str(good), "patron", "add", "--library", "2030000"],  # required options missing
        ["--config", str(good), "series", "reserve", "2030000", "--count", "many"],
        ["--config", str(good), "terminal", "add", "t1", "--library", "2030000", "--profile", "kiosk",
         "--password", "secret"],                               # secrets never on the command line
        ["--config", str(good), "patron", "set-pin", "N000000001", "--pin", "1234"],
        ["--config", str(missing), "library", "list"],
        ["--config", str(bad_yaml), "library", "list"],
        ["--config", str(unknown), "library", "list"],
        ["--config", str(wrong_type), "init"],
        cwd=tmp_path,
    )
    for result in results[:6]:
        usage_error(result)
    assert "--password" in results[4].err and "secret" not in results[4].err.replace("secrets", "")
    assert "--pin" in results[5].err and "1234" not in results[5].err
    usage_error(results[6], str(missing), "not found")
    usage_error(results[7], str(bad_yaml), "YAML")
    usage_error(results[8], str(unknown), "database.pool")
    usage_error(results[9], str(wrong_type), "register.allow_synthetic_ids")
    assert not (tmp_path / "keys.yaml").exists(), "a bad config must stop `init` before it creates anything"

    env_missing, helped = run_parallel(None, ["library", "list"], ["--help"], cwd=tmp_path,
                                       env={"NLR_CONFIG": str(missing)})
    usage_error(env_missing, str(missing))
    assert helped.rc == 0 and "patron" in helped.out and "series" in helped.out


def test_database_down_exits_1_with_one_line(tmp_path: Path, keys_path: Path) -> None:
    cfg = write_config(tmp_path / "down.yaml", DB_DOWN_URL, keys_path)
    for result in run_parallel(cfg, ["library", "list"], ["init"], ["demo"], ["patron", "show", "N000000001"],
                               cwd=tmp_path):
        assert result.rc == 1, result
        assert "database" in result.err, result


def test_without_init_the_command_says_to_run_init(tmp_path: Path) -> None:
    """No config at all: the built-in defaults (./var/) apply, and nothing is there yet."""
    (no_keys,) = run_parallel(None, ["library", "list"], cwd=tmp_path)
    assert no_keys.rc == 1 and "nlr init" in no_keys.err, no_keys
    ok(run(None, "init", cwd=tmp_path))
    assert (tmp_path / "var" / "keys.yaml").exists() and (tmp_path / "var" / "register.db").exists()
    assert ok(run(None, "library", "list", "--json", cwd=tmp_path)).json == []


# ---------------------------------------------------------------------- init
@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no schema at all: a new SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/data/register.db"
        return
    base = request.getfixturevalue("postgres_schema_url").split("?", 1)[0]
    schema = f"nlr_cli_init_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_init_creates_keys_and_schema_then_keeps_them(empty_database_url: str, tmp_path: Path) -> None:
    keys = tmp_path / "secret" / "keys.yaml"
    cfg = write_config(tmp_path / "nlr.yaml", empty_database_url, keys)
    first = ok(run(cfg, "init", cwd=tmp_path))
    assert "created" in first.out
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    key_bytes = keys.read_bytes()
    second, listed = run_parallel(cfg, ["init", "--json"], ["library", "list", "--json"], cwd=tmp_path)
    assert ok(second).json["keys"] == "kept" and second.json["schema_before"] == second.json["schema"]
    assert keys.read_bytes() == key_bytes, "a second init must never replace the keys"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    assert ok(listed).json == []


# ---------------------------------------------------------------------- the core scenario, both backends
def test_core_scenario(nlr: Nlr) -> None:
    kari = nid(1985, 10, 3, 14)
    oslo, bergen = nlr.parallel(
        ["library", "add", "2030000", "--name", "Deichman Oslo", "--door-min-age", "15", "--self-activation"],
        ["library", "add", "NO-2120100", "--name", "Bergen offentlige bibliotek", "--json"],
    )
    assert ok(oslo).out == "NO-2030000\n"
    assert ok(bergen).json["isil"] == "NO-2120100" and bergen.json["door_min_age"] == 18

    again, counted, ranged, no_password, client, client_json = nlr.parallel(
        ["library", "add", "2030000", "--name", "Again"],
        ["series", "reserve", "2030000", "--count", "1000"],
        ["series", "reserve", "2120100", "--first", "n000200000", "--last", " N000299999 "],
        ["terminal", "add", "kiosk-oslo-1", "--library", "2030000", "--profile", "kiosk", "--password-stdin"],
        ["client", "add", "bibliofil-oslo", "--library", "2030000"],
        ["client", "add", "koha-bergen", "--library", "2120100", "--permissions", "lookup,create", "--json"],
    )
    usage_error(again, "NO-2030000")
    first, last = ok(counted).out.strip().split("-")
    assert CARD_RE.fullmatch(first) and CARD_RE.fullmatch(last), counted
    assert int(last[1:]) - int(first[1:]) == 999
    assert ok(ranged).out == "N000200000-N000299999\n"
    usage_error(no_password, "password")  # nothing on stdin: refused, nothing created
    token = ok(client).out.rstrip("\n").splitlines()[-1]
    assert re.fullmatch(r"\S{20,}", token), client
    client_json = ok(client_json).json
    assert client_json["permissions"] == ["lookup", "create"] and len(client_json["token"]) >= 20

    overlap, libraries, series, terminal, added = nlr.parallel(
        ["series", "reserve", "2120100", "--first", "N000250000", "--last", "N000250009"],
        ["library", "list", "--json"], ["series", "list", "--json"],
        (["terminal", "add", "kiosk-oslo-1", "--library", "2030000", "--profile", "kiosk", "--password-stdin"],
         "Hemmelig passord 1\n"),
        (["patron", "add", "--library", "2030000", "--national-id", kari, "--surname", "Nordmann", "--given-name",
          "Kari", "--birth-date", "1985-03-14", "--email", "kari@example.org", "--pin-stdin"], "4321\n"),
    )
    usage_error(overlap, "overlap")
    assert [(lib["isil"], lib["door_min_age"], lib["self_activation"]) for lib in ok(libraries).json] == \
        [("NO-2030000", 15, True), ("NO-2120100", 18, False)]
    assert sorted((s["library_isil"], s["first"], s["last"]) for s in ok(series).json) == \
        sorted([("NO-2030000", first, last), ("NO-2120100", "N000200000", "N000299999")])
    assert ok(terminal).out.strip() == "kiosk-oslo-1"
    card = ok(added).out
    assert CARD_RE.fullmatch(card.rstrip("\n")) and card.count("\n") == 1, added
    card = card.strip()
    assert first <= card <= last, "the register picks the next free number of the library's series"

    duplicate, show, show_json, activated = nlr.parallel(
        ["patron", "add", "--library", "2120100", "--national-id", kari, "--surname", "N", "--given-name", "K"],
        ["patron", "show", card], ["patron", "show", card.lower(), "--json"],
        ["patron", "activate", card, "--library", "2120100"],
    )
    usage_error(duplicate, card)
    assert kari not in duplicate.err
    assert ok(show).out.count(kari[:6] + "*****") == 1 and kari not in show.out
    shown = ok(show_json).json
    assert shown["card"] == card and shown["national_id_masked"] == kari[:6] + "*****"
    assert kari not in show_json.out and shown["surname"] == "Nordmann" and shown["home_library_isil"] == "NO-2030000"
    assert ok(activated).out.strip() == f"{card} activated at NO-2120100"

    # Activating again is idempotent, and records the door agreement at a library already active.
    agreed = ok(nlr("patron", "activate", card, "--library", "NO-2120100", "--door-agreement", "--json")).json
    assert [a["library_isil"] for a in agreed["activations"]].count("NO-2120100") == 1
    bergen_act = next(a for a in agreed["activations"] if a["library_isil"] == "NO-2120100")
    assert bergen_act["door_agreement_at"] and not bergen_act["home"]

    new_card = ok(nlr("patron", "replace-card", card)).out
    assert CARD_RE.fullmatch(new_card.rstrip("\n")) and new_card.count("\n") == 1, new_card
    new_card = new_card.strip()
    assert new_card != card

    old, exported, audit = nlr.parallel(["patron", "show", card, "--json"], ["patron", "export", new_card],
                                        ["audit", new_card, "--json"])
    assert ok(old).json["card_status"] == "replaced" and old.json["current_card"] == new_card
    everything = ok(exported).json
    assert everything["national_id"] == kari
    assert {c["number"] for c in everything["cards"]} == {card, new_card}
    actions = [e["action"] for e in ok(audit).json]
    assert "patron_register" in actions and "card_replace" in actions
    for secret in (kari, "4321", token, client_json["token"], "Hemmelig passord 1"):
        assert secret not in audit.out


# ---------------------------------------------------------------------- the rest of the patron commands
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_patron_commands_and_their_errors(nlr: Nlr) -> None:
    ola, other = nid(1990, 20, 11, 2), nid(1991, 30)
    oslo, bergen, bad_isil = nlr.parallel(
        ["library", "add", "2030000", "--name", "Deichman Oslo"],
        ["library", "add", "2120100", "--name", "Bergen offentlige bibliotek"],
        ["library", "add", "203", "--name", "X"],
    )
    ok(oslo), ok(bergen)
    usage_error(bad_isil, "NO-", "7 digits")
    oslo_series, bergen_series = nlr.parallel(
        ["series", "reserve", "2030000", "--first", "N000100000", "--last", "N000100099"],
        ["series", "reserve", "2120100", "--count", "10"],
    )
    assert ok(oslo_series).out == "N000100000-N000100099\n"
    ok(bergen_series)

    def add(*extra: str) -> list[str]:
        return ["patron", "add", "--library", "2030000", "--surname", "A", "--given-name", "B", *extra]

    (added, bad_card, no_pin, wrong_pin, unknown_card, bad_date, no_reason, no_command) = nlr.parallel(
        add("--card", " n000100050 ", "--national-id", ola, "--address", "Storgata 1", "--postal-code", "0155",
            "--city", "Oslo", "--phone", "22334455"),
        add("--card", "N12345", "--national-id", other),
        add("--national-id", other, "--pin-stdin"),  # nothing on stdin
        (add("--national-id", other, "--pin-stdin"), "98765432109\n"),
        ["patron", "show", "N000999999"],
        add("--national-id", other, "--birth-date", "17.05.1991"),
        ["patron", "block", "N000100050"],
        ["patron"],
    )
    card = ok(added).out.strip()
    assert card == "N000100050"
    usage_error(bad_card, "N followed by 9 digits")
    usage_error(no_pin, "PIN")
    usage_error(wrong_pin, "PIN")
    assert "98765432109" not in wrong_pin.err
    usage_error(unknown_card, "N000999999")
    usage_error(bad_date, "YYYY-MM-DD")
    usage_error(no_reason, "--reason")
    usage_error(no_command)

    taken, activated, no_library = nlr.parallel(
        add("--card", "N000100050", "--national-id", other),
        ["patron", "activate", card, "--library", "2120100", "--door-agreement", "--json"],
        ["patron", "activate", card, "--library", "2160100"],
    )
    usage_error(taken, "N000100050")
    usage_error(no_library, "NO-2160100")
    assert sorted(a["library_isil"] for a in ok(activated).json["activations"]) == ["NO-2030000", "NO-2120100"]

    replaced = ok(nlr("patron", "replace-card", card, "--new-card", "N000100060")).out
    assert replaced == "N000100060\n"
    dead, home = nlr.parallel(["patron", "activate", card, "--library", "2030000"],
                              ["patron", "set-home", "N000100060", "--library", "2120100"])
    usage_error(dead, card)  # the old card never works again
    assert "NO-2120100" in ok(home).out
    ok(nlr("patron", "block", "N000100060", "--reason", "skylder erstatning"))
    shown = ok(nlr("patron", "show", card)).out
    assert re.search(r"Card:\s+N000100050 \(replaced; current card N000100060\)", shown), shown
    assert re.search(r"Home library:\s+NO-2120100", shown), shown
    assert re.search(r"Blocked:\s+yes: skylder erstatning", shown), shown
    assert re.search(r"NO-2120100 .*door agreement", shown), shown
    assert ok(nlr("patron", "unblock", "N000100060", "--json")).json["blocked"] is False

    deleted = ok(nlr("patron", "delete", "N000100060"))
    assert "N000100060" in deleted.out
    gone, reuse, audit_json, audit_text, listed = nlr.parallel(
        ["patron", "show", "N000100060"],
        add("--card", "N000100060", "--national-id", other),
        ["audit", "--json"], ["audit"], ["series", "list", "NO-2030000"],
    )
    usage_error(gone, "N000100060")
    usage_error(reuse, "N000100060")  # card numbers are never reused, not even after deletion
    actions = [e["action"] for e in ok(audit_json).json]
    for action in ("library_add", "series_reserve", "patron_register", "patron_activate", "door_agreement",
                   "card_replace", "home_library", "patron_block", "patron_unblock", "patron_delete"):
        assert action in actions, actions
    assert "patron_delete" in ok(audit_text).out
    for output in (audit_json.out, audit_text.out):
        assert ola not in output and other not in output
    assert ok(listed).out.startswith("N000100000-N000100099") and "NO-2120100" not in listed.out

    # After the deletion the same person may be registered again, under a new number.
    fresh = ok(nlr(*add("--national-id", ola))).out.strip()
    assert CARD_RE.fullmatch(fresh) and fresh not in ("N000100050", "N000100060")


# ---------------------------------------------------------------------- demo
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_demo_is_idempotent_and_has_the_six_patrons(nlr: Nlr) -> None:
    first = ok(nlr("demo")).out
    assert "1234" in first
    listings = (["library", "list", "--json"], ["series", "list", "--json"], ["audit", "--json", "--limit", "100000"])
    before = nlr.parallel(*listings)
    second = ok(nlr("demo", "--json")).json
    assert {e["status"] for e in second if not e["item"].startswith("demo PIN")} == {"already there"}, second
    assert len([e for e in second if e["item"].startswith("patron ")]) >= 6
    after = nlr.parallel(*listings)
    for b, a in zip(before, after, strict=True):
        assert ok(b).json == ok(a).json, "a second `nlr demo` must change nothing"

    libraries = {lib["isil"]: lib for lib in before[0].json}
    assert {k: (v["door_min_age"], v["self_activation"], v["auto_activation"]) for k, v in libraries.items()} == {
        "NO-2030000": (15, True, False), "NO-2120100": (16, False, False), "NO-2160100": (18, False, True),
        "NO-0030100": (18, False, False),
    }
    assert {(s["library_isil"], s["first"], s["last"]) for s in before[1].json} == {
        ("NO-2030000", "N000100000", "N000199999"), ("NO-2120100", "N000200000", "N000299999"),
        ("NO-2160100", "N000300000", "N000399999"),
    }

    shows = nlr.parallel(*[["patron", "show", c, "--json"] for c in
                           ("N000100001", "N000200001", "N000100002", "N000300001", "N000100004", "N000200002")],
                         ["patron", "show", "N000100003"])
    door, no_agreement, child, blocked, replaced, secret = (ok(s).json for s in shows[:6])
    lost_text = ok(shows[6]).out
    assert re.search(r"Card:\s+N000100003 \(lost; current card N000100004\)", lost_text), lost_text

    def at(patron: dict[str, Any], isil: str) -> dict[str, Any] | None:
        return next((a for a in patron["activations"] if a["library_isil"] == isil), None)

    assert at(door, "NO-2030000")["door_agreement_at"]
    assert at(no_agreement, "NO-2030000") and not at(no_agreement, "NO-2030000")["door_agreement_at"]
    assert no_agreement["home_library_isil"] != "NO-2030000"
    age = (date.today() - date.fromisoformat(child["birth_date"])).days / 365.25
    assert age < 15
    assert blocked["blocked"] is True
    assert replaced["current_card"] == "N000100004" and {c["number"]: c["status"] for c in replaced["cards"]}[
        "N000100003"] == "lost"
    assert secret["secret_address"] is True
    for patron in (door, no_agreement, child, blocked, replaced, secret):
        assert patron["has_pin"] is True
        assert patron["national_id_masked"].endswith("*****")



def test_client_add_help_names_every_permission(tmp_path: Path) -> None:
    from gateway.register.views import PERMISSIONS

    text = " ".join(ok(run(None, "client", "add", "--help", cwd=tmp_path)).out.split())
    for permission in PERMISSIONS:
        assert permission in text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_keys_rotate_reencrypts_every_national_id_and_lookups_still_work(nlr: Nlr, keys_path: Path) -> None:
    ok(nlr("demo"))
    assert ok(nlr("keys", "status", "--json")).json["rows_per_key"] == {"1": 6}
    rotated = ok(nlr("keys", "rotate", "--batch-size", "2")).out
    assert "re-encrypted 6" in rotated
    assert ok(nlr("keys", "status", "--json")).json == {"active_key": 2, "rows_per_key": {"2": 6},
                                                        "rows_under_older_keys": 0}
    assert oct(keys_path.stat().st_mode & 0o777) == "0o600"
    # The patrons still decrypt and are still found by national id with the new key.
    exported = ok(nlr("patron", "export", "N000100001")).json
    found = ok(nlr("patron", "find", "--json", stdin=exported["national_id"] + "\n")).json
    assert found["card"] == "N000100001"


def test_a_running_gateway_seals_with_the_key_a_rotation_made(nlr: Nlr, database_url: str, keys_path: Path) -> None:
    """A gateway process started before `nlr keys rotate` encrypts new national ids with the new key
    within seconds (issue 8, item 7); `keys status` names rows still under an older key, and
    `keys reencrypt` moves them without adding a key."""
    import time

    from register_helpers import TEST_SETTINGS

    from gateway.register import Register
    from gateway.register.crypto import KeyRing
    from gateway.register.database import make_engine
    from gateway.register.views import OPERATOR

    ok(nlr("demo"))
    engine = make_engine(database_url)
    gateway = Register(engine, KeyRing.load(keys_path), TEST_SETTINGS)  # running since before the rotation
    try:
        stale = KeyRing.load(keys_path)  # a gateway on another host that has not got the new file yet
        ok(nlr("keys", "rotate"))
        time.sleep(KeyRing.RECHECK_SECONDS + 0.2)
        fresh = gateway.register_patron(OPERATOR, "NO-2030000", national_id=nid(1990, 123), surname="Ny",
                                        given_name="Etter")
        exported = gateway.export_patron(OPERATOR, fresh.card)
        assert exported["national_id"] == nid(1990, 123)
        status = ok(nlr("keys", "status", "--json")).json
        assert status["active_key"] == 2 and status["rows_per_key"] == {"2": 7} and status["rows_under_older_keys"] == 0
        # the other host seals one with the old key meanwhile: status says so, reencrypt mends it
        laggard = Register(engine, stale, TEST_SETTINGS)
        laggard.keys.RECHECK_SECONDS = 3600  # its copy of the file is the old one: it never sees key 2
        laggard.register_patron(OPERATOR, "NO-2030000", national_id=nid(1991, 124), surname="Gammel",
                                given_name="Nøkkel")
        text = ok(nlr("keys", "status")).out
        assert "1 national ids are still sealed with an older key" in text and "nlr keys reencrypt" in text
        assert "re-encrypted 1 " in ok(nlr("keys", "reencrypt")).out
        assert ok(nlr("keys", "status", "--json")).json["rows_per_key"] == {"2": 8}
    finally:
        engine.dispose()
