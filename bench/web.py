"""Min side benchmark (issue 10): the logged-in overview page per second at 20 concurrent sessions.

    .venv/bin/python bench/web.py [--sessions 20] [--seconds 6] [--rounds 2]

`nlr serve` runs on SQLite with the demo data (`nlr demo`, production scrypt cost). Each of
``--sessions`` keep-alive HTTP/1.1 connections logs in as a demo patron (its own session: the login
form, every hidden field it has, card and PIN 1234), then asks for ``GET /min-side/`` with its
session cookie as soon as the last answer is in. In the same run, beside it, a minimal
``twisted.web`` Site serves the same bytes from a ``twisted.web.static.Data`` resource on another
port, driven by the same client at the same concurrency: the ceiling of twisted.web on this machine.
Measurements alternate between the two, ``--rounds`` times; the best round of each is reported.

The load generator is one asyncio process on the same machine, sharing the CPUs with the server
(as it does with the static one), so the ratio is the figure that carries over to other machines.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

# The demo patrons who can log in (a blocked patron can: innsyn is a right; a lost card cannot).
CARDS = ["N000100001", "N000200001", "N000100002", "N000300001", "N000200002"]
PIN = "1234"


# --- the static page: a minimal twisted.web Site --------------------------------------------------

def static_server(page_file: str, port_file: str) -> None:
    from twisted.internet import reactor
    from twisted.web import server, static

    page = static.Data(Path(page_file).read_bytes(), "text/html; charset=utf-8")
    page.isLeaf = True  # every path is the page
    port = reactor.listenTCP(0, server.Site(page), interface="127.0.0.1", backlog=1024)
    Path(port_file).write_text(str(port.getHost().port))
    reactor.run()


# --- logging in: plain http.client, once per session ----------------------------------------------

_HIDDEN = re.compile(r"<input\b[^>]*>", re.IGNORECASE)
_ATTR = re.compile(r'([a-zA-Z_:-]+)\s*=\s*("[^"]*"|\'[^\']*\'|[^\s>]+)')


def _hidden_fields(page: str) -> dict[str, str]:
    out = {}
    for tag in _HIDDEN.findall(page):
        attrs = {k.lower(): v.strip("\"'") for k, v in _ATTR.findall(tag)}
        if attrs.get("type", "").lower() == "hidden" and "name" in attrs:
            out[html.unescape(attrs["name"])] = html.unescape(attrs.get("value", ""))
    return out


def _cookies(response: http.client.HTTPResponse, jar: dict[str, str]) -> None:
    for header in response.headers.get_all("Set-Cookie") or []:
        name, _, rest = header.partition("=")
        jar[name.strip()] = rest.split(";", 1)[0].strip()


def login(port: int, card: str) -> dict[str, str]:
    """The cookies of a fresh logged-in session for ``card``."""
    jar: dict[str, str] = {}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/min-side/logg-inn")
    response = conn.getresponse()
    form = response.read().decode("utf-8", "replace")
    if response.status != 200:
        raise RuntimeError(f"GET /min-side/logg-inn answered {response.status}")
    _cookies(response, jar)
    fields = _hidden_fields(form) | {"card": card, "pin": PIN}
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Origin": f"http://127.0.0.1:{port}"}
    if jar:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
    conn.request("POST", "/min-side/logg-inn", urllib.parse.urlencode(fields), headers)
    response = conn.getresponse()
    response.read()
    _cookies(response, jar)
    conn.close()
    if "nlr_session" not in jar or response.status not in (302, 303):
        raise RuntimeError(f"login as {card} failed: {response.status}, cookies {sorted(jar)}")
    return jar


# --- the load -------------------------------------------------------------------------------------

_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:\s*chunked", re.IGNORECASE)


async def _read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    if m := _LENGTH.search(head):
        return head, await reader.readexactly(int(m.group(1)))
    if not _CHUNKED.search(head):
        raise RuntimeError(f"neither Content-Length nor chunked: {head[:300]!r}")
    body = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers
            return head, body
        body += (await reader.readexactly(size + 2))[:-2]


async def _session(port: int, path: str, cookie: str, want: bytes, start: float, stop: float,
                   counts: list[int], failures: list[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/html\r\n"
               f"Accept-Language: nb-NO,nb;q=0.9\r\nCookie: {cookie}\r\n\r\n").encode()
    try:
        while (now := time.perf_counter()) < stop:
            writer.write(request)
            head, body = await _read_response(reader)
            if now >= start and time.perf_counter() <= stop:
                counts[0] += 1
                if not head.startswith(b"HTTP/1.1 200") or want not in body:
                    failures.append(head.split(b"\r\n", 1)[0].decode("latin-1"))
    finally:
        writer.close()


def load(port: int, path: str, sessions: list[tuple[str, bytes]], seconds: float) -> tuple[float, list[str]]:
    """Pages per second with one keep-alive connection per session, each asking again at once."""
    counts, failures = [0], []

    async def run() -> None:
        start = time.perf_counter() + min(1.0, seconds / 4)  # warm-up
        await asyncio.gather(*(_session(port, path, cookie, want, start, start + seconds, counts, failures)
                               for cookie, want in sessions))

    asyncio.run(run())
    return counts[0] / seconds, failures


# --- main -----------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nlr serve exited:\n{log.read_text(errors='replace')[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("nlr serve did not become healthy")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=20, help="concurrent logged-in sessions (connections)")
    parser.add_argument("--seconds", type=float, default=6.0, help="measured time per round (after a warm-up)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of each; the best is reported")
    parser.add_argument("--static", nargs=2, metavar=("PAGE_FILE", "PORT_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.static:
        static_server(*args.static)
        return 0

    from register import sqlite_register  # bench/register.py

    from gateway.config import RegisterConfig
    from gateway.demo import load_demo

    cost = RegisterConfig().pin_hash_cost
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        register, db, keys = sqlite_register(work, cost)
        list(load_demo(register))
        register.engine.dispose()

        http_port = free_port()
        config = work / "nlr.yaml"
        config.write_text(
            f"database:\n  url: {json.dumps(f'sqlite:///{db}')}\nkeys_file: {json.dumps(str(keys))}\n"
            f"register:\n  allow_synthetic_ids: true\n  pin_hash_cost: {cost}\n"
            "sip2:\n  listen: []\n"
            f"http:\n  listen: [\"tcp:{http_port}:interface=127.0.0.1:backlog=1024\"]\n")
        log = work / "serve.log"
        nlr = Path(sys.executable).parent / "nlr"
        server = subprocess.Popen([str(nlr), "--config", str(config), "serve"], stdout=log.open("wb"),
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        static: subprocess.Popen[bytes] | None = None
        try:
            wait_healthy(http_port, server, log)
            print(f"logging in {args.sessions} sessions …", file=sys.stderr)
            jars = [login(http_port, CARDS[i % len(CARDS)]) for i in range(args.sessions)]
            cookies = ["; ".join(f"{k}={v}" for k, v in jar.items()) for jar in jars]
            sessions = [(cookie, CARDS[i % len(CARDS)].encode()) for i, cookie in enumerate(cookies)]
            # the static page serves the bytes of Kari Nordmann's overview
            conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=30)
            conn.request("GET", "/min-side/", headers={"Cookie": cookies[0]})
            first = conn.getresponse()
            page = first.read()
            conn.close()
            if first.status != 200 or CARDS[0].encode() not in page:
                raise RuntimeError(f"GET /min-side/ with a session answered {first.status}, not the overview")
            page_file, port_file = work / "page.html", work / "static.port"
            page_file.write_bytes(page)
            static = subprocess.Popen([sys.executable, __file__, "--static", str(page_file), str(port_file)])
            while not (port_file.exists() and port_file.read_text()):
                if static.poll() is not None:
                    raise RuntimeError("the static server exited")
                time.sleep(0.1)
            static_port = int(port_file.read_text())
            static_sessions = [("x=1", CARDS[0].encode())] * args.sessions
            best = {"min-side": 0.0, "static": 0.0}
            failed: list[str] = []
            for r in range(args.rounds):
                for name, port, path, load_sessions in (("static", static_port, "/", static_sessions),
                                                        ("min-side", http_port, "/min-side/", sessions)):
                    rate, failures = load(port, path, load_sessions, args.seconds)
                    print(f"  round {r + 1}: {name:9} {rate:9,.1f} pages/s"
                          + (f" ({len(failures)} failed: {failures[0]})" if failures else ""), file=sys.stderr)
                    best[name] = max(best[name], rate)
                    failed += failures
        finally:
            stop(server)
            if static is not None:
                stop(static)

    ratio = best["min-side"] / best["static"] if best["static"] else 0.0
    print(f"\nMin side benchmark: GET /min-side/ (logged in, {len(page):,} bytes), {args.sessions} concurrent "
          f"sessions on keep-alive connections, SQLite with the demo data, {os.cpu_count()} CPUs, best of "
          f"{args.rounds} × {args.seconds:g} s, load generator on the same machine")
    rows = [("nlr serve, the overview page", f"{best['min-side']:,.1f} pages/s"),
            ("twisted.web static.Data, the same bytes", f"{best['static']:,.1f} pages/s"),
            ("ratio", f"{ratio:.1%} of the static page")]
    for label, figure in rows:
        print(f"  {label + ':':42}{figure:>28}")
    if failed:
        print(f"  {len(failed)} answers were not the overview page (first: {failed[0]})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
