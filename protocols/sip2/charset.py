"""Character sets for SIP2 (sip2.md A.5, B.8): which encodings, transliteration, byte limits."""

from __future__ import annotations

import codecs
import unicodedata

#: The encodings a terminal may use (A.5), plus plain ASCII (B.8's "ascii-translit").
SUPPORTED = ("utf-8", "cp850", "iso8859-1", "ascii")
#: Decoding before login (A.5) and the fallback after a configured encoding fails (B.8).
FALLBACK = ("utf-8", "cp850")

# Characters that do not decompose to ASCII under NFKD; the rest is NFKD minus combining marks
# (å→a, č→c, …→..., NBSP→space). ø→o and Å→A as deunicode / Evergreen do; sip2.md B.8's
# "ASCII-transliterated" checksum vector (EB2C) is "Bjornstad, Ase".
_TRANSLIT = {
    "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "œ": "oe", "Œ": "OE", "ß": "ss", "ẞ": "SS",
    "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "Th", "ł": "l", "Ł": "L",
    "ŋ": "n", "Ŋ": "N", "ŧ": "t", "Ŧ": "T", "ı": "i", "ĸ": "q",
    "‘": "'", "’": "'", "‚": "'", "‛": "'", "“": '"', "”": '"', "„": '"', "«": '"', "»": '"',
    "‐": "-", "‑": "-", "‒": "-", "–": "-", "—": "-", "―": "-", "−": "-", "•": "*", "€": "EUR",
}


def codec_name(encoding: str) -> str | None:
    """Canonical name of a supported encoding (``utf8``, ``latin-1`` … accepted), else None."""
    try:
        name = codecs.lookup(encoding).name
    except (LookupError, TypeError, ValueError):
        return None
    return name if name in SUPPORTED else None


def encodable(text: str, encoding: str) -> bool:
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


def transliterate(text: str, encoding: str) -> str:
    """Replace each character ``encoding`` lacks by a look-alike it has (else ``?``)."""
    if encodable(text, encoding):
        return text
    out = []
    for ch in text:
        if not encodable(ch, encoding):
            alt = _TRANSLIT.get(ch)
            if alt is None:
                alt = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
            ch = alt if alt and encodable(alt, encoding) else "?"
        out.append(ch)
    return "".join(out)


def truncate(text: str, encoding: str, limit: int) -> bytes:
    """Encode ``text`` and cut it to at most ``limit`` bytes on a character boundary."""
    data = text.encode(encoding)
    if len(data) <= limit:
        return data
    out, size = [], 0
    for ch in text:
        b = ch.encode(encoding)
        if size + len(b) > limit:
            break
        out.append(b)
        size += len(b)
    return b"".join(out)


def decode(data: bytes, encoding: str | None) -> tuple[str, str]:
    """Decode with the terminal's encoding, falling back to UTF-8 then cp850 (never fails,
    since cp850 maps every byte). Returns the text and the encoding that worked."""
    chain = ((encoding,) if encoding else ()) + FALLBACK
    for enc in chain:
        try:
            return data.decode(enc), enc
        except UnicodeDecodeError:
            continue
    raise AssertionError("unreachable: cp850 decodes every byte")  # pragma: no cover
