"""The change feed records the library of every change that concerns one (issue 8, item 8): a
library system that syncs its own patrons must see activations, door agreements and home-library
moves at its library, whoever made them."""

from __future__ import annotations

from register_helpers import BERGEN, OSLO, TRONDHEIM, add_patron, client

from gateway.register.views import OPERATOR


def test_every_change_names_the_library_it_concerns(reg):
    p = add_patron(reg, 0, OSLO)  # by the operator, who acts for no library
    reg.activate(OPERATOR, p.card, BERGEN, door_agreement=True)
    reg.revoke_door(OPERATOR, p.card, BERGEN)
    reg.revoke_door(OPERATOR, p.card, BERGEN, revoked=False)
    reg.set_home_library(OPERATOR, p.card, TRONDHEIM)
    reg.update_patron(client(BERGEN), p.card, email="kari@example.no")
    q = add_patron(reg, 1, BERGEN, actor=client(BERGEN, "create"), door_agreement=True)
    feed = [(c.kind, c.library_isil) for c in reg.changes()]
    assert feed == [
        ("registered", OSLO),
        ("activated", BERGEN), ("door_agreement", BERGEN), ("door_revoked", BERGEN), ("door_restored", BERGEN),
        ("activated", TRONDHEIM), ("home_library", TRONDHEIM),
        ("updated", BERGEN),
        ("registered", BERGEN), ("door_agreement", BERGEN),
    ]
    assert {c.card_number for c in reg.changes()} == {p.card, q.card}


def test_registration_with_a_door_agreement_is_one_operation(reg):
    """CreateUser with a MERAPENT privilege: patron, activation and agreement all or nothing."""
    view = add_patron(reg, 0, OSLO, actor=client(OSLO, "create"), door_agreement=True)
    act = view.activation_at(OSLO)
    assert act is not None and act.home and act.door_agreement_at is not None
    assert [e.action for e in reg.audit_events(view.card)] == ["patron_register", "door_agreement"]
