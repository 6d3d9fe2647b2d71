"""The register's refusals. Every message is safe to show a caller: no PIN, token or national id."""

from __future__ import annotations


class RegisterError(Exception):
    """A request the register refuses; ``code`` is stable for protocols and scripts."""

    code = "refused"


class InvalidInput(RegisterError):
    code = "invalid_input"


class NotFound(RegisterError):
    code = "not_found"


class AlreadyExists(RegisterError):
    code = "already_exists"


class DuplicatePatron(RegisterError):
    """The national id is registered already. Names the existing card (so a library can replace
    it) only to an actor who may look patrons up by national id; to others the national id would
    otherwise be a way to find a person's card."""

    code = "duplicate_patron"

    def __init__(self, existing_card: str | None) -> None:
        super().__init__(
            f"this person is already registered with card {existing_card}; issue a replacement card instead"
            if existing_card else
            "this person is already registered; look the patron up by card, or ask a library that may look "
            "patrons up by national identity number"
        )
        self.existing_card = existing_card


class CardOutsideSeries(RegisterError):
    code = "card_outside_series"


class CardInUse(RegisterError):
    code = "card_in_use"


class SeriesOverlap(RegisterError):
    code = "series_overlap"


class SeriesExhausted(RegisterError):
    code = "series_exhausted"


class NotAffiliated(RegisterError):
    code = "not_affiliated"


class PermissionDenied(RegisterError):
    code = "permission_denied"


class VersionConflict(RegisterError):
    code = "version_conflict"


class RegisterUnavailable(RegisterError):
    """The database does not answer; callers answer 'register unavailable' and try again later."""

    code = "register_unavailable"


class InvalidNationalIdentityNumber(InvalidInput):
    """The national identity number is malformed (the message never repeats it)."""

    code = "invalid_national_id"


class AuthenticationFailed(RegisterError):
    """Card and PIN do not authenticate. One refusal for an unknown card, a wrong PIN, a patron
    without a PIN and a lost or replaced card, so a caller cannot probe for cards."""

    code = "authentication_failed"


class SessionEnded(RegisterError):
    """The patron's self-service session has ended (logged out, timed out, or ended by a change)."""

    code = "session_ended"


class PinLocked(RegisterError):
    """Too many wrong PINs in a row: the PIN is locked for a while, on every channel."""

    code = "pin_locked"
