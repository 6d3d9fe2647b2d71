"""A daemon on a small register for the metrics and log tests: a patron with a PIN, a kiosk, an NCIP
client, and helpers to read GET /metrics with prometheus_client's own parser."""

from __future__ import annotations

import http.client
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from daemon_helpers import Daemon, free_port, get, start, write_config
from prometheus_client.parser import text_string_to_metric_families
from register_helpers import OSLO, add_patron, setup_libraries

from gateway.register import Register
from gateway.register.views import OPERATOR

PASSWORD = "kiosk-pass-metrics-7"
WRONG_PIN = "9753"


@dataclass
class Served:
    daemon: Daemon
    http_port: int
    sip2_port: int
    card: str
    token: str
    national_id: str

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def ncip(self, body: bytes) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=20)
        try:
            conn.request("POST", "/ncip", body, {"Authorization": f"Bearer {self.token}",
                                                 "Content-Type": "application/xml"})
            return conn.getresponse().read().decode()
        finally:
            conn.close()

    def scrape(self) -> str:
        status, body = get(f"{self.base}/metrics")
        assert status == 200, (status, body[:300])
        return body.decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition: (name, sorted labels) → value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def serving(register: Register, database_url: str, keys_path: Path, tmp_path: Path,
            daemons: list[Daemon]) -> Callable[..., Served]:
    """A register with a library, a patron (PIN), a kiosk and an NCIP client; ``served(extra)`` starts
    `nlr serve` on it with ``extra`` config lines (after the http section: an indented line continues it)."""
    setup_libraries(register)
    card = add_patron(register, 0, OSLO).card
    national_id = register.find_patron(OPERATOR, card, with_national_id=True).national_id or ""
    register.add_terminal(OPERATOR, "kiosk", PASSWORD, OSLO, "kiosk")
    token = register.add_client(OPERATOR, "ils", OSLO, ["lookup"]).token
    assert token is not None

    def served(extra: str = "", http: list[str] | None = None, name: str = "nlr.yaml") -> Served:
        http_port, sip2_port = free_port(), free_port()
        cfg = write_config(tmp_path / name, database_url, keys_path,
                           http=http or [f"tcp:{http_port}:interface=127.0.0.1"],
                           sip2=[f"tcp:{sip2_port}:interface=127.0.0.1"], extra=extra)
        if http:
            http_port = int(http[0].split(":")[2])
        daemon = start(daemons, cfg, tmp_path)
        s = Served(daemon, http_port, sip2_port, card, token, national_id)
        if not http:
            daemon.health(s.base, 200)
        return s

    return served
