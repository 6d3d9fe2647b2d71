"""The register: the domain of the NLR gateway, and the only code that touches SQLAlchemy.

``Register``, ``Settings`` and ``open_register`` load SQLAlchemy on first use (PEP 562), so light
modules such as ``gateway.register.views`` and ``identifiers`` can be imported on their own: the
`nlr` command answers ``--help`` and usage errors without paying for the database layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.register.register import Register
    from gateway.register.settings import Settings


def open_register(
    database_url: str, keys_path: Path, settings: Settings, *, create_keys: bool = False,
    pool_size: int = 5, connect_timeout: int = 5,
) -> Register:
    """A Register on the given database with the keys file (created first when ``create_keys``)."""
    from gateway.register.crypto import KeyRing
    from gateway.register.database import make_engine
    from gateway.register.register import Register

    keys = KeyRing.load_or_create(keys_path)[0] if create_keys else KeyRing.load(keys_path)
    engine = make_engine(database_url, pool_size=pool_size, connect_timeout=connect_timeout)
    return Register(engine, keys, settings)


def __getattr__(name: str) -> Any:
    if name == "Register":
        from gateway.register.register import Register

        return Register
    if name == "Settings":
        from gateway.register.settings import Settings

        return Settings
    raise AttributeError(f"module 'gateway.register' has no attribute {name!r}")


__all__ = ["Register", "Settings", "open_register"]
