"""SIP2 terminal accounts and NCIP API clients: hashed secrets, permissions; the audit and changes feeds."""

from __future__ import annotations

import pytest
from register_helpers import BERGEN, OSLO, add_patron, client, raw_rows

from gateway.register.errors import AlreadyExists, InvalidInput, NotFound, PermissionDenied
from gateway.register.views import OPERATOR

# ------------------------------------------------------------------ terminals


def test_terminal_add_and_authenticate(reg):
    t = reg.add_terminal(OPERATOR, "oslo-door-1", "s3cret-pass", "2030000", "door", encoding="cp850",
                         allowed_networks=["10.1.2.3/24"])
    assert (t.login, t.library_isil, t.profile, t.encoding, t.enabled) == ("oslo-door-1", OSLO, "door", "cp850", True)
    assert t.allowed_networks == ("10.1.2.0/24",) and t.pin_required  # a door always needs the PIN
    assert reg.authenticate_terminal("oslo-door-1", "s3cret-pass") == t
    assert reg.authenticate_terminal("oslo-door-1", "s3cret-pasS") is None
    assert reg.authenticate_terminal("no-such-terminal", "s3cret-pass") is None
    (stored,) = raw_rows(reg, "SELECT password_hash FROM sip_terminals")[0]
    assert stored.startswith("scrypt$") and "s3cret-pass" not in stored


def test_disabled_terminal_and_password_change(reg):
    reg.add_terminal(OPERATOR, "kiosk-1", "first-pass", OSLO, "kiosk")
    reg.update_terminal(OPERATOR, "kiosk-1", enabled=False)
    assert reg.authenticate_terminal("kiosk-1", "first-pass") is None
    reg.update_terminal(OPERATOR, "kiosk-1", enabled=True, password="second-pass")
    assert reg.authenticate_terminal("kiosk-1", "first-pass") is None
    assert reg.authenticate_terminal("kiosk-1", "second-pass").login == "kiosk-1"
    with pytest.raises(NotFound):
        reg.update_terminal(OPERATOR, "kiosk-9", enabled=False)


BAD_TERMINALS = [
    ({"login": "", "password": "s3cret-pass", "library": OSLO, "profile": "kiosk"}, InvalidInput),
    ({"login": "a|b", "password": "s3cret-pass", "library": OSLO, "profile": "kiosk"}, InvalidInput),
    ({"login": "k", "password": "short", "library": OSLO, "profile": "kiosk"}, InvalidInput),
    ({"login": "k", "password": "s3cret-pass", "library": OSLO, "profile": "robot"}, InvalidInput),
    ({"login": "k", "password": "s3cret-pass", "library": OSLO, "profile": "kiosk", "encoding": "ebcdic"},
     InvalidInput),
    ({"login": "k", "password": "s3cret-pass", "library": OSLO, "profile": "kiosk", "allowed_networks": ["lan"]},
     InvalidInput),
    ({"login": "k", "password": "s3cret-pass", "library": "NO-9999999", "profile": "kiosk"}, NotFound),
]


def test_terminal_input_checked(reg):
    for kwargs, error in BAD_TERMINALS:
        with pytest.raises(error):
            reg.add_terminal(OPERATOR, **kwargs)
    assert reg.list_terminals() == []


def test_terminal_login_unique_and_operator_only(reg):
    reg.add_terminal(OPERATOR, "kiosk-1", "s3cret-pass", OSLO, "kiosk")
    with pytest.raises(AlreadyExists):
        reg.add_terminal(OPERATOR, "kiosk-1", "s3cret-pass", BERGEN, "kiosk")
    with pytest.raises(PermissionDenied):
        reg.add_terminal(client(OSLO), "kiosk-2", "s3cret-pass", OSLO, "kiosk")
    assert [t.login for t in reg.list_terminals()] == ["kiosk-1"]


# ------------------------------------------------------------------ API clients


def test_client_token_shown_once_and_stored_hashed(reg):
    view, token = reg.add_client(OPERATOR, "bibliofil-oslo", "2030000", ["lookup", "create"])
    assert (view.name, view.library_isil, view.permissions, view.enabled) == (
        "bibliofil-oslo", OSLO, ("lookup", "create"), True)
    assert len(token) > 30
    assert reg.authenticate_client(token) == view
    assert view.actor().may("create") and not view.actor().may("delete")
    assert reg.authenticate_client(token + "x") is None
    (stored,) = raw_rows(reg, "SELECT token_hash FROM api_clients")[0]
    assert token not in stored and len(stored) == 64


def test_client_default_permissions_and_unknown_permission(reg):
    view, _ = reg.add_client(OPERATOR, "quria", OSLO)
    assert set(view.permissions) == {"lookup", "create", "update"}
    with pytest.raises(InvalidInput, match="permission"):
        reg.add_client(OPERATOR, "other", OSLO, ["lookup", "everything"])
    with pytest.raises(AlreadyExists):
        reg.add_client(OPERATOR, "quria", BERGEN)


def test_client_rotate_token_disable_and_change_permissions(reg):
    _, old = reg.add_client(OPERATOR, "koha", OSLO)
    view, new = reg.update_client(OPERATOR, "koha", rotate_token=True, permissions=["lookup"])
    assert new and new != old and view.permissions == ("lookup",)
    assert reg.authenticate_client(old) is None
    assert reg.authenticate_client(new).permissions == ("lookup",)
    reg.update_client(OPERATOR, "koha", enabled=False)
    assert reg.authenticate_client(new) is None
    with pytest.raises(PermissionDenied):
        reg.update_client(client(OSLO), "koha", enabled=True)


# ------------------------------------------------------------------ audit and changes


def test_changes_feed_in_order_and_from_a_position(reg):
    p = add_patron(reg, 0, OSLO)
    reg.activate(OPERATOR, p.card, BERGEN)
    reg.update_patron(OPERATOR, p.card, city="Oslo")
    feed = reg.changes()
    assert [(c.kind, c.card_number) for c in feed] == [
        ("registered", p.card), ("activated", p.card), ("updated", p.card)]
    assert [c.id for c in feed] == sorted(c.id for c in feed)
    assert [c.kind for c in reg.changes(since=feed[0].id)] == ["activated", "updated"]
    assert reg.changes(since=feed[-1].id) == []
    assert [c.kind for c in reg.changes(limit=1)] == ["registered"]


def test_patron_audit_trail(reg):
    p = add_patron(reg, 0, OSLO)
    reg.find_patron(client(BERGEN), p.card)
    reg.set_blocked(OPERATOR, p.card, True, "test")
    events = reg.audit_events(p.card)
    assert [(e.action, e.outcome) for e in events] == [
        ("patron_register", "ok"), ("patron_lookup", "ok"), ("patron_block", "ok")]
    assert events[1].actor == "client:ils-NO-2120100"
    assert all(e.card_number == p.card for e in events)
    with pytest.raises(NotFound):
        reg.audit_events("N000100999")
    assert len(reg.audit_events()) >= 3
