"""The YAML configuration of the NLR gateway (PRODUCT §4.2).

The file is validated at start: an unknown key, a wrong type or a missing file raises
:class:`ConfigError`, whose message is one line naming the file and the key. With no file at all,
the built-in defaults apply (embedded SQLite and keys under ``./var/``). Paths in the file are
relative to the file's own folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml


class ConfigError(Exception):
    """The configuration cannot be used; the message is one line for the operator."""


# TLS 1.2 suites with forward secrecy (ECDHE, DHE) and an AEAD cipher (GCM, ChaCha20-Poly1305) only:
# no static RSA key exchange, no CBC, no SHA-1 (Mozilla's "intermediate" list).
DEFAULT_TLS_CIPHERS = ":".join([
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
])


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = "sqlite:///var/register.db"
    pool_size: int = 5
    connect_timeout: int = 5


@dataclass(frozen=True)
class RegisterConfig:
    agency_id: str = "NLR"
    allow_synthetic_ids: bool = False
    pin_max_failures: int = 5
    pin_lock_minutes: int = 15
    # scrypt cost as log2(N), r = 8: 14 means N = 16384, 16 MiB and about 45 ms per hash on one
    # core here. A 4-digit PIN falls to an offline search at any cost, so the lockout protects it;
    # the hash only has to make a stolen table expensive, and must leave room for door traffic.
    pin_hash_cost: int = 14
    # Lookup and decision audit rows are deleted after this many days, change feed entries after
    # theirs; audit rows of changes stay as long as the patron (gateway.register.retention).
    audit_retention_days: int = 365
    change_retention_days: int = 365
    # Quarantine entries of a legacy import, once resolved or discarded (gateway.register.retention).
    quarantine_retention_days: int = 365
    # Cards whose decision facts each gateway process keeps in memory (gateway.hot_path; 0: none,
    # every decision asks the database), and lookup and decision audit rows it may hold queued
    # before they are written (full: it answers "register unavailable" rather than unaudited).
    cache_size: int = 100_000
    audit_queue_max: int = 20_000


@dataclass(frozen=True)
class LoginThrottleConfig:
    """Failed logins per source address in a sliding window (SIP2: sip2.md A.1; the patron page:
    issue 10); attempts refused while a source is blocked do not count, so it gets in one window
    after its last counted failure."""

    failures: int = 10
    window_seconds: int = 300


@dataclass(frozen=True)
class TLSConfig:
    """TLS on every ssl: listener (SIP2 and HTTP): TLS 1.2 and 1.3 only; for TLS 1.2 the OpenSSL
    cipher string below (TLS 1.3 suites are all forward-secret AEAD and not affected by it)."""

    ciphers: str = DEFAULT_TLS_CIPHERS


@dataclass(frozen=True)
class SIP2Config:
    listen: list[str] = field(default_factory=lambda: ["tcp:6001:interface=127.0.0.1"])
    # Plain-text (tcp:) listeners must bind to loopback unless the operator says otherwise here,
    # e.g. for a listener bound to a VPN interface (PRODUCT §2.12).
    allow_plaintext: bool = False
    max_message_bytes: int = 8192
    login_timeout_seconds: int = 30
    idle_timeout_seconds: int = 1200
    # Open connections, in total and per source address (IPv6: per /64); one more is refused at once.
    # 1,000 per source lets every kiosk and door of a library share one NAT address.
    max_connections: int = 10_000
    max_connections_per_source: int = 1_000
    login_throttle: LoginThrottleConfig = field(default_factory=LoginThrottleConfig)
    # Addresses (CIDR) whose PROXY protocol header is believed, on haproxy: listeners; any other
    # source connecting there is closed at once.
    proxy_from: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class HTTPConfig:
    listen: list[str] = field(default_factory=lambda: ["tcp:8080:interface=127.0.0.1"])
    max_body_bytes: int = 262144
    allow_plaintext: bool = False
    # Deadlines, in seconds, that bytes trickling in cannot stretch: the request line and headers
    # complete within header_timeout, the body within body_timeout after them (408, closed).
    header_timeout: int = 10
    body_timeout: int = 30
    # A keep-alive connection with no request in progress is closed after this many idle seconds.
    idle_timeout: int = 60
    # Open connections of this process, in total and per source address (IPv6: per /64); one more
    # is closed at once. 200 per source lets one library's desks and kiosks share a NAT address.
    max_connections: int = 1000
    max_connections_per_source: int = 200
    # Addresses (CIDR) whose PROXY protocol header is believed, on haproxy: listeners.
    proxy_from: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class WebConfig:
    """The patron page ("Min side", ``/min-side/`` on the HTTP listeners, issue 10)."""

    # A session ends after this many seconds without a page, and this many after its login whatever
    # happens; both are enforced by the register, so every gateway process judges a session alike.
    session_idle_seconds: int = 900
    session_max_seconds: int = 28800
    # Failed logins per source address (IPv6: per /64), as for SIP2; per process.
    login_throttle: LoginThrottleConfig = field(default_factory=LoginThrottleConfig)


#: The most worker processes ``server.workers`` (and ``nlr serve --workers``) may ask for.
MAX_WORKERS = 64


@dataclass(frozen=True)
class ServerConfig:
    """The daemon's processes (issue 11): ``workers`` processes share the listeners, started and
    restarted by a supervisor; 1 (the default) is one process with no supervisor; ``auto`` is the
    number of CPUs."""

    workers: int | str = 1


@dataclass(frozen=True)
class LoggingConfig:
    """The daemon's log (`gateway.logs`): the format, the lowest level written (read again on
    SIGHUP), and which requests get a line of their own."""

    format: str = "text"  # text | json
    level: str = "info"  # debug | info | warn | error | critical
    requests: str = "all"  # all | refused | none


@dataclass(frozen=True)
class MetricsConfig:
    """``GET /metrics`` on the HTTP listeners (`gateway.metrics`): answered only to these sources
    (CIDR; behind a ``haproxy:`` listener, the source its PROXY header names), 403 to any other."""

    allowed_networks: list[str] = field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])


@dataclass(frozen=True)
class Config:
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    keys_file: str = "var/keys.yaml"
    register: RegisterConfig = field(default_factory=RegisterConfig)
    sip2: SIP2Config = field(default_factory=SIP2Config)
    http: HTTPConfig = field(default_factory=HTTPConfig)
    tls: TLSConfig = field(default_factory=TLSConfig)
    web: WebConfig = field(default_factory=WebConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    # Folder that relative paths (keys_file, sqlite files) are resolved against.
    base_dir: Path = field(default_factory=Path.cwd, compare=False)
    # Where the settings came from (the file's path, or "built-in defaults"), for error messages.
    source: str = field(default="built-in defaults", compare=False)

    @property
    def keys_path(self) -> Path:
        return self.base_dir / self.keys_file

    @property
    def database_url(self) -> str:
        """The database URL with a relative SQLite path made absolute against ``base_dir``."""
        url = self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite:///:memory:":
            path = url[len(prefix):]
            if path and not path.startswith(":"):
                return prefix + str(self.base_dir / path)
        return url


_SECTIONS_NOT_FROM_FILE = {"base_dir", "source"}


class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int) -> None:
        super().__init__(key)
        self.key, self.line = key, line


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML silently keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may be overridden by design
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key; the base class reports it
                break
            if duplicate:
                raise _DuplicateKey(str(key), key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is list:
        inner = get_args(tp)[0]
        plurals = {int: "whole numbers", bool: "true/false values", str: "strings"}
        plural = plurals.get(inner, f"{_type_name(inner)} values")
        return f'a list of {plural}, e.g. ["…", "…"]'
    return {int: "a whole number", bool: "true or false", str: "a string"}.get(tp, getattr(tp, "__name__", str(tp)))


def _check_value(value: Any, tp: Any, where: str, source: str) -> Any:
    origin = get_origin(tp)
    if origin is list:
        (inner,) = get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{source}: key '{where}' must be {_type_name(tp)}")
        return [_check_value(v, inner, f"{where}[{i}]", source) for i, v in enumerate(value)]
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, tp)
    if not ok:
        raise ConfigError(f"{source}: key '{where}' must be {_type_name(tp)}, not {value!r:.40}")
    return value


def _build(cls: type, raw: Any, prefix: str, source: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: key '{prefix or '(top level)'}' must be a mapping")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)} - _SECTIONS_NOT_FROM_FILE
    values: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{prefix}.{key}" if prefix else str(key)
        if key not in known:
            raise ConfigError(f"{source}: unknown key '{where}' (known here: {', '.join(sorted(known))})")
        tp = hints[key]
        if isinstance(tp, type) and is_dataclass(tp):
            values[key] = _build(tp, value, where, source)
        else:
            values[key] = _check_value(value, tp, where, source)
    return cls(**values)


def _check_sip2_and_tls(config: Config, source: str) -> None:
    """The SIP2 connection caps and login throttle, the proxy addresses and the TLS ciphers."""
    import ipaddress

    sip2 = config.sip2
    for key, value, low, high in [
        ("sip2.max_connections", sip2.max_connections, 1, 1_000_000),
        ("sip2.max_connections_per_source", sip2.max_connections_per_source, 1, 1_000_000),
        ("sip2.login_throttle.failures", sip2.login_throttle.failures, 1, 10_000),
        ("sip2.login_throttle.window_seconds", sip2.login_throttle.window_seconds, 1, 86400),
    ]:
        if not low <= value <= high:
            raise ConfigError(f"{source}: key '{key}' must be between {low} and {high}, not {value}")
    for section in ("sip2", "http"):
        for i, network in enumerate(getattr(config, section).proxy_from):
            try:
                ipaddress.ip_network(network.strip(), strict=False)
            except ValueError:
                raise ConfigError(f"{source}: key '{section}.proxy_from[{i}]' is not an address or network "
                                  f"(CIDR, e.g. 10.0.0.5/32): {network!r:.60}") from None
    try:
        from OpenSSL import SSL

        SSL.Context(SSL.TLS_SERVER_METHOD).set_cipher_list(config.tls.ciphers.encode("ascii"))
    except (SSL.Error, UnicodeEncodeError):
        raise ConfigError(f"{source}: key 'tls.ciphers' names no cipher this OpenSSL knows "
                          f"({config.tls.ciphers!r:.80}); give an OpenSSL cipher string, or leave it out") from None


def _check_ranges(config: Config, source: str) -> None:
    checks = [
        ("register.pin_max_failures", config.register.pin_max_failures, 1, 100),
        ("register.pin_lock_minutes", config.register.pin_lock_minutes, 1, 24 * 60),
        ("register.pin_hash_cost", config.register.pin_hash_cost, 10, 20),
        ("register.audit_retention_days", config.register.audit_retention_days, 1, 36500),
        ("register.change_retention_days", config.register.change_retention_days, 1, 36500),
        ("register.quarantine_retention_days", config.register.quarantine_retention_days, 1, 36500),
        ("register.cache_size", config.register.cache_size, 0, 10_000_000),
        ("register.audit_queue_max", config.register.audit_queue_max, 100, 10_000_000),
        ("database.pool_size", config.database.pool_size, 1, 200),
        ("database.connect_timeout", config.database.connect_timeout, 1, 300),
        ("sip2.max_message_bytes", config.sip2.max_message_bytes, 512, 1 << 20),
        ("sip2.login_timeout_seconds", config.sip2.login_timeout_seconds, 1, 3600),
        ("sip2.idle_timeout_seconds", config.sip2.idle_timeout_seconds, 1, 86400),
        ("http.max_body_bytes", config.http.max_body_bytes, 1024, 64 << 20),
        ("http.header_timeout", config.http.header_timeout, 1, 3600),
        ("http.body_timeout", config.http.body_timeout, 1, 3600),
        ("http.idle_timeout", config.http.idle_timeout, 1, 86400),
        ("http.max_connections", config.http.max_connections, 1, 1_000_000),
        ("http.max_connections_per_source", config.http.max_connections_per_source, 1, 1_000_000),
    ]
    for key, value, low, high in checks:
        if not low <= value <= high:
            raise ConfigError(f"{source}: key '{key}' must be between {low} and {high}, not {value}")
    if not config.database.url.startswith(("sqlite:", "postgresql")):
        raise ConfigError(
            f"{source}: key 'database.url' must be sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
        )
    if not config.register.agency_id.strip():
        raise ConfigError(f"{source}: key 'register.agency_id' must not be empty")
    if not config.keys_file.strip():
        raise ConfigError(f"{source}: key 'keys_file' must not be empty (e.g. var/keys.yaml)")
    for section in ("sip2", "http"):
        for i, description in enumerate(getattr(config, section).listen):
            if not description.strip():
                raise ConfigError(f"{source}: key '{section}.listen[{i}]' must not be empty "
                                  "(e.g. tcp:8080:interface=127.0.0.1)")
    _check_sip2_and_tls(config, source)
    _check_web(config, source)
    _check_logging_and_metrics(config, source)
    workers = config.server.workers
    if workers != "auto" and (isinstance(workers, bool) or not isinstance(workers, int)
                              or not 1 <= workers <= MAX_WORKERS):
        raise ConfigError(f"{source}: key 'server.workers' must be a whole number between 1 and {MAX_WORKERS}, "
                          f"or auto (one per CPU), not {workers!r:.40}")


def _check_logging_and_metrics(config: Config, source: str) -> None:
    """The log's format, level and request lines; the networks /metrics answers."""
    import ipaddress

    for key, value, allowed in [("logging.format", config.logging.format, ("text", "json")),
                                ("logging.level", config.logging.level, ("debug", "info", "warn", "error", "critical")),
                                ("logging.requests", config.logging.requests, ("all", "refused", "none"))]:
        if value not in allowed:
            raise ConfigError(f"{source}: key '{key}' must be one of {', '.join(allowed)}, not {value!r:.40}")
    for i, network in enumerate(config.metrics.allowed_networks):
        try:
            ipaddress.ip_network(network.strip(), strict=False)
        except ValueError:
            raise ConfigError(f"{source}: key 'metrics.allowed_networks[{i}]' is not an address or network "
                              f"(CIDR, e.g. 10.0.0.0/8): {network!r:.60}") from None


def _check_web(config: Config, source: str) -> None:
    """The patron page's session lifetimes and login throttle."""
    web = config.web
    for key, value, low, high in [
        ("web.session_idle_seconds", web.session_idle_seconds, 1, 86400),
        ("web.session_max_seconds", web.session_max_seconds, 1, 7 * 86400),
        ("web.login_throttle.failures", web.login_throttle.failures, 1, 10_000),
        ("web.login_throttle.window_seconds", web.login_throttle.window_seconds, 1, 86400),
    ]:
        if not low <= value <= high:
            raise ConfigError(f"{source}: key '{key}' must be between {low} and {high}, not {value}")
    if web.session_idle_seconds > web.session_max_seconds:
        raise ConfigError(f"{source}: key 'web.session_idle_seconds' ({web.session_idle_seconds}) must not be more "
                          f"than 'web.session_max_seconds' ({web.session_max_seconds})")


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load and validate the configuration.

    ``path`` wins; otherwise ``$NLR_CONFIG``; otherwise the built-in defaults with paths relative
    to the current folder.
    """
    if path is None:
        path = os.environ.get("NLR_CONFIG") or None
    if path is None:
        config = Config()
        _check_ranges(config, "built-in defaults")
        return config
    file = Path(path)
    source = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: config file not found "
                          "(give an existing file with --config or NLR_CONFIG)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: config file is not UTF-8 text; save it as UTF-8") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a folder, not a config file; give the YAML file itself") from None
    except OSError as exc:
        raise ConfigError(f"{source}: config file cannot be read ({exc.strerror or exc.__class__.__name__})") from None
    try:
        raw = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
        raise ConfigError(f"{source}: key '{exc.key}' is given twice (line {exc.line}); keep one") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None)
        raise ConfigError(f"{source}: not valid YAML{at}{': ' + problem if problem else ''}") from None
    config = _build(Config, raw, "", source)
    config = Config(**{**{f.name: getattr(config, f.name) for f in fields(Config)},
                       "base_dir": file.resolve().parent, "source": source})
    _check_ranges(config, source)
    return config
