"""Accounts of the machines that talk to the register: SIP2 terminals (kiosks, doors, library
systems) and NCIP/API clients, with hashed secrets, and the SIP2 login."""

from __future__ import annotations

import ipaddress

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError

from gateway.register import actors, audit, crypto, fields, records
from gateway.register.actors import DEFAULT_CLIENT_PERMISSIONS, PERMISSIONS, UNKNOWN_TERMINAL, Actor
from gateway.register.context import Area
from gateway.register.errors import AlreadyExists, NotFound
from gateway.register.models import APIClient, Library, SIPTerminal
from gateway.register.views import (
    ENCODINGS,
    PROFILES,
    ClientAccount,
    ClientView,
    TerminalLogin,
    TerminalView,
)
from gateway.register.vocabulary import Action, Profile

_libraries, _terminals, _clients = Library.__table__, SIPTerminal.__table__, APIClient.__table__
_TERMINAL_BY_LOGIN = (select(_terminals, _libraries.c.isil)
                      .join(_libraries, _libraries.c.id == _terminals.c.library_id)
                      .where(_terminals.c.login == bindparam("login")))
_CLIENT_BY_TOKEN = (select(_clients.c.name, _clients.c.permissions, _clients.c.enabled, _libraries.c.isil)
                    .join(_libraries, _libraries.c.id == _clients.c.library_id)
                    .where(_clients.c.token_hash == bindparam("token_hash")))


class Accounts(Area):
    """Terminals and API clients: adding, changing, authenticating."""

    def _terminal_view(self, t: SIPTerminal) -> TerminalView:
        nets = tuple(n for n in t.allowed_networks.split(",") if n)
        return TerminalView(t.login, t.library.isil, t.profile, t.encoding, t.terminator, nets, t.tls_only,
                            t.pin_required, t.enabled)

    def add_terminal(
        self, actor: Actor, login: str, password: str, library: str, profile: str, *, encoding: str = "utf-8",
        terminator: str = "CR", allowed_networks: list[str] | None = None, tls_only: bool = False,
        pin_required: bool = True,
    ) -> TerminalView:
        actors.require_operator(actor)
        login = (login or "").strip()
        if not login or len(login) > 64 or any(ch in login for ch in "|\r\n") or not login.isprintable():
            raise fields.bad("terminal login must be 1 to 64 printable characters without | or line breaks")
        if profile not in PROFILES:
            raise fields.bad(f"profile must be one of {', '.join(PROFILES)}")
        if encoding not in ENCODINGS:
            raise fields.bad(f"encoding must be one of {', '.join(ENCODINGS)}")
        if terminator not in ("CR", "CRLF"):
            raise fields.bad("terminator must be CR or CRLF")
        if not 6 <= len(password) <= 128:
            raise fields.bad("terminal password must be 6 to 128 characters")
        nets = self._check_networks(allowed_networks or [])
        pw_hash = crypto.hash_secret(password, self.settings.pin_hash_cost)
        try:
            with self._tx() as s:
                lib = records.library(s, library)
                t = SIPTerminal(login=login, password_hash=pw_hash, library_id=lib.id, profile=profile,
                                encoding=encoding, terminator=terminator, allowed_networks=",".join(nets),
                                tls_only=tls_only,
                                pin_required=pin_required if profile != Profile.DOOR else True)
                s.add(t)
                s.flush()
                audit.record(s, actor, Action.TERMINAL_ADD, "ok", library=lib.isil, detail=login)
                return self._terminal_view(t)
        except IntegrityError:
            raise AlreadyExists(f"terminal {login} exists already") from None

    @staticmethod
    def _check_networks(networks: list[str]) -> list[str]:
        out = []
        for net in networks:
            try:
                out.append(str(ipaddress.ip_network(net.strip(), strict=False)))
            except ValueError:
                raise fields.bad(f"{net!r} is not a network in CIDR form, e.g. 10.1.2.0/24") from None
        return out

    def update_terminal(self, actor: Actor, login: str, *, enabled: bool | None = None,
                        password: str | None = None) -> TerminalView:
        actors.require_operator(actor)
        if password is not None and not 6 <= len(password) <= 128:
            raise fields.bad("terminal password must be 6 to 128 characters")
        with self._tx() as s:
            t = s.scalar(select(SIPTerminal).where(SIPTerminal.login == login))
            if t is None:
                raise NotFound(f"terminal {login} does not exist")
            if enabled is not None:
                t.enabled = enabled
            if password is not None:
                t.password_hash = crypto.hash_secret(password, self.settings.pin_hash_cost)
            audit.record(s, actor, Action.TERMINAL_UPDATE, "ok", library=t.library.isil, detail=login)
            return self._terminal_view(t)

    def list_terminals(self) -> list[TerminalView]:
        with self._tx() as s:
            return [self._terminal_view(t) for t in s.scalars(select(SIPTerminal).order_by(SIPTerminal.login))]

    def authenticate_terminal(self, login: str, password: str) -> TerminalView | None:
        """The terminal, if the login and password match an enabled account; None otherwise."""
        known, ok = self._check_terminal(login, password)
        return known if ok and known is not None and known.enabled else None

    def _check_terminal(self, login: str, password: str) -> tuple[TerminalView | None, bool]:
        """(the terminal of this login, if there is one; whether the password is its password),
        at the cost of one hash either way."""
        with self._read() as conn:
            t = conn.execute(_TERMINAL_BY_LOGIN, {"login": login}).first()
        if t is None:
            crypto.verify_secret(password, self._decoy_hash)
            return None, False
        nets = tuple(n for n in t.allowed_networks.split(",") if n)
        view = TerminalView(t.login, t.isil, t.profile, t.encoding, t.terminator, nets, t.tls_only, t.pin_required,
                            t.enabled)
        return view, crypto.verify_secret(password, t.password_hash)

    def terminal_login(self, login: str, password: str, *, source: str | None, encrypted: bool,
                       request_id: str | None = None) -> TerminalLogin:
        """SIP2 93: the terminal, if login and password match an enabled account that may connect from
        ``source`` (its allowed networks) over this transport (TLS only); else why not: ``bad_login``,
        ``disabled``, ``network`` or ``tls_required``. Refusals are audited, never the password, and
        never a login that names no terminal (a client that slipped a field may have sent its
        password there): that is ``unknown terminal``."""
        known, ok = self._check_terminal(login, password)
        outcome = terminal_admission(known, source, encrypted) if ok else "bad_login"
        if outcome == "ok":
            return TerminalLogin(known, outcome)
        who = (Actor("terminal", known.login, known.library_isil) if known is not None else UNKNOWN_TERMINAL
               ).asking(request_id)
        audit.refusal(self.store, who, Action.SIP2_LOGIN, outcome, detail=f"from {source}" if source else None)
        return TerminalLogin(None, outcome)


    def _client_view(self, c: APIClient) -> ClientView:
        return ClientView(c.name, c.library.isil, tuple(p for p in c.permissions.split(",") if p), c.enabled)

    @staticmethod
    def _check_permissions(permissions: list[str] | None) -> list[str]:
        perms = (list(DEFAULT_CLIENT_PERMISSIONS) if permissions is None
                 else [p.strip() for p in permissions if p.strip()])
        bad = [p for p in perms if p not in PERMISSIONS]
        if bad:
            raise fields.bad(f"unknown permission{'s' * (len(bad) > 1)} {', '.join(map(repr, bad))}; "
                             f"known: {', '.join(PERMISSIONS)}")
        if not perms:  # a client that may do nothing is a mistake; `client disable` stops one
            raise fields.bad(f"give at least one permission, of {', '.join(PERMISSIONS)}")
        return sorted(set(perms), key=PERMISSIONS.index)

    def add_client(self, actor: Actor, name: str, library: str,
                   permissions: list[str] | None = None) -> ClientAccount:
        """Create an API client; returns the view and the token, shown this once and stored hashed."""
        actors.require_operator(actor)
        name = (name or "").strip()
        if not name or len(name) > 100 or not name.isprintable():
            raise fields.bad("client name must be 1 to 100 printable characters")
        perms = self._check_permissions(permissions)
        token = crypto.new_token()
        try:
            with self._tx() as s:
                lib = records.library(s, library)
                c = APIClient(name=name, token_hash=crypto.token_hash(token), library_id=lib.id,
                              permissions=",".join(perms))
                s.add(c)
                s.flush()
                audit.record(s, actor, Action.CLIENT_ADD, "ok", library=lib.isil, detail=name)
                return ClientAccount(self._client_view(c), token)
        except IntegrityError:
            raise AlreadyExists(f"client {name} exists already") from None

    def update_client(
        self, actor: Actor, name: str, *, enabled: bool | None = None, permissions: list[str] | None = None,
        rotate_token: bool = False,
    ) -> ClientAccount:
        actors.require_operator(actor)
        perms = self._check_permissions(permissions) if permissions is not None else None
        token = crypto.new_token() if rotate_token else None
        with self._tx() as s:
            c = s.scalar(select(APIClient).where(APIClient.name == name))
            if c is None:
                raise NotFound(f"client {name} does not exist")
            if enabled is not None:
                c.enabled = enabled
            if perms is not None:
                c.permissions = ",".join(perms)
            if token is not None:
                c.token_hash = crypto.token_hash(token)
            audit.record(s, actor, Action.CLIENT_UPDATE, "ok", library=c.library.isil, detail=name)
            return ClientAccount(self._client_view(c), token)

    def list_clients(self) -> list[ClientView]:
        with self._tx() as s:
            return [self._client_view(c) for c in s.scalars(select(APIClient).order_by(APIClient.name))]

    def authenticate_client(self, token: str) -> ClientView | None:
        """The enabled client holding this token, or None. Asked on every NCIP request: one plain
        query, no transaction of its own (a read needs none)."""
        with self._read() as conn:
            row = conn.execute(_CLIENT_BY_TOKEN, {"token_hash": crypto.token_hash(token)}).first()
        if row is None or not row.enabled:
            return None
        return ClientView(row.name, row.isil, tuple(p for p in row.permissions.split(",") if p), True)


def _source_allowed(source: str | None, networks: tuple[str, ...]) -> bool:
    try:
        address = ipaddress.ip_address((source or "").split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in ipaddress.ip_network(net, strict=False) for net in networks)


def terminal_admission(known: TerminalView | None, source: str | None, encrypted: bool) -> str:
    """Whether this terminal account (None: there is none) may be connected from ``source`` over
    this transport, at its login and for as long as it stays connected: ``ok``, or why not:
    ``bad_login``, ``disabled``, ``network`` or ``tls_required``."""
    if known is None:
        return "bad_login"
    if not known.enabled:
        return "disabled"
    if known.allowed_networks and not _source_allowed(source, known.allowed_networks):
        return "network"
    if known.tls_only and not encrypted:
        return "tls_required"
    return "ok"
