"""Sans-IO SIP2 2.00 codec: framing, parsing, encoding, checksums (sip2.md Part B).

Lenient on input, strict on output:

* ``parse`` trims junk around a message (leading non-alphanumerics; trailing blanks and control
  bytes, then surplus ``|``; never into the fixed part), accepts fields in any order, missing or
  empty, ignores unknown ids, verifies a checksum over the received bytes (falling back to code
  points, then NFD UTF-8 — B.7) and decodes with the terminal's encoding, falling back to UTF-8
  then cp850 (A.5, B.8).
* ``encode`` emits exact fixed widths, fields in spec order, NFC text in the terminal's encoding,
  and refuses anything that would break the frame. Display fields (``AE``, ``AF``, ``AG`` …) are
  made to fit: characters the encoding lacks are transliterated, ``|`` / CR / LF / other control
  characters become a space (as FOLIO does), and the value is cut to 255 encoded bytes.
  Identifiers are never altered: the same conditions raise ``SIP2Error`` instead.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from .charset import codec_name, decode, transliterate, truncate
from .errors import ChecksumError, FrameTooLarge, SIP2Error
from .layouts import FIELD_ID, FIELDS, KINDS, LAYOUTS, TRAILER_IDS, UNSEQUENCED, field
from .messages import REDACTED, Message

__all__ = ["parse", "encode", "checksum", "Framer", "looks_like_tls_client_hello", "redact_frame",
           "MAX_FIELD_BYTES", "DEFAULT_MAX_FRAME"]

MAX_FIELD_BYTES = 255
DEFAULT_MAX_FRAME = 8192
TERMINATORS = (b"\r", b"\r\n")

_JUNK = bytes(b for b in range(256) if not bytes([b]).isalnum())  # anything but ASCII letters and digits
_BLANK_OR_CONTROL = frozenset(range(0x21)) | {0x7F}
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
# 1-3 digits too: the PyPI `sip2` client and invenio-sip2 do not zero-pad (B.7)
_TRAILER = re.compile(rb"(?:AY([0-9]))?AZ([0-9A-Fa-f]{1,4})\Z")
_UNSAFE = re.compile(r"[|\x00-\x1f\x7f]")  # never inside a value on the wire
_SECRET_FIELD = re.compile(rb"(\A|\|)(%s)[^|\r\n]*" % b"|".join(
    fid.encode() for fid, f in FIELDS.items() if f.secret))


_FIXED = {code: tuple((ff.name, ff.width) for ff in lay.fixed) for code, lay in LAYOUTS.items()}


def checksum(data: bytes) -> str:
    """The AZ value for ``data`` (every byte up to and including ``AZ``): two's complement of
    the low 16 bits of the byte sum, as 4 upper-case, zero-padded hex digits (B.7)."""
    return f"{-sum(data) & 0xFFFF:04X}"


_checksum = checksum  # ``encode`` has a parameter of that name


@functools.lru_cache(maxsize=64)
def _encoding(encoding: str) -> str:
    name = codec_name(encoding)
    if name is None:
        raise SIP2Error("unsupported_encoding")
    return name


# --------------------------------------------------------------------------- parsing

def parse(frame: bytes, encoding: str | None = None, *, verify: bool = True) -> Message:
    """Parse one frame (terminator optional). ``encoding`` is the terminal's; ``None`` before
    login (UTF-8, falling back to cp850). A checksum that verifies under no basis raises
    ``ChecksumError`` (answer ``96``) unless ``verify`` is false; everything else the codec
    cannot make sense of raises ``SIP2Error``."""
    if not isinstance(frame, (bytes, bytearray, memoryview)):
        raise SIP2Error("bad_type")
    enc = None if encoding is None else _encoding(encoding)
    data = bytes(frame)
    data = data.lstrip(_JUNK)
    if len(data) < 2:
        raise SIP2Error("empty")
    if not data[:2].isdigit():
        raise SIP2Error("bad_command")
    code = data[:2].decode()
    lay = LAYOUTS.get(code)
    if lay is None:
        raise SIP2Error("unknown_command", command=code)
    var_at, end = lay.var_offset, len(data)
    while end > var_at and data[end - 1] in _BLANK_OR_CONTROL:
        end -= 1
    piped = end > var_at and data[end - 1] == ord("|")
    while end > var_at and data[end - 1] == ord("|"):
        end -= 1
    data = data[:end]
    if len(data) < var_at:
        raise SIP2Error("short_message", command=code)

    # The trailer follows a field delimiter (or the fixed part). Leniently, ``AY…AZ…`` may also
    # follow an unterminated last field – but not when that "trailer" is really the end of a
    # value whose ``|`` we just trimmed.
    sequence = received = basis = None
    body_end = len(data)
    m = _TRAILER.search(data, max(var_at, len(data) - 9))  # the trailer is at most 9 bytes
    if m and (m.start() == var_at or data[m.start() - 1] == ord("|")
              or (m.group(1) and not piped)):
        body_end = m.start()
        sequence = int(m.group(1)) if m.group(1) else None
        received = m.group(2).decode().upper()
        if verify:
            basis = _verify(data[: m.start(2)], int(received, 16), enc)
            if basis is None:
                raise ChecksumError(command=code, sequence=sequence)

    if _CONTROL.search(data):
        raise SIP2Error("control_character", command=code)
    fixed, pos = {}, 2
    for name, width in _FIXED[code]:
        raw = data[pos:pos + width]
        pos += width
        if b"|" in raw or not raw.isascii():
            raise SIP2Error("bad_fixed_field", command=code, field=name)
        fixed[name] = raw.decode("ascii")

    text, used = decode(data[var_at:body_end], enc)
    fields: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for segment in text.split("|"):
        fid, value = segment[:2], segment[2:]
        if not value.isascii():
            value = unicodedata.normalize("NFC", value)
        if fid not in FIELDS and (not FIELD_ID.fullmatch(fid) or fid in TRAILER_IDS):
            continue  # empty segment (``|||``) or junk: ignored
        known = FIELDS.get(fid)
        if known and not known.repeatable and seen.setdefault(fid, value) != value:
            raise SIP2Error("duplicate_field", "conflicting values", command=code, field=fid)
        fields.append((fid, value))
    return Message(code, fixed, tuple(fields), sequence, received, basis, used)


def _verify(signed: bytes, value: int, enc: str | None) -> str | None:
    """Which representation the checksum verifies over: the received bytes, else (leniently,
    B.7) Unicode code points, else NFD UTF-8. ``None`` if none."""
    if (sum(signed) + value) & 0xFFFF == 0:
        return "bytes"
    text, _ = decode(signed, enc)
    if (sum(map(ord, text)) + value) & 0xFFFF == 0:
        return "codepoints"
    if (sum(unicodedata.normalize("NFD", text).encode("utf-8")) + value) & 0xFFFF == 0:
        return "nfd"
    return None


# --------------------------------------------------------------------------- encoding

def encode(message: Message, encoding: str = "utf-8", *, sequence: int | None = None,
           checksum: bool = False, terminator: bytes = b"\r",
           reply_to: Message | None = None) -> bytes:
    """Encode strictly. With ``checksum`` the message gets ``AY<sequence>`` (if a sequence is
    given; never on 96/97) and ``AZ<checksum>`` computed over the exact bytes produced.
    ``reply_to=request`` mirrors the request's style: checksum iff it had one, its sequence."""
    if reply_to is not None:
        if sequence is not None or checksum:
            raise TypeError("reply_to excludes sequence and checksum")
        sequence, checksum = reply_to.sequence, reply_to.error_detection
    enc = _encoding(encoding)
    lay = LAYOUTS.get(message.code)
    if lay is None:
        raise SIP2Error("unknown_command", command=str(message.code)[:2])
    code = lay.code
    if terminator not in TERMINATORS:
        raise SIP2Error("bad_terminator", command=code)
    for name in message.fixed:
        if name not in lay.fixed_names:
            raise SIP2Error("unknown_fixed_field", command=code, field=str(name))

    out = [code.encode()]
    for ff in lay.fixed:
        value = message.fixed.get(ff.name, ff.default)
        if value is None:
            raise SIP2Error("missing_fixed_field", command=code, field=ff.name)
        if not isinstance(value, str) or not _fixed_ok(ff.kind.pattern, value):
            raise SIP2Error("bad_fixed_field", command=code, field=ff.name)
        out.append(value.encode("ascii"))

    by_id: dict[str, list[str]] = {}
    for fid, value in message.fields:
        if fid not in FIELDS and (not (isinstance(fid, str) and FIELD_ID.fullmatch(fid)) or fid in TRAILER_IDS):
            raise SIP2Error("bad_field_id", command=code)
        by_id.setdefault(fid, []).append(value)
    missing = lay.required - by_id.keys()
    if missing:
        raise SIP2Error("missing_field", command=code, field=min(missing))
    rank, last = lay.field_rank, len(lay.fields)  # layout order, then extension ids in the order given
    for fid in sorted(by_id, key=lambda f: rank.get(f, last)):
        values = by_id[fid]
        if len(values) > 1 and not field(fid).repeatable:
            raise SIP2Error("duplicate_field", command=code, field=fid)
        for value in values:
            out += (fid.encode(), _encode_value(code, fid, value, enc), b"|")

    if sequence is not None and not checksum:
        raise SIP2Error("sequence_without_checksum", command=code)
    if checksum:
        if sequence is not None and code not in UNSEQUENCED:
            if isinstance(sequence, bool) or not isinstance(sequence, int) or not 0 <= sequence <= 9:
                raise SIP2Error("bad_sequence", command=code)
            out.append(b"AY%d" % sequence)
        out.append(b"AZ")
        out.append(_checksum(b"".join(out)).encode())
    out.append(terminator)
    return b"".join(out)


@functools.lru_cache(maxsize=4096)  # pure; flags, languages and statuses repeat, dates change each second
def _fixed_ok(pattern: re.Pattern[str], value: str) -> bool:
    return value.isascii() and pattern.fullmatch(value) is not None


def _encode_value(code: str, fid: str, value: str, enc: str) -> bytes:
    if not isinstance(value, str):
        raise SIP2Error("bad_value", "not a string", command=code, field=fid)
    return _encode_text(code, fid, value, enc)


@functools.lru_cache(maxsize=8192)  # pure; answers repeat their screen messages, ids and flags
def _encode_text(code: str, fid: str, value: str, enc: str) -> bytes:
    text = value if value.isascii() else unicodedata.normalize("NFC", value)
    if field(fid).display:
        text = _UNSAFE.sub(" ", transliterate(text, enc))
        return truncate(text, enc, MAX_FIELD_BYTES)
    if _UNSAFE.search(text):
        raise SIP2Error("bad_value", "delimiter or control character", command=code, field=fid)
    try:
        data = text.encode(enc)
    except UnicodeEncodeError:
        raise SIP2Error("unencodable", enc, command=code, field=fid) from None
    if len(data) > MAX_FIELD_BYTES:
        raise SIP2Error("field_too_long", f"{len(data)} bytes", command=code, field=fid)
    return data


#: Answers whose transaction date is the 18 characters at offset 19: after the code, a 14-character
#: patron status and a 3-character language.
_DATED_AT_19 = frozenset({"24", "26", "64"})


def restamp(frame: bytes, when: str) -> bytes:
    """``frame``, an answer ``encode`` made (24, 26 or 64), with the transaction date ``when`` (the 18
    characters of the fixed field) instead of its own, and its checksum, if it has one, computed
    again: the same bytes ``encode`` would make of the message at that date, without encoding it."""
    code = frame[:2].decode("ascii", "replace")
    if code not in _DATED_AT_19 or len(when) != 18 or not _fixed_ok(KINDS["date"].pattern, when):
        raise SIP2Error("bad_fixed_field", command=code, field="transaction_date")
    stamped = frame[:19] + when.encode("ascii") + frame[37:]
    body = stamped.rstrip(b"\r\n")
    if body.endswith(b"|") or body[-6:-4] != b"AZ":
        return stamped  # no checksum
    signed = body[:-4]
    return signed + _checksum(signed).encode() + stamped[len(body):]


# --------------------------------------------------------------------------- transport helpers

_TERMINATOR = re.compile(rb"[\r\n]")
_BLANK = b" \t\x00\x0b\x0c"


class Framer:
    """Split a byte stream into frames on CR, CRLF or LF (terminators removed, leading blanks
    trimmed, blank lines dropped). A line longer than ``max_size`` raises ``FrameTooLarge``;
    the rest of that line is discarded and framing resumes after its terminator."""

    def __init__(self, max_size: int = DEFAULT_MAX_FRAME) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        self._discarding = False

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        frames: list[bytes] = []
        while (m := _TERMINATOR.search(self._buf)) is not None:
            line = bytes(self._buf[:m.start()])
            del self._buf[:m.end()]
            if self._discarding:
                self._discarding = False
            elif len(line) > self.max_size:
                raise FrameTooLarge(self.max_size, frames)
            elif line.strip(_BLANK):
                frames.append(line.lstrip(_BLANK))
        if self._discarding or len(self._buf) > self.max_size:
            self._buf.clear()
            if not self._discarding:
                self._discarding = True
                raise FrameTooLarge(self.max_size, frames)
        return frames


def looks_like_tls_client_hello(first_bytes: bytes) -> bool:
    """True for a TLS handshake record (``16 03 ..``) — a TLS client on a plaintext port. A lone
    ``0x16`` also counts: no SIP2 message can start with it."""
    return first_bytes[:1] == b"\x16" and first_bytes[1:2] in (b"", b"\x03")


def redact_frame(frame: bytes) -> bytes:
    """Raw bytes safe to log: values of ``AC``/``AD``/``CO`` masked. A frame whose layout cannot
    be located is reduced to its first two bytes and a length."""
    data = bytes(frame)
    start = len(data) - len(data.lstrip(_JUNK))
    lay = LAYOUTS.get(data[start:start + 2].decode("latin-1"))
    if lay is None or len(data) < start + lay.var_offset:
        return data[:start + 2] + b"<%d bytes not shown>" % max(0, len(data) - start - 2)
    cut = start + lay.var_offset
    return data[:cut] + _SECRET_FIELD.sub(rb"\1\2" + REDACTED.encode(), data[cut:])
