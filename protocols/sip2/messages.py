"""The typed SIP2 message, table-driven constructors, dates, and log-safe rendering."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import cast

from .errors import SIP2Error
from .layouts import FIELD_BY_NAME, FIELD_ID, LAYOUT_BY_NAME, LAYOUTS, SECRET_IDS, Layout

REDACTED = "***"
#: The 14 patron-status positions of a refusal: charge, renewal, recall and hold privileges
#: denied (sip2.md A.2, "positions 0-3 Y").
DENIED = "YYYY" + " " * 10


@dataclass(frozen=True)
class Message:
    """One SIP2 message.

    ``fixed`` maps fixed-field names (see ``layouts``) to their exact wire text; ``fields`` is the
    ordered list of ``(id, value)`` variable fields, repeats and unknown ids included.
    ``sequence``/``checksum`` are the ``AY``/``AZ`` trailer as received; ``checksum_basis``
    says what the checksum verified over (``bytes``, or leniently ``codepoints`` / ``nfd``);
    ``encoding`` is the one that decoded it. Equality compares only code, fixed and fields.
    """

    code: str
    fixed: Mapping[str, str] = field(default_factory=dict)
    fields: tuple[tuple[str, str], ...] = ()
    sequence: int | None = field(default=None, compare=False)
    checksum: str | None = field(default=None, compare=False)
    checksum_basis: str | None = field(default=None, compare=False)
    encoding: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fixed", MappingProxyType(dict(self.fixed)))
        if type(self.fields) is not tuple or not all(type(k) is str for k, _ in self.fields):
            object.__setattr__(self, "fields", tuple((str(k), v) for k, v in self.fields))

    def __hash__(self) -> int:
        return hash((self.code, tuple(self.fixed.items()), self.fields))

    def __repr__(self) -> str:
        return redact(self)

    @property
    def layout(self) -> Layout | None:
        return LAYOUTS.get(self.code)

    @property
    def name(self) -> str:
        lay = self.layout
        return lay.name if lay else f"unknown_{self.code}"

    @property
    def error_detection(self) -> bool:
        """Whether the message carried a checksum (answer in the same style)."""
        return self.checksum is not None

    def get(self, key: str, default: str | None = None) -> str | None:
        """First value of a variable field, by id (``"AA"``) or name (``"patron_identifier"``)."""
        first = self.__dict__.get("_first")
        if first is None:  # built once, on the first question (a message is asked many)
            first = {}
            for k, v in self.fields:
                first.setdefault(k, v)
            object.__setattr__(self, "_first", first)
        return first.get(_FIELD_IDS.get(key) or field_id(key), default)

    def get_all(self, key: str) -> list[str]:
        fid = field_id(key)
        return [v for k, v in self.fields if k == fid]

    def __contains__(self, key: object) -> bool:
        try:
            return isinstance(key, str) and self.get(key) is not None
        except KeyError:
            return False

    def missing_required(self) -> list[str]:
        """Required variable fields (B.4) that are absent; parsing is lenient about them."""
        lay = self.layout
        return [f for f in lay.fields if f in lay.required and f not in self] if lay else []


_FIELD_IDS: dict[str, str] = {
    **{name: f.id for name, f in FIELD_BY_NAME.items()},
    **{f.id: f.id for f in FIELD_BY_NAME.values()},
}


def field_id(key: str) -> str:
    """``"AA"`` → ``"AA"``; ``"patron_identifier"`` → ``"AA"``."""
    fid = _FIELD_IDS.get(key)
    if fid is not None:
        return fid
    if len(key) == 2 and FIELD_ID.fullmatch(key):  # an extension field
        return key
    raise KeyError(f"no SIP2 field named {key!r}")


def layout_of(code_or_name: str) -> Layout:
    lay = LAYOUTS.get(code_or_name) or LAYOUT_BY_NAME.get(code_or_name)
    if lay is None:
        raise SIP2Error("unknown_command", command=code_or_name[:2])
    return lay


# --------------------------------------------------------------------------- constructors

FixedValue = str | datetime
FieldValue = str | Iterable[str] | None


def build(code_or_name: str, /, **values: FixedValue | FieldValue) -> Message:
    """Build a message from the table: ``build("24", patron_status=DENIED, transaction_date=now,
    institution_id="NB", AA="N000123456", AE="", BL="N", screen_message=["…"])``.

    Keywords are fixed-field names, variable field ids or their names; an iterable gives a field
    several times; ``None`` leaves a field out. Fixed fields not given take the table's default
    (a ``date`` kind has none). Variable fields come out in spec order, then any extension ids in
    the order given. Values are checked strictly by ``encode``, not here.
    """
    lay = layout_of(code_or_name)
    fixed: dict[str, str] = {}
    for ff in lay.fixed:
        value = values.pop(ff.name, None)
        if isinstance(value, datetime):
            value = format_date(value)
        if value is None:
            value = ff.default
        if value is None:
            raise TypeError(f"{lay.name}: fixed field {ff.name!r} has no default")
        # Anything but text is passed on as given: ``encode`` refuses it (bad_fixed_field).
        fixed[ff.name] = cast(str, value)
    given: dict[str, list[str]] = {}
    for key, value in values.items():
        try:
            fid = field_id(key)
        except KeyError:
            raise TypeError(f"{lay.name}: unknown field {key!r}") from None
        if value is None:
            continue
        if isinstance(value, datetime):
            raise TypeError(f"{lay.name}: variable field {key!r} takes text, not a datetime")
        given.setdefault(fid, []).extend([value] if isinstance(value, str) else value)
    rank, last = lay.field_rank, len(lay.fields)  # layout order, then extension ids in the order given
    order = sorted(given, key=lambda f: rank.get(f, last))
    return Message(lay.code, fixed, tuple((fid, v) for fid in order for v in given[fid]))


def refusal(request: Message, *, when: datetime | str, screen_message: FieldValue = (),
            **overrides: FixedValue | FieldValue) -> Message:
    """The protocol-valid negative answer to ``request`` (sip2.md A.3): the response layout with
    its refusal defaults (ok ``0``, flags ``N``, patron status ``DENIED``), the identifiers the
    request sent echoed (never a password), required fields it lacks sent empty, ``AF`` added
    (where the layout has one)."""
    lay = request.layout
    if lay is None or lay.response is None:
        raise SIP2Error("no_response", command=request.code)
    resp = LAYOUTS[lay.response]
    values: dict[str, FixedValue | FieldValue] = {}
    for ff in resp.fixed:
        if ff.kind.name == "date":
            values[ff.name] = when
        elif ff.kind.name == "status":
            values[ff.name] = DENIED
    for fid in resp.fields:
        if fid in SECRET_IDS:
            continue
        if fid in request:
            values[fid] = request.get_all(fid)
        elif fid in resp.required:
            values[fid] = ""
    if "AF" in resp.fields:
        values["AF"] = screen_message
    values.update(overrides)
    return build(resp.code, **values)


# --------------------------------------------------------------------------- dates (B.6)

def format_date(dt: datetime) -> str:
    """``YYYYMMDDZZZZHHMMSS``. A naive datetime is local time (zone blank); an aware one at UTC
    offset 0 gets the ``Z`` marker; any other aware datetime is written as its own wall-clock
    time with a blank zone, so pass Europe/Oslo time for "local" (B.6 recommendation)."""
    zone = "   Z" if dt.tzinfo is not None and dt.utcoffset() == timedelta(0) else "    "
    return f"{dt:%Y%m%d}{zone}{dt:%H%M%S}"


def parse_date(text: str) -> datetime | None:
    """Inverse of ``format_date``: 18 blanks → None; ``Z`` zone → aware UTC; else naive local
    (other zone letters are not interpreted). Anything else is ``SIP2Error("bad_date")``."""
    if text == " " * 18:
        return None
    if len(text) != 18 or not (text[:8] + text[12:]).isdigit() or not text.isascii():
        raise SIP2Error("bad_date")
    try:
        dt = datetime.strptime(text[:8] + text[12:], "%Y%m%d%H%M%S")
    except ValueError:
        raise SIP2Error("bad_date") from None
    return dt.replace(tzinfo=UTC) if text[8:12] == "   Z" else dt


# --------------------------------------------------------------------------- logging

def redact(message: Message, hide: Iterable[str] = ()) -> str:
    """A log-safe rendering: values of ``AC``, ``AD``, ``CO`` (and of ``hide``) replaced."""
    hidden = SECRET_IDS | {field_id(h) for h in hide}
    fields = ", ".join(f"{k}={REDACTED if k in hidden else v!r}" for k, v in message.fields)
    fixed = ", ".join(f"{k}={v!r}" for k, v in message.fixed.items())
    seq = "" if message.sequence is None else f" AY={message.sequence}"
    return f"<SIP2 {message.code} {message.name} [{fixed}] [{fields}]{seq}>"
