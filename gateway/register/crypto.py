"""Encryption of national identity numbers, keyed lookup hashes, and slow secret hashes.

* National identity numbers are encrypted with AES-256-GCM. Every ciphertext starts with a format
  byte and the id of the key that sealed it, so keys can rotate while old rows stay readable.
* Lookups go through an HMAC-SHA-256 of the number under a secret lookup key (never a plain hash:
  an 11-digit number with check digits is brute-forced in seconds).
* PINs and terminal passwords are hashed with scrypt; the cost parameters are stored with every
  hash so they can be raised later without invalidating old hashes.
* API tokens are 256-bit random strings, so a SHA-256 of them is enough to store and look up.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import struct
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

_FORMAT = 1
_HEADER = struct.Struct(">BH")  # format byte, key id
_NONCE_BYTES = 12
_AAD = b"nlr:national_id"


class KeysError(Exception):
    """The keys file is missing, unreadable or does not hold what a ciphertext needs."""


@dataclass(frozen=True)
class _Key:
    id: int
    secret: bytes
    created: str


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str, path: Path) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        raise KeysError(f"{path}: {what} is not valid base64") from None
    if len(raw) != 32:
        raise KeysError(f"{path}: {what} must be 32 bytes")
    return raw


class KeyRing:
    """The register's keys, read from the keys file (YAML, mode 0600).

    A rotation by another process on the host (``nlr keys rotate``) is seen within
    ``RECHECK_SECONDS``: before sealing a value the ring looks at the file's identity at most that
    often and reads it again when it changed, so new values are sealed with the newest key. A
    ciphertext under a key the ring does not know makes it read the file at once.
    """

    RECHECK_SECONDS = 1.0

    def __init__(self, path: Path, keys: dict[int, _Key], active: int, lookup_key: bytes) -> None:
        self.path = path
        self._keys = keys
        self._active = active
        self._lookup_key = lookup_key
        self._lock = threading.Lock()
        self._stamp = self._file_stamp()
        self._checked = time.monotonic()

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _follow_file(self) -> None:
        """Read the keys file again if another process changed it (at most once a RECHECK_SECONDS)."""
        now = time.monotonic()
        if now - self._checked < self.RECHECK_SECONDS:
            return
        self._checked = now
        if self._file_stamp() != self._stamp:
            try:
                self.reload()
            except KeysError:
                pass  # half-written or unreadable just now: keep the keys we have, look again later

    # -- files -------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path) -> KeyRing:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise KeysError(f"{path}: keys file not found (run `nlr init` to create it)") from None
        except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
            raise KeysError(f"{path}: keys file cannot be read ({exc.__class__.__name__})") from None
        try:
            keys = {
                int(k["id"]): _Key(int(k["id"]), _unb64(k["key"], f"key {k['id']}", path), str(k.get("created", "")))
                for k in raw["national_id_keys"]
            }
            active = int(raw["active_key"])
            lookup_key = _unb64(raw["lookup_key"], "lookup_key", path)
        except (KeyError, TypeError, ValueError):
            raise KeysError(f"{path}: keys file is damaged "
                            "(expected national_id_keys, active_key, lookup_key)") from None
        if active not in keys:
            raise KeysError(f"{path}: active_key {active} is not among national_id_keys")
        return cls(path, keys, active, lookup_key)

    @classmethod
    def create(cls, path: Path) -> KeyRing:
        """Create a new keys file; refuses to overwrite an existing one."""
        now = datetime.now(UTC).isoformat(timespec="seconds")
        ring = cls(path, {1: _Key(1, AESGCM.generate_key(256), now)}, 1, secrets.token_bytes(32))
        ring._write(exclusive=True)
        return ring

    @classmethod
    def load_or_create(cls, path: Path) -> tuple[KeyRing, bool]:
        if path.exists():
            return cls.load(path), False
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls.create(path), True

    def _document(self) -> dict[str, object]:
        return {
            "active_key": self._active,
            "national_id_keys": [
                {"id": k.id, "key": _b64(k.secret), "created": k.created}
                for k in sorted(self._keys.values(), key=lambda k: k.id)
            ],
            "lookup_key": _b64(self._lookup_key),
        }

    def _write(self, *, exclusive: bool = False) -> None:
        text = (
            "# NLR register keys: keep secret, keep a backup. Losing this file loses every national id.\n"
            + yaml.safe_dump(self._document(), sort_keys=False)
        )
        if exclusive:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.fchmod(fd, 0o600)  # exactly 0600, whatever the umask took from it
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            return
        fd, tmp = tempfile.mkstemp(prefix=".keys-", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def add_key(self) -> int:
        """Add a new encryption key, make it the active one, and save the file."""
        with self._lock:
            new_id = max(self._keys) + 1
            if new_id > 0xFFFF:
                raise KeysError(f"{self.path}: no more key ids")
            now = datetime.now(UTC).isoformat(timespec="seconds")
            self._keys[new_id] = _Key(new_id, AESGCM.generate_key(256), now)
            self._active = new_id
            self._write()
            self._stamp = self._file_stamp()
            return new_id

    def reload(self) -> None:
        fresh = KeyRing.load(self.path)
        with self._lock:
            self._keys, self._active, self._lookup_key = fresh._keys, fresh._active, fresh._lookup_key
            self._stamp = fresh._stamp

    @property
    def active_key_id(self) -> int:
        return self._active

    # -- national ids --------------------------------------------------------------------------
    def encrypt(self, plaintext: str) -> bytes:
        self._follow_file()
        key = self._keys[self._active]
        nonce = os.urandom(_NONCE_BYTES)
        header = _HEADER.pack(_FORMAT, key.id)
        return header + nonce + AESGCM(key.secret).encrypt(nonce, plaintext.encode("utf-8"), _AAD + header)

    @staticmethod
    def key_id_of(ciphertext: bytes) -> int:
        key_id: int = _HEADER.unpack_from(ciphertext)[1]
        return key_id

    def decrypt(self, ciphertext: bytes) -> str:
        fmt, key_id = _HEADER.unpack_from(ciphertext)
        if fmt != _FORMAT:
            raise KeysError("unknown ciphertext format")
        key = self._keys.get(key_id)
        if key is None:
            # Another process may have rotated: read the file again once.
            self.reload()
            key = self._keys.get(key_id)
            if key is None:
                raise KeysError(f"{self.path}: key {key_id} needed to read a national id is missing")
        header = ciphertext[: _HEADER.size]
        nonce = ciphertext[_HEADER.size : _HEADER.size + _NONCE_BYTES]
        try:
            plain = AESGCM(key.secret).decrypt(nonce, ciphertext[_HEADER.size + _NONCE_BYTES :], _AAD + header)
        except InvalidTag:
            raise KeysError(f"{self.path}: a national id does not decrypt with key {key_id}") from None
        return plain.decode("utf-8")

    def lookup_hash(self, plaintext: str) -> str:
        """The keyed index value of a national id (hex HMAC-SHA-256)."""
        return hmac.new(self._lookup_key, plaintext.encode("utf-8"), hashlib.sha256).hexdigest()


# -- slow secret hashes (PINs, terminal passwords) ---------------------------------------------

def hash_secret(secret: str, cost: int = 14) -> str:
    """Hash a PIN or password with scrypt; the result carries its parameters: ``scrypt$ln,r,p$salt$hash``."""
    salt = os.urandom(16)
    digest = Scrypt(salt=salt, length=32, n=1 << cost, r=8, p=1).derive(secret.encode("utf-8"))
    return f"scrypt${cost},8,1${_b64(salt)}${_b64(digest)}"


def verify_secret(secret: str, stored: str | None) -> bool:
    """Check a secret against a stored hash in constant time; False for a missing or damaged hash."""
    if not stored:
        return False
    try:
        scheme, params, salt_b64, digest_b64 = stored.split("$")
        ln, r, p = (int(x) for x in params.split(","))
        salt, digest = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
    except ValueError:
        return False
    # A damaged hash (short digest or salt, absurd cost) must never accept a secret.
    if (scheme != "scrypt" or not 1 <= ln <= 22 or len(digest) != 32 or len(salt) < 16
            or not (1 <= r <= 32 and 1 <= p <= 16)):
        return False
    candidate = Scrypt(salt=salt, length=len(digest), n=1 << ln, r=r, p=p).derive(secret.encode("utf-8"))
    return hmac.compare_digest(candidate, digest)


def needs_rehash(stored: str, cost: int) -> bool:
    try:
        return int(stored.split("$")[1].split(",")[0]) < cost
    except (IndexError, ValueError):
        return True


# -- API tokens --------------------------------------------------------------------------------

def new_token() -> str:
    return "nlr_" + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
