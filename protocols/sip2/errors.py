"""The codec's one error type (and two refinements the gateway answers differently)."""

from __future__ import annotations


class SIP2Error(Exception):
    """Anything the codec cannot parse or will not encode.

    ``reason`` is a short, stable code for logs and metrics (``unknown_command``,
    ``bad_checksum``, ``field_too_long`` …). ``command`` and ``field`` name the command code and
    the field id or fixed-field name involved, when known. The text never contains a field
    value, so it is safe to log even when the message carried a PIN (``AD``) or password (``CO``).
    """

    def __init__(self, reason: str, detail: str = "", *, command: str | None = None,
                 field: str | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.command = command
        self.field = field
        parts = [reason]
        if command:
            parts.append(f"command={command}")
        if field:
            parts.append(f"field={field}")
        if detail:
            parts.append(detail)
        super().__init__(" ".join(parts))


class ChecksumError(SIP2Error):
    """The message carried ``AZ`` and it verified under no accepted basis: answer ``96``."""

    def __init__(self, *, command: str | None, sequence: int | None) -> None:
        super().__init__("bad_checksum", command=command)
        self.sequence = sequence


class FrameTooLarge(SIP2Error):
    """A line grew past the framer's limit. ``frames`` holds the complete frames that preceded
    it in the same ``feed`` call; the rest of the oversized line is discarded."""

    def __init__(self, limit: int, frames: list[bytes]) -> None:
        super().__init__("frame_too_large", f"limit={limit}")
        self.limit = limit
        self.frames = frames
