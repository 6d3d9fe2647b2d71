"""Sans-IO SIP2 2.00 codec (sip2.md Part B): one table of layouts drives parsing and encoding.

No I/O, no Twisted, no database: bytes in, ``Message`` out, and back.
"""

from .codec import (
    DEFAULT_MAX_FRAME,
    MAX_FIELD_BYTES,
    Framer,
    checksum,
    encode,
    looks_like_tls_client_hello,
    parse,
    redact_frame,
    restamp,
)
from .errors import ChecksumError, FrameTooLarge, SIP2Error
from .layouts import FIELDS, LAYOUTS, Field, FixedField, Layout, supported_messages
from .messages import DENIED, Message, build, field_id, format_date, parse_date, redact, refusal

__all__ = [
    "ChecksumError", "DEFAULT_MAX_FRAME", "DENIED", "FIELDS", "Field", "FixedField", "Framer",
    "FrameTooLarge", "LAYOUTS", "Layout", "MAX_FIELD_BYTES", "Message", "SIP2Error", "build",
    "checksum", "encode", "field_id", "format_date", "looks_like_tls_client_hello", "parse",
    "parse_date", "redact", "redact_frame", "refusal", "restamp", "supported_messages",
]
