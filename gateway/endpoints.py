"""Listen strings: Twisted endpoint strings as the config gives them, and the plain-text rule.

Start-up checks every listen string before it touches the database: plain text (``tcp:``) only on
loopback unless the section says ``allow_plaintext`` (PRODUCT §2.12), judged on the endpoint a
``haproxy:`` prefix wraps; file names (TLS keys, unix sockets) relative to the config file's folder
(PRODUCT §4.1), a connection backlog of 1,024 unless the string names one, and that each string
parses into an endpoint. ``ssl:`` listeners speak TLS 1.2 and 1.3 only, TLS 1.2 with the ciphers of
``tls.ciphers`` (forward-secret AEAD suites by default). A ``haproxy:`` listener takes connections
only from the section's ``proxy_from`` networks: anyone else could claim any source address.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import resource
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from twisted.internet import interfaces, protocol
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import SSL4ServerEndpoint, serverFromString
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from twisted.protocols.haproxy._exceptions import InvalidProxyHeader
from twisted.protocols.haproxy._info import ProxyInfo
from twisted.protocols.haproxy._v1parser import V1Parser
from twisted.protocols.haproxy._v2parser import V2Parser
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from zope.interface import directlyProvides, implementer, providedBy

from gateway.config import Config, ConfigError
from gateway.quiet import Quiet

log = Logger(namespace="nlr")

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
    address = ip_address(host)
    if address is None:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def ip_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address in ``host`` (an IPv6 zone dropped, an IPv4-mapped one as IPv4); None if none."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_loopback(interface: str) -> bool:
    if interface.lower() == "localhost":
        return True
    address = ip_address(interface)
    return address is not None and address.is_loopback


def _unwrap_proxy(description: str) -> tuple[str, bool]:
    """``haproxy:INNER`` → (INNER, True); anything else → (itself, False)."""
    parts = _split_endpoint(description.strip())
    if len(parts) > 1 and _unescape(parts[0]).lower() == "haproxy":
        return ":".join(parts[1:]), True
    return description.strip(), False


def check_listen(descriptions: list[str], key: str, source: str = "config", *, allow_plaintext: bool = False) -> None:
    """Refuse plaintext TCP listeners that are reachable from other machines (PRODUCT §2.12); a
    ``haproxy:`` string is judged by the endpoint it wraps (the PROXY header is plain text too)."""
    if allow_plaintext:
        return
    section = key.split(".", 1)[0]
    for i, description in enumerate(descriptions):
        parts = _split_endpoint(_unwrap_proxy(description)[0])
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


# Descriptors the daemon needs besides its connections: the database pool, log and key files, the
# listening sockets, the reactor's and the thread pool's own.
RESERVED_DESCRIPTORS = 64

#: Places above each total connection cap (SIP2, HTTP) kept for the host itself: a connection from
#: 127.0.0.1 or ::1 (a local health check, the operator) is admitted while fewer than the cap plus
#: these are open. Only those two addresses: 127.0.0.2 and the rest of 127.0.0.0/8 are loopback too,
#: but nothing local uses them unless told to, so they are capped like any source.
LOOPBACK_RESERVE = 16
_RESERVED_HOSTS = {"127.0.0.1", "::1"}


def total_cap(host: str, cap: int) -> int:
    """The total connection cap a new connection from ``host`` meets: ``cap``, or for 127.0.0.1 and
    ::1 (an IPv4-mapped 127.0.0.1 too) ``cap`` + `LOOPBACK_RESERVE`. Per-source caps apply to all."""
    bare = host.split("%", 1)[0].lower()
    if bare.startswith("::ffff:"):
        bare = bare[len("::ffff:"):]
    return cap + LOOPBACK_RESERVE if bare in _RESERVED_HOSTS else cap


def fit_descriptor_limit(config: Config) -> Config:
    """The config with connection caps that fit the process's descriptor limit (RLIMIT_NOFILE).

    Every open connection holds a descriptor: the SIP2 and HTTP caps together, and what the daemon
    needs besides, must fit, or an attacker filling them leaves nothing for the logins and health
    checks the caps are there to protect. The soft limit is raised as far as the hard limit allows;
    if that is not enough, both caps are lowered in proportion, and a warning says so."""
    sip2, http = config.sip2, config.http
    http_cap = int(getattr(http, "max_connections", 0))  # the HTTP side's cap, where it has one
    reserve = RESERVED_DESCRIPTORS + 2 * config.database.pool_size + len(sip2.listen) + len(http.listen) \
        + 2 * LOOPBACK_RESERVE
    wanted = sip2.max_connections + http_cap + reserve
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    unlimited = resource.RLIM_INFINITY
    if soft != unlimited and soft < wanted:
        target = wanted if hard == unlimited else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == unlimited or soft >= wanted:
        return config
    room = max(2, soft - reserve)
    sip2_cap = max(1, room * sip2.max_connections // (sip2.max_connections + http_cap))
    sip2_new = dataclasses.replace(sip2, max_connections=sip2_cap,
                                   max_connections_per_source=min(sip2.max_connections_per_source, sip2_cap))
    changes: dict[str, Any] = {"sip2": sip2_new}
    text = f"sip2.max_connections {sip2.max_connections} → {sip2_cap}"
    if http_cap:
        http_new_cap = max(1, room - sip2_cap)
        per_source = int(getattr(http, "max_connections_per_source", http_new_cap))
        changes["http"] = dataclasses.replace(http, max_connections=http_new_cap,
                                              max_connections_per_source=min(per_source, http_new_cap))
        text += f", http.max_connections {http_cap} → {http_new_cap}"
    log.warn("the descriptor limit (RLIMIT_NOFILE {soft}, hard {hard}) is below the connection caps and "
             "{reserve} for the daemon's own use: lowered {text}; raise LimitNOFILE (systemd) or ulimit -n "
             "to at least {wanted}", soft=soft, hard=hard, reserve=reserve, text=text, wanted=wanted)
    return dataclasses.replace(config, **changes)


def parse_networks(cidrs: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(c.strip(), strict=False) for c in cidrs]  # validated by the config


def in_networks(host: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    address = ip_address(host)
    return address is not None and any(address in network for network in networks)


class _OnlyFrom(protocol.Factory):
    """A listener's factory that takes connections only from ``networks``: anything else is closed
    before a byte is read (``buildProtocol`` answers None). Refusals are logged at most once per
    10 s, with a count."""

    def __init__(self, wrapped: interfaces.IProtocolFactory, networks: list[Any], key: str, reactor: Any) -> None:
        self.wrapped, self.networks, self.key = wrapped, networks, key
        self.refusals = Quiet(reactor.seconds)

    def doStart(self) -> None:
        self.wrapped.doStart()

    def doStop(self) -> None:
        self.wrapped.doStop()

    def buildProtocol(self, addr: Any) -> Any:  # the wrapped factory's protocol, or None: refused
        host = str(getattr(addr, "host", ""))
        if in_networks(host, self.networks):
            return self.wrapped.buildProtocol(addr)
        allowed, held = self.refusals.allow()
        if allowed:
            log.warn("refused a connection from {host} to a PROXY protocol listener: not in {key}{more}",
                     host=host, key=self.key, more=f" ({held} more since the last such line)" if held else "")
        return None


#: Seconds a connection to a ``haproxy:`` listener has to send its whole PROXY header.
PROXY_HEADER_TIMEOUT = 5.0


class _ProxyHeaderFirst(ProtocolWrapper):
    """A connection to a ``haproxy:`` listener: the PROXY header (v1 or v2) is read before the
    listener's own protocol exists. That protocol is then built (``buildProtocol``) and connected
    (``makeConnection``) with the source the header names as its peer, so per-source caps, the
    throttle and ``allowed_networks`` judge the client from its first moment; Twisted's own wrapper
    connects it before the header, when ``getPeer()`` still names the proxy.

    Until its header is complete a connection counts against the listener's total cap (as the
    proxy's) and has `PROXY_HEADER_TIMEOUT` seconds; then it is closed. A header that does not parse
    closes it too."""

    factory: _ProxyHeaderFactory

    def __init__(self, factory: _ProxyHeaderFactory) -> None:
        super().__init__(factory, None)  # type: ignore[arg-type]  # built once the header is read
        self._info: ProxyInfo | None = None
        self._parser: V1Parser | V2Parser | None = None
        self._held = False  # counted against the total cap while the header is awaited
        self._deadline: Any = None

    def logPrefix(self) -> str:
        return "PROXY"

    def makeConnection(self, transport: Any) -> None:
        directlyProvides(self, providedBy(transport))
        protocol.Protocol.makeConnection(self, transport)  # connectionMade: not the wrapped one's yet
        self.factory.registerProtocol(self)

    def connectionMade(self) -> None:
        host = str(getattr(self.transport.getPeer(), "host", ""))  # type: ignore[union-attr]
        if not self.factory.hold(host):
            self.transport.abortConnection()  # type: ignore[union-attr]  # ITCPTransport
            return
        self._held = True
        self._deadline = self.factory.reactor.callLater(PROXY_HEADER_TIMEOUT, self._too_slow)

    def _too_slow(self) -> None:
        self._deadline = None
        self.factory.note_slow(str(getattr(self.transport.getPeer(), "host", "")))  # type: ignore[union-attr]
        self.transport.abortConnection()  # type: ignore[union-attr]

    def _unhold(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        if self._held:
            self._held = False
            self.factory.unhold()

    def dataReceived(self, data: bytes) -> None:
        if self.wrappedProtocol is not None:
            self.wrappedProtocol.dataReceived(data)
            return
        if self._info is not None or self.disconnecting:
            return
        if self._parser is None:
            if len(data) >= 16 and data[:12] == V2Parser.PREFIX and ord(data[12:13]) & 0xF0 == 0x20:
                self._parser = V2Parser()
            elif len(data) >= 8 and data[:5] == V1Parser.PROXYSTR:
                self._parser = V1Parser()
            else:
                self.loseConnection()
                return
        try:
            info, remaining = self._parser.feed(data)
        except InvalidProxyHeader:
            self.loseConnection()
            return
        if info is None:
            return
        self._info = info
        self._unhold()
        inner = self.factory.wrappedFactory.buildProtocol(self.getPeer())
        if inner is None:
            self.loseConnection()
            return
        self.wrappedProtocol = inner
        inner.makeConnection(self)
        if remaining and self.wrappedProtocol is not None and not self.disconnecting:
            inner.dataReceived(remaining)

    def getPeer(self) -> interfaces.IAddress:
        if self._info is not None and self._info.source:
            return self._info.source
        return self.transport.getPeer()  # type: ignore[union-attr]

    def getHost(self) -> interfaces.IAddress:
        if self._info is not None and self._info.destination:
            return self._info.destination
        return self.transport.getHost()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self._unhold()
        self.factory.unregisterProtocol(self)
        if self.wrappedProtocol is not None:
            self.wrappedProtocol.connectionLost(reason)
            self.wrappedProtocol = None  # type: ignore[assignment]


class _ProxyHeaderFactory(WrappingFactory):
    """The factory of `_ProxyHeaderFirst`. A wrapped factory with ``hold(host) -> bool`` and
    ``unhold()`` counts the connections still awaiting their header against its total cap."""

    protocol = _ProxyHeaderFirst

    def logPrefix(self) -> str:
        wrapped = self.wrappedFactory
        name = wrapped.logPrefix() if interfaces.ILoggingContext.providedBy(wrapped) else type(wrapped).__name__
        return f"{name} (PROXY)"

    def __init__(self, wrapped: interfaces.IProtocolFactory, reactor: Any) -> None:
        super().__init__(wrapped)
        self.reactor = reactor
        self.slow = Quiet(reactor.seconds)

    def buildProtocol(self, addr: Any) -> _ProxyHeaderFirst:
        return _ProxyHeaderFirst(self)

    def hold(self, host: str) -> bool:
        hold = getattr(self.wrappedFactory, "hold", None)
        return True if hold is None else bool(hold(host))

    def unhold(self) -> None:
        unhold = getattr(self.wrappedFactory, "unhold", None)
        if unhold is not None:
            unhold()

    def note_slow(self, host: str) -> None:
        allowed, held = self.slow.allow()
        if allowed:
            log.warn("closed a connection from {host}: no complete PROXY header within {s:.0f} s{more}", host=host,
                     s=PROXY_HEADER_TIMEOUT, more=f" ({held} more since the last such line)" if held else "")


@implementer(interfaces.IStreamServerEndpoint)
class _OnlyFromEndpoint:
    """A ``haproxy:`` listener: connections only from ``networks`` (`_OnlyFrom`), each read for
    its PROXY header first (`_ProxyHeaderFirst`)."""

    def __init__(self, inner: Any, networks: list[Any], key: str, reactor: Any) -> None:
        self.inner, self.networks, self.key, self.reactor = inner, networks, key, reactor

    def listen(self, factory: interfaces.IProtocolFactory) -> Deferred[Any]:
        proxied = _ProxyHeaderFactory(factory, self.reactor)
        result: Deferred[Any] = self.inner.listen(_OnlyFrom(proxied, self.networks, self.key, self.reactor))
        return result


def _endpoint_params(description: str) -> tuple[list[str], dict[str, str]]:
    """An endpoint string's positional arguments and ``key=value`` parameters, unescaped."""
    args: list[str] = []
    kw: dict[str, str] = {}
    for part in _split_endpoint(description)[1:]:
        name, raw = _param(part)
        if name is None:
            args.append(_unescape(raw))
        else:
            kw[name] = _unescape(raw)
    return args, kw


@implementer(IOpenSSLServerConnectionCreator, interfaces.IOpenSSLContextFactory)
class TLSOptions:
    """A TLS listener's certificate, key and settings: TLS 1.2 as the lowest version, ``ciphers``
    as the TLS 1.2 cipher list. `reload` reads the files again (SIGHUP): new connections get the
    new certificate, connections already open keep the one they began with."""

    def __init__(self, params: dict[str, str], ciphers: str) -> None:
        self.params, self.ciphers = params, ciphers
        self.options = self._load()

    def _load(self) -> Any:
        from twisted.internet import ssl

        kw = self.params
        private_key = kw["privateKey"]
        cert_pem = FilePath(kw.get("certKey", private_key)).getContent()
        pair = ssl.PrivateCertificate.loadPEM(cert_pem + b"\n" + FilePath(private_key).getContent())
        chain = None
        if "extraCertChain" in kw:
            text = FilePath(kw["extraCertChain"]).getContent()
            chain = [ssl.Certificate.loadPEM(b"-----BEGIN CERTIFICATE-----" + block).original
                     for block in text.split(b"-----BEGIN CERTIFICATE-----")[1:]]
        dh = ssl.DiffieHellmanParameters.fromFile(FilePath(kw["dhParameters"])) if "dhParameters" in kw else None
        options = ssl.CertificateOptions(
            privateKey=pair.privateKey.original, certificate=pair.original, extraCertChain=chain, dhParameters=dh,
            raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
            acceptableCiphers=ssl.AcceptableCiphers.fromOpenSSLCipherString(self.ciphers))
        options.getContext()  # a key that does not match its certificate fails here, not at the first client
        return options

    def reload(self) -> None:
        """Read the certificate and key files again; on any error the old ones stay (and it raises)."""
        self.options = self._load()

    def getContext(self) -> Any:
        return self.options.getContext()

    def serverConnectionForTLS(self, tls_protocol: Any) -> Any:
        from OpenSSL import SSL

        return SSL.Connection(self.options.getContext(), None)


def _tls_endpoint(reactor: Any, description: str, ciphers: str) -> SSL4ServerEndpoint:
    """The ``ssl:`` endpoint of ``description`` (already parsed once by Twisted, so well-formed),
    with reloadable `TLSOptions`."""
    args, kw = _endpoint_params(description)
    port = int(kw.get("port", args[0] if args else "0"))
    kw.setdefault("privateKey", args[1] if len(args) > 1 else "server.pem")
    endpoint = SSL4ServerEndpoint(reactor, port, TLSOptions(kw, ciphers),
                                  backlog=int(kw.get("backlog", DEFAULT_BACKLOG)), interface=kw.get("interface", ""))
    return endpoint


def tls_options(endpoint: Any) -> TLSOptions | None:
    """The `TLSOptions` of a parsed listener (through a ``haproxy:`` wrapper), or None for plain text."""
    while endpoint is not None:
        for attribute in ("tls", "_sslContextFactory"):
            found = getattr(endpoint, attribute, None)
            if isinstance(found, TLSOptions):
                return found
        endpoint = getattr(endpoint, "inner", None)
    return None


@implementer(interfaces.IStreamServerEndpoint)
class AdoptedEndpoint:
    """A listener on a socket someone else bound: systemd (a ``systemd:`` string) or the
    supervisor of the workers (`gateway.supervisor`). `listen` adopts it
    (``adoptStreamPort``, which takes a copy, so the original is closed) and wraps it in TLS when
    ``tls`` is given."""

    def __init__(self, reactor: Any, fd: int, family: int, tls: TLSOptions | None = None) -> None:
        self.reactor, self.fd, self.family, self.tls = reactor, fd, family, tls

    def listen(self, factory: interfaces.IProtocolFactory) -> Deferred[Any]:
        from twisted.internet import defer
        from twisted.protocols.tls import TLSMemoryBIOFactory

        if self.tls is not None:
            factory = TLSMemoryBIOFactory(self.tls, False, factory)
        try:
            # Shared with other processes (the other workers, systemd): accept() must never wait, for
            # another process may take the connection a readable socket announced.
            os.set_blocking(self.fd, False)
            port = self.reactor.adoptStreamPort(self.fd, self.family, factory)
        except Exception:  # noqa: BLE001 - the caller says it in one line
            return defer.fail()
        if self.tls is not None:
            port._type = "TLS"
        try:
            os.close(self.fd)
        except OSError:
            pass
        return defer.succeed(port)


def listen_kind(description: str, base_dir: Path) -> tuple[str, str, bool]:
    """``(kind, resolved inner string, proxied)`` of a listen string: ``tcp``, ``ssl``, ``systemd``, …"""
    inner, proxied = _unwrap_proxy(description)
    resolved = with_backlog(resolve_endpoint(inner, base_dir))
    return _unescape(_split_endpoint(resolved)[0]).lower(), resolved, proxied


def bind_address(resolved: str) -> tuple[int, Any, int]:
    """``(family, address, backlog)`` to bind for a ``tcp:``, ``tcp6:``, ``ssl:`` or ``unix:`` string
    (the supervisor binds each listener once for all its workers)."""
    import socket

    kind = _unescape(_split_endpoint(resolved)[0]).lower()
    args, kw = _endpoint_params(resolved)
    backlog = int(kw.get("backlog", DEFAULT_BACKLOG))
    if kind == "unix":
        return socket.AF_UNIX, kw.get("address", args[0] if args else ""), backlog
    port = int(kw.get("port", args[0] if args else "0"))
    interface = kw.get("interface", "::" if kind == "tcp6" else "")
    address = ip_address(interface) if interface else None
    family = socket.AF_INET6 if kind == "tcp6" or isinstance(address, ipaddress.IPv6Address) else socket.AF_INET
    return family, (interface or "0.0.0.0", port), backlog


def _adopted_plaintext_rule(fd: int, key: str, description: str, source: str, section: str) -> None:
    """A plain-text adopted socket must be bound to loopback (or a unix socket), as a ``tcp:`` string."""
    import socket

    with socket.socket(fileno=os.dup(fd)) as sock:
        family, bound = sock.family, sock.getsockname()
    if family == socket.AF_UNIX:
        return
    host, port = bound[0], bound[1]
    if not _is_loopback(host):
        raise ConfigError(
            f"{source}: key '{key}' is a plain-text socket bound to {host or 'every interface'} port {port} "
            f"({description}); give it privateKey= and certKey= for TLS, bind it to 127.0.0.1 in the socket "
            f"unit, or set {section}.allow_plaintext: true (e.g. for a VPN-only interface)")


def _systemd_fd(resolved: str, fds: dict[str, list[int]], key: str, description: str, source: str) -> int:
    """The descriptor a ``systemd:domain=INET:name=NAME`` string names (``index=N``: the N-th of
    that name, or of all when no name is given)."""
    _, kw = _endpoint_params(resolved)
    domain = kw.get("domain", "INET").upper()
    if domain not in ("INET", "INET6", "UNIX"):
        raise ConfigError(f"{source}: key '{key}' has domain={domain} ({description}); use INET, INET6 or UNIX")
    try:
        index = int(kw.get("index", "0"))
    except ValueError:
        raise ConfigError(f"{source}: key '{key}' has an index that is not a number ({description})") from None
    name = kw.get("name")
    candidates = fds.get(name, []) if name is not None else sorted(fd for group in fds.values() for fd in group)
    if not 0 <= index < len(candidates):
        given = ", ".join(f"{n} ({len(v)})" for n, v in fds.items()) or "none"
        raise ConfigError(f"{source}: key '{key}' names a socket systemd did not pass ({description}); passed: "
                          f"{given}; check FileDescriptorName= in the socket unit and Sockets= in the service")
    return candidates[index]


def _adopted(reactor: Any, fd: int, resolved: str, kind: str, ciphers: str) -> AdoptedEndpoint:
    import socket

    with socket.socket(fileno=os.dup(fd)) as sock:
        family = sock.family
    args, kw = _endpoint_params(resolved)
    if kind == "ssl":
        kw.setdefault("privateKey", args[1] if len(args) > 1 else "server.pem")
    tls = TLSOptions(kw, ciphers) if kind == "ssl" or "privateKey" in kw else None
    return AdoptedEndpoint(reactor, fd, family, tls)


def check_config(config: Config, reactor: Any, adopted: Mapping[str, int] | None = None,
                 ) -> dict[str, list[tuple[str, Any]]]:
    """Every listen string checked and parsed into an endpoint, before the database is opened.

    ``adopted`` maps a listen key (``sip2.listen[0]``) to the descriptor of a socket bound for it
    already (a worker's, from its supervisor); ``systemd:`` strings take theirs from systemd
    (``$LISTEN_FDS``). Either is adopted, not bound again, and a plain-text one must be bound to
    loopback (judged by its address) unless the section allows plain text.

    Returns ``{"http": [(description, endpoint), …], "sip2": […]}``; raises ConfigError naming
    the file and the key.
    """
    from gateway.systemd import listen_fds

    adopted = adopted or {}
    systemd_fds: dict[str, list[int]] | None = None
    source = config.source
    if not config.http.listen and not config.sip2.listen:
        raise ConfigError(f"{source}: keys 'http.listen' and 'sip2.listen' are both empty; nothing to serve")
    parsed: dict[str, list[tuple[str, Any]]] = {}
    for section in ("http", "sip2"):
        settings = getattr(config, section)
        check_listen(settings.listen, f"{section}.listen", source, allow_plaintext=settings.allow_plaintext)
        parsed[section] = []
        for i, description in enumerate(settings.listen):
            key = f"{section}.listen[{i}]"
            inner, proxied = _unwrap_proxy(description)
            if proxied and not settings.proxy_from:
                raise ConfigError(f"{source}: key '{key}' takes the PROXY protocol ({description}) but "
                                  f"'{section}.proxy_from' is empty; list the proxy's addresses (CIDR) there")
            resolved = with_backlog(resolve_endpoint(inner, config.base_dir))
            kind = _unescape(_split_endpoint(resolved)[0]).lower()
            if kind == "ssl" and any(_param(p)[0] == "sslmethod" for p in _split_endpoint(resolved)[1:]):
                raise ConfigError(f"{source}: key '{key}' sets sslmethod ({description}); leave it out: "
                                  "ssl: listeners speak TLS 1.2 and 1.3, with the ciphers of tls.ciphers")
            fd = adopted.get(key)
            if fd is None and kind == "systemd":
                systemd_fds = listen_fds() if systemd_fds is None else systemd_fds
                fd = _systemd_fd(resolved, systemd_fds, key, description, source)
                if "privateKey" not in _endpoint_params(resolved)[1] and not settings.allow_plaintext:
                    _adopted_plaintext_rule(fd, key, description, source, section)
            try:
                endpoint: Any
                if fd is not None:
                    endpoint = _adopted(reactor, fd, resolved, kind, config.tls.ciphers)
                else:
                    endpoint = serverFromString(reactor, resolved)
                if kind == "ssl" and fd is None:
                    endpoint = _tls_endpoint(reactor, resolved, config.tls.ciphers)
            except Exception as exc:  # noqa: BLE001 - any parse or certificate problem: one line
                why = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
                raise ConfigError(
                    f"{source}: key '{key}' is not a usable endpoint string ({description}): {why:.200}"
                ) from None
            if proxied:
                endpoint = _OnlyFromEndpoint(endpoint, parse_networks(settings.proxy_from),
                                             f"{section}.proxy_from", reactor)
            parsed[section].append((description, endpoint))
    return parsed
