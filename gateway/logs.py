"""The daemon's log: one observer for every line, text or JSON, and one line per request (issue 11, item 4).

``logging.format``: ``text`` (the default: Twisted's classic line, stamped in UTC and saying so,
``2026-12-01T23:45:00Z [nlr.sip2#info] …``) or ``json`` (one object per line, for `json.loads`).
``logging.level``: the lowest level written (``debug``, ``info``, ``warn``, ``error``, ``critical``);
SIGHUP reads it again (`set_level`). ``logging.requests``: which requests get a line: ``all``,
``refused`` (refusals and errors only) or ``none`` (then nothing of the line is even formatted).

A request line (`request`) is an event of the namespace ``nlr.request`` at info with these fields:
``protocol`` (sip2, ncip, web), ``command`` (SIP2 two-digit code) or ``service`` (NCIP service, or
the patron page's route), ``terminal`` (SIP2 login) or ``client`` (NCIP client name), ``library``
(ISIL), ``outcome`` (``ok``, ``refused``, ``error``), ``reason`` (the register's reason code, when it
gave one), ``duration_ms``, and ``request_id``, which every audit row the request wrote carries too
(``nlr audit --json``). Never a PIN, password, token, national id or card number: the fields are
chosen here, not copied from the request.

Requests refused before a credential was accepted (a failed SIP2 login, an NCIP message without a
known client) get no line of their own: the existing rate-limited lines count them, so a flood
cannot fill the disk; the metrics count every one.
"""

from __future__ import annotations

import functools
import json
import os
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogFilterPredicate,
    ILogObserver,
    Logger as _Logger,
    LogLevel,
    LogLevelFilterPredicate,
    PredicateResult,
    formatEvent,
    formatEventAsClassicLogText,
    globalLogBeginner,
)
from zope.interface import provider

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warn", "error", "critical")
REQUESTS = ("all", "refused", "none")
NAMESPACE = "nlr.request"
#: The fields a request line may carry, in the order the text line and the JSON object give them.
FIELDS = ("protocol", "command", "service", "terminal", "client", "library", "outcome", "reason", "status",
          "duration_ms", "request_id")

_log = _Logger(namespace=NAMESPACE)
_predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
_level = LogLevel.info
# Which outcomes get a line (module state: set once from the config by `install`, read per request).
_wanted: frozenset[str] = frozenset({"ok", "refused", "error"})
_NOISE = frozenset({"Starting factory {factory!r}", "Stopping factory {factory!r}"})


# Request ids need not be secret (a log line names no patron; the trail behind an id is for those
# allowed to read it), only unique: a generator seeded from the OS, not a system call per request.
_ids = random.Random(os.urandom(16))


def new_request_id() -> str:
    """12 hex characters: random enough that two gateways never meet the same one in a day's trail."""
    return f"{_ids.getrandbits(48):012x}"


def wants(outcome: str) -> bool:
    """Whether a request with this outcome gets a line (``logging.requests``): ask before building it."""
    return outcome in _wanted


def request(protocol: str, outcome: str, duration: float, request_id: str | None, **fields: str | None) -> None:
    """One request's line at info. ``duration`` in seconds; ``fields`` among `FIELDS` (None: left out).
    Callers ask `wants` first, so that nothing is built for a request that gets no line."""
    lines = _lines
    if lines is not None and not lines.json:  # the daemon's text lines: the same text, built the short way
        if _level <= LogLevel.info:
            get = fields.get
            head = _head(protocol, get("command"), get("service"), get("terminal"), get("client"), get("library"))
            tail = [head, f"outcome={_clean(outcome)}"]
            reason, status = get("reason"), get("status")
            if reason is not None:
                tail.append(f"reason={_clean(str(reason))}")
            if status is not None:
                tail.append(f"status={_clean(str(status))}")
            tail.append(f"{round(duration * 1000, 1)} ms")
            if request_id is not None:
                tail.append(f"id={request_id}")
            lines.add_text(" ".join(tail))
        return
    given: dict[str, Any] = {**fields, "protocol": protocol, "outcome": outcome,
                             "duration_ms": round(duration * 1000, 1), "request_id": request_id}
    values = {name: given[name] for name in FIELDS if given.get(name) is not None}  # in FIELDS' order
    text = " ".join(_text_field(name, value) for name, value in values.items())
    if _lines is not None:  # the daemon's own output: written straight, as the observer would (`_RequestLines`)
        if _level <= LogLevel.info:
            _lines.add(values, text)
        return
    _log.info("{nlr_request_text}", nlr_request=values, nlr_request_text=text)


class _RequestLines:
    """The daemon's request lines, formatted here and written to its output within ``FLUSH_EVERY``,
    many at once: the same lines as Twisted's observer writes (`text_observer`,
    `json_line`), without an event dict, a publisher, a filter and a flush per request. Any other
    line first writes those still pending, so the order holds."""

    FLUSH_EVERY = 0.05  # seconds a request line may wait for the write that takes it with others

    def __init__(self, out: TextIO, format: str) -> None:
        self.out, self.json = out, format == "json"
        self.pending: list[str] = []
        self._second = -1
        self._stamp = ""

    def add(self, values: dict[str, Any], text: str) -> None:
        if not self.json:
            self.add_text(text)
            return
        now = time.time()
        self._pend(json.dumps({"time": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
                               .replace("+00:00", "Z"), "level": "info", "event": "request",
                               "namespace": NAMESPACE, **values}, ensure_ascii=False, default=str) + "\n")

    def add_text(self, text: str) -> None:
        now = time.time()
        if int(now) != self._second:
            self._second, self._stamp = int(now), _stamp(now)
        self._pend(f"{self._stamp} [{NAMESPACE}#info] {text}\n")

    def _pend(self, line: str) -> None:
        self.pending.append(line)
        if len(self.pending) == 1:
            from twisted.internet import reactor

            reactor.callLater(self.FLUSH_EVERY, self.flush)

    def flush(self) -> None:
        if self.pending:
            lines, self.pending = "".join(self.pending), []
            try:
                self.out.write(lines)
                self.out.flush()
            except (OSError, ValueError):  # the output is gone (closed at exit): nothing to tell it
                pass


_lines: _RequestLines | None = None


@functools.lru_cache(maxsize=1024)  # per terminal or client and command: the same head, line after line
def _head(protocol: str, command: str | None, service: str | None, terminal: str | None, client: str | None,
          library: str | None) -> str:
    """The start of a text line: the fields up to ``library``, as `_text_field` writes them."""
    given = {"protocol": protocol, "command": command, "service": service, "terminal": terminal, "client": client,
             "library": library}
    return " ".join(_text_field(name, value) for name, value in given.items() if value is not None)


def _text_field(name: str, value: Any) -> str:
    if name in ("protocol", "command"):
        return _clean(str(value))
    if name == "service":
        return " ".join(_clean(part) for part in str(value).split(" ", 1))
    if name == "duration_ms":
        return f"{value} ms"
    if name == "request_id":
        return f"id={value}"
    return f"{name}={_clean(str(value))}"


@functools.lru_cache(maxsize=4096)  # the same few logins, ISILs and reasons, line after line
def _clean(text: str) -> str:
    """One value of a text line (logfmt): at most 80 characters, no control characters, quoted when
    it holds a space or a quote (``reason="User Authentication Failed"``)."""
    text = "".join(ch if ch.isprintable() else "_" for ch in text[:80])
    if not text:
        return "-"
    if " " in text or '"' in text or "=" in text:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


# ---------------------------------------------------------------------- observers
def _stamp(when: float | None) -> str:
    if when is None:
        return "-"
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def text_observer(out: TextIO) -> FileLogObserver:
    """Log lines stamped in UTC, and saying so (``2026-12-01T23:45:00Z``), whatever the host's zone:
    the register stores times in UTC and shows them to people in Europe/Oslo; logs are for machines
    and operators comparing hosts."""
    return FileLogObserver(out, lambda event: formatEventAsClassicLogText(event, formatTime=_stamp))


def json_line(event: dict[str, Any]) -> str:
    """One event as a JSON object on one line: time, level, event (``request`` or ``log``),
    namespace, message, the request fields of a request line, and a failure's traceback."""
    level = event.get("log_level")
    out: dict[str, Any] = {
        "time": datetime.fromtimestamp(event.get("log_time") or 0, UTC).isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "level": getattr(level, "name", "info"),
    }
    fields = event.get("nlr_request")
    if isinstance(fields, dict):
        out["event"] = "request"
        out["namespace"] = NAMESPACE
        out.update(fields)
    else:
        out["event"] = "log"
        out["namespace"] = str(event.get("log_namespace") or "-")
        out["message"] = (formatEvent(event) or "").rstrip("\n")
        failure = event.get("log_failure")
        if failure is not None:
            try:
                out["traceback"] = failure.getTraceback()
            except Exception:  # noqa: BLE001 - the line still goes out, without it
                out["traceback"] = repr(failure)
    return json.dumps(out, ensure_ascii=False, default=str) + "\n"


def json_observer(out: TextIO) -> FileLogObserver:
    return FileLogObserver(out, json_line)


@provider(ILogFilterPredicate)
def _not_noise(event: dict[str, Any]) -> PredicateResult:
    """Twisted's ``Starting factory <… at 0x…>`` lines (a factory that is not ``noisy = False``) say nothing."""
    return PredicateResult.no if event.get("log_format") in _NOISE else PredicateResult.maybe


def observer(out: TextIO, format: str = "text") -> ILogObserver:
    """The daemon's observer: ``format`` lines on ``out``, from the level `set_level` says, without noise."""
    base = json_observer(out) if format == "json" else text_observer(out)
    return FilteringLogObserver(base, [_predicate, _not_noise])


def _after_request_lines(chosen: ILogObserver) -> ILogObserver:
    @provider(ILogObserver)
    def observe(event: dict[str, Any]) -> None:
        if _lines is not None:
            _lines.flush()  # the request lines before it, in their order
        chosen(event)

    return observe


def set_level(level: str) -> None:
    """The lowest level written from now on (SIGHUP: the config's ``logging.level`` read again)."""
    global _level
    _level = LogLevel.levelWithName(level)
    _predicate.setLogLevelForNamespace("", _level)


def set_requests(which: str) -> None:
    global _wanted
    _wanted = frozenset({"all": ("ok", "refused", "error"), "refused": ("refused", "error"), "none": ()}[which])


def install(format: str = "text", level: str = "info", requests: str = "all", out: TextIO | None = None,
            begin: Callable[..., None] | None = None) -> ILogObserver:
    """Start the daemon's log: every Twisted event from now on through `observer`."""
    global _lines
    set_level(level)
    set_requests(requests)
    stream = out if out is not None else sys.stdout
    chosen = observer(stream, format)
    if begin is None:  # the daemon's own log: its request lines written straight (`_RequestLines`)
        _lines = _RequestLines(stream, format)
        chosen = _after_request_lines(chosen)
    (begin or globalLogBeginner.beginLoggingTo)([chosen], redirectStandardIO=False)
    return chosen


def flush() -> None:
    """Write the request lines still pending (at shutdown)."""
    if _lines is not None:
        _lines.flush()


def level_reloader(source: str) -> Callable[[], None]:
    """A SIGHUP hook (`gateway.server.RELOAD_HOOKS`): the config file ``source`` read again, and its
    ``logging.level`` applied. A file that no longer loads keeps the level, and says why in one line."""

    def reload_log_level() -> None:
        from gateway.config import load_config

        if source == "built-in defaults":
            return
        level = load_config(source).logging.level  # ConfigError: the hook's caller logs it, one line
        lower = LogLevel.levelWithName(level) < _level
        if lower:  # said at the level it takes effect from: after a lowering, before a raise
            set_level(level)
        _Logger(namespace="nlr").info("SIGHUP: log level {new_level}", new_level=level)
        set_level(level)

    return reload_log_level
