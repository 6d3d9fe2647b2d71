"""Listen strings: Twisted endpoint strings as the config gives them, and the plain-text rule.

Start-up checks every listen string before it touches the database: plain text (``tcp:``) only on
loopback unless the section says ``allow_plaintext`` (PRODUCT §2.12), file names (TLS keys, unix
sockets) relative to the config file's folder (PRODUCT §4.1), a connection backlog of 1,024 unless
the string names one, and that each string parses into an endpoint.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any

from twisted.internet.endpoints import serverFromString

from gateway.config import Config, ConfigError

# Endpoint types that carry plain text over the network.
_PLAINTEXT_KINDS = {"tcp", "tcp6"}
# Endpoint types that take a ``backlog`` parameter.
_BACKLOG_KINDS = {"tcp", "tcp6", "ssl", "unix"}
DEFAULT_BACKLOG = 1024
# Endpoint parameters that name files: relative ones are resolved against the config file's folder.
_PATH_PARAMS = {"privateKey", "certKey", "extraCertChain", "dhParameters", "caCertsDir"}


def _split_endpoint(description: str) -> list[str]:
    """Split an endpoint string on unescaped colons, keeping escapes (Twisted's own syntax)."""
    parts, current, i = [], "", 0
    while i < len(description):
        ch = description[i]
        if ch == "\\" and i + 1 < len(description):
            current += description[i:i + 2]
            i += 2
            continue
        if ch == ":":
            parts.append(current)
            current = ""
        else:
            current += ch
        i += 1
    parts.append(current)
    return parts


def _unescape(text: str) -> str:
    out, i = "", 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out += text[i + 1]
            i += 2
        else:
            out += text[i]
            i += 1
    return out


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def _param(part: str) -> tuple[str | None, str]:
    """``key=value`` → (key, raw value); a positional argument → (None, raw part)."""
    i = 0
    while i < len(part):
        if part[i] == "\\":
            i += 2
            continue
        if part[i] == "=":
            return _unescape(part[:i]), part[i + 1:]
        i += 1
    return None, part


def source_group(host: str) -> str:
    """The source a connection is counted against for per-source caps and throttles: the IPv4
    address, or the /64 network of an IPv6 one (a single host usually holds a whole /64); an
    IPv4-mapped IPv6 address counts as its IPv4 address. Anything else (a unix socket) as given."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _is_loopback(interface: str) -> bool:
    if interface.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(interface.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def check_listen(descriptions: list[str], key: str, source: str = "config", *, allow_plaintext: bool = False) -> None:
    """Refuse plaintext TCP listeners that are reachable from other machines (PRODUCT §2.12)."""
    if allow_plaintext:
        return
    section = key.split(".", 1)[0]
    for i, description in enumerate(descriptions):
        parts = _split_endpoint(description.strip())
        kind = _unescape(parts[0]).lower()
        if kind not in _PLAINTEXT_KINDS:
            continue
        params = dict(_param(p) for p in parts[1:])
        interface = _unescape(params.get("interface", ""))
        if not _is_loopback(interface):
            raise ConfigError(
                f"{source}: key '{key}[{i}]' listens in plain text on {interface or 'every interface'} "
                f"({description}); use an ssl: endpoint, bind to 127.0.0.1, "
                f"or set {section}.allow_plaintext: true (e.g. for a VPN-only interface)"
            )


def resolve_endpoint(description: str, base_dir: Path) -> str:
    """The endpoint string with relative file names (TLS keys, unix socket paths) made absolute
    against ``base_dir``, the config file's folder (PRODUCT §4.1)."""
    parts = _split_endpoint(description.strip())
    kind = _unescape(parts[0]).lower()
    out = [parts[0]]
    for index, part in enumerate(parts[1:]):
        name, raw = _param(part)
        is_path = name in _PATH_PARAMS or (kind == "unix" and (name == "address" or (name is None and index == 0)))
        value = _unescape(raw)
        if is_path and value and not os.path.isabs(value):
            resolved = _escape(str(base_dir / value))
            out.append(resolved if name is None else f"{_escape(name)}={resolved}")
        else:
            out.append(part)
    return ":".join(out)


def with_backlog(description: str, backlog: int = DEFAULT_BACKLOG) -> str:
    """A listening endpoint string with a connection backlog of ``backlog`` unless it names one.
    Twisted's default of 50 lets a burst of connects (a building's door controllers after a
    network outage) overflow the kernel's queue, and those clients wait seconds to retry."""
    parts = _split_endpoint(description.strip())
    if _unescape(parts[0]).lower() not in _BACKLOG_KINDS or any(_param(p)[0] == "backlog" for p in parts[1:]):
        return description
    return f"{description.strip()}:backlog={backlog}"


def check_config(config: Config, reactor: Any) -> dict[str, list[tuple[str, Any]]]:
    """Every listen string checked and parsed into an endpoint, before the database is opened.

    Returns ``{"http": [(description, endpoint), …], "sip2": […]}``; raises ConfigError naming
    the file and the key.
    """
    source = config.source
    if not config.http.listen and not config.sip2.listen:
        raise ConfigError(f"{source}: keys 'http.listen' and 'sip2.listen' are both empty; nothing to serve")
    parsed: dict[str, list[tuple[str, Any]]] = {}
    for section in ("http", "sip2"):
        settings = getattr(config, section)
        check_listen(settings.listen, f"{section}.listen", source, allow_plaintext=settings.allow_plaintext)
        parsed[section] = []
        for i, description in enumerate(settings.listen):
            resolved = with_backlog(resolve_endpoint(description, config.base_dir))
            try:
                endpoint = serverFromString(reactor, resolved)
            except Exception as exc:  # noqa: BLE001 - any parse or certificate problem: one line
                why = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
                raise ConfigError(
                    f"{source}: key '{section}.listen[{i}]' is not a usable endpoint string ({description}): {why:.200}"
                ) from None
            parsed[section].append((description, endpoint))
    return parsed
