"""Reading the change feed as one library sees it (``GET /api/v1/changes``, ``nlr changes --library``).

A library's API client (permission ``changes``) reads the changes of the patrons affiliated with it
when each change was committed (their audience, written with the change: gateway.register.changelog),
in commit order, ``limit`` at a time after a cursor. Each change carries the patron as the client
may see them now, with the keys of ``nlr patron show --json`` (times in UTC, ``Z``): the national id
only with ``see-national-id``, a secret address never. A deletion is a tombstone (cursor, time, kind,
card); a change of a patron deleted since carries ``patron: null`` (the tombstone follows).

The cursor is the change's id as text: opaque to the client, and the same for every library (ids
are in commit order, so "after" never skips a change committed later).
"""

from __future__ import annotations

import re
from datetime import UTC
from typing import Any, cast

from sqlalchemy import Table, bindparam, select

from gateway.register import actors
from gateway.register.actors import Actor
from gateway.register.context import Area
from gateway.register.errors import InvalidInput, NotFound
from gateway.register.models import Change, ChangeAudience, Library
from gateway.register.views import FeedPage, PatronView, jsonable, without_secret_address
from gateway.register.vocabulary import CardStatus, ChangeKind

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_CURSOR = re.compile(r"[0-9]{1,18}")  # below 2**63 on every backend

_changes, _audience = cast(Table, Change.__table__), cast(Table, ChangeAudience.__table__)
_libraries = cast(Table, Library.__table__)
_LIBRARY_ID = select(_libraries.c.id).where(_libraries.c.isil == bindparam("isil"))
_PAGE = (select(_changes.c.id, _changes.c.at, _changes.c.patron_id, _changes.c.card_number,
                _changes.c.library_isil, _changes.c.kind, _changes.c.previous_card)
         .join(_audience, _audience.c.change_id == _changes.c.id)
         .where(_audience.c.library_id == bindparam("library_id"), _audience.c.change_id > bindparam("after"))
         .order_by(_audience.c.change_id)
         .limit(bindparam("limit")))


def parse_cursor(after: str | None) -> int:
    """The change id a cursor stands for (None: before the first). Raises InvalidInput."""
    if after is None:
        return 0
    if not isinstance(after, str) or not _CURSOR.fullmatch(after):
        raise InvalidInput("after is not a cursor of this feed: give the next of an earlier page, "
                           "or leave it out to start from the beginning")
    return int(after)


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
        since, limit = parse_cursor(after), parse_limit(limit)
        with_national_id = actor.may("see-national-id")
        with self._read() as conn:
            library_id = conn.execute(_LIBRARY_ID, {"isil": isil}).scalar()
            if library_id is None:
                raise NotFound(f"library {isil} is not in the register")
            rows = list(conn.execute(_PAGE, {"library_id": library_id, "after": since, "limit": limit + 1}))
            more, rows = len(rows) > limit, rows[:limit]
            # the patrons as they are now (rows are never removed: a deletion erases them)
            ids = list(dict.fromkeys(r.patron_id for r in rows if r.kind != ChangeKind.DELETED))
            views = self._load_views(conn, [(i, None) for i in ids], with_national_id=with_national_id)
        patrons = {i: patron_json(without_secret_address(v)) for i, v in zip(ids, views, strict=True)
                   if v.card_status != CardStatus.DELETED}  # deleted since: the tombstone follows
        changes = [self._change(r, patrons) for r in rows]
        return FeedPage(changes, str(rows[-1].id) if rows else str(since), more)

    @staticmethod
    def _change(r: Any, patrons: dict[int, dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {"cursor": str(r.id), "time": jsonable(r.at, UTC), "kind": r.kind,
                               "card": r.card_number}
        if r.kind == ChangeKind.DELETED:  # a tombstone: nothing about the person
            return out
        if r.previous_card:
            out["previous_card"] = r.previous_card
        if r.library_isil:
            out["library"] = r.library_isil
        out["patron"] = patrons.get(r.patron_id)
        return out
