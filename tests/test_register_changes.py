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


def test_a_library_change_is_all_or_nothing(reg):
    """NCIP UpdateUser used to run up to six transactions: a bad e-mail after an activation left the
    card activated (issue 8, item 2). Now a refusal anywhere changes nothing."""
    import pytest
    from register_helpers import PIN

    from gateway.register.errors import AuthenticationFailed, InvalidInput
    from gateway.register.fields import PatronChanges
    from gateway.register.updates import LibraryChange

    p = add_patron(reg, 0, OSLO)
    bergen = client(BERGEN)
    before = (len(reg.audit_events(p.card, limit=1000)), len(reg.changes()))
    bad_email = LibraryChange(changes=PatronChanges(email="not an address", city="Bergen"), door_agreement=True,
                              new_pin="8642")
    with pytest.raises(InvalidInput):
        reg.change_patron(bergen, p.card, bad_email)
    with pytest.raises(InvalidInput):
        reg.change_patron(bergen, p.card, bad_email, pin=PIN)  # the patron at the desk: PIN right, change refused
    with pytest.raises(AuthenticationFailed):
        reg.change_patron(bergen, p.card, LibraryChange(activate=True), pin="0000")
    view = reg.find_patron(OPERATOR, p.card)
    assert view.activation_at(BERGEN) is None and view.city != "Bergen" and view.email != "not an address"
    assert reg.verify_pin(OPERATOR, p.card, PIN).value == "ok"
    assert len(reg.changes()) == before[1]
    actions = [e.action for e in reg.audit_events(p.card, limit=1000)][before[0]:]
    assert set(actions) <= {"pin_verify", "patron_lookup"}  # the PIN attempts are counted, nothing else
    done = reg.change_patron(bergen, p.card, LibraryChange(changes=PatronChanges(city="Bergen"), door_agreement=True),
                             pin=PIN)
    assert done == p.card
    view = reg.find_patron(OPERATOR, p.card)
    assert view.city == "Bergen" and view.activation_at(BERGEN).door_agreement_at is not None
