"""`nlr serve`, black box (PRODUCT §4.1, §4.2, issue 2 item 8): the daemon in a subprocess on free
ports, GET /healthz, SIGTERM/SIGINT, a database outage, and the listen rules of PRODUCT §2.12.

The outage is simulated with a TCP proxy in the test between the daemon and PostgreSQL, so the
shared test server is never stopped: closing the proxy is "database down", re-opening it is
"database back", and holding its bytes is "database hung".
"""

from __future__ import annotations

import json
import re
import signal
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import Daemon, free_port, get, run_serve, self_signed, start, write_config
from db_proxy import DatabaseProxy

from gateway.config import Config, ConfigError, HTTPConfig, SIP2Config
from gateway.endpoints import check_config, check_listen, resolve_endpoint, with_backlog

DB_DOWN_URL = "postgresql+psycopg://postgres@127.0.0.1:1/x"


# ---------------------------------------------------------------------- the daemon runs and stops
def test_serve_answers_healthz_and_stops_on_sigterm(database_url: str, keys_path: Path, tmp_path: Path,
                                                    daemons: list[Daemon]) -> None:
    port, sip2_port = free_port(), free_port()
    cfg = write_config(tmp_path / "nlr.yaml", database_url, keys_path, http=[f"tcp:{port}:interface=127.0.0.1"],
                       sip2=[f"tcp:{sip2_port}:interface=127.0.0.1"])
    daemon = start(daemons, cfg, tmp_path)
    base = f"http://127.0.0.1:{port}"
    assert daemon.health(base, 200) == {"status": "ok", "database": "ok"}
    socket.create_connection(("127.0.0.1", sip2_port), timeout=5).close()  # the SIP2 listener is up too
    with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
        assert response.headers["content-type"].startswith("application/json")
    status, body = get(f"{base}/no-such-thing")
    assert status == 404 and b"Traceback" not in body
    assert daemon.stop(signal.SIGTERM) == 0
    # log lines say their time zone: UTC, whatever the host's (the one time policy of issue 9)
    first = daemon.log.read_text().splitlines()[0]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ", first), first
    with pytest.raises(OSError):
        get(f"{base}/healthz", timeout=2)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", sip2_port), timeout=2)


# ---------------------------------------------------------------------- a database outage, through a proxy
@pytest.fixture
def proxy(database_url: str) -> Iterator[DatabaseProxy]:
    p = DatabaseProxy(database_url)
    yield p
    p.close()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_healthz_503_while_the_database_is_unreachable(database_url: str, proxy: DatabaseProxy, keys_path: Path,
                                                       tmp_path: Path, daemons: list[Daemon]) -> None:
    port = free_port()
    cfg = write_config(tmp_path / "nlr.yaml", proxy.url, keys_path,
                       http=[f"tcp:{port}:interface=127.0.0.1"])
    daemon = start(daemons, cfg, tmp_path)
    base = f"http://127.0.0.1:{port}"
    daemon.health(base, 200)

    proxy.down()  # the database goes away: listener and live connections
    assert daemon.health(base, 503, timeout=10) == {"status": "unavailable", "database": "unreachable"}
    proxy.up()  # and comes back
    assert daemon.health(base, 200, timeout=10)["status"] == "ok"

    # A database that hangs answers 503 within the configured connect timeout (2 s), not never.
    proxy.hang()
    started = time.monotonic()
    status, body = get(f"{base}/healthz", timeout=10)
    assert status == 503 and json.loads(body)["database"] == "unreachable"
    assert time.monotonic() - started < 5
    proxy.down()
    proxy.up()
    daemon.health(base, 200, timeout=10)

    # SIGTERM while a request is in flight: the request still gets its answer, and the daemon exits 0.
    proxy.hang()
    answers: list[int] = []
    pending = threading.Thread(target=lambda: answers.append(get(f"{base}/healthz", timeout=10)[0]))
    pending.start()
    time.sleep(0.5)
    daemon.proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    pending.join(timeout=10)
    assert answers == [503], daemon.output()
    proxy.down()
    assert daemon.stop(None, within=10 - (time.monotonic() - signalled)) == 0


# ---------------------------------------------------------------------- start-up refusals
def test_serve_refuses_bad_listen_config_before_touching_the_database(tmp_path: Path, keys_path: Path) -> None:
    """Exit 2 with one line naming file and key; the database (down here) is never asked."""
    port = free_port()
    cases = {
        "all-interfaces": ({"http": [f"tcp:{port}:interface=0.0.0.0"]}, "http.listen[0]"),
        "lan-address": ({"http": [f"tcp:{port}:interface=127.0.0.1"], "sip2": [f"tcp:{port + 1}:interface=10.1.2.3"]},
                        "sip2.listen[0]"),
        "bogus-endpoint": ({"http": ["bogus:1234"]}, "http.listen[0]"),
        "missing-certificate": ({"http": [f"ssl:{port}:privateKey=nope.pem:certKey=nope.pem"]}, "http.listen[0]"),
    }
    procs = {}
    for name, (listen, _) in cases.items():
        cfg = write_config(tmp_path / f"{name}.yaml", DB_DOWN_URL, keys_path,
                           http=listen["http"], sip2=listen.get("sip2"))
        procs[name] = (cfg, run_serve(cfg, tmp_path))
    unknown = write_config(tmp_path / "unknown.yaml", DB_DOWN_URL, keys_path, http=[f"tcp:{port}:interface=127.0.0.1"],
                           extra="  port: 8080\n")
    procs["unknown-key"] = (unknown, run_serve(unknown, tmp_path))
    cases["unknown-key"] = ({}, "http.port")
    db_down = write_config(tmp_path / "db-down.yaml", DB_DOWN_URL, keys_path, http=[f"tcp:{port}:interface=127.0.0.1"])
    down = run_serve(db_down, tmp_path)

    errors = {}
    for name, (cfg, proc) in procs.items():
        out, err = proc.communicate(timeout=60)
        lines = err.splitlines()
        assert proc.returncode == 2, (name, proc.returncode, out, err)
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, err)
        assert str(cfg) in err and cases[name][1] in err, (name, err)
        assert "Traceback" not in out + err
        errors[name] = err
    assert "ssl:" in errors["all-interfaces"] and "allow_plaintext" in errors["all-interfaces"]  # how to mend

    out, err = down.communicate(timeout=60)
    assert down.returncode == 1, (out, err)
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "database" in err, err
    assert "Traceback" not in out + err


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_port_in_use_exits_1_with_one_line(database_url: str, keys_path: Path, tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        cfg = write_config(tmp_path / "nlr.yaml", database_url, keys_path, http=[f"tcp:{port}:interface=127.0.0.1"])
        proc = run_serve(cfg, tmp_path)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, (out, err)
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and str(port) in err, err
    assert "Traceback" not in out + err


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_allow_plaintext_lets_the_operator_bind_beyond_loopback(database_url: str, keys_path: Path, tmp_path: Path,
                                                                 daemons: list[Daemon]) -> None:
    port = free_port()
    cfg = write_config(tmp_path / "nlr.yaml", database_url, keys_path, http=[f"tcp:{port}:interface=0.0.0.0"],
                       extra="  allow_plaintext: true\n")
    daemon = start(daemons, cfg, tmp_path)
    daemon.health(f"http://127.0.0.1:{port}", 200)
    assert daemon.stop(signal.SIGTERM) == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_tls_listener_anywhere_with_paths_relative_to_the_config(database_url: str, keys_path: Path, tmp_path: Path,
                                                                 daemons: list[Daemon]) -> None:
    """ssl: may listen on every interface; its key files are found beside the config file, whatever
    the working folder; SIGINT stops the daemon as SIGTERM does."""
    self_signed(tmp_path / "etc" / "tls")
    port = free_port()
    cfg = write_config(tmp_path / "etc" / "nlr.yaml", database_url, keys_path,
                       http=[f"ssl:{port}:interface=0.0.0.0:privateKey=tls/key.pem:certKey=tls/cert.pem"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    daemon = start(daemons, cfg, elsewhere)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    assert daemon.health(f"https://127.0.0.1:{port}", 200, context=context)["status"] == "ok"
    assert daemon.stop(signal.SIGINT) == 0


# ---------------------------------------------------------------------- the listen rules, in process
@pytest.mark.parametrize("description", [
    "tcp:6001:interface=127.0.0.1", "tcp:6001:interface=127.0.0.2", "tcp:port=6001:interface=127.0.0.1",
    "tcp6:6001:interface=\\:\\:1", "tcp:6001:interface=localhost", "TCP:6001:interface=127.0.0.1",
    "ssl:6001:privateKey=k.pem", "ssl:6001:interface=0.0.0.0:privateKey=k.pem", "unix:/run/nlr.sock",
    "systemd:domain=INET:index=0",
])
def test_listen_strings_that_are_allowed(description: str) -> None:
    check_listen([description], "sip2.listen", "nlr.yaml")


@pytest.mark.parametrize("description", [
    "tcp:6001", "tcp:6001:interface=0.0.0.0", "tcp:6001:interface=10.0.0.5", "tcp:port=6001",
    "tcp6:6001", "tcp6:6001:interface=\\:\\:", "tcp6:6001:interface=\\:\\:ffff\\:10.0.0.5", "Tcp:6001:interface=",
    "tcp:6001:backlog=5:interface=192.168.1.10",
])
def test_listen_strings_that_are_refused(description: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_listen(["tcp:1:interface=127.0.0.1", description], "sip2.listen", "/etc/nlr.yaml")
    message = str(err.value)
    assert "/etc/nlr.yaml" in message and "sip2.listen[1]" in message and "\n" not in message
    assert "ssl:" in message and "allow_plaintext" in message  # says how to mend
    check_listen([description], "sip2.listen", "/etc/nlr.yaml", allow_plaintext=True)


def test_endpoint_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    base = tmp_path / "etc"
    assert resolve_endpoint("ssl:6002:privateKey=tls/key.pem:certKey=/abs/cert.pem", base) == \
        f"ssl:6002:privateKey={base}/tls/key.pem:certKey=/abs/cert.pem"
    assert resolve_endpoint("unix:run/nlr.sock:mode=660", base) == f"unix:{base}/run/nlr.sock:mode=660"
    assert resolve_endpoint("unix:address=/run/nlr.sock", base) == "unix:address=/run/nlr.sock"
    assert resolve_endpoint("tcp:6001:interface=\\:\\:1", base) == "tcp:6001:interface=\\:\\:1"
    odd = tmp_path / "a:b"
    escaped = str(odd).replace(":", "\\:")
    assert resolve_endpoint("ssl:1:privateKey=k.pem", odd) == f"ssl:1:privateKey={escaped}/k.pem"


def test_listeners_queue_a_burst_of_connects_unless_told_otherwise() -> None:
    assert with_backlog("tcp:6001:interface=127.0.0.1") == "tcp:6001:interface=127.0.0.1:backlog=1024"
    assert with_backlog("ssl:6002:privateKey=k.pem") == "ssl:6002:privateKey=k.pem:backlog=1024"
    assert with_backlog("tcp:6001:backlog=64") == "tcp:6001:backlog=64"  # the operator's choice stands
    assert with_backlog("systemd:domain=INET:index=0") == "systemd:domain=INET:index=0"  # no such option


@pytest.mark.parametrize(("http", "sip2", "key"), [
    (["tcp:0:interface=127.0.0.1"], ["tcp:0:interface=127.0.0.1", "nonsense:1"], "sip2.listen[1]"),
    (["tcp:0:interface=127.0.0.1", "tcp:0:interface=0.0.0.0"], [], "http.listen[1]"),
    (["tcp:0"], [], "http.listen[0]"),
    (["tcp:0:interface=127.0.0.1"], ["tcp6:0:interface=\\:\\:"], "sip2.listen[0]"),
    (["ssl:0:privateKey=missing.pem"], [], "http.listen[0]"),
    (["tcp:notaport:interface=127.0.0.1"], [], "http.listen[0]"),
    ([], [], "listen"),
])
def test_check_config_refuses(tmp_path: Path, http: list[str], sip2: list[str], key: str) -> None:
    from twisted.internet import reactor

    config = Config(http=HTTPConfig(listen=http), sip2=SIP2Config(listen=sip2), base_dir=tmp_path, source="x.yaml")
    with pytest.raises(ConfigError) as err:
        check_config(config, reactor)
    assert "x.yaml" in str(err.value) and key in str(err.value) and "\n" not in str(err.value)


def test_check_config_accepts_and_parses(tmp_path: Path) -> None:
    from twisted.internet import reactor

    config = Config(http=HTTPConfig(listen=["tcp:0:interface=127.0.0.1"]),
                    sip2=SIP2Config(listen=["tcp:0:interface=0.0.0.0"], allow_plaintext=True), base_dir=tmp_path)
    parsed = check_config(config, reactor)
    assert [d for d, _ in parsed["http"]] == ["tcp:0:interface=127.0.0.1"]
    assert [d for d, _ in parsed["sip2"]] == ["tcp:0:interface=0.0.0.0"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_daemon_has_one_pool_of_register_calls(register: Any, tmp_path: Path) -> None:
    """The SIP2 listeners, /ncip and /healthz share one RegisterCalls (one batch job, one timeout,
    one count for shutdown to wait on)."""
    from twisted.internet import reactor

    from gateway.server import Listener, build_service

    config = Config(http=HTTPConfig(listen=["tcp:0:interface=127.0.0.1", "tcp:0:interface=127.0.0.2"]),
                    sip2=SIP2Config(listen=["tcp:0:interface=127.0.0.1"]), base_dir=tmp_path)
    from gateway.hot_path import HotPathService
    from gateway.housekeeping import Housekeeping

    top = build_service(config, register, reactor)
    listeners = [child for child in top if isinstance(child, Listener)]
    (keeper,) = [child for child in top if isinstance(child, Housekeeping)]  # retention while serving
    (hot,) = [child for child in top if isinstance(child, HotPathService)]  # the memory and the audit behind
    site, sip2 = top.site, listeners[-1].factory  # type: ignore[attr-defined]
    assert len(listeners) == 3 and len(list(top)) == 5
    assert hot.hot.calls is top.calls and sip2.hot is hot.hot  # type: ignore[attr-defined]
    assert {id(listener.factory) for listener in listeners} == {id(site), id(sip2)}
    pools = {id(top.calls), id(sip2.calls), id(site.resource.children[b"healthz"].calls),  # type: ignore[attr-defined]
             id(site.resource.children[b"ncip"].calls), id(keeper.calls)}
    assert len(pools) == 1 and top.calls.timeout == 8.0  # type: ignore[attr-defined]
