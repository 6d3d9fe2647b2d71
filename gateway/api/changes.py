"""``GET /api/v1/changes``: the query string read, one register call, the answer as JSON bytes.

No Twisted here: `parse_query` runs on the reactor thread (a few microseconds, bounded by
`MAX_QUERY_BYTES`), `answer` in the daemon's pool of register calls. The register decides who may
read what; this module only translates the request, the page and the refusals (issue 12, item 1).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from gateway.register import Register
from gateway.register.errors import InvalidInput, NotFound, PermissionDenied, RegisterError, RegisterUnavailable

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_QUERY_BYTES = 2048  # a real query is ``after=<cursor>&limit=1000``: well under this
MAX_CURSOR = 256  # characters; the register's cursors are far shorter (openapi.json says the same)
MAX_TOKEN = 200  # characters; longer is no token the register issued (as NCIP: gateway.ncip.responder)
PARAMETERS = ("after", "limit")
_LIMIT_RE = re.compile(r"[0-9]{1,4}")
_LIMIT_RULE = f"limit must be a whole number from 1 to {MAX_LIMIT}"

UNAUTHENTICATED = "an API client's bearer token is needed: Authorization: Bearer <token>"
UNKNOWN_TOKEN = "unknown or disabled client token"


class BadQuery(ValueError):
    """A query string refused before the register is asked (400); the message is safe to show."""


@dataclass(frozen=True)
class Query:
    after: str | None
    limit: int


@dataclass(frozen=True)
class Answer:
    """The HTTP answer, and what the request's log line may say (never a token or a cursor)."""

    status: int
    body: bytes
    client: str | None = None  # None: no client credential accepted
    library: str | None = None
    reason: str | None = None  # the register's refusal code


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}, ensure_ascii=False).encode("utf-8")


def parse_query(raw: bytes) -> Query:
    """``after`` and ``limit`` from the raw query string (``a=1&b=2``, %XX escapes, ``+`` as space).

    Raises BadQuery: the query is over `MAX_QUERY_BYTES`, not UTF-8 once unescaped, names another
    parameter or one twice, or ``limit`` is not a whole number from 1 to `MAX_LIMIT` or ``after``
    is empty or over `MAX_CURSOR` characters. Whether a cursor is one is the register's to say.
    """
    if len(raw) > MAX_QUERY_BYTES:
        raise BadQuery(f"the query string is longer than {MAX_QUERY_BYTES} bytes")
    seen: dict[str, str] = {}
    for field in raw.split(b"&"):
        if not field:
            continue
        name_raw, _, value_raw = field.partition(b"=")
        try:
            name = urllib.parse.unquote_to_bytes(name_raw.replace(b"+", b" ")).decode("utf-8")
            value = urllib.parse.unquote_to_bytes(value_raw.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            raise BadQuery("the query string is not UTF-8") from None
        if name not in PARAMETERS:
            shown = name[:40].encode("unicode_escape").decode("ascii")
            raise BadQuery(f"unknown query parameter {shown!r}; this endpoint takes after and limit")
        if name in seen:
            raise BadQuery(f"{name} given more than once")
        seen[name] = value
    after = seen.get("after")
    if after is not None and not after:
        raise BadQuery("after is empty: give the next of an earlier answer, or leave after out to start "
                       "from the beginning")
    if after is not None and len(after) > MAX_CURSOR:
        raise BadQuery("after is not a cursor of this feed")
    limit_text = seen.get("limit")
    if limit_text is None:
        return Query(after, DEFAULT_LIMIT)
    if not _LIMIT_RE.fullmatch(limit_text) or not 1 <= int(limit_text) <= MAX_LIMIT:
        raise BadQuery(_LIMIT_RULE)
    return Query(after, int(limit_text))


def _json_default(value: Any) -> Any:
    """Times the register may hand over as objects: ISO 8601 in UTC, ``Z``."""
    if isinstance(value, datetime):
        at = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def answer(register: Register, token: str | None, query: Query, request_id: str | None = None) -> Answer:
    """One page of the feed for the client holding ``token``, as the HTTP answer. Runs in the pool.

    Raises RegisterUnavailable (the caller answers 503) and anything unexpected (500, logged)."""
    if not token:
        return Answer(401, error_body(UNAUTHENTICATED))
    client = register.authenticate_client(token) if len(token) <= MAX_TOKEN else None
    if client is None:
        return Answer(401, error_body(UNKNOWN_TOKEN))
    actor = client.actor().asking(request_id)
    seen = {"client": client.name, "library": client.library_isil}
    try:
        page = register.library_changes(actor, query.after, query.limit)
    except PermissionDenied as exc:
        return Answer(403, error_body(str(exc)), reason=exc.code, **seen)
    except (InvalidInput, NotFound) as exc:
        return Answer(400, error_body(str(exc)), reason=exc.code, **seen)
    except RegisterUnavailable:
        raise
    except RegisterError as exc:  # any other refusal is about what was asked
        return Answer(400, error_body(str(exc)), reason=exc.code, **seen)
    body = {"changes": page.changes, "next": page.next, "more": page.more}
    return Answer(200, json.dumps(body, ensure_ascii=False, default=_json_default).encode("utf-8"), **seen)
