"""The daemon's Prometheus metrics (issue 11, item 3), defined once per process, and ``GET /metrics``.

Every metric is here; the adapters only call `get()` and touch the children it has bound already
(``m.sip2_requests("23", "ok").inc()``): no label dict is built per request. Label values come from
bounded sets: ``command`` is a two-digit SIP2 request code (anything else: ``other``), ``service`` an
NCIP 2.02 service name (anything else: ``other``), ``reason`` a `gateway.register.vocabulary.Reason`,
``channel`` a `Channel`, ``outcome`` one of `OUTCOMES`. No card number, national id, login or token
is ever a label value.

Workers (several processes behind one set of listeners) share one view: prometheus_client's
multiprocess mode, in which every process writes its values to files in one folder and any
process's ``/metrics`` reads them all. The contract with the supervisor (`gateway.supervisor`):

- ``prepare_multiprocess_dir(path)`` once at start, **before any worker starts**: empties (or
  makes) the folder and sets ``PROMETHEUS_MULTIPROC_DIR`` for this process and every process it
  starts (forked or spawned), so that the workers' metrics go to files there;
- ``worker_died(pid)`` for every worker that exits (before its replacement starts): its live gauges
  (``nlr_sip2_connections``, ``nlr_register_up``) stop counting; its counters keep their totals.

Without ``PROMETHEUS_MULTIPROC_DIR`` (one process, ``make run``) the values live in memory.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess, values
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.web import resource, server

from gateway.register.vocabulary import Channel, Reason
from protocols.ncip.schemes import SERVICES
from protocols.sip2 import LAYOUTS

ENV = "PROMETHEUS_MULTIPROC_DIR"
OUTCOMES = ("ok", "refused", "error")
OTHER = "other"
#: The SIP2 requests (codes with an answer), and 97 (resend the last answer).
SIP2_COMMANDS = frozenset({code for code, layout in LAYOUTS.items() if layout.response is not None} | {"97"})
NCIP_SERVICES = frozenset(SERVICES)
DEFAULT_ALLOWED = ("127.0.0.0/8", "::1/128")
# From a fraction of a millisecond (a batched decision) to the register's 8 s timeout.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def command_label(code: str | None) -> str:
    return code if code in SIP2_COMMANDS else OTHER


def service_label(service: str | None) -> str:
    return service if service in NCIP_SERVICES else OTHER


class _Children:
    """A labelled metric's children, bound once per label tuple (from a bounded set), then one dict
    lookup per use."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self.bound: dict[tuple[str, ...], Any] = {}

    def __call__(self, *labels: str) -> Any:
        child = self.bound.get(labels)
        if child is None:
            child = self.bound[labels] = self.metric.labels(*labels)
        return child


class Metrics:
    """The metric objects of this process (`get()`); ``registry`` holds them (a test may pass its own)."""

    def __init__(self, registry: CollectorRegistry | None = None, version: str | None = None) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry()
        self.sip2_requests = _Children(Counter(
            "nlr_sip2_requests", "SIP2 requests answered, by command code and outcome", ["command", "outcome"],
            registry=r))
        self.sip2_duration = _Children(Histogram(
            "nlr_sip2_request_duration_seconds", "SIP2 request time, from the message read to its answer written",
            ["command"], buckets=BUCKETS, registry=r))
        self.sip2_connections = Gauge("nlr_sip2_connections", "Open SIP2 connections", registry=r,
                                      multiprocess_mode="livesum")
        self.ncip_requests = _Children(Counter(
            "nlr_ncip_requests", "NCIP messages answered, by service and outcome", ["service", "outcome"],
            registry=r))
        self.ncip_duration = _Children(Histogram(
            "nlr_ncip_request_duration_seconds", "NCIP request time, from the body read to the answer written",
            ["service"], buckets=BUCKETS, registry=r))
        self.decisions = _Children(Counter(
            "nlr_decisions", "Patron decisions of the register (kiosks, doors, library systems), by reason",
            ["channel", "reason"], registry=r))
        self.pin_lockouts = Counter("nlr_pin_lockouts", "PINs locked by a wrong PIN reaching the limit", registry=r)
        self.register_up = Gauge("nlr_register_up", "1 while the register answers (every live worker), else 0",
                                 registry=r, multiprocess_mode="livemin")
        self.register_calls = Histogram("nlr_register_call_duration_seconds",
                                        "Time of one register call (or one batch of decisions) in the thread pool",
                                        buckets=BUCKETS, registry=r)
        self.memory_answers = _Children(Counter(
            "nlr_memory_answers", "Decisions and lookups without a PIN whose facts were in memory (hit) or read (miss)",
            ["result"], registry=r))
        self.memory_cards = Gauge("nlr_memory_cards", "Cards whose decision facts this process keeps in memory",
                                  registry=r, multiprocess_mode="livesum")
        self.audit_queued = Gauge("nlr_audit_queued", "Lookup and decision audit rows queued, not yet written",
                                  registry=r, multiprocess_mode="livesum")
        self.audit_written = Counter("nlr_audit_written", "Lookup and decision audit rows written behind, in batches",
                                     registry=r)
        self.build_info = _Children(Gauge("nlr_build_info", "The gateway's version (always 1)", ["version"],
                                          registry=r, multiprocess_mode="max"))
        # Prime the bounded label sets a dashboard needs from the first scrape.
        for outcome in OUTCOMES:
            for code in ("93", "99", "23", "63"):
                self.sip2_requests(code, outcome)
            self.ncip_requests("LookupUser", outcome)
        self.register_up.set(1)
        self.build_info(version or _version()).set(1)
        self._exposition: CollectorRegistry | None = None

    # ------------------------------------------------------------------ what the adapters call
    def decision(self, channel: str, reason: str) -> None:
        """One decision the register audited (`gateway.register.audit` tells every one)."""
        self.decisions(channel if channel in _CHANNELS else OTHER, reason if reason in _REASONS else OTHER).inc()

    def lockout(self) -> None:
        self.pin_lockouts.inc()

    def register_state(self, online: bool) -> None:
        self.register_up.set(1 if online else 0)

    # ------------------------------------------------------------------ exposition
    def exposition(self) -> bytes:
        """The Prometheus text format: every worker's values in multiprocess mode, else this process's."""
        if multiprocess_dir() is None:
            return generate_latest(self.registry)
        if self._exposition is None:
            self._exposition = CollectorRegistry()
            multiprocess.MultiProcessCollector(self._exposition)
        return generate_latest(self._exposition)


_CHANNELS = frozenset(str(c) for c in Channel)
_REASONS = frozenset(str(r) for r in Reason)
_metrics: Metrics | None = None


def get() -> Metrics:
    """This process's metrics, made at the first call (in a worker: after its supervisor's
    `prepare_multiprocess_dir`)."""
    global _metrics
    if _metrics is None:
        _metrics = Metrics()
        _hook_register()
    return _metrics


def _hook_register() -> None:
    """The register tells of decisions and lockouts as it audits them (in the thread pool; the
    counters are thread-safe)."""
    from gateway.register import audit, pins

    if _decision not in audit.decision_listeners:
        audit.decision_listeners.append(_decision)
    if _lockout not in pins.lockout_listeners:
        pins.lockout_listeners.append(_lockout)


def _decision(channel: str, reason: str) -> None:
    get().decision(channel, reason)


def _lockout() -> None:
    get().lockout()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nlr-gateway")
    except PackageNotFoundError:
        return "unknown"


def multiprocess_dir() -> str | None:
    """The multiprocess folder, when this process writes its values there."""
    path = os.environ.get(ENV)
    return path if path and _is_multiprocess() else None


def _is_multiprocess() -> bool:
    return bool(getattr(values.ValueClass, "_multiprocess", False))


def prepare_multiprocess_dir(path: str | os.PathLike[str]) -> Path:
    """For the supervisor, once, before it starts any worker: an empty folder ``path`` (made if
    missing; what an earlier run left there is deleted) and ``PROMETHEUS_MULTIPROC_DIR`` set to it,
    for this process and the workers it starts."""
    global _metrics
    folder = Path(path)
    if folder.exists():
        for entry in folder.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.environ[ENV] = str(folder)
    # prometheus_client picks its value class when it is first imported; this process may have
    # imported it before the folder was known.
    if not _is_multiprocess():
        values.ValueClass = values.MultiProcessValue()
        _metrics = None  # made again, in multiprocess mode, at the next get()
    return folder


def worker_died(pid: int) -> None:
    """For the supervisor, for every worker that exited: its live gauges no longer count."""
    path = os.environ.get(ENV)
    if path:
        multiprocess.mark_process_dead(pid, path)


# ---------------------------------------------------------------------- GET /metrics
def networks(cidrs: Iterable[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs)


def source_allowed(host: Any, allowed: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    """Whether ``host`` (the connection's source: behind a ``haproxy:`` listener the one its PROXY
    header names) is in ``allowed``. Anything that is not an IP address (a UNIX socket) is not."""
    if not isinstance(host, str):
        return False
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in allowed)


class MetricsResource(resource.Resource):
    """``GET /metrics``: the Prometheus text format, to ``allowed_networks`` only (403 otherwise)."""

    isLeaf = True

    def __init__(self, allowed_networks: Iterable[str] = DEFAULT_ALLOWED) -> None:
        super().__init__()
        self.allowed = networks(allowed_networks)

    def render_GET(self, request: server.Request) -> bytes:
        request.setHeader(b"cache-control", b"no-store")
        if not source_allowed(getattr(request.getClientAddress(), "host", None), self.allowed):
            request.setResponseCode(403)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"Forbidden: /metrics answers only to metrics.allowed_networks\n"
        started = time.perf_counter()
        body = get().exposition()
        if time.perf_counter() - started > 1.0:  # pragma: no cover - a huge multiprocess folder
            from twisted.logger import Logger

            Logger(namespace="nlr").warn("/metrics took over a second to collect")
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        return body
