"""`nlr`: the operator's command line (PRODUCT §4.3).

Exit status: 0 success; 2 invalid input or usage (a missing or invalid config file included), with
one line ``error: …`` on stderr; 1 anything else. Secrets come from stdin (``--pin-stdin``,
``--password-stdin``) or an interactive prompt, never from the arguments.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from gateway.config import MAX_WORKERS, Config, ConfigError, load_config

# Light modules: the database layer loads only when a command needs the register, and then through
# register-level functions (this module imports no SQLAlchemy, not even inside functions).
from gateway.register.identifiers import InvalidIdentifier, normalise_isil
from gateway.register.settings import OSLO
from gateway.register.views import OPERATOR, PERMISSIONS, jsonable
from gateway.runtime import Failure, open_configured_register

if TYPE_CHECKING:
    from gateway.register import Register
    from gateway.register.views import PatronView  # noqa: F401

PERMISSIONS_HELP = ", ".join(PERMISSIONS)  # for --help


class UsageError(Exception):
    """Bad command-line input: exit status 2."""


_SECRET_WORDS = ("pin", "password", "passwd", "token", "secret")


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No abbreviations: `--password secret` must not be taken for `--password-stdin` + a stray word.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        """Like argparse's, but an unexpected argument is never echoed: it may be a secret typed
        on the command line (``--pin 1234``). Only unknown option names are shown."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            names = [a.split("=", 1)[0] for a in extras if a.startswith("-") and len(a) > 1]
            others = sum(1 for a in extras if not (a.startswith("-") and len(a) > 1))
            what = []
            if names:
                what.append(f"unknown option{'s' if len(names) > 1 else ''} {', '.join(names)}")
            if others:
                what.append(f"{others} unexpected argument{'s' if others > 1 else ''} (not shown)")
            hint = ""
            if any(word in name.lower() for name in names for word in _SECRET_WORDS):
                hint = "; secrets are read from standard input (--pin-stdin, --password-stdin), never from arguments"
            raise UsageError(f"{' and '.join(what)}{hint} (see `{self.prog} --help`)")
        return parsed


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date in the form YYYY-MM-DD") from None


_BIG = 2**63 - 1  # the largest id or version a database column holds


def _whole(low: int, high: int = _BIG) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high``, else a usage error naming the range."""
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            bound = f"at least {low}" if high == _BIG else f"from {low} to {high}"
            raise argparse.ArgumentTypeError(f"expected a whole number {bound}, got {text!r}")
        return value
    return parse


def _workers(text: str) -> int:
    """``--workers``: 1 to MAX_WORKERS, or ``auto`` (the number of CPUs)."""
    if text.strip() == "auto":
        return max(1, os.cpu_count() or 1)
    return _whole(1, MAX_WORKERS)(text)


LIMIT_MAX = 100_000  # rows a listing prints at most in one run


# ---------------------------------------------------------------------- secrets
def _read_secret(from_stdin: bool, what: str, *, required: bool) -> str | None:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise UsageError(f"expected the {what} on standard input, got nothing")
        return line.removesuffix("\n").removesuffix("\r")
    if sys.stdin.isatty():
        first = getpass.getpass(f"{what[0].upper()}{what[1:]}: ")
        if not first and not required:
            return None
        if getpass.getpass(f"Repeat the {what}: ") != first:
            raise UsageError(f"the two {what}s differ; try again")
        return first
    if required:
        raise UsageError(f"give the {what} on standard input with --{'pin' if what == 'PIN' else 'password'}-stdin")
    return None


# ---------------------------------------------------------------------- output
def _when(at: datetime) -> str:
    """A stored (UTC) time as people read it: Europe/Oslo, with the offset (2026-12-01T23:45:00+01:00)."""
    return at.astimezone(OSLO).isoformat(timespec="seconds")


def _day(at: datetime) -> str:
    """The Oslo date of a stored time."""
    return at.astimezone(OSLO).date().isoformat()


def _shown(value: Any) -> Any:
    """As `jsonable`, with every time in Europe/Oslo (the one policy: stored UTC, shown Oslo)."""
    return jsonable(value, OSLO)


def _emit(args: argparse.Namespace, value: Any, human: Callable[[], str]) -> None:
    if getattr(args, "json", False):
        print(json.dumps(_shown(value), ensure_ascii=False, indent=2))
    else:
        text = human()
        if text:
            print(text)


def _yn(flag: bool) -> str:
    return "yes" if flag else "no"


def _patron_text(p: PatronView) -> str:
    rows = [
        ("Card", p.card if p.card_status == "active"
         else f"{p.card} ({p.card_status}; current card {p.current_card or 'none'})"),
        ("Name", f"{p.surname}, {p.given_name}"),
        ("National id", p.national_id_masked),
        ("Birth date", p.birth_date.isoformat() if p.birth_date else "-"),
        ("Address", "(secret address)" if p.secret_address else
         ", ".join(x for x in (p.address_line1, p.address_line2, " ".join(y for y in (p.postal_code, p.city) if y))
                   if x) or "-"),
        ("E-mail", p.email or "-"),
        ("Phone", p.phone or "-"),
        ("Home library", p.home_library_isil),
        ("Blocked", f"yes: {p.block_reason}" if p.blocked else "no"),
        ("PIN", ("locked until " + _when(p.pin_locked_until)) if p.pin_locked_until
         else ("set" if p.has_pin else "not set")),
        ("Version", str(p.version)),
    ]
    lines = [f"{k + ':':14}{v}" for k, v in rows]
    lines.append("Activations:")
    for a in p.activations:
        door = "no agreement"
        if a.door_agreement_at:
            door = "door REVOKED" if a.door_revoked_at else f"door agreement v{a.door_agreement_version}"
        lines.append(f"  {a.library_isil}  {_day(a.activated_at)}  {a.channel:8} rules v{a.rules_version}"
                     f"{'  home' if a.home else ''}  {door}")
    if len(p.cards) > 1:
        lines.append("Cards:")
        lines.extend(f"  {c.number}  {c.status:8} {c.library_isil}  {_day(c.issued_at)}" for c in p.cards)
    return "\n".join(lines)


# ---------------------------------------------------------------------- commands
def cmd_init(args: argparse.Namespace, config: Config) -> None:
    from gateway.register.crypto import KeyRing
    from gateway.register.errors import RegisterUnavailable
    from gateway.register.schema import initialise

    # The database first: a register that cannot be reached leaves no new keys file behind. An
    # existing keys file is read (not changed) first, so a damaged one stops init before the schema.
    if config.keys_path.exists():
        KeyRing.load(config.keys_path)
    try:
        before, after = initialise(config.database_url, connect_timeout=config.database.connect_timeout)
    except RegisterUnavailable as exc:
        raise Failure(str(exc)) from None
    _, created = KeyRing.load_or_create(config.keys_path)
    if not args.json:
        print(f"keys: {'created' if created else 'kept'} {config.keys_path}")
    if args.json:
        print(json.dumps({"keys_file": str(config.keys_path), "keys": "created" if created else "kept",
                          "schema_before": before, "schema": after}, indent=2))
    else:
        how = "created at" if before is None else f"upgraded {before} ->" if before != after else "current at"
        print(f"schema: {how} {after}")


def cmd_backup(args: argparse.Namespace, config: Config) -> None:
    from gateway.register.backup import backup_sqlite

    made = backup_sqlite(config.database_url, Path(args.file))
    if args.json:
        print(json.dumps({"file": str(made.path), "bytes": made.bytes, "schema": made.schema,
                          "patrons": made.patrons, "keys_file": str(config.keys_path)}, indent=2))
        return
    print(f"backup: {made.path} ({made.bytes} bytes, schema {made.schema}, {made.patrons} patrons)")
    print(f"keys: back up {config.keys_path} too, kept apart from the copy: without it the national ids "
          "in the copy cannot be read", file=sys.stderr)


def cmd_serve(args: argparse.Namespace, config: Config) -> None:
    import signal

    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # SIGHUP reloads once serving; until then it must not kill
    from gateway.server import serve

    if args.worker:
        from gateway.supervisor import WorkerChannel

        serve(config, WorkerChannel.from_environment())
        return
    from gateway.supervisor import supervise, worker_count

    workers = args.workers if args.workers is not None else worker_count(config.server.workers)
    if workers == 1:
        serve(config)  # one process, no supervisor
        return
    status = supervise(config, workers)
    if status == 2:
        raise UsageError("a worker refused the configuration (its line is above)")
    if status:
        raise Failure("the workers did not all stop cleanly, or one could not start (see the log)")


def cmd_demo(args: argparse.Namespace, register: Register) -> None:
    from gateway.demo import load_demo

    if args.json:
        print(json.dumps([{"item": item, "status": status} for item, status in load_demo(register)],
                         ensure_ascii=False, indent=2))
        return
    for item, status in load_demo(register):
        print(f"{item}: {status}", flush=True)


def cmd_library_add(args: argparse.Namespace, register: Register) -> None:
    lib = register.add_library(OPERATOR, args.isil, args.name, door_min_age=args.door_min_age,
                               self_activation=args.self_activation, auto_activation=args.auto_activation,
                               rules_version=args.rules_version)
    _emit(args, lib, lambda: lib.isil)


def cmd_library_set(args: argparse.Namespace, register: Register) -> None:
    lib = register.update_library(
        OPERATOR, args.isil, name=args.name, door_min_age=args.door_min_age, self_activation=args.self_activation,
        auto_activation=args.auto_activation, rules_version=args.rules_version,
        door_agreement_version=args.door_agreement_version)
    _emit(args, lib, lambda: _library_line(lib))


def _library_line(lib: Any) -> str:
    flags = [f"door age {lib.door_min_age}", f"rules v{lib.rules_version}"]
    flags += ["self-activation"] * lib.self_activation + ["auto-activation"] * lib.auto_activation
    return f"{lib.isil}  {lib.name}  ({', '.join(flags)})"


def cmd_library_list(args: argparse.Namespace, register: Register) -> None:
    libs = register.list_libraries()
    _emit(args, libs, lambda: "\n".join(_library_line(lib) for lib in libs))


def cmd_series_reserve(args: argparse.Namespace, register: Register) -> None:
    series = register.reserve_series(OPERATOR, args.isil, count=args.count, first=args.first, last=args.last)
    _emit(args, series, lambda: series.range)


def cmd_series_list(args: argparse.Namespace, register: Register) -> None:
    rows = register.list_series(args.isil)
    _emit(args, rows, lambda: "\n".join(
        f"{r.range}  {r.library_isil}  {r.used} of {r.size} used  next {r.next_free or 'none (full)'}" for r in rows))


def cmd_series_conflicts(args: argparse.Namespace, register: Register) -> None:
    rows = register.series_conflicts(args.library)
    _emit(args, rows, lambda: "\n".join(
        f"{r['card']}  issued by {r['library']} outside its series" if r["source"] == "register" else
        f"{r['card']}  quarantined import row of {r['library']}, outside its series "
        f"(nlr quarantine show {r['quarantine']})" for r in rows)
        or "no card numbers outside their library's series")


def cmd_terminal_add(args: argparse.Namespace, register: Register) -> None:
    password = _read_secret(args.password_stdin, "password", required=True)
    nets = [n for n in (args.allowed_networks or "").split(",") if n.strip()]
    t = register.add_terminal(OPERATOR, args.login, password or "", args.library, args.profile, encoding=args.encoding,
                              terminator=args.terminator, allowed_networks=nets, tls_only=args.tls_only,
                              pin_required=not args.no_pin_required)
    _emit(args, t, lambda: t.login)


def cmd_terminal_list(args: argparse.Namespace, register: Register) -> None:
    rows = register.list_terminals()
    _emit(args, rows, lambda: "\n".join(
        f"{t.login}  {t.library_isil}  {t.profile}  {t.encoding}  {t.terminator}"
        f"{'  tls-only' if t.tls_only else ''}{'  nets ' + ','.join(t.allowed_networks) if t.allowed_networks else ''}"
        f"{'' if t.enabled else '  DISABLED'}" for t in rows))


def cmd_terminal_toggle(args: argparse.Namespace, register: Register) -> None:
    t = register.update_terminal(OPERATOR, args.login, enabled=args.command_name == "enable")
    _emit(args, t, lambda: f"{t.login} {'enabled' if t.enabled else 'disabled'}")


def cmd_terminal_set_password(args: argparse.Namespace, register: Register) -> None:
    password = _read_secret(args.password_stdin, "password", required=True)
    t = register.update_terminal(OPERATOR, args.login, password=password)
    _emit(args, t, lambda: f"{t.login}: password changed")


def _permissions(text: str | None) -> list[str] | None:
    """The --permissions list; the register refuses an empty one and names every unknown one."""
    return None if text is None else text.split(",")


def cmd_client_add(args: argparse.Namespace, register: Register) -> None:
    client, token = register.add_client(OPERATOR, args.name, args.library, _permissions(args.permissions))
    if args.json:
        print(json.dumps({**jsonable(client), "token": token}, ensure_ascii=False, indent=2))
    else:
        print(f"client {client.name} for {client.library_isil}: {','.join(client.permissions)}")
        print("token (shown only now; store it safely):")
        print(token)


def cmd_client_list(args: argparse.Namespace, register: Register) -> None:
    rows = register.list_clients()
    _emit(args, rows, lambda: "\n".join(
        f"{c.name}  {c.library_isil}  {','.join(c.permissions)}{'' if c.enabled else '  DISABLED'}" for c in rows))


def cmd_client_toggle(args: argparse.Namespace, register: Register) -> None:
    c, _ = register.update_client(OPERATOR, args.name, enabled=args.command_name == "enable")
    _emit(args, c, lambda: f"{c.name} {'enabled' if c.enabled else 'disabled'}")


def cmd_client_rotate(args: argparse.Namespace, register: Register) -> None:
    c, token = register.update_client(OPERATOR, args.name, rotate_token=True)
    if args.json:
        print(json.dumps({**jsonable(c), "token": token}, ensure_ascii=False, indent=2))
    else:
        print(f"client {c.name}: new token (the old one no longer works):")
        print(token)


def cmd_client_permissions(args: argparse.Namespace, register: Register) -> None:
    c, _ = register.update_client(OPERATOR, args.name, permissions=_permissions(args.permissions))
    _emit(args, c, lambda: f"{c.name}: {','.join(c.permissions) or '(none)'}")


def cmd_patron_add(args: argparse.Namespace, register: Register) -> None:
    pin = _read_secret(args.pin_stdin, "PIN", required=False) if args.pin_stdin or sys.stdin.isatty() else None
    national_id = args.national_id
    if national_id == "-":
        national_id = _read_secret(True, "national identity number", required=True)
    p = register.register_patron(
        OPERATOR, args.library, national_id=national_id or "", surname=args.surname, given_name=args.given_name,
        card=args.card, birth_date=args.birth_date, address_line1=args.address, address_line2=args.address2,
        postal_code=args.postal_code, city=args.city, country=args.country, email=args.email, phone=args.phone,
        pin=pin, secret_address=args.secret_address, gender=args.gender)
    _emit(args, p, lambda: p.card)


def cmd_patron_show(args: argparse.Namespace, register: Register) -> None:
    p = register.find_patron(OPERATOR, args.card)
    _emit(args, p, lambda: _patron_text(p))


def cmd_patron_find(args: argparse.Namespace, register: Register) -> None:
    national_id = _read_secret(True, "national identity number", required=True)
    p = register.find_patron_by_national_id(OPERATOR, national_id or "")
    _emit(args, p, lambda: _patron_text(p))


def cmd_patron_update(args: argparse.Namespace, register: Register) -> None:
    changes = {k: getattr(args, k) for k in ("surname", "given_name", "postal_code", "city", "country", "email",
                                             "phone", "birth_date", "gender", "secret_address")}
    changes.update(address_line1=args.address, address_line2=args.address2)
    if all(v is None for v in changes.values()):
        raise UsageError("nothing to change: give at least one field, e.g. --email")
    p = register.update_patron(OPERATOR, args.card, expected_version=args.expect_version, **changes)
    _emit(args, p, lambda: f"{p.card} updated (version {p.version})")


def cmd_patron_set_pin(args: argparse.Namespace, register: Register) -> None:
    pin = _read_secret(args.pin_stdin, "PIN", required=True)
    register.set_pin(OPERATOR, args.card, pin or "")
    print(f"{args.card.strip().upper()}: PIN changed")


def cmd_patron_activate(args: argparse.Namespace, register: Register) -> None:
    p = register.activate(OPERATOR, args.card, args.library, door_agreement=args.door_agreement)
    isil = normalise_isil(args.library)  # valid: the register accepted it
    _emit(args, p, lambda: f"{p.card} activated at {isil}" + (" with door agreement" if args.door_agreement else ""))


def cmd_patron_door(args: argparse.Namespace, register: Register) -> None:
    p = register.revoke_door(OPERATOR, args.card, args.library, revoked=args.command_name == "revoke-door")
    _emit(args, p, lambda: f"{p.card}: door access {'revoked' if args.command_name == 'revoke-door' else 'restored'}")


def cmd_patron_set_home(args: argparse.Namespace, register: Register) -> None:
    p = register.set_home_library(OPERATOR, args.card, args.library)
    _emit(args, p, lambda: f"{p.card}: home library {p.home_library_isil}")


def cmd_patron_block(args: argparse.Namespace, register: Register) -> None:
    p = register.set_blocked(OPERATOR, args.card, True, args.reason)
    _emit(args, p, lambda: f"{p.card} blocked")


def cmd_patron_unblock(args: argparse.Namespace, register: Register) -> None:
    p = register.set_blocked(OPERATOR, args.card, False)
    _emit(args, p, lambda: f"{p.card} unblocked")


def cmd_patron_report_lost(args: argparse.Namespace, register: Register) -> None:
    p = register.report_lost(OPERATOR, args.card)
    _emit(args, p, lambda: f"{p.card} reported lost")


def cmd_patron_replace_card(args: argparse.Namespace, register: Register) -> None:
    p = register.replace_card(OPERATOR, args.card, new_card=args.new_card)
    _emit(args, p, lambda: p.card)


def cmd_patron_delete(args: argparse.Namespace, register: Register) -> None:
    number = register.delete_patron(OPERATOR, args.card)
    print(f"{number}: personal data deleted; the card number stays reserved")


def cmd_patron_export(args: argparse.Namespace, register: Register) -> None:
    print(json.dumps(register.export_patron(OPERATOR, args.card), ensure_ascii=False, indent=2))


def _cut(more: int, hint: str) -> None:
    """Say on stderr that a listing stopped before the end (stdout stays the rows, or the JSON)."""
    if more > 0:
        print(f"{more} more; {hint}", file=sys.stderr)


def cmd_audit(args: argparse.Namespace, register: Register) -> None:
    rows = register.audit_events(args.card, limit=args.limit)
    _emit(args, rows, lambda: "\n".join(
        f"{_when(e.at)}  {e.actor}  {e.library_isil or '-'}  {e.action}  "
        f"{e.card_number or '-'}  {e.outcome}{'  ' + e.detail if e.detail else ''}" for e in rows))
    if len(rows) == args.limit:
        _cut(register.count_audit_events(args.card) - len(rows),
             f"use --limit to see older events (up to {LIMIT_MAX})")


def cmd_changes(args: argparse.Namespace, register: Register) -> None:
    if args.library is not None:
        _library_changes(args, register)
        return
    if args.after is not None or args.with_national_id:
        raise UsageError("--after and --with-national-id go with --library (the feed as one library sees it)")
    rows = register.changes(args.since, limit=args.limit)
    _emit(args, rows, lambda: "\n".join(
        f"{c.id}  {_when(c.at)}  {c.card_number}  {c.kind}  {c.library_isil or '-'}" for c in rows))
    if rows and len(rows) == args.limit:
        _cut(register.count_changes(rows[-1].id), f"use --since {rows[-1].id} for the next ones (or a larger --limit)")


FEED_LIMIT_MAX = 1000  # changes per page of a library's feed (GET /api/v1/changes takes the same)


def _library_option(text: str) -> str:
    """``--library`` as an ISIL; a value that is none is the caller's to mend (exit 2)."""
    try:
        return normalise_isil(text)
    except InvalidIdentifier as exc:
        raise UsageError(f"--library: {exc}") from None


def _library_changes(args: argparse.Namespace, register: Register) -> None:
    """``nlr changes --library ISIL``: a page of the feed as that library's API client with only the
    permission ``changes`` sees it (GET /api/v1/changes), national ids only with --with-national-id;
    --json prints the API's answer as it is (times in UTC)."""
    from gateway.register.actors import Actor

    if args.since:
        raise UsageError("--since is the global feed's; with --library give --after CURSOR (a next of an earlier page)")
    if args.limit > FEED_LIMIT_MAX:
        raise UsageError(f"with --library, --limit is 1 to {FEED_LIMIT_MAX}")
    permissions = {"changes", "see-national-id"} if args.with_national_id else {"changes"}
    actor = Actor("client", "nlr-operator", _library_option(args.library), frozenset(permissions))
    page = register.library_changes(actor, args.after, args.limit)
    if args.json:
        print(json.dumps({"changes": page.changes, "next": page.next, "more": page.more}, ensure_ascii=False,
                         indent=2))
    else:
        for c in page.changes:
            card = f"{c['previous_card']} -> {c['card']}" if c.get("previous_card") else c["card"]
            print(f"{c['cursor']}  {_when(datetime.fromisoformat(c['time']))}  {card}  {c['kind']}  "
                  f"{c.get('library') or '-'}")
    print(f"{'more changes follow' if page.more else 'up to date'}; next: --after {page.next}", file=sys.stderr)


def cmd_keys_rotate(args: argparse.Namespace, register: Register) -> None:
    new_id = register.keys.add_key()
    print(f"new key {new_id} is active; re-encrypting national ids in batches of {args.batch_size} …", flush=True)
    done = register.reencrypt(args.batch_size)
    print(f"re-encrypted {done} national ids with key {new_id}")


def cmd_keys_reencrypt(args: argparse.Namespace, register: Register) -> None:
    active = register.keys.active_key_id
    done = register.reencrypt(args.batch_size)
    print(f"re-encrypted {done} national ids with the active key {active}")


def cmd_keys_status(args: argparse.Namespace, register: Register) -> None:
    usage = register.key_usage()
    active = register.keys.active_key_id
    older = sum(n for k, n in usage.items() if k != active)
    value = {"active_key": active, "rows_per_key": usage, "rows_under_older_keys": older}

    def text() -> str:
        if not usage:
            return f"active key {active}; no national ids stored"
        line = f"active key {active}; " + ", ".join(f"key {k}: {n} rows" for k, n in sorted(usage.items()))
        if older:
            line += (f"\n{older} national ids are still sealed with an older key: "
                     "run `nlr keys reencrypt` once every gateway host has the current keys file")
        return line

    _emit(args, value, text)


# ---------------------------------------------------------------------- legacy import and quarantine
def cmd_import(args: argparse.Namespace, register: Register) -> None:
    """Import a library's legacy file; a progress bar on a terminal (stderr), the summary on stdout."""
    import shutil

    from tqdm import tqdm

    from gateway.legacy_file import LegacyFileError, open_legacy_file

    isil = _library_option(args.library)
    register.get_library(isil)  # an unknown library before the file is read
    try:
        legacy = open_legacy_file(Path(args.file), args.format)
        with tqdm(total=legacy.rows, unit="rows", desc=f"import {isil}", file=sys.stderr,
                  disable=not sys.stderr.isatty(), ncols=shutil.get_terminal_size().columns) as bar:
            summary = register.import_rows(OPERATOR, isil, legacy, dry_run=args.dry_run, batch_size=args.batch_size,
                                           progress=bar.update)
    except LegacyFileError as exc:
        raise UsageError(str(exc)) from None

    def text() -> str:
        quarantined = ", ".join(f"{reason} {n}" for reason, n in sorted(summary.quarantined.items()))
        lines = [("dry run, nothing changed: " if summary.dry_run else "") + f"{summary.rows} rows in "
                 f"{summary.seconds:.1f} s", f"imported: {summary.imported}",
                 f"already registered, activated here: {summary.activated}",
                 f"already imported: {summary.already_imported}",
                 f"already the library's patrons: {summary.already_affiliated}",
                 f"quarantined: {summary.quarantined_total}" + (f" ({quarantined})" if quarantined else ""),
                 f"already quarantined: {summary.already_quarantined}"]
        if summary.quarantined_total and not summary.dry_run:
            lines.append(f"see `nlr quarantine list --library {isil}`")
        return "\n".join(lines)

    _emit(args, {**_shown(summary), "quarantined_total": summary.quarantined_total}, text)


def _quarantine_line(q: Any) -> str:
    return (f"{q.id}  {q.library}  row {q.row}  {q.card or '-'}  {q.reason}  {q.status}"
            f"{'  ' + q.detail if q.detail else ''}")


def cmd_quarantine_list(args: argparse.Namespace, register: Register) -> None:
    rows = register.list_quarantine(args.library, status=args.status, limit=args.limit)
    fields = ("id", "library", "row", "card", "reason", "detail", "status")
    _emit(args, [{k: getattr(q, k) for k in fields} for q in rows],
          lambda: "\n".join(_quarantine_line(q) for q in rows) or "the quarantine is empty")
    if len(rows) == args.limit:
        _cut(register.count_quarantine(args.library, status=args.status) - len(rows),
             f"use --limit (up to {LIMIT_MAX}) or --status")


def cmd_quarantine_show(args: argparse.Namespace, register: Register) -> None:
    q = register.show_quarantine(OPERATOR, args.id)

    def text() -> str:
        lines = [_quarantine_line(q), f"{'Quarantined:':14}{_when(q.created_at)}"]
        if q.resolution:
            lines.append(f"{'Resolution:':14}{q.resolution}" + (f" ({_when(q.resolved_at)})" if q.resolved_at else ""))
        if q.national_id_masked:
            lines.append(f"{'National id:':14}{q.national_id_masked}")
        lines.append(f"{'PIN:':14}{'kept as a hash' if q.has_pin else 'none'}")
        lines.extend(f"{k + ':':14}{v}" for k, v in (q.values or {}).items())
        return "\n".join(lines)

    _emit(args, q, text)


def cmd_quarantine_resolve(args: argparse.Namespace, register: Register) -> None:
    if args.reason is not None and not args.discard:
        raise UsageError("--reason goes with --discard")
    if args.discard and args.reason is None:
        raise UsageError("--discard needs --reason TEXT")
    q = register.resolve_quarantine(OPERATOR, args.id, new_card=args.new_card, attach=args.attach,
                                    discard_reason=args.reason if args.discard else None)
    _emit(args, q, lambda: f"{q.id}: {q.resolution}")


# ---------------------------------------------------------------------- parser
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nlr-gateway")
    except PackageNotFoundError:
        return "unknown (not installed)"


class _VersionAction(argparse.Action):
    """``--version``: the installed package's version, looked up only when asked (it costs ~30 ms)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"nlr {_version()}")
        parser.exit()


CONFIG_HELP = "YAML config (default: $NLR_CONFIG, else built-in defaults); before or after the command"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nlr", description="The national library card register (NLR) and its gateway.",
                     epilog="Times are stored in UTC and shown in Europe/Oslo time, with the offset.")
    parser.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    def global_options(p: argparse.ArgumentParser) -> None:
        # Also after the command (`nlr audit --config FILE`); SUPPRESS keeps one given before it.
        p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help=CONFIG_HELP)

    def add(group: Any, name: str, func: Callable[..., Any], help_: str, *, json_: bool = False,
            register: bool = True) -> argparse.ArgumentParser:
        p = group.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func, needs_register=register, command_name=name)
        global_options(p)
        if json_:
            p.add_argument("--json", action="store_true", help="print JSON")
        return p

    def subcommands(name: str, help_: str) -> Any:
        p = commands.add_parser(name, help=help_, description=help_)
        global_options(p)
        return p.add_subparsers(dest="sub", metavar="COMMAND", parser_class=_Parser, required=True)

    def card(p: argparse.ArgumentParser, what: str = "the patron's card number (any card they have had)") -> None:
        p.add_argument("card", metavar="CARD", help=what)

    def library_option(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument("--library", required=True, metavar="ISIL", help=what)

    add(commands, "init", cmd_init, "create or upgrade the schema; create the keys file", register=False, json_=True)
    p = add(commands, "serve", cmd_serve, "run the daemon in the foreground", register=False)
    p.add_argument("--workers", type=_workers, metavar="N",
                   help=f"worker processes sharing the listeners, 1 to {MAX_WORKERS}, or auto (one per CPU); "
                        "default: server.workers of the config (1: one process, no supervisor)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # started by the supervisor
    p = add(commands, "backup", cmd_backup, "a consistent copy of an SQLite register, also while it serves "
            "(PostgreSQL: use pg_dump)", register=False, json_=True)
    p.add_argument("file", metavar="FILE", help="the copy to write (must not exist yet)")
    add(commands, "demo", cmd_demo, "load the demo data set (idempotent; synthetic national ids)", json_=True)

    isil_help = "the library's ISIL, e.g. NO-2030000 (NO- may be left out)"
    library = subcommands("library", "libraries")
    p = add(library, "add", cmd_library_add, "add a library", json_=True)
    p.add_argument("isil", metavar="ISIL", help=isil_help)
    p.add_argument("--name", required=True, help="the library's name")
    p.add_argument("--door-min-age", type=_whole(0, 120), default=18, metavar="N",
                   help="minimum age for meråpent door access, 0 to 120 (default 18)")
    p.add_argument("--self-activation", action="store_true",
                   help="patrons may activate their card at this library's kiosks")
    p.add_argument("--auto-activation", action="store_true", help="the first authenticated use activates the card")
    p.add_argument("--rules-version", default="1", metavar="V", help="the version of the loan rules (default 1)")
    add(library, "list", cmd_library_list, "list libraries", json_=True)
    p = add(library, "set", cmd_library_set, "change a library's settings", json_=True)
    p.add_argument("isil", metavar="ISIL", help=isil_help)
    p.add_argument("--name", help="the library's new name")
    p.add_argument("--door-min-age", type=_whole(0, 120), metavar="N", help="minimum age for door access, 0 to 120")
    p.add_argument("--self-activation", action=argparse.BooleanOptionalAction, default=None,
                   help="whether patrons may activate their card at the library's kiosks")
    p.add_argument("--auto-activation", action=argparse.BooleanOptionalAction, default=None,
                   help="whether the first authenticated use activates the card")
    p.add_argument("--rules-version", metavar="V", help="the version of the loan rules patrons accept")
    p.add_argument("--door-agreement-version", metavar="V", help="the version of the meråpent agreement")

    series = subcommands("series", "card number series")
    p = add(series, "reserve", cmd_series_reserve, "reserve a series of card numbers for a library", json_=True)
    p.add_argument("isil", metavar="ISIL", help=isil_help)
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--count", type=_whole(1, 999_999_999), metavar="N", help="the next free N numbers (N ≥ 1)")
    how.add_argument("--first", metavar="CARD", help="the first number of the series (with --last)")
    p.add_argument("--last", metavar="CARD", help="the last number of the series (with --first)")
    p = add(series, "list", cmd_series_list, "list reserved series", json_=True)
    p.add_argument("isil", metavar="ISIL", nargs="?", help="only this library's series (default: every library's)")
    p = add(series, "conflicts", cmd_series_conflicts, "card numbers in use outside their library's series, "
            "and quarantined import rows whose card is outside the library's series", json_=True)
    p.add_argument("--library", metavar="ISIL", help="only this library's numbers (default: every library's)")

    p = add(commands, "import", cmd_import, "import a library's legacy patrons from a file; rows that cannot be "
            "imported are quarantined with a reason (see `nlr quarantine`); safe to run again", json_=True)
    p.add_argument("file", metavar="FILE", help="CSV with a header line, or JSON as a list of objects; columns: "
                   "card, national_id, surname, given_name, birth_date (YYYY-MM-DD), address, address2, postal_code, "
                   "city, phone, email, and optionally pin")
    library_option(p, "the library whose patrons these are: their home library")
    p.add_argument("--format", choices=("csv", "json"), help="the file's format (default: json for a .json file, "
                   "else csv)")
    p.add_argument("--dry-run", action="store_true", help="check every row and report, changing nothing")
    p.add_argument("--batch-size", type=_whole(1, 10_000), default=200, metavar="N",
                   help="rows per transaction, 1 to 10000 (default 200); an interrupted import keeps whole batches")
    quarantine = subcommands("quarantine", "legacy import rows that were not imported")
    p = add(quarantine, "list", cmd_quarantine_list, "list quarantined rows, oldest first", json_=True)
    p.add_argument("--library", metavar="ISIL", help="only this library's rows")
    p.add_argument("--status", choices=("open", "resolved", "discarded"), help="only rows with this status")
    p.add_argument("--limit", type=_whole(1, LIMIT_MAX), default=1000, metavar="N",
                   help=f"at most N rows, 1 to {LIMIT_MAX} (default 1000)")
    p = add(quarantine, "show", cmd_quarantine_show, "one quarantined row, with what the file said (audited)",
            json_=True)
    p.add_argument("id", type=_whole(1), metavar="ID", help="the entry's id (from `nlr quarantine list`)")
    p = add(quarantine, "resolve", cmd_quarantine_resolve, "resolve a quarantined row one way (audited)", json_=True)
    p.add_argument("id", type=_whole(1), metavar="ID", help="the entry's id (from `nlr quarantine list`)")
    way = p.add_mutually_exclusive_group(required=True)
    way.add_argument("--new-card", action="store_true", help="register it with the next free card of the "
                     "library's series")
    way.add_argument("--attach", metavar="CARD", help="the same person is registered with CARD: activate them at "
                     "the library (their data stays as it is)")
    way.add_argument("--discard", action="store_true", help="discard it (with --reason)")
    p.add_argument("--reason", metavar="TEXT", help="why it is discarded")

    terminal = subcommands("terminal", "SIP2 terminal accounts")
    login_help = "the terminal's SIP2 login (CN)"
    p = add(terminal, "add", cmd_terminal_add, "add a SIP2 terminal account", json_=True)
    p.add_argument("login", metavar="LOGIN", help=login_help)
    library_option(p, "the library the terminal stands in")
    p.add_argument("--profile", required=True, choices=("kiosk", "door", "ils"),
                   help="what the terminal may do: kiosk, door or ils")
    p.add_argument("--encoding", default="utf-8", choices=("utf-8", "cp850", "latin-1"),
                   help="the terminal's character set (default utf-8)")
    p.add_argument("--terminator", default="CR", choices=("CR", "CRLF"), help="message terminator (default CR)")
    p.add_argument("--allowed-networks", metavar="CIDR,…",
                   help="addresses the terminal may log in from (default: any)")
    p.add_argument("--tls-only", action="store_true", help="the terminal may log in only over TLS")
    p.add_argument("--no-pin-required", action="store_true", help="kiosk/ils: answer patron status without a PIN")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add(terminal, "list", cmd_terminal_list, "list terminals", json_=True)
    for name in ("disable", "enable"):
        p = add(terminal, name, cmd_terminal_toggle, f"{name} a terminal", json_=True)
        p.add_argument("login", metavar="LOGIN", help=login_help)
    p = add(terminal, "set-password", cmd_terminal_set_password, "change a terminal's password")
    p.add_argument("login", metavar="LOGIN", help=login_help)
    p.add_argument("--password-stdin", action="store_true", help="read the new password from standard input")

    client = subcommands("client", "NCIP API clients")
    client_help = "the client's name"
    p = add(client, "add", cmd_client_add, "add an API client; prints its token on the last line", json_=True)
    p.add_argument("name", metavar="NAME", help=client_help)
    library_option(p, "the library the client acts for")
    p.add_argument("--permissions", metavar="P,P,…",
                   help=f"at least one of {PERMISSIONS_HELP} (default lookup,create,update)")
    add(client, "list", cmd_client_list, "list API clients", json_=True)
    for name in ("disable", "enable"):
        add(client, name, cmd_client_toggle, f"{name} a client", json_=True).add_argument(
            "name", metavar="NAME", help=client_help)
    p = add(client, "rotate-token", cmd_client_rotate, "give a client a new token", json_=True)
    p.add_argument("name", metavar="NAME", help=client_help)
    p = add(client, "set-permissions", cmd_client_permissions, "replace a client's permissions", json_=True)
    p.add_argument("name", metavar="NAME", help=client_help)
    p.add_argument("--permissions", required=True, metavar="P,P,…", help=f"at least one of {PERMISSIONS_HELP}")

    def personal_data(p: argparse.ArgumentParser, *, update: bool) -> None:
        """The options `patron add` and `patron update` share: the same names on both."""
        clear = "; empty clears it" if update else ""
        p.add_argument("--birth-date", type=_iso_date, metavar="YYYY-MM-DD", help="date of birth")
        p.add_argument("--gender", type=str.upper, choices=("M", "F", "X", ""), metavar="M|F|X",
                       help=f"M, F or X{'; empty clears it' if update else ' (default: none)'}")
        p.add_argument("--address", metavar="LINE", help=f"first address line{clear}")
        p.add_argument("--address2", metavar="LINE", help=f"second address line{clear}")
        p.add_argument("--postal-code", metavar="P", help=f"postal code (four digits in Norway){clear}")
        p.add_argument("--city", metavar="C", help=f"postal town{clear}")
        p.add_argument("--country", metavar="CC", help=f"two-letter country code (default NO){clear}")
        p.add_argument("--email", metavar="E", help=f"e-mail address{clear}")
        p.add_argument("--phone", metavar="T", help=f"phone number{clear}")
        p.add_argument("--secret-address", action=argparse.BooleanOptionalAction, default=None if update else False,
                       help="the patron has a secret address (hemmelig adresse)"
                            + ("" if update else " (default: not secret)"))

    patron = subcommands("patron", "patrons")
    p = add(patron, "add", cmd_patron_add, "register a patron; prints the card number", json_=True)
    library_option(p, "the library registering the patron: their home library")
    p.add_argument("--card", metavar="CARD", help="a number from the library's series (default: the next free one)")
    p.add_argument("--national-id", required=True, metavar="ID",
                   help="fødselsnummer, D-nummer or DUF-nummer; - reads it from stdin")
    p.add_argument("--surname", required=True, help="family name")
    p.add_argument("--given-name", required=True, help="given name(s)")
    personal_data(p, update=False)
    p.add_argument("--pin-stdin", action="store_true", help="read the patron's PIN from standard input")
    p = add(patron, "show", cmd_patron_show, "show a patron (national id masked)", json_=True)
    card(p)
    add(patron, "find", cmd_patron_find, "find a patron by national id, read from stdin", json_=True)
    p = add(patron, "update", cmd_patron_update, "change a patron's personal data", json_=True)
    card(p)
    p.add_argument("--surname", help="family name")
    p.add_argument("--given-name", help="given name(s)")
    personal_data(p, update=True)
    p.add_argument("--expect-version", type=_whole(1), metavar="N", help="refuse if the patron changed since version N")
    p = add(patron, "set-pin", cmd_patron_set_pin, "set a patron's PIN")
    card(p)
    p.add_argument("--pin-stdin", action="store_true", help="read the new PIN from standard input")
    p = add(patron, "activate", cmd_patron_activate, "activate the card at a library (idempotent)", json_=True)
    card(p)
    library_option(p, "the library to activate the card at")
    p.add_argument("--door-agreement", action="store_true", help="also record the signed meråpent agreement")
    for name in ("revoke-door", "restore-door"):
        p = add(patron, name, cmd_patron_door, f"{name.split('-')[0]} the patron's door access at a library",
                json_=True)
        card(p)
        library_option(p, "the library whose door it is")
    p = add(patron, "set-home", cmd_patron_set_home, "change the patron's home library", json_=True)
    card(p)
    library_option(p, "the new home library")
    p = add(patron, "block", cmd_patron_block, "block a patron", json_=True)
    card(p)
    p.add_argument("--reason", required=True, metavar="TEXT", help="why (shown to staff)")
    card(add(patron, "unblock", cmd_patron_unblock, "unblock a patron", json_=True))
    card(add(patron, "report-lost", cmd_patron_report_lost, "report a card lost", json_=True), "the lost card")
    p = add(patron, "replace-card", cmd_patron_replace_card, "give the patron a new card number; prints it", json_=True)
    card(p, "the card to replace")
    p.add_argument("--new-card", metavar="CARD", help="the new number (default: the next free one of the series)")
    card(add(patron, "delete", cmd_patron_delete, "erase the patron's personal data"))
    card(add(patron, "export", cmd_patron_export, "everything held about the patron, as JSON"))

    p = add(commands, "audit", cmd_audit, "the audit trail, of one patron or of everything; newest last", json_=True)
    p.add_argument("card", metavar="CARD", nargs="?", help="only this patron's events (any card they have had)")
    p.add_argument("--limit", type=_whole(1, LIMIT_MAX), default=100, metavar="N",
                   help=f"the newest N events, 1 to {LIMIT_MAX} (default 100)")
    p = add(commands, "changes", cmd_changes, "the feed of patron changes, oldest first", json_=True)
    p.add_argument("--since", type=_whole(0), default=0, metavar="ID", help="changes after this id (default 0: all)")
    p.add_argument("--limit", type=_whole(1, LIMIT_MAX), default=1000, metavar="N",
                   help=f"at most N changes, 1 to {LIMIT_MAX} (default 1000); with --library 1 to {FEED_LIMIT_MAX}")
    p.add_argument("--library", metavar="ISIL", help="the feed as this library's API client sees it "
                   "(GET /api/v1/changes): only its patrons' changes, each with the patron as it is now")
    p.add_argument("--after", metavar="CURSOR", help="with --library: the changes after this cursor (the next "
                   "an earlier page printed; default: from the beginning)")
    p.add_argument("--with-national-id", action="store_true",
                   help="with --library: show national ids, as a client with the permission see-national-id sees them")

    keys = subcommands("keys", "encryption keys")
    batch_help = "national ids per transaction, 1 to 10000 (default 500)"
    p = add(keys, "rotate", cmd_keys_rotate, "add a new key and re-encrypt national ids with it")
    p.add_argument("--batch-size", type=_whole(1, 10_000), default=500, metavar="N", help=batch_help)
    p = add(keys, "reencrypt", cmd_keys_reencrypt, "re-encrypt national ids still sealed with an older key")
    p.add_argument("--batch-size", type=_whole(1, 10_000), default=500, metavar="N", help=batch_help)
    add(keys, "status", cmd_keys_status, "which keys seal how many national ids", json_=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        config = load_config(args.config)
        if args.needs_register:
            register = open_configured_register(config)
            try:
                args.func(args, register)
            finally:
                register.engine.dispose()
        else:
            args.func(args, config)
        return 0
    except (UsageError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Failure as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 1
    except Exception as exc:  # noqa: BLE001 - the contract: one line, never a traceback
        status, message = _classify(exc)
        print(f"error: {message}", file=sys.stderr)
        return status


def _classify(exc: Exception) -> tuple[int, str]:
    """Exit status and message for an error raised while a command ran (the register is loaded)."""
    from gateway.register.crypto import KeysError
    from gateway.register.errors import RegisterError, RegisterUnavailable

    if isinstance(exc, RegisterUnavailable):
        return 1, str(exc)
    if isinstance(exc, RegisterError):
        return 2, str(exc)
    if isinstance(exc, KeysError):
        return 1, str(exc)
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if exc.filename else ""
        return 1, f"cannot use{where}: {exc.strerror or exc.__class__.__name__}; check the paths in the config"
    if os.environ.get("NLR_DEBUG"):
        raise exc
    return 1, f"unexpected {_one_line(exc)}; run again with NLR_DEBUG=1 for details"


def _one_line(exc: BaseException) -> str:
    """The exception's class and the first line of its message (SQL and parameters are left out)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{exc.__class__.__name__}: {first[:200]}" if first else exc.__class__.__name__


if __name__ == "__main__":
    sys.exit(main())
