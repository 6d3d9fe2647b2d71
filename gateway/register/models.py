"""The register's tables (PRODUCT §5), as SQLAlchemy 2.0 typed models.

Nothing here stores anything about loans. National identity numbers are stored only encrypted
(``national_id_ciphertext``) and as a keyed HMAC (``national_id_index``); PINs and passwords only as
slow hashes; API tokens only as SHA-256.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from gateway.register.legacy import QuarantineStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the register")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Library(Base):
    __tablename__ = "libraries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    isil: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    door_min_age: Mapped[int] = mapped_column(Integer, default=18)
    self_activation: Mapped[bool] = mapped_column(Boolean, default=False)
    auto_activation: Mapped[bool] = mapped_column(Boolean, default=False)
    rules_version: Mapped[str] = mapped_column(String(40), default="1")
    door_agreement_version: Mapped[str] = mapped_column(String(40), default="1")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class NumberSeries(Base):
    __tablename__ = "number_series"
    __table_args__ = (CheckConstraint("first_number <= last_number", name="series_ordered"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    library_id: Mapped[int] = mapped_column(ForeignKey("libraries.id"), index=True)
    first_number: Mapped[int] = mapped_column(BigInteger)
    last_number: Mapped[int] = mapped_column(BigInteger)
    # The allocator's cursor: every number below it has been handed out or skipped as taken.
    next_number: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    library: Mapped[Library] = relationship()


class Patron(Base):
    __tablename__ = "patrons"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    home_library_id: Mapped[int] = mapped_column(ForeignKey("libraries.id"), index=True)
    surname: Mapped[str | None] = mapped_column(String(200))
    given_name: Mapped[str | None] = mapped_column(String(200))
    national_id_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Keyed HMAC of the national id: unique, so one person is one patron (NULL once deleted).
    national_id_index: Mapped[str | None] = mapped_column(String(64), unique=True)
    national_id_kind: Mapped[str | None] = mapped_column(String(8))
    birth_date: Mapped[date | None] = mapped_column(Date)
    gender: Mapped[str | None] = mapped_column(String(16))
    address_line1: Mapped[str | None] = mapped_column(String(200))
    address_line2: Mapped[str | None] = mapped_column(String(200))
    postal_code: Mapped[str | None] = mapped_column(String(16))
    city: Mapped[str | None] = mapped_column(String(100))
    country: Mapped[str | None] = mapped_column(String(2))
    temp_address_line1: Mapped[str | None] = mapped_column(String(200))
    temp_postal_code: Mapped[str | None] = mapped_column(String(16))
    temp_city: Mapped[str | None] = mapped_column(String(100))
    temp_address_until: Mapped[date | None] = mapped_column(Date)
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(20))
    preferred_contact: Mapped[str | None] = mapped_column(String(8))
    secret_address: Mapped[bool] = mapped_column(Boolean, default=False)
    pin_hash: Mapped[str | None] = mapped_column(String(200))
    pin_failures: Mapped[int] = mapped_column(Integer, default=0)
    pin_locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # PIN checks claimed and not yet settled (see gateway.register.pins), and when the newest was.
    pin_pending: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    pin_claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    block_reason: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}

    # Every use of a patron needs the home library, cards and activations: load them eagerly
    # (three queries in all) rather than one lazy query per attribute.
    home_library: Mapped[Library] = relationship(lazy="joined")
    cards: Mapped[list[Card]] = relationship(back_populates="patron", order_by="Card.issued_at", lazy="selectin")
    activations: Mapped[list[Activation]] = relationship(
        back_populates="patron", order_by="Activation.activated_at", lazy="selectin"
    )


class Card(Base):
    """Every card number a patron has had. Numbers are kept forever, so they are never reused."""

    __tablename__ = "cards"

    number: Mapped[str] = mapped_column(String(10), primary_key=True)
    patron_id: Mapped[int] = mapped_column(ForeignKey("patrons.id"), index=True)
    library_id: Mapped[int] = mapped_column(ForeignKey("libraries.id"))
    # active | lost | replaced | deleted
    status: Mapped[str] = mapped_column(String(10), default="active")
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    patron: Mapped[Patron] = relationship(back_populates="cards", lazy="joined")
    library: Mapped[Library] = relationship(lazy="joined")


class Activation(Base):
    """A patron's affiliation with one library, and the meråpent (door) agreement there."""

    __tablename__ = "activations"
    __table_args__ = (UniqueConstraint("patron_id", "library_id", name="one_activation_per_library"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patron_id: Mapped[int] = mapped_column(ForeignKey("patrons.id"))
    library_id: Mapped[int] = mapped_column(ForeignKey("libraries.id"), index=True)
    activated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    channel: Mapped[str] = mapped_column(String(16))
    rules_version: Mapped[str] = mapped_column(String(40))
    door_agreement_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    door_agreement_version: Mapped[str | None] = mapped_column(String(40))
    door_revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    patron: Mapped[Patron] = relationship(back_populates="activations")
    library: Mapped[Library] = relationship(lazy="joined")


class SIPTerminal(Base):
    __tablename__ = "sip_terminals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    login: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    library_id: Mapped[int] = mapped_column(ForeignKey("libraries.id"))
    profile: Mapped[str] = mapped_column(String(8))
    encoding: Mapped[str] = mapped_column(String(16), default="utf-8")
    terminator: Mapped[str] = mapped_column(String(4), default="CR")
    allowed_networks: Mapped[str] = mapped_column(Text, default="")
    tls_only: Mapped[bool] = mapped_column(Boolean, default=False)
    pin_required: Mapped[bool] = mapped_column(Boolean, default=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    library: Mapped[Library] = relationship()


class APIClient(Base):
    __tablename__ = "api_clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    library_id: Mapped[int] = mapped_column(ForeignKey("libraries.id"))
    permissions: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    library: Mapped[Library] = relationship()


class AuditEvent(Base):
    """Who did what, for which library, to which patron, with what outcome.

    Never a PIN, password, token, national id, or anything about loans.
    """

    __tablename__ = "audit_events"
    __table_args__ = (Index("audit_by_patron", "patron_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(120))
    library_isil: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(40))
    patron_id: Mapped[int | None] = mapped_column(Integer)
    card_number: Mapped[str | None] = mapped_column(String(10))
    outcome: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str | None] = mapped_column(String(300))
    # The id of the request (SIP2 message, NCIP or HTTP request) the event was part of: the same id
    # is on the request's log line, which names no patron; the trail leads from it to the patron.
    request_id: Mapped[str | None] = mapped_column(String(32))


class Change(Base):
    """The ordered feed of patron changes that libraries sync from."""

    __tablename__ = "changes"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    patron_id: Mapped[int] = mapped_column(Integer, index=True)
    card_number: Mapped[str] = mapped_column(String(10))
    library_isil: Mapped[str | None] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(30))
    # The number a replacement retired (``card_number`` is the new one); None otherwise.
    previous_card: Mapped[str | None] = mapped_column(String(10))


class ChangeAudience(Base):
    """Which libraries a change is for: those the patron was affiliated with (home library or
    activated there) when it was committed. A library reads its feed by (library_id, change_id)."""

    __tablename__ = "change_audience"
    __table_args__ = (Index("change_audience_by_library", "library_id", "change_id", unique=True),)

    change_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("changes.id", name="change_audience_change", ondelete="CASCADE"), primary_key=True)
    library_id: Mapped[int] = mapped_column(Integer, primary_key=True)


class WebSession(Base):
    """A patron logged in on the self-service page ("Min side"). Only a SHA-256 of the session id is
    stored, so a copy of the table opens no session; any gateway process serves it."""

    __tablename__ = "web_sessions"
    __table_args__ = (Index("web_sessions_by_patron", "patron_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    patron_id: Mapped[int] = mapped_column(ForeignKey("patrons.id"))
    card_number: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When it ended: logged out, or ended by a PIN change, a lost card, a block or deletion.
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class QuarantineEntry(Base):
    """A row of a legacy import that was not imported, and what became of it."""

    __tablename__ = "quarantine"
    __table_args__ = (UniqueConstraint("library_id", "row_key", name="quarantine_row_once"),
                      Index("quarantine_by_library", "library_id", "status", "id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    library_id: Mapped[int] = mapped_column(ForeignKey("libraries.id"))
    row_number: Mapped[int] = mapped_column(Integer)  # the row's place in the file that quarantined it
    row_key: Mapped[str] = mapped_column(String(64))  # see the module docstring
    card: Mapped[str | None] = mapped_column(String(40))  # as the file gave it (normalised when valid)
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(10), default=QuarantineStatus.OPEN.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution: Mapped[str | None] = mapped_column(String(300))
    # The row itself, until the entry is resolved or discarded: as patrons keep it.
    national_id_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    national_id_index: Mapped[str | None] = mapped_column(String(64))
    pin_hash: Mapped[str | None] = mapped_column(String(200))
    data: Mapped[str | None] = mapped_column(Text)  # JSON: the other columns of the row, as given

    library: Mapped[Library] = relationship(lazy="joined")


class SettingsGeneration(Base):
    """One row: a number raised by every transaction that changes a library, a SIP2 terminal or an
    API client (gateway.register.recall). Each gateway process reads it with the change feed and
    forgets the library settings and client credentials it remembers when it moved (issue 13)."""

    __tablename__ = "settings_generation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)
