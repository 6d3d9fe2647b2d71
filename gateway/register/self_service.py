"""The patron's own page ("Min side"): log in with card and PIN, the session, the PIN change, and
"who has looked at or changed my data".

A card and a 4-digit PIN are a low level of assurance, and a secret address protects someone from a
person who may know both. So what this area hands the page is masked: the national id as its
birth-date part, and a secret address not at all (sessions.py; Innsyn.export_patron does the same
for the download).

The login is the register's PIN check with the lockout every channel shares: unknown card, wrong
PIN, locked PIN, lost or replaced card all cost the same and differ only in what is audited.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from gateway.register import actors, crypto, fields, records, sessions
from gateway.register.actors import Actor
from gateway.register.context import Area
from gateway.register.errors import InvalidInput, SessionEnded
from gateway.register.identifiers import InvalidIdentifier, normalise_card_number
from gateway.register.models import AuditEvent, Card, Library, Patron, SIPTerminal, WebSession, utcnow
from gateway.register.pin_codes import set_pin_in
from gateway.register.views import (
    PatronView,
    TrailEntry,
    TrailPage,
    WebLogin,
    WebSession as WebSessionView,
    without_secret_address,
)
from gateway.register.vocabulary import CardStatus

# A session's last use is written at most this often (and at least ten times per idle timeout), so
# that reading a page is not always a write.
TOUCH_SECONDS = 30.0
MAX_PER_PAGE = 200
SWEEP_ROWS = 500


def patron_actor(card: str) -> Actor:
    """The patron on the self-service page, named by the card they logged in with."""
    return Actor("patron", card)


def for_the_page(view: PatronView) -> PatronView:
    """A patron as a card + PIN login may see them: no national id beyond the masked one, and a
    secret address left out (``secret_address`` stays True, so the page can say one is held)."""
    return without_secret_address(dataclasses.replace(view, national_id=None))


def _aware(at: datetime) -> datetime:
    """A time read with plain Core (SQLite hands it back naive: it is UTC)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def _channel(label: str, profiles: dict[str, str]) -> tuple[str, str]:
    """(channel, who) of an audit row's actor label (``terminal:kiosk1``, ``client:Bibliofil``, …)."""
    kind, _, name = label.partition(":")
    if kind == "terminal":
        return profiles.get(name, "unknown"), name
    if kind == "client":
        return "ncip", name
    if kind == "operator":
        return "operator", ""
    if kind == "patron":
        return "web", ""
    return "unknown", ""


class SelfService(Area):
    """Min side's use cases; each is one transaction (the login: the PIN check's)."""

    def web_login(self, card: str, pin: str, *, max_seconds: int = 28800, request_id: str | None = None) -> WebLogin:
        """Log in with card and PIN: a new session, or AuthenticationFailed / PinLocked (the PIN
        check of every channel, same cost for every failure). A blocked patron logs in (innsyn is a
        right); a lost or replaced card never does."""
        try:
            number = normalise_card_number(card)
        except InvalidIdentifier:
            number = ""  # never audit what was typed: it may be a national id
        token = sessions.new_token()

        def open_session(s: Session, patron: Patron, row: Card) -> WebLogin:
            now = utcnow()
            # Sessions that can no longer be used are forgotten as new ones begin, a few hundred at a
            # time; rows another login is deleting right now are skipped (PostgreSQL), never waited for.
            stale = select(WebSession.id).where(or_(
                WebSession.ended_at.is_not(None), WebSession.created_at < now - timedelta(seconds=max_seconds),
            )).limit(SWEEP_ROWS)
            if self.store.postgres:
                stale = stale.with_for_update(skip_locked=True)
            s.execute(delete(WebSession).where(WebSession.id.in_(stale.scalar_subquery()))
                      .execution_options(synchronize_session=False))
            s.add(WebSession(token_hash=sessions.token_hash(token), patron_id=patron.id, card_number=row.number,
                             created_at=now, last_seen_at=now))
            return WebLogin(token, sessions.form_token(token), row.number)

        login: WebLogin = self.register.pins.check_pin(patron_actor(number).asking(request_id), number or card, pin,
                                                        then=open_session)
        return login

    def web_session(self, token: str, *, idle_seconds: int = 900, max_seconds: int = 28800) -> WebSessionView | None:
        """The live session with this id, its idle timer restarted; None when there is none (unknown,
        ended, timed out, or its card is no longer active, or the patron deleted).

        Read without the write lock; the last use is written at most every TOUCH_SECONDS."""
        if not token or len(token) > 100:
            return None
        now = utcnow()
        sessions_, cards, patrons = WebSession.__table__, Card.__table__, Patron.__table__
        with self._read() as conn:
            found = conn.execute(
                select(sessions_.c.id, sessions_.c.patron_id, sessions_.c.card_number, sessions_.c.created_at,
                       sessions_.c.last_seen_at, cards.c.status, patrons.c.deleted_at)
                .join(cards, cards.c.number == sessions_.c.card_number)
                .join(patrons, patrons.c.id == sessions_.c.patron_id)
                .where(sessions_.c.token_hash == sessions.token_hash(token), sessions_.c.ended_at.is_(None))
            ).one_or_none()
            if found is None:
                return None
            created, last_seen = _aware(found.created_at), _aware(found.last_seen_at)
            idle_end = last_seen + timedelta(seconds=idle_seconds)
            hard_end = created + timedelta(seconds=max_seconds)
            usable = (now < idle_end and now < hard_end and found.status == CardStatus.ACTIVE
                      and found.deleted_at is None)
            view = self._load_views(conn, [(found.patron_id, found.card_number)])[0] if usable else None
        touch = usable and (now - last_seen).total_seconds() >= min(TOUCH_SECONDS, idle_seconds / 10)
        if not usable or touch:
            with self._tx() as s:
                values = {"last_seen_at": now} if usable else {"ended_at": now}
                s.execute(update(WebSession).where(WebSession.id == found.id, WebSession.ended_at.is_(None))
                          .values(**values).execution_options(synchronize_session=False))
        if view is None:
            return None
        if touch:
            idle_end = now + timedelta(seconds=idle_seconds)
        return WebSessionView(found.card_number, sessions.form_token(token), for_the_page(view),
                              min(idle_end, hard_end))

    def web_logout(self, token: str) -> None:
        """End the session with this id (nothing happens for an unknown one)."""
        if not token or len(token) > 100:
            return
        with self._tx() as s:
            s.execute(update(WebSession).where(WebSession.token_hash == sessions.token_hash(token),
                                               WebSession.ended_at.is_(None))
                      .values(ended_at=utcnow()).execution_options(synchronize_session=False))

    def change_own_pin(self, actor: Actor, card: str, old_pin: str, new_pin: str, new_pin_again: str, *,
                       keep_session: str | None = None) -> None:
        """The patron changes their PIN: the old one is checked under the shared lockout, the new
        one (4–8 digits) works at once on every channel, and the patron's other sessions end.

        Raises InvalidInput (the new PINs differ or are not 4–8 digits; no attempt is counted),
        AuthenticationFailed or PinLocked (the old PIN; also when another change of the PIN won a
        race), SessionEnded (``keep_session`` ended meanwhile)."""
        if new_pin != new_pin_again:
            raise InvalidInput("the new PINs are not the same")
        pin_hash = crypto.hash_secret(fields.pin(new_pin), self.settings.pin_hash_cost)

        def change(s: Session, patron: Patron, row: Card) -> None:
            actors.require_own(actor, (c.number for c in patron.cards), "a patron may change only their own PIN")
            if keep_session is not None and s.scalar(select(WebSession.id).where(
                    WebSession.token_hash == sessions.token_hash(keep_session), WebSession.ended_at.is_(None),
                    WebSession.patron_id == patron.id)) is None:
                # Ended meanwhile, e.g. by a PIN change in another session that committed first.
                raise SessionEnded("the session has ended; log in again")
            set_pin_in(s, actor, patron, row.number, pin_hash, keep_session=keep_session)

        self.register.pins.check_pin(actor, card, old_pin, then=change)

    def patron_trail(self, actor: Actor, card: str, *, page: int = 1, per_page: int = 50) -> TrailPage:
        """Who has looked at or changed the patron's data, newest first, one page of it."""
        page, per_page = max(1, page), min(max(1, per_page), MAX_PER_PAGE)
        with self._tx() as s:
            patron, _row = records.patron_of(s, card)
            actors.require_may_export(actor, (c.number for c in patron.cards))
            total = s.scalar(select(func.count()).select_from(AuditEvent).where(
                AuditEvent.patron_id == patron.id)) or 0
            page = min(page, max(1, -(-total // per_page)))  # past the end: the last page
            rows = list(s.execute(
                select(AuditEvent, Library.name)
                .outerjoin(Library, Library.isil == AuditEvent.library_isil)
                .where(AuditEvent.patron_id == patron.id)
                .order_by(AuditEvent.id.desc()).offset((page - 1) * per_page).limit(per_page)))
            logins = {e.actor.partition(":")[2] for e, _ in rows if e.actor.startswith("terminal:")}
            profiles: dict[str, str] = {login: profile for login, profile in s.execute(
                select(SIPTerminal.login, SIPTerminal.profile).where(SIPTerminal.login.in_(logins)))
            } if logins else {}
            entries = []
            for event, library_name in rows:
                channel, who = _channel(event.actor, profiles)
                entries.append(TrailEntry(event.at, event.library_isil, library_name, channel, who, event.action,
                                          event.outcome, event.detail))
            return TrailPage(tuple(entries), page, per_page, total)

