"""Reading the change feed as one library sees it (``GET /api/v1/changes``, ``nlr changes --library``).

A library's API client (permission ``changes``) reads the changes of the patrons affiliated with it
when each change was committed (their audience, written with the change: gateway.register.changelog),
in commit order, ``limit`` at a time after a cursor. Each change carries the patron as the client
may see them now, with the keys of ``nlr patron show --json`` (times in UTC, ``Z``): the national id
only with ``see-national-id``, a secret address never. A deletion is a tombstone (cursor, time, kind,
card); a change of a patron deleted since carries ``patron: null`` (the tombstone follows).

A cursor stands for a change's id (ids are in commit order, so "after" never skips a change
committed later), sealed for the library whose feed gave it: AES-SIV (deterministic authenticated
encryption, RFC 5297) of the id under a key derived from the register's lookup key (which never
rotates, so a kept cursor stays good), with the library's id as associated data. So a client learns
nothing from it (not how many changes the whole register made between two of its own), cannot make
one up or alter one, and a cursor of another library's feed, or of another register, is refused; the
same change always gives the same cursor. A cursor beyond the newest change (a register restored to
an older state) is refused too, so that the client starts again instead of silently skipping
everything until the ids reach it.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from datetime import UTC
from typing import Any, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from sqlalchemy import Table, bindparam, func, select

from gateway.register import actors, crypto
from gateway.register.actors import Actor
from gateway.register.context import Area
from gateway.register.errors import InvalidInput, NotFound
from gateway.register.models import Change, ChangeAudience, Library
from gateway.register.views import FeedPage, PatronView, jsonable, without_secret_address
from gateway.register.vocabulary import CardStatus, ChangeKind

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_CURSOR = re.compile(r"[A-Za-z0-9_-]{32}")  # base64url of the 24 bytes of a sealed id (8 + the SIV tag)
_CURSOR_ID = struct.Struct(">Q")
_CURSOR_KEY_LABEL = "nlr:feed-cursor:v1"
_CURSOR_AAD = b"nlr:feed-cursor:library:"
BAD_CURSOR = ("after is not a cursor of this feed: give the next of an earlier page, or leave it out to "
              "start from the beginning")

_changes, _audience = cast(Table, Change.__table__), cast(Table, ChangeAudience.__table__)
_libraries = cast(Table, Library.__table__)
_LIBRARY_ID = select(_libraries.c.id).where(_libraries.c.isil == bindparam("isil"))
_NEWEST = select(func.max(_changes.c.id))
_PAGE = (select(_changes.c.id, _changes.c.at, _changes.c.patron_id, _changes.c.card_number,
                _changes.c.library_isil, _changes.c.kind, _changes.c.previous_card)
         .join(_audience, _audience.c.change_id == _changes.c.id)
         .where(_audience.c.library_id == bindparam("library_id"), _audience.c.change_id > bindparam("after"))
         .order_by(_audience.c.change_id)
         .limit(bindparam("limit")))


class Cursors:
    """Sealing change ids into one library's cursors, and opening them (see the module docstring)."""

    def __init__(self, keys: crypto.KeyRing) -> None:
        # 64 bytes for AES-SIV with AES-256: two HMACs of labels under the lookup key
        key = b"".join(bytes.fromhex(keys.lookup_hash(f"{_CURSOR_KEY_LABEL}:{part}")) for part in (1, 2))
        self._siv = AESSIV(key)

    def seal(self, library_id: int, change_id: int) -> str:
        sealed = self._siv.encrypt(_CURSOR_ID.pack(change_id), [_CURSOR_AAD + str(library_id).encode()])
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")

    def open(self, library_id: int, cursor: str | None) -> int:
        """The change id of one of the library's cursors (None: before the first). Raises InvalidInput."""
        if cursor is None:
            return 0
        if not isinstance(cursor, str) or not _CURSOR.fullmatch(cursor):
            raise InvalidInput(BAD_CURSOR)
        try:
            sealed = base64.urlsafe_b64decode(cursor)
            plain = self._siv.decrypt(sealed, [_CURSOR_AAD + str(library_id).encode()])
        except (InvalidTag, binascii.Error, ValueError):
            raise InvalidInput(BAD_CURSOR) from None
        change_id: int = _CURSOR_ID.unpack(plain)[0]
        return change_id


def check_cursor_text(after: str | None) -> None:
    """Refuse what cannot be a cursor before the register is asked (a cursor is checked for its
    library when the page is read). Raises InvalidInput."""
    if after is not None and (not isinstance(after, str) or not _CURSOR.fullmatch(after)):
        raise InvalidInput(BAD_CURSOR)


def parse_limit(limit: int | str) -> int:
    """1 to 1000 changes a page. Raises InvalidInput."""
    if isinstance(limit, str) and re.fullmatch(r"[0-9]{1,4}", limit):
        limit = int(limit)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit is a whole number from 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})")
    return limit


def patron_json(view: PatronView) -> dict[str, Any]:
    """A patron as the feed gives them: the keys of ``nlr patron show --json``, times in UTC."""
    out: dict[str, Any] = jsonable(view, UTC)
    return out


class LibraryFeed(Area):
    """The change feed per library."""

    def library_changes(self, actor: Actor, after: str | None, limit: int | str = DEFAULT_LIMIT) -> FeedPage:
        """The changes after the cursor ``after`` (None: from the beginning) that concern the actor's
        library, oldest first, at most ``limit`` (1-1000).

        Returns a FeedPage: ``changes`` as JSON-ready dicts, ``next`` (the cursor to ask after next:
        the last change's, or ``after`` itself when there were none) and ``more`` (more changes were
        committed already). Raises PermissionDenied (not a library's client with the permission
        ``changes``), InvalidInput (a bad cursor or limit), RegisterUnavailable."""
        isil = actors.require_may_read_feed(actor)
        check_cursor_text(after)
        limit = parse_limit(limit)
        with_national_id = actor.may("see-national-id")
        cursors = self._cursors()
        with self._read() as conn:
            library_id = conn.execute(_LIBRARY_ID, {"isil": isil}).scalar()
            if library_id is None:
                raise NotFound(f"library {isil} is not in the register")
            since = cursors.open(library_id, after)
            if since and since > (conn.execute(_NEWEST).scalar() or since):
                raise InvalidInput("after is beyond the newest change (was the register restored from a backup?): "
                                   "start again from the beginning")
            rows = list(conn.execute(_PAGE, {"library_id": library_id, "after": since, "limit": limit + 1}))
            more, rows = len(rows) > limit, rows[:limit]
            # the patrons as they are now (rows are never removed: a deletion erases them)
            ids = list(dict.fromkeys(r.patron_id for r in rows if r.kind != ChangeKind.DELETED))
            views = self._load_views(conn, [(i, None) for i in ids], with_national_id=with_national_id)
        patrons = {i: patron_json(without_secret_address(v)) for i, v in zip(ids, views, strict=True)
                   if v.card_status != CardStatus.DELETED}  # deleted since: the tombstone follows
        changes = [self._change(r, patrons, cursors.seal(library_id, r.id)) for r in rows]
        return FeedPage(changes, changes[-1]["cursor"] if rows else cursors.seal(library_id, since), more)

    def _cursors(self) -> Cursors:
        """The sealer, made once per register (its key is derived from the lookup key, which stays)."""
        made: Cursors | None = getattr(self, "_feed_cursors", None)
        if made is None:
            made = Cursors(self.keys)
            self._feed_cursors = made
        return made

    @staticmethod
    def _change(r: Any, patrons: dict[int, dict[str, Any]], cursor: str) -> dict[str, Any]:
        out: dict[str, Any] = {"cursor": cursor, "time": jsonable(r.at, UTC), "kind": r.kind,
                               "card": r.card_number}
        if r.kind == ChangeKind.DELETED:  # a tombstone: nothing about the person
            return out
        if r.previous_card:
            out["previous_card"] = r.previous_card
        if r.library_isil:
            out["library"] = r.library_isil
        out["patron"] = patrons.get(r.patron_id)
        return out
