"""The register's words: every status, action, change kind, profile, channel and reason it records
or answers with, as ``StrEnum``s. Their values are what the database, the audit trail, the change
feed and the protocols carry, so they never change."""

from __future__ import annotations

from enum import StrEnum


class CardStatus(StrEnum):
    ACTIVE = "active"
    LOST = "lost"  # reported lost: never authenticates again
    REPLACED = "replaced"  # a newer card was issued: never authenticates again
    DELETED = "deleted"  # the patron was deleted; the number stays reserved forever


RETIRED = frozenset({CardStatus.LOST, CardStatus.REPLACED})  # numbers that never authenticate again


class Profile(StrEnum):
    """What a SIP2 terminal is (sip2.md A.2)."""

    KIOSK = "kiosk"
    DOOR = "door"
    ILS = "ils"


class Channel(StrEnum):
    """How an actor reaches the register; recorded with every activation."""

    OPERATOR = "operator"
    SIP2 = "sip2"
    NCIP = "ncip"
    WEB = "web"
    IMPORT = "import"  # activated by a legacy import of the library's patrons (`nlr import`)


class ChangeKind(StrEnum):
    """Kinds of entries in the change feed that libraries sync from."""

    REGISTERED = "registered"
    UPDATED = "updated"
    ACTIVATED = "activated"
    HOME_LIBRARY = "home_library"
    DOOR_AGREEMENT = "door_agreement"
    DOOR_REVOKED = "door_revoked"
    DOOR_RESTORED = "door_restored"
    BLOCKED = "blocked"
    UNBLOCKED = "unblocked"
    CARD_LOST = "card_lost"
    CARD_REPLACED = "card_replaced"
    PIN_CHANGED = "pin_changed"
    DELETED = "deleted"


class Action(StrEnum):
    """What an audit event records."""

    LIBRARY_ADD = "library_add"
    LIBRARY_SETTINGS = "library_settings"
    SERIES_RESERVE = "series_reserve"
    PATRON_REGISTER = "patron_register"
    PATRON_LOOKUP = "patron_lookup"
    PATRON_LOOKUP_NATIONAL_ID = "patron_lookup_national_id"
    PATRON_UPDATE = "patron_update"
    PATRON_ACTIVATE = "patron_activate"
    PATRON_BLOCK = "patron_block"
    PATRON_UNBLOCK = "patron_unblock"
    PATRON_DELETE = "patron_delete"
    PATRON_EXPORT = "patron_export"
    PATRON_CHECK = "patron_check"  # a decision at a kiosk or by a library system
    DOOR = "door"  # a decision at a door
    DOOR_AGREEMENT = "door_agreement"
    DOOR_REVOKE = "door_revoke"
    DOOR_RESTORE = "door_restore"
    HOME_LIBRARY = "home_library"
    CARD_LOST = "card_lost"
    CARD_REPLACE = "card_replace"
    PIN_SET = "pin_set"
    PIN_VERIFY = "pin_verify"
    SIP2_LOGIN = "sip2_login"
    TERMINAL_ADD = "terminal_add"
    TERMINAL_UPDATE = "terminal_update"
    CLIENT_ADD = "client_add"
    CLIENT_UPDATE = "client_update"
    IMPORT = "import"  # a legacy import run: what it imported and quarantined
    IMPORT_QUARANTINE = "import_quarantine"  # a row of it quarantined, against the patron it concerned
    QUARANTINE_SHOW = "quarantine_show"
    QUARANTINE_RESOLVE = "quarantine_resolve"


class PinCheck(StrEnum):
    OK = "ok"
    WRONG = "wrong"
    LOCKED = "locked"
    NO_PIN = "no_pin"  # the patron has no PIN set


class Reason(StrEnum):
    """Reason codes of the patron decision (sip2.md A.4), audited and mapped to screen messages."""

    GRANTED = "granted"
    UNKNOWN_CARD = "unknown_card"
    CARD_LOST = "card_lost"
    CARD_REPLACED = "card_replaced"
    PATRON_BLOCKED = "patron_blocked"
    PIN_WRONG = "pin_wrong"
    PIN_MISSING = "pin_missing"
    PIN_LOCKED = "pin_locked"
    NOT_ACTIVATED = "not_activated"
    DOOR_NO_AGREEMENT = "door_no_agreement"
    DOOR_REVOKED = "door_revoked"
    DOOR_UNDERAGE = "door_underage"
    WRONG_INSTITUTION = "wrong_institution"
    REGISTER_UNAVAILABLE = "register_unavailable"
