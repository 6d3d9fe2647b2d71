"""The `nlr` command's contract at its edges (issue 9, findings 10 and 11), black box: the real command
in a subprocess, as an operator meets it.

* Files the register creates are 0600 whatever the umask.
* Every numeric option is checked (exit 2, one ``error:`` line); a listing that stops early says so
  on stderr and its help states the default; ``--config`` goes before or after the command;
  ``patron add`` and ``patron update`` share option names; permission lists are non-empty and every
  unknown permission is named; gender is M, F, X or empty; ``nlr init`` asks the database before it
  writes keys; ``nlr --version``; help text on every option.
* Times are shown in Europe/Oslo with the offset.
"""

from __future__ import annotations

import json
import re
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from test_cli import (
    DB_DOWN_URL,
    REPO,
    Nlr,
    Result,
    _check,
    _env,
    nid,
    ok,
    run,
    run_parallel,
    usage_error,
    write_config,
)

OSLO = ZoneInfo("Europe/Oslo")
OSLO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0[12]:00")


@pytest.fixture
def nlr(database_url: str, keys_path: Path, tmp_path: Path) -> Nlr:
    """`nlr --config FILE …` against the fixture's empty migrated database, run in tmp_path."""
    config = write_config(tmp_path / "nlr.yaml", database_url, keys_path)

    def call(*args: str, stdin: str = "") -> Result:
        return run(config, *args, stdin=stdin, cwd=tmp_path)
    call.parallel = lambda *commands: run_parallel(config, *commands, cwd=tmp_path)  # type: ignore[attr-defined]
    call.config = config  # type: ignore[attr-defined]
    return call


def one_line(result: Result) -> str:
    """The single stderr line of a successful run (a listing's cut notice)."""
    assert result.rc == 0, result
    lines = result.err.splitlines()
    assert len(lines) == 1, result
    return lines[0]


# ---------------------------------------------------------------------- finding 10: file modes
def _mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


def _nlr_with_umask(config: Path, *args: str, cwd: Path) -> Result:
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(config), *args], capture_output=True,
                          text=True, cwd=cwd, env=_env(), timeout=120, umask=0)
    return _check(Result(tuple(args), proc.returncode, proc.stdout, proc.stderr))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_every_file_the_register_creates_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    """umask 0: `nlr init` makes the database and the keys file 0600; a running daemon and a write
    beside it make the -wal and -shm files 0600 too (they hold the same personal data)."""
    data = tmp_path / "data"
    port = _free_port()
    config = write_config(tmp_path / "nlr.yaml", f"sqlite:///{data}/register.db", data / "keys.yaml",
                          http=json.dumps({"listen": [f"tcp:{port}:interface=127.0.0.1"]}),
                          sip2=json.dumps({"listen": []}))
    ok(_nlr_with_umask(config, "init", cwd=tmp_path))
    assert {p.name: _mode(p) for p in data.iterdir()} == {"register.db": "0o600", "keys.yaml": "0o600"}

    daemon = subprocess.Popen([sys.executable, "-m", "gateway.cli", "--config", str(config), "serve"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                              cwd=tmp_path, env=_env(), umask=0)
    try:
        deadline = time.monotonic() + 30
        while True:  # the daemon holds its connections open: the -wal and -shm files stay
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert daemon.poll() is None and time.monotonic() < deadline, "the daemon did not start"
            time.sleep(0.2)
        ok(_nlr_with_umask(config, "library", "add", "2030000", "--name", "Deichman", cwd=tmp_path))
        modes = {p.name: _mode(p) for p in data.iterdir()}
    finally:
        daemon.terminate()
        daemon.communicate(timeout=30)
    assert {"register.db-wal", "register.db-shm"} <= modes.keys(), modes
    assert set(modes.values()) == {"0o600"}, modes


# ---------------------------------------------------------------------- finding 11: the CLI
def test_every_numeric_option_is_checked(tmp_path: Path) -> None:
    """Refused before the config or the database is read: exit 2, one line naming the option."""
    cases = {
        ("audit", "--limit", "-3"): "--limit", ("audit", "--limit", "0"): "--limit",
        ("audit", "--limit", "100001"): "--limit", ("audit", "--limit", "many"): "--limit",
        ("changes", "--since", "-1"): "--since", ("changes", "--limit", "0"): "--limit",
        ("keys", "rotate", "--batch-size", "0"): "--batch-size",
        ("keys", "reencrypt", "--batch-size", "0"): "--batch-size",
        ("keys", "rotate", "--batch-size", "-5"): "--batch-size",
        ("library", "add", "2030000", "--name", "X", "--door-min-age", "-1"): "--door-min-age",
        ("library", "set", "2030000", "--door-min-age", "121"): "--door-min-age",
        ("series", "reserve", "2030000", "--count", "0"): "--count",
        ("patron", "update", "N000100001", "--email", "a@b.no", "--expect-version", "0"): "--expect-version",
    }
    config = write_config(tmp_path / "nlr.yaml", DB_DOWN_URL, tmp_path / "keys.yaml")
    for args, result in zip(cases, run_parallel(config, *map(list, cases), cwd=tmp_path), strict=True):
        usage_error(result, cases[args], "whole number")
    assert not (tmp_path / "keys.yaml").exists()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_listings_say_when_they_stop_early_and_their_help_gives_the_default(nlr: Nlr) -> None:
    ok(nlr("demo"))
    everything, changes_all, cut, cut_json, feed, feed_json, last_page, helps = nlr.parallel(
        ["audit", "--json", "--limit", "100000"], ["changes", "--json"],
        ["audit", "--limit", "3"], ["audit", "--json", "--limit", "3"],
        ["changes", "--limit", "2"], ["changes", "--json", "--limit", "2", "--since", "1"],
        ["changes", "--since", "3"], ["audit", "--help"])
    total, changes = len(ok(everything).json), ok(changes_all).json
    assert everything.err == "" and changes_all.err == "", "nothing left out: nothing said"
    assert total > 3 and len(changes) > 4

    assert len(ok(cut).out.splitlines()) == 3
    assert one_line(cut) == f"{total - 3} more; use --limit to see older events (up to 100000)"
    assert len(ok(cut_json).json) == 3, "the notice goes to stderr: stdout stays JSON"
    assert one_line(cut_json) == one_line(cut)

    assert [line.split()[0] for line in ok(feed).out.splitlines()] == ["1", "2"]
    assert one_line(feed) == f"{len(changes) - 2} more; use --since 2 for the next ones (or a larger --limit)"
    assert [c["id"] for c in ok(feed_json).json] == [2, 3]
    assert one_line(feed_json).startswith(f"{len(changes) - 3} more; use --since 3 ")
    assert ok(last_page).err == "" and len(last_page.out.splitlines()) == len(changes) - 3

    changes_help = ok(nlr("changes", "--help")).out
    assert "(default 100)" in " ".join(ok(helps).out.split())
    assert "(default 1000)" in " ".join(changes_help.split()) and "(default 0" in changes_help


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_config_goes_before_or_after_the_command_and_there_is_a_version(nlr: Nlr, tmp_path: Path) -> None:
    config = str(nlr.config)  # type: ignore[attr-defined]
    ok(nlr("library", "add", "2030000", "--name", "Deichman"))
    after, middle, before, versioned, elsewhere = run_parallel(
        None, ["library", "list", "--json", "--config", config], ["library", "--config", config, "list"],
        ["--config", config, "library", "list"], ["--version"],
        ["library", "list", "--config", str(tmp_path / "missing.yaml")], cwd=tmp_path)
    assert [lib["isil"] for lib in ok(after).json] == ["NO-2030000"]
    assert ok(middle).out == ok(before).out and "NO-2030000" in before.out
    assert ok(versioned).out.strip() == f"nlr {version('nlr-gateway')}"
    usage_error(elsewhere, "missing.yaml")  # the one after the command is the one used


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_patron_add_and_update_share_option_names_and_gender_is_m_f_x_or_empty(nlr: Nlr) -> None:
    ok(nlr("library", "add", "2030000", "--name", "Deichman"))
    ok(nlr("series", "reserve", "2030000", "--count", "100"))
    add = ["patron", "add", "--library", "2030000", "--surname", "Nordmann", "--given-name", "Kari"]
    card = ok(nlr(*add, "--national-id", nid(1985, 10), "--address", "Storgata 1", "--address2", "H0201",
                  "--postal-code", "0155", "--city", "Oslo", "--secret-address", "--gender", "f")).out.strip()
    shown = ok(nlr("patron", "show", card, "--json")).json
    assert (shown["address_line1"], shown["address_line2"], shown["secret_address"], shown["gender"]) == \
        ("Storgata 1", "H0201", True, "F")

    ok(nlr("patron", "update", card, "--address", "Ny vei 2", "--address2", "", "--no-secret-address",
           "--gender", "X"))
    shown = ok(nlr("patron", "show", card, "--json")).json
    assert (shown["address_line1"], shown["address_line2"], shown["secret_address"], shown["gender"]) == \
        ("Ny vei 2", None, False, "X")
    ok(nlr("patron", "update", card, "--gender", "", "--secret-address"))
    shown = ok(nlr("patron", "show", card, "--json")).json
    assert (shown["gender"], shown["secret_address"]) == (None, True)

    bad_add, bad_update, old_name, old_switch = nlr.parallel(
        [*add, "--national-id", nid(1990, 20), "--gender", "male"],
        ["patron", "update", card, "--gender", "Q"],
        ["patron", "update", card, "--address-line1", "Storgata 3"],
        ["patron", "update", card, "--secret-address", "on"],
    )
    usage_error(bad_add, "--gender")
    usage_error(bad_update, "--gender")
    usage_error(old_name, "--address-line1")
    usage_error(old_switch)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_permission_lists_are_not_empty_and_every_unknown_one_is_named(nlr: Nlr) -> None:
    ok(nlr("library", "add", "2030000", "--name", "Deichman"))
    empty, commas, unknown, added = nlr.parallel(
        ["client", "add", "c1", "--library", "2030000", "--permissions", ""],
        ["client", "add", "c2", "--library", "2030000", "--permissions", ", ,"],
        ["client", "add", "c3", "--library", "2030000", "--permissions", "lookup,fly,swim"],
        ["client", "add", "c4", "--library", "2030000", "--permissions", "lookup"],
    )
    usage_error(empty, "at least one permission")
    usage_error(commas, "at least one permission")
    usage_error(unknown, "'fly'", "'swim'")
    ok(added)
    cleared = nlr("client", "set-permissions", "c4", "--permissions", "")
    usage_error(cleared, "at least one permission")
    assert [c["name"] for c in ok(nlr("client", "list", "--json")).json] == ["c4"]
    assert ok(nlr("client", "list", "--json")).json[0]["permissions"] == ["lookup"]


def test_init_asks_the_database_before_it_writes_the_keys_file(tmp_path: Path) -> None:
    keys = tmp_path / "secret" / "keys.yaml"
    config = write_config(tmp_path / "down.yaml", DB_DOWN_URL, keys)
    down = run(config, "init", cwd=tmp_path)
    assert down.rc == 1 and "database" in down.err, down
    assert not keys.exists(), "an init that fails on the database leaves no keys file behind"


def _help_entries(text: str) -> list[tuple[str, bool]]:
    """(option or argument, whether it has help text) for each entry of an argparse help page."""
    entries: list[tuple[str, bool]] = []
    lines = text.splitlines()
    in_section = False
    for i, line in enumerate(lines):
        if line.endswith(":") and not line.startswith(" "):
            in_section = line in ("options:", "positional arguments:", "optional arguments:")
            continue
        if not in_section or not line.startswith("  ") or line.startswith("   "):
            continue
        name, _, rest = line.strip().partition("  ")
        following = lines[i + 1] if i + 1 < len(lines) else ""
        entries.append((name, bool(rest.strip()) or following.startswith("   ")))
    return entries


def test_every_command_and_option_has_help_text(tmp_path: Path) -> None:
    top = ok(run(None, "--help", cwd=tmp_path)).out
    assert "--version" in top and "Europe/Oslo" in " ".join(top.split())
    groups = re.findall(r"^    ([a-z][a-z-]*)\s", top, flags=re.M)
    assert {"init", "patron", "audit", "changes", "keys"} <= set(groups), top
    pages = {(g,): r.out for g, r in zip(groups, run_parallel(None, *[[g, "--help"] for g in groups], cwd=tmp_path),
                                         strict=True)}
    leaves = [(g, sub) for (g,), page in pages.items()
              for sub in re.findall(r"^    ([a-z][a-z-]*)\s", page, flags=re.M)]
    assert ("patron", "update") in leaves and ("keys", "rotate") in leaves
    for leaf, result in zip(leaves, run_parallel(None, *[[*leaf, "--help"] for leaf in leaves], cwd=tmp_path),
                            strict=True):
        pages[leaf] = ok(result).out
    missing = {" ".join(cmd): [name for name, helped in _help_entries(page) if not helped]
               for cmd, page in {(): top, **pages}.items()}
    assert not {cmd: names for cmd, names in missing.items() if names}
    assert all("--config" in page for page in pages.values()), "--config also after the command"


# ---------------------------------------------------------------------- one time policy
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_times_are_shown_in_oslo_time_with_the_offset(nlr: Nlr) -> None:
    ok(nlr("demo"))
    audit, audit_json, changes, changes_json, shown = nlr.parallel(
        ["audit", "--limit", "5"], ["audit", "--json", "--limit", "5"], ["changes", "--limit", "5"],
        ["changes", "--json", "--limit", "5"], ["patron", "show", "N000100001", "--json"])
    texts = [line.split()[0] for line in ok(audit).out.splitlines()]
    texts += [line.split()[1] for line in ok(changes).out.splitlines()]
    stamps = [e["at"] for e in ok(audit_json).json] + [c["at"] for c in ok(changes_json).json]
    stamps += [a["activated_at"] for a in ok(shown).json["activations"]]
    for stamp in texts + stamps:
        assert OSLO_TIME.fullmatch(stamp), stamp
        at = datetime.fromisoformat(stamp)
        assert at.utcoffset() == at.astimezone(OSLO).utcoffset(), f"{stamp} is not Oslo time"


def test_the_readme_documents_the_options_it_names() -> None:
    """The README's `nlr` section uses the names the command has (one secret-address form)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## The `nlr` command"):]
    section = section[: section.index("\n## ", 1)]
    assert "--secret-address/--no-secret-address" in section or "--[no-]secret-address" in section
    assert "--address-line1" not in section
