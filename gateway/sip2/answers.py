"""What the gateway answers in SIP2 (sip2.md Part A), as pure functions: request + register result
→ response ``Message``. No I/O; the protocol encodes and writes what these return.

The register decides (``Register.decide``, one function for 23, 63, 25 and doors); these functions
only shape the decision for the terminal's profile (A.2): which personal data, ``BL``/``CQ``, the
14 status flags and the Norwegian screen message.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway.register.views import Decision, PatronView, Reason, TerminalView
from protocols.sip2 import DENIED, LAYOUTS, Message, build, format_date, refusal, supported_messages

OSLO = ZoneInfo("Europe/Oslo")

#: The requests answered meaningfully; ``BX`` of 98 advertises exactly these (A.3).
ANSWERED = ("23", "01", "99", "97", "93", "63", "35", "25")
BX = supported_messages(ANSWERED)  # YNNYYYYYYNNNYNNN
#: Circulation: a protocol-valid refusal, nothing stored or logged about item or patron (A.3).
CIRCULATION = frozenset({"11", "09", "17", "19", "15", "29", "65", "37"})
#: How many bad checksums in a row a connection may send before it is closed (C.4); said in 98.
MAX_RETRIES = 10

GRANTED_STATUS = " " * 14
LOST_STATUS = DENIED[:4] + "Y" + DENIED[5:]  # position 4: card reported lost (A.4)

SCREEN: dict[Reason, str] = {
    Reason.GRANTED: "Lånekortet er gyldig.",
    Reason.UNKNOWN_CARD: "Ukjent lånekort.",
    Reason.CARD_LOST: "Kortet er meldt tapt og kan ikke brukes. Kontakt biblioteket.",
    Reason.CARD_REPLACED: "Kortet er erstattet av et nytt kort. Bruk det nye kortet.",
    Reason.PATRON_BLOCKED: "Lånekortet er sperret. Kontakt biblioteket.",
    Reason.PIN_WRONG: "Feil PIN-kode.",
    Reason.PIN_MISSING: "Tast inn PIN-koden din.",
    Reason.PIN_LOCKED: "For mange feil PIN-koder. PIN-koden er sperret en stund; prøv igjen senere.",
    Reason.NOT_ACTIVATED: "Kortet er ikke aktivert ved dette biblioteket. Spør personalet.",
    Reason.DOOR_NO_AGREEMENT: "Du har ikke avtale om meråpent bibliotek her. Spør personalet.",
    Reason.DOOR_REVOKED: "Tilgangen til meråpent bibliotek er trukket tilbake. Kontakt biblioteket.",
    Reason.DOOR_UNDERAGE: "Du er under aldersgrensen for meråpent bibliotek her.",
    Reason.WRONG_INSTITUTION: "Forespørselen gjelder et annet bibliotek enn terminalens (AO).",
    Reason.REGISTER_UNAVAILABLE: "Lånerregisteret er midlertidig utilgjengelig. Prøv igjen om litt.",
}
DOOR_GRANTED = "Velkommen!"
DOOR_REFUSED = "Ingen adgang. Kontakt biblioteket."  # reveals nothing about the card (A.2)
ACTIVATED = "Kortet er aktivt ved dette biblioteket."
SELF_ACTIVATION_OFF = "Kortet kan ikke aktiveres i automaten her. Spør personalet."
BLOCKED = "Kortet er sperret."
CIRCULATION_REFUSED = ("Lånerregisteret håndterer ikke utlån, innlevering, reservasjoner eller gebyrer. "
                       "Bruk bibliotekets eget system.")
INVALID = "Ugyldig melding."
OFFLINE = SCREEN[Reason.REGISTER_UNAVAILABLE]

# A door may name the reason only when it cannot tell a stranger whether the card exists.
_DOOR_SAFE = frozenset({Reason.REGISTER_UNAVAILABLE, Reason.WRONG_INSTITUTION})
# The holder has not shown they are the patron: no name, whatever the profile.
_UNPROVEN = frozenset({Reason.CARD_LOST, Reason.CARD_REPLACED, Reason.PIN_WRONG, Reason.PIN_MISSING,
                       Reason.PIN_LOCKED})


_clock: tuple[int, str] = (-1, "")


def now() -> str:
    """The transaction date to send now: Europe/Oslo local time with a blank zone (B.6), as the 18
    characters of the fixed field. Formatted once per second, not once per answer."""
    global _clock
    second = int(time.time())
    if _clock[0] != second:
        _clock = (second, format_date(datetime.fromtimestamp(second, OSLO)))
    return _clock[1]


def unavailable() -> Decision:
    return Decision(Reason.REGISTER_UNAVAILABLE, None, False, False, False)


def _language(request: Message) -> str:
    lang = request.fixed.get("language", "000")
    return lang if len(lang) == 3 and lang.isdigit() else "000"


def _ids(request: Message, terminal: TerminalView) -> dict[str, str]:
    """``AO`` echoed as sent (the terminal's library when absent), ``AA`` echoed."""
    return {"AO": request.get("AO") or terminal.library_isil, "AA": request.get("AA") or ""}


def screen_message(decision: Decision, profile: str) -> str:
    if profile == "door":
        if decision.granted:
            return DOOR_GRANTED
        return SCREEN[decision.reason] if decision.pin_valid or decision.reason in _DOOR_SAFE else DOOR_REFUSED
    return SCREEN[decision.reason]


def personal_data(patron: PatronView) -> dict[str, str | None]:
    """The ``ils`` profile's extra fields of 64 (A.2): never the national id, no address if secret."""
    place = " ".join(filter(None, (patron.postal_code, patron.city)))
    address = ", ".join(filter(None, (patron.address_line1, patron.address_line2, place)))
    return {
        "BD": None if patron.secret_address or not address else address,
        "BE": patron.email or None,
        "BF": patron.phone or None,
        "PB": patron.birth_date.strftime("%Y%m%d") if patron.birth_date else None,
        "PC": patron.home_library_isil,
    }


def patron_answer(request: Message, terminal: TerminalView, decision: Decision, when: datetime | str, *,
                  screen: str | None = None) -> Message:
    """24 (to 23), 64 (to 63) or 26 (to 25): the decision as this terminal's profile sees it (A.2, A.4)."""
    code = LAYOUTS[request.code].response or "24"
    patron, reason = decision.patron, decision.reason
    if terminal.profile == "door":
        valid = decision.granted
        name = patron.given_name if valid and patron else ""
        status = GRANTED_STATUS if valid else DENIED
    else:
        valid = patron is not None and reason is not Reason.WRONG_INSTITUTION
        name = patron.name if patron is not None and reason not in _UNPROVEN else ""
        status = GRANTED_STATUS if decision.granted else LOST_STATUS if decision.card_lost else DENIED
    fields: dict[str, Any] = {
        **_ids(request, terminal), "AE": name, "BL": "Y" if valid else "N",
        "CQ": ("Y" if decision.pin_valid else "N") if "AD" in request else None,
        "AF": screen or screen_message(decision, terminal.profile),
    }
    if code == "64" and terminal.profile == "ils" and decision.granted and patron is not None:
        fields.update(personal_data(patron))
    return build(code, patron_status=status, language=_language(request), transaction_date=when, **fields)


def enable_answer(request: Message, terminal: TerminalView, decision: Decision, library_allows: bool,
                  when: datetime | str) -> Message:
    """26 to 25: activated (or already active), refused with the reason, or "ask the staff"."""
    if decision.reason is Reason.NOT_ACTIVATED and decision.pin_valid and not library_allows:
        return patron_answer(request, terminal, decision, when, screen=SELF_ACTIVATION_OFF)
    return patron_answer(request, terminal, decision, when, screen=ACTIVATED if decision.granted else None)


def block_answer(request: Message, terminal: TerminalView, decision: Decision, when: datetime | str) -> Message:
    """24 to 01: the card's status after the block. No name: the card holder showed no PIN."""
    blocked = decision.reason is Reason.PATRON_BLOCKED
    return build("24", patron_status=LOST_STATUS if decision.card_lost else DENIED, language="000",
                 transaction_date=when, **_ids(request, terminal), AE="",
                 BL="Y" if decision.patron is not None else "N",
                 AF=BLOCKED if blocked else SCREEN[decision.reason])


def status_answer(online: bool, institution: str, when: datetime | str) -> Message:
    """98 to 99: online iff the database answers; ``BX`` says exactly what is answered."""
    return build("98", online_status="Y" if online else "N", checkin_ok="N", checkout_ok="N",
                 acs_renewal_policy="N", status_update_ok="Y", offline_ok="N",
                 timeout_period="999" if online else "000", retries_allowed=f"{MAX_RETRIES:03d}",
                 date_time_sync=when, AO=institution, BX=BX, AF=None if online else OFFLINE)


def login_answer(ok: bool) -> Message:
    return build("94", ok="1" if ok else "0")


def end_session_answer(request: Message, terminal: TerminalView, when: datetime | str) -> Message:
    return build("36", end_session="Y", transaction_date=when, **_ids(request, terminal))


def circulation_refusal(request: Message, when: datetime | str) -> Message:
    return refusal(request, when=when, screen_message=CIRCULATION_REFUSED)


def invalid_refusal(code: str, when: datetime | str) -> Message:
    """The answer to a request of a known type that could not be parsed: a refusal, ids empty."""
    return refusal(Message(code), when=when, screen_message=INVALID)
