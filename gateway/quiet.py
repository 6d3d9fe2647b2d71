"""At most one log line per interval for a repeated event, with a count of those held back."""

from __future__ import annotations

from collections.abc import Callable


class Quiet:
    """``allow()`` says whether to log this occurrence: the first one, then at most one every
    ``every`` seconds. ``held`` counts the occurrences not logged since the last line; ``allow``
    hands it over (and starts again) when it lets one through."""

    def __init__(self, clock: Callable[[], float], every: float = 10.0) -> None:
        self.clock, self.every = clock, every
        self.last: float | None = None
        self.held = 0

    def allow(self) -> tuple[bool, int]:
        """(log this one?, how many were held back before it)."""
        now = self.clock()
        if self.last is not None and now - self.last < self.every:
            self.held += 1
            return False, 0
        self.last, held, self.held = now, self.held, 0
        return True, held

    def flush(self) -> int:
        """The occurrences held back and never reported; reported now (e.g. on close)."""
        held, self.held = self.held, 0
        return held
