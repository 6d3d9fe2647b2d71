"""What the command line and the daemon share: the register opened from the config, and `Failure`.

Both `gateway.cli` and `gateway.server` import this module, so the server never imports the
command line (imports run one way: cli → server → adapters → register). It is light: the database
layer loads only when a register is opened.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from gateway.config import Config

if TYPE_CHECKING:
    from gateway.register import Register


class Failure(Exception):
    """Anything but bad input that stops a command or the daemon: exit status 1."""


def open_configured_register(config: Config) -> Register:
    """The register the config names, checked to answer and to have the current schema.

    Raises:
        Failure: the database does not answer, or its schema is missing or old.
        gateway.register.crypto.KeysError: the keys file is missing or unusable.
    """
    from gateway.register import Settings, open_register
    from gateway.register.errors import RegisterUnavailable
    from gateway.register.schema import is_current

    register = open_register(
        config.database_url, config.keys_path,
        Settings(**dataclasses.asdict(config.register)),  # the config's register section, key for key
        pool_size=config.database.pool_size, connect_timeout=config.database.connect_timeout)
    try:
        current = is_current(register)
    except RegisterUnavailable as exc:
        register.engine.dispose()
        raise Failure(str(exc)) from None
    if not current:
        register.engine.dispose()
        raise Failure("the register's schema is missing or old; run `nlr init` first")
    return register


def open_register_for_serving(config: Config, *, offline_ok: bool) -> tuple[Register, bool]:
    """Like `open_configured_register`, for the daemon: ``(register, answers)``. With
    ``offline_ok`` (under systemd, and in a worker) a database that does not answer at start is
    served offline (``answers`` False) until it does, instead of failing the start.

    Raises:
        Failure: the schema is missing or old; or the database does not answer and not ``offline_ok``.
    """
    from gateway.register.errors import RegisterUnavailable

    if not offline_ok:
        return open_configured_register(config), True
    from gateway.register import Settings, open_register
    from gateway.register.schema import is_current

    register = open_register(
        config.database_url, config.keys_path, Settings(**dataclasses.asdict(config.register)),
        pool_size=config.database.pool_size, connect_timeout=config.database.connect_timeout)
    try:
        current = is_current(register)
    except RegisterUnavailable:
        return register, False
    if not current:
        register.engine.dispose()
        raise Failure("the register's schema is missing or old; run `nlr init` first")
    return register, True
