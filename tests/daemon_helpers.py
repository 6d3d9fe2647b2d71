"""`nlr serve` in a subprocess, for the black-box tests: free ports, a config file, the daemon
polled on /healthz and stopped with a signal (no traceback anywhere)."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NLR_CONFIG", "NLR_DEBUG")}
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def write_config(path: Path, database_url: str, keys: Path | str, *, http: list[str], sip2: list[str] | None = None,
                 extra: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"database:\n  url: {json.dumps(database_url)}\n  connect_timeout: 2\n"
        f"keys_file: {json.dumps(str(keys))}\n"
        "register:\n  allow_synthetic_ids: true\n  pin_hash_cost: 10\n"
        f"sip2:\n  listen: {json.dumps(sip2 or [])}\n"
        f"http:\n  listen: {json.dumps(http)}\n" + extra,
        encoding="utf-8",
    )
    return path


def get(url: str, timeout: float = 10.0, context: ssl.SSLContext | None = None) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


class Daemon:
    """`nlr --config FILE serve` in the background; its output goes to a file (it logs every request)."""

    def __init__(self, config: Path, cwd: Path) -> None:
        self.log = cwd / f"serve-{time.monotonic_ns()}.log"
        self.err = self.log.with_suffix(".err")
        with self.log.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "--config", str(config), "serve"],
                                         stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=cwd, env=_env())

    def output(self) -> str:
        out, err = self.log.read_text(errors="replace")[-3000:], self.err.read_text(errors="replace")
        return f"stdout:\n{out}\nstderr:\n{err}"

    def health(self, base: str, want: int, timeout: float = 20.0,
               context: ssl.SSLContext | None = None) -> dict[str, Any]:
        """Poll GET /healthz until it answers ``want``; returns the JSON body."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the daemon exited with {self.proc.returncode}\n{self.output()}"
            try:
                status, body = get(f"{base}/healthz", timeout=5, context=context)
                last = (status, body)
                if status == want:
                    return json.loads(body)
            except OSError as exc:
                last = exc
            time.sleep(0.1)
        raise AssertionError(f"/healthz never answered {want} within {timeout} s (last: {last!r})\n{self.output()}")

    def stop(self, sig: int | None = signal.SIGTERM, within: float = 10.0) -> int:
        """Send ``sig`` (None: it was sent already) and wait for the exit; no traceback anywhere."""
        started = time.monotonic()
        if sig is not None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the daemon did not stop within {within} s of {sig!r}\n{self.output()}") from None
        assert time.monotonic() - started < within
        assert "Traceback" not in self.err.read_text(errors="replace"), self.output()
        assert "Traceback" not in self.log.read_text(errors="replace"), self.output()
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start(daemons: list[Daemon], config: Path, cwd: Path) -> Daemon:
    daemon = Daemon(config, cwd)
    daemons.append(daemon)
    return daemon


def run_serve(config: Path, cwd: Path) -> subprocess.Popen[str]:
    """`nlr serve` expected to stop at once (a refusal): output captured."""
    return subprocess.Popen([sys.executable, "-m", "gateway.cli", "--config", str(config), "serve"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=cwd, env=_env())


def self_signed(folder: Path, *, rsa: bool = False) -> None:
    """key.pem and cert.pem for "localhost" in ``folder``: EC P-256, or RSA 2048 (a static-RSA
    suite needs an RSA key to be offered at all)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa as rsa_keys
    from cryptography.x509.oid import NameOID

    key = (rsa_keys.generate_private_key(public_exponent=65537, key_size=2048) if rsa
           else ec.generate_private_key(ec.SECP256R1()))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
