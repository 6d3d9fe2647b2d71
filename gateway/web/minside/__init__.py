"""Min side: the patron's own page under ``/min-side/`` (issue 10).

A thin HTTP adapter over the register's self-service use cases (`gateway.register.self_service`):
bytes → a bounded form → one register call through the daemon's pool → a Jinja2 template → bytes.
Policy (who may log in, what is masked, the PIN lockout, session lifetimes) lives in the register;
this package decides only what the page says, in which language, and the web's own defences
(cookies, the CSRF token and ``Origin`` check, security headers, the per-source login throttle).
"""

from __future__ import annotations

from gateway.web.minside.resource import MinSide

__all__ = ["MinSide"]
