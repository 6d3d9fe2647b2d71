"""The register's facade: one object with every use case, each delegated to the area it belongs to.

Each use case is one transaction (all or nothing) that enforces the rules of PRODUCT §2, writes its
audit event and, for a change to a patron, its entry in the change feed. Use cases block (database,
scrypt): the Twisted adapters call them in the thread pool (gateway/blocking.py).

Where each area lives:
    libraries.py   libraries and their settings         series.py      card number series
    patrons.py     registration, lookups, changes       activation.py  affiliations, door agreements
    pin_codes.py   setting and checking PINs            pins.py        PIN attempt accounting
    admission.py   the patron decision (SIP2, NCIP)     decisions.py   the decision table, pure
    updates.py     NCIP UpdateUser as one transaction   innsyn.py      the patron's copy of their data
    accounts.py    terminals, API clients, SIP2 login   audit.py       audit trail and change feed
    changelog.py   writing the feed in commit order     feed.py        the feed as one library reads it
    keys.py        re-encryption under a new key        actors.py      who may do what
    store.py       transactions and deadlines           fields.py      how each field is checked
    self_service.py  the patron's own page (Min side)   sessions.py    its sessions, as others end them
    retention.py   deleting what is kept for a time only
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from gateway.register import crypto
from gateway.register.accounts import Accounts
from gateway.register.activation import Activations
from gateway.register.actors import Actor
from gateway.register.admission import Admission
from gateway.register.audit import AuditTrail
from gateway.register.context import Context
from gateway.register.errors import RegisterError
from gateway.register.feed import LibraryFeed
from gateway.register.fields import PatronChanges
from gateway.register.imports import Imports
from gateway.register.innsyn import Innsyn
from gateway.register.keys import Keys
from gateway.register.legacy import ImportRow, ImportSummary, QuarantineView
from gateway.register.libraries import Libraries
from gateway.register.memory import News, Recollection
from gateway.register.models import Card, Patron
from gateway.register.patrons import Patrons
from gateway.register.pin_codes import Pins
from gateway.register.recall import Recall
from gateway.register.retention import Retention, RetentionRun
from gateway.register.self_service import SelfService
from gateway.register.series import Series
from gateway.register.settings import Settings
from gateway.register.store import Store
from gateway.register.updates import LibraryChange, LibraryChanges
from gateway.register.views import (
    AuditView,
    ChangeView,
    ClientAccount,
    ClientView,
    Decision,
    DecisionRequest,
    FeedPage,
    LibraryView,
    PatronView,
    SelfActivation,
    SeriesView,
    TerminalLogin,
    TerminalView,
    TrailPage,
    WebLogin,
    WebSession,
)
from gateway.register.vocabulary import Action, PinCheck


class Register:
    """Every use case of the register. See the module docstring for where each one lives."""

    def __init__(self, engine: Engine, keys: crypto.KeyRing, settings: Settings | None = None) -> None:
        self.engine = engine
        self.keys = keys
        self.settings = settings or Settings()
        self.store = Store(engine)
        context = Context(self.store, keys, self.settings)
        self.libraries = Libraries(context, self)
        self.series = Series(context, self)
        self.patrons = Patrons(context, self)
        self.activations = Activations(context, self)
        self.pins = Pins(context, self)
        self.admission = Admission(context, self)
        self.library_updates = LibraryChanges(context, self)
        self.innsyn = Innsyn(context, self)
        self.self_service = SelfService(context, self)
        self.retention = Retention(context, self)
        self.accounts = Accounts(context, self)
        self.audit = AuditTrail(context, self)
        self.key_rotation = Keys(context, self)
        self.feed = LibraryFeed(context, self)
        self.imports = Imports(context, self)
        self.recall = Recall(context, self)

    def ping(self) -> None:
        """Raise RegisterUnavailable unless the database answers."""
        self.store.ping()

    # ------------------------------------------------------------------ libraries and series
    def add_library(self, actor: Actor, isil: str, name: str, *, door_min_age: int = 18, self_activation: bool = False,
                    auto_activation: bool = False, rules_version: str = "1") -> LibraryView:
        return self.libraries.add_library(actor, isil, name, door_min_age=door_min_age,
                                          self_activation=self_activation, auto_activation=auto_activation,
                                          rules_version=rules_version)

    def update_library(self, actor: Actor, isil: str, **settings: Any) -> LibraryView:
        return self.libraries.update_library(actor, isil, **settings)

    def list_libraries(self) -> list[LibraryView]:
        return self.libraries.list_libraries()

    def get_library(self, isil: str) -> LibraryView:
        return self.libraries.get_library(isil)

    def reserve_series(self, actor: Actor, isil: str, *, count: int | None = None, first: str | None = None,
                       last: str | None = None) -> SeriesView:
        return self.series.reserve_series(actor, isil, count=count, first=first, last=last)

    def list_series(self, isil: str | None = None) -> list[SeriesView]:
        return self.series.list_series(isil)

    def series_conflicts(self, isil: str | None = None) -> list[dict[str, Any]]:
        return self.series.series_conflicts(isil)

    # ------------------------------------------------------------------ legacy import and its quarantine
    def import_rows(self, actor: Actor, library: str, rows: Iterable[ImportRow], *, dry_run: bool = False,
                    batch_size: int | None = None, progress: Callable[[int], object] | None = None) -> ImportSummary:
        return self.imports.import_rows(actor, library, rows, dry_run=dry_run, progress=progress,
                                        **({"batch_size": batch_size} if batch_size else {}))

    def list_quarantine(self, library: str | None = None, *, status: str | None = None,
                        limit: int = 1000) -> list[QuarantineView]:
        return self.imports.list_quarantine(library, status=status, limit=limit)

    def count_quarantine(self, library: str | None = None, *, status: str | None = None) -> int:
        return self.imports.count_quarantine(library, status=status)

    def show_quarantine(self, actor: Actor, entry_id: int) -> QuarantineView:
        return self.imports.show_quarantine(actor, entry_id)

    def resolve_quarantine(self, actor: Actor, entry_id: int, *, new_card: bool = False, attach: str | None = None,
                           discard_reason: str | None = None) -> QuarantineView:
        return self.imports.resolve_quarantine(actor, entry_id, new_card=new_card, attach=attach,
                                               discard_reason=discard_reason)

    # ------------------------------------------------------------------ patrons
    def register_patron(
        self, actor: Actor, library: str, *, national_id: str, surname: str, given_name: str,
        card: str | None = None, birth_date: date | None = None, gender: str | None = None,
        address_line1: str | None = None, address_line2: str | None = None, postal_code: str | None = None,
        city: str | None = None, country: str | None = None, email: str | None = None, phone: str | None = None,
        pin: str | None = None, secret_address: bool = False, preferred_contact: str | None = None,
        door_agreement: bool = False,
    ) -> PatronView:
        return self.patrons.register_patron(
            actor, library, national_id=national_id, surname=surname, given_name=given_name, card=card,
            birth_date=birth_date, gender=gender, address_line1=address_line1, address_line2=address_line2,
            postal_code=postal_code, city=city, country=country, email=email, phone=phone, pin=pin,
            secret_address=secret_address, preferred_contact=preferred_contact, door_agreement=door_agreement)

    def find_patron(self, actor: Actor, card: str, *, with_national_id: bool = False) -> PatronView:
        return self.patrons.find_patron(actor, card, with_national_id=with_national_id)

    def find_patrons(self, actor: Actor, cards: list[str], *, with_national_id: bool = False,
                     request_ids: list[str | None] | None = None) -> list[PatronView | RegisterError]:
        return self.patrons.find_patrons(actor, cards, with_national_id=with_national_id, request_ids=request_ids)

    def find_patron_by_national_id(self, actor: Actor, national_id: str, *,
                                   with_national_id: bool = False) -> PatronView:
        return self.patrons.find_patron_by_national_id(actor, national_id, with_national_id=with_national_id)

    def update_patron(self, actor: Actor, card: str, changes: PatronChanges | None = None, *,
                      expected_version: int | None = None, **fields: Any) -> PatronView:
        """Change personal data: ``changes``, or the same as keywords (an unknown field is refused)."""
        typed = changes if changes is not None else PatronChanges.of(**fields)
        return self.patrons.update_patron(actor, card, typed, expected_version=expected_version)

    def set_blocked(self, actor: Actor, card: str, blocked: bool, reason: str | None = None) -> PatronView:
        return self.patrons.set_blocked(actor, card, blocked, reason)

    def report_lost(self, actor: Actor, card: str) -> PatronView:
        return self.patrons.report_lost(actor, card)

    def replace_card(self, actor: Actor, card: str, *, new_card: str | None = None) -> PatronView:
        return self.patrons.replace_card(actor, card, new_card=new_card)

    def delete_patron(self, actor: Actor, card: str) -> str:
        return self.patrons.delete_patron(actor, card)

    def export_patron(self, actor: Actor, card: str) -> dict[str, Any]:
        return self.innsyn.export_patron(actor, card)

    def activate(self, actor: Actor, card: str, library: str, *, door_agreement: bool = False,
                 rules_version: str | None = None) -> PatronView:
        return self.activations.activate(actor, card, library, door_agreement=door_agreement,
                                         rules_version=rules_version)

    def revoke_door(self, actor: Actor, card: str, library: str, *, revoked: bool = True) -> PatronView:
        return self.activations.revoke_door(actor, card, library, revoked=revoked)

    def set_home_library(self, actor: Actor, card: str, library: str) -> PatronView:
        return self.activations.set_home_library(actor, card, library)

    def change_patron(self, actor: Actor, card: str, change: LibraryChange, *, pin: str | None = None) -> str:
        return self.library_updates.change_patron(actor, card, change, pin=pin)

    # ------------------------------------------------------------------ the patron's own page
    def web_login(self, card: str, pin: str, *, max_seconds: int = 28800, request_id: str | None = None) -> WebLogin:
        return self.self_service.web_login(card, pin, max_seconds=max_seconds, request_id=request_id)

    def web_session(self, token: str, *, idle_seconds: int = 900, max_seconds: int = 28800) -> WebSession | None:
        return self.self_service.web_session(token, idle_seconds=idle_seconds, max_seconds=max_seconds)

    def web_logout(self, token: str) -> None:
        self.self_service.web_logout(token)

    def change_own_pin(self, actor: Actor, card: str, old_pin: str, new_pin: str, new_pin_again: str, *,
                       keep_session: str | None = None) -> None:
        self.self_service.change_own_pin(actor, card, old_pin, new_pin, new_pin_again, keep_session=keep_session)

    def patron_trail(self, actor: Actor, card: str, *, page: int = 1, per_page: int = 50) -> TrailPage:
        return self.self_service.patron_trail(actor, card, page=page, per_page=per_page)

    # ------------------------------------------------------------------ PINs and decisions
    def set_pin(self, actor: Actor, card: str, pin: str) -> None:
        self.pins.set_pin(actor, card, pin)

    def verify_pin(self, actor: Actor, card: str, pin: str) -> PinCheck:
        return self.pins.verify_pin(actor, card, pin)

    def check_pin(self, actor: Actor, card: str, pin: str, *,
                  then: Callable[[Session, Patron, Card], Any] | None = None) -> Any:
        return self.pins.check_pin(actor, card, pin, then=then)

    def decide(self, actor: Actor, card: str, pin: str | None, *, door: bool = False, pin_required: bool = True,
               institution: str | None = None, now: datetime | None = None) -> Decision:
        return self.admission.decide(actor, card, pin, door=door, pin_required=pin_required,
                                     institution=institution, now=now)

    def decide_many(self, requests: list[DecisionRequest], *, now: datetime | None = None) -> list[Decision]:
        return self.admission.decide_many(requests, now=now)

    # The gateway's decision memory (issue 13: gateway.register.memory, gateway.hot_path)
    def recall_many(self, asked: list[tuple[str, str | None]]) -> list[Recollection]:
        return self.recall.recall_many(asked)

    def news(self, after: int | None) -> News:
        return self.recall.news(after)

    def write_audit(self, queued: list[dict[str, Any] | tuple[DecisionRequest, datetime]]) -> int:
        return self.recall.write_audit(queued)

    def self_activate(self, actor: Actor, card: str, pin: str | None, *,
                      rules_version: str | None = None) -> SelfActivation:
        return self.admission.self_activate(actor, card, pin, rules_version=rules_version)

    def authenticate_patron(self, actor: Actor, card: str, pin: str, *,
                            with_national_id: bool = False) -> PatronView:
        return self.admission.authenticate_patron(actor, card, pin, with_national_id=with_national_id)

    def block_card(self, actor: Actor, card: str, reason: str | None, *, institution: str | None = None) -> Decision:
        return self.admission.block_card(actor, card, reason, institution=institution)

    # ------------------------------------------------------------------ terminals and clients
    def add_terminal(self, actor: Actor, login: str, password: str, library: str, profile: str, *,
                     encoding: str = "utf-8", terminator: str = "CR", allowed_networks: list[str] | None = None,
                     tls_only: bool = False, pin_required: bool = True) -> TerminalView:
        return self.accounts.add_terminal(actor, login, password, library, profile, encoding=encoding,
                                          terminator=terminator, allowed_networks=allowed_networks,
                                          tls_only=tls_only, pin_required=pin_required)

    def update_terminal(self, actor: Actor, login: str, *, enabled: bool | None = None,
                        password: str | None = None) -> TerminalView:
        return self.accounts.update_terminal(actor, login, enabled=enabled, password=password)

    def list_terminals(self) -> list[TerminalView]:
        return self.accounts.list_terminals()

    def authenticate_terminal(self, login: str, password: str) -> TerminalView | None:
        return self.accounts.authenticate_terminal(login, password)

    def terminal_login(self, login: str, password: str, *, source: str | None, encrypted: bool,
                       request_id: str | None = None) -> TerminalLogin:
        return self.accounts.terminal_login(login, password, source=source, encrypted=encrypted,
                                            request_id=request_id)

    def add_client(self, actor: Actor, name: str, library: str,
                   permissions: list[str] | None = None) -> ClientAccount:
        return self.accounts.add_client(actor, name, library, permissions)

    def update_client(self, actor: Actor, name: str, *, enabled: bool | None = None,
                      permissions: list[str] | None = None,
                      rotate_token: bool = False) -> ClientAccount:
        return self.accounts.update_client(actor, name, enabled=enabled, permissions=permissions,
                                           rotate_token=rotate_token)

    def list_clients(self) -> list[ClientView]:
        return self.accounts.list_clients()

    def authenticate_client(self, token: str) -> ClientView | None:
        return self.accounts.authenticate_client(token)

    # ------------------------------------------------------------------ audit, changes, keys
    def audit_refusal(self, actor: Actor, action: Action, outcome: str, *, card: str | None = None,
                      detail: str | None = None) -> None:
        self.audit.audit_refusal(actor, action, outcome, card=card, detail=detail)

    def audit_events(self, card: str | None = None, *, limit: int = 100) -> list[AuditView]:
        return self.audit.audit_events(card, limit=limit)

    def changes(self, since: int = 0, *, limit: int = 1000) -> list[ChangeView]:
        return self.audit.changes(since, limit=limit)

    def library_changes(self, actor: Actor, after: str | None, limit: int | str = 100) -> FeedPage:
        """The change feed as the actor's library sees it: its patrons' changes after the cursor
        ``after`` (None: from the beginning), at most ``limit`` (1-1000), in commit order
        (gateway.register.feed). Raises PermissionDenied, InvalidInput."""
        return self.feed.library_changes(actor, after, limit)

    def count_audit_events(self, card: str | None = None) -> int:
        return self.audit.count_audit_events(card)

    def count_changes(self, since: int = 0) -> int:
        return self.audit.count_changes(since)

    def counts(self) -> dict[str, int]:
        return self.audit.counts()

    def apply_retention(self, *, audit_days: int = 365, change_days: int = 365, session_seconds: int = 28800,
                        quarantine_days: int = 365, now: datetime | None = None) -> RetentionRun:
        return self.retention.apply_retention(audit_days=audit_days, change_days=change_days,
                                              session_seconds=session_seconds, quarantine_days=quarantine_days,
                                              now=now)

    def reencrypt(self, batch_size: int = 500) -> int:
        return self.key_rotation.reencrypt(batch_size)

    def key_usage(self) -> dict[int, int]:
        return self.key_rotation.key_usage()


__all__ = ["Register", "Settings"]
