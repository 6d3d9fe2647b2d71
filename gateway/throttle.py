"""The failed-login throttle: one for every SIP2 listener of a daemon (sip2.md A.1), one for the
patron page's logins (`gateway.web.minside`). Per process, like the connection caps."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable


class LoginThrottle:
    """Failed logins per source address in a sliding window (A.1): a source with ``limit``
    failures in the last ``window`` seconds is refused without asking the register.

    Only failures the register judged count. An attempt refused because the source is blocked does
    not, so the window is never extended by waiting clients: a blocked source gets in at most
    ``window`` seconds after its last counted failure. Memory is bounded: the least recently
    failing addresses are forgotten first."""

    def __init__(self, clock: Callable[[], float], limit: int = 10, window: float = 300.0,
                 max_addresses: int = 10_000) -> None:
        self.clock, self.limit, self.window, self.max_addresses = clock, limit, window, max_addresses
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._pending: dict[str, int] = {}  # attempts being judged now, per host (bounded by concurrency)

    def _recent(self, host: str) -> deque[float] | None:
        times = self._failures.get(host)
        if times is not None:
            cutoff = self.clock() - self.window
            while times and times[0] <= cutoff:
                times.popleft()
            if not times:
                del self._failures[host]
                return None
        return times

    def blocked(self, host: str) -> bool:
        times = self._recent(host)
        return times is not None and len(times) >= self.limit

    def begin(self, host: str) -> bool:
        """An attempt about to be judged: False (refuse it without asking the register) when the
        host's counted failures and its attempts still being judged reach the limit, so a burst
        sent at once meets the limit as a sequence would. Every True is followed by ``end``."""
        times = self._recent(host)
        under_way = self._pending.get(host, 0)
        if (len(times) if times is not None else 0) + under_way >= self.limit:
            return False
        self._pending[host] = under_way + 1
        return True

    def end(self, host: str, *, failed: bool) -> None:
        """The attempt ``begin`` let through was judged (``failed``) or not (the register away)."""
        left = self._pending.get(host, 1) - 1
        if left > 0:
            self._pending[host] = left
        else:
            self._pending.pop(host, None)
        if failed:
            self.failed(host)

    def failed(self, host: str) -> None:
        """A failed login the register judged. While ``host`` is blocked nothing is counted (no
        attempt reaches the register then, and counting refusals would block it for good)."""
        times = self._recent(host)
        if times is None:
            times = self._failures[host] = deque(maxlen=self.limit)
        elif len(times) >= self.limit:
            return
        times.append(self.clock())
        self._failures.move_to_end(host)
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)
