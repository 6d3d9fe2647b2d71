"""Patrons: registration, lookup, changes, activation, home library, blocks, lost cards, deletion, innsyn."""

from __future__ import annotations

import json
from datetime import date

import pytest
from register_helpers import (
    BERGEN,
    OSLO,
    PIN,
    TRONDHEIM,
    add_patron,
    client,
    nid,
    patron_actor,
    raw_rows,
    terminal,
)

from gateway.register import Register, Settings
from gateway.register.errors import (
    CardInUse,
    CardOutsideSeries,
    DuplicatePatron,
    InvalidInput,
    InvalidNationalIdentityNumber,
    NotAffiliated,
    NotFound,
    PermissionDenied,
    VersionConflict,
)
from gateway.register.views import OPERATOR, PinCheck, Reason

# ------------------------------------------------------------------ registration


def test_registration_makes_the_registering_library_home_and_activates_it(reg):
    p = add_patron(reg, 0, OSLO, actor=client(OSLO), address_line1="  Storgata   1 ", postal_code="0155",
                   city="Oslo", email="Kari@Example.ORG", phone="22 33 44 55")
    assert p.card == p.current_card == "N000100000" and p.card_status == "active"
    assert (p.surname, p.given_name, p.name) == ("Nordmann0", "Kari", "Kari Nordmann0")
    assert p.home_library_isil == OSLO
    assert p.address_line1 == "Storgata 1" and p.postal_code == "0155" and p.city == "Oslo"
    assert p.email == "Kari@example.org" and p.phone == "+4722334455"
    assert p.has_pin and not p.blocked
    (act,) = p.activations
    assert (act.library_isil, act.home, act.channel, act.rules_version) == (OSLO, True, "ncip", "1")
    assert p.national_id is None and p.national_id_masked == nid(0, date(1985, 3, 14))[:6] + "*****"
    assert [c.kind for c in reg.changes()] == ["registered"]


def test_invalid_national_id_refused_without_echoing_it(reg):
    for bad in ("14838512345",  # check digits wrong
                "148385123",  # too short
                "1483851234567",  # too long
                "31138512345",  # month 13
                "abcdefghijk"):
        with pytest.raises(InvalidNationalIdentityNumber, match="national identity number") as err:
            add_patron(reg, 0, OSLO, national_id=bad)
        assert bad not in str(err.value) and bad[:6] not in str(err.value)
    assert reg.counts()["patrons"] == 0


def test_synthetic_ids_refused_unless_the_register_allows_them(reg):
    strict = Register(reg.engine, reg.keys, Settings(pin_hash_cost=10))
    synthetic = nid(0)
    with pytest.raises(InvalidNationalIdentityNumber) as err:
        strict.register_patron(OPERATOR, OSLO, national_id=synthetic, surname="Test", given_name="Tenor")
    assert synthetic not in str(err.value)
    assert reg.counts()["patrons"] == 0


def test_name_required(reg):
    for field in ("surname", "given_name"):
        for value in ("", "   ", None):
            with pytest.raises(InvalidInput, match=field.replace("_", " ")):
                add_patron(reg, 0, OSLO, **{field: value})
    assert reg.counts()["patrons"] == 0


BAD_FIELDS = [
    ({"email": "kari.example.org"}, "e-mail"),
    ({"email": "kari@"}, "e-mail"),
    ({"email": "ka ri@example.org"}, "e-mail"),
    ({"phone": "1234"}, "phone"),
    ({"phone": "+47 1234"}, "phone"),
    ({"phone": "2233abcd"}, "phone"),
    ({"postal_code": "155"}, "postal code"),
    ({"postal_code": "01555"}, "postal code"),
    ({"postal_code": "O155"}, "postal code"),
    ({"country": "Norway"}, "country"),
    ({"birth_date": date(2999, 1, 1)}, "birth date"),
    ({"surname": "x" * 201}, "surname"),
    ({"pin": "12"}, "PIN"),
    ({"pin": "abcd"}, "PIN"),
]


def test_contact_fields_validated(reg):
    for fields, match in BAD_FIELDS:
        with pytest.raises(InvalidInput, match=match):
            add_patron(reg, 0, OSLO, **fields)
    assert reg.counts()["patrons"] == 0


def test_foreign_postal_code_accepted_with_its_country(reg):
    p = add_patron(reg, 0, OSLO, country="se", postal_code="113 51", phone="+46 8 123 456 78")
    assert (p.country, p.postal_code, p.phone) == ("SE", "113 51", "+46812345678")


def test_library_registers_only_at_itself_and_only_with_permission(reg):
    with pytest.raises(PermissionDenied):
        add_patron(reg, 0, BERGEN, actor=client(OSLO))
    with pytest.raises(PermissionDenied):
        add_patron(reg, 0, OSLO, actor=client(OSLO, "lookup"))
    assert reg.counts()["patrons"] == 0


def test_duplicate_national_id_names_the_existing_card_only_to_who_may_look_up_by_national_id(reg):
    first = add_patron(reg, 0, OSLO)
    spaced = nid(0, date(1985, 3, 14))
    spaced = f"{spaced[:6]} {spaced[6:]}"
    with pytest.raises(DuplicatePatron) as err:
        add_patron(reg, 0, BERGEN, actor=client(BERGEN, "create", "lookup-national-id"), national_id=spaced,
                   surname="Annen", pin=None)
    assert err.value.existing_card == first.card
    assert first.card in str(err.value) and spaced.replace(" ", "") not in str(err.value)
    # A client that may only create learns that the person exists, not the card (issue 8, item 4)
    with pytest.raises(DuplicatePatron) as err:
        add_patron(reg, 0, BERGEN, actor=client(BERGEN, "create"), national_id=spaced, surname="Annen", pin=None)
    assert err.value.existing_card is None and first.card not in str(err.value)
    with pytest.raises(DuplicatePatron) as err:
        add_patron(reg, 0, BERGEN, actor=OPERATOR, national_id=spaced, surname="Annen", pin=None)
    assert err.value.existing_card == first.card
    assert reg.counts()["patrons"] == 1
    assert reg.list_series(BERGEN)[0].used == 0
    # every probe is audited against the patron it concerned, so the patron sees it in innsyn
    probes = [(e.actor, e.outcome) for e in reg.audit_events(first.card) if e.action == "patron_register"]
    assert probes == [("operator:nlr", "ok"), ("client:ils-NO-2120100", "duplicate_patron"),
                      ("client:ils-NO-2120100", "duplicate_patron"), ("operator:nlr", "duplicate_patron")]
    trail = reg.export_patron(OPERATOR, first.card)["audit"]
    assert sum(e["outcome"] == "duplicate_patron" for e in trail) == 3


def test_a_refused_registration_with_someone_elses_card_is_audited_against_them(reg):
    first = add_patron(reg, 0, OSLO)
    with pytest.raises(CardInUse):
        add_patron(reg, 1, OSLO, actor=client(OSLO), card=first.card)
    assert [e.outcome for e in reg.audit_events(first.card) if e.action == "patron_register"] == ["ok", "card_in_use"]


def test_duplicate_after_replacement_names_the_current_card(reg):
    first = add_patron(reg, 0, OSLO)
    replaced = reg.replace_card(OPERATOR, first.card)
    assert replaced.current_card != first.card
    with pytest.raises(DuplicatePatron) as err:
        add_patron(reg, 0, BERGEN)
    assert err.value.existing_card == replaced.current_card
    assert replaced.current_card in str(err.value)


def test_duplicate_while_the_card_is_lost_names_the_lost_card(reg):
    # The library must learn which patron it is, so it can hand out a replacement card.
    first = add_patron(reg, 0, OSLO)
    reg.report_lost(OPERATOR, first.card)
    with pytest.raises(DuplicatePatron) as err:
        add_patron(reg, 0, BERGEN)
    assert err.value.existing_card == first.card


# ------------------------------------------------------------------ lookup


def test_lookup_by_card_accepts_lower_case_n_and_spaces(reg):
    p = add_patron(reg, 0, OSLO)
    for spelling in (p.card, p.card.lower(), f"  {p.card}\t", " n" + p.card[1:]):
        assert reg.find_patron(client(BERGEN), spelling).card == p.card


def test_lookup_unknown_or_malformed_card(reg):
    with pytest.raises(NotFound, match="N000123456"):
        reg.find_patron(OPERATOR, "N000123456")
    with pytest.raises(InvalidInput, match="N followed by 9 digits"):
        reg.find_patron(OPERATOR, "123456")


def test_any_library_may_look_up_by_card_and_the_lookup_is_audited(reg):
    p = add_patron(reg, 0, OSLO)
    view = reg.find_patron(client(BERGEN, "lookup"), p.card)
    assert view.surname == "Nordmann0" and view.national_id is None
    events = [e for e in reg.audit_events(p.card) if e.action == "patron_lookup"]
    assert [(e.actor, e.library_isil) for e in events] == [("client:ils-NO-2120100", BERGEN)]


def test_client_without_lookup_permission_cannot_look_up(reg):
    p = add_patron(reg, 0, OSLO)
    with pytest.raises(PermissionDenied):
        reg.find_patron(client(BERGEN, "create"), p.card)


def test_full_national_id_only_with_see_national_id(reg):
    p = add_patron(reg, 0, OSLO)
    with pytest.raises(PermissionDenied):
        reg.find_patron(client(OSLO), p.card, with_national_id=True)
    seen = reg.find_patron(client(OSLO, "lookup", "see-national-id"), p.card, with_national_id=True)
    assert seen.national_id == nid(0, date(1985, 3, 14))
    assert seen.national_id not in repr(seen)


def test_lookup_by_national_id_needs_the_permission(reg):
    p = add_patron(reg, 0, OSLO)
    number = nid(0, date(1985, 3, 14))
    for actor in (client(OSLO), client(OSLO, "lookup", "create", "update", "delete"), terminal(OSLO),
                  patron_actor(p.card)):
        with pytest.raises(PermissionDenied, match="lookup-national-id"):
            reg.find_patron_by_national_id(actor, number)
    found = reg.find_patron_by_national_id(client(BERGEN, "lookup-national-id"), number)
    assert found.card == p.card and found.national_id is None
    assert reg.find_patron_by_national_id(OPERATOR, f"{number[:6]} {number[6:]}").card == p.card
    actions = [(e.action, e.actor) for e in reg.audit_events(p.card)]
    assert ("patron_lookup_national_id", "client:ils-NO-2120100") in actions


def test_lookup_by_unknown_or_invalid_national_id(reg):
    add_patron(reg, 0, OSLO)
    with pytest.raises(NotFound):
        reg.find_patron_by_national_id(OPERATOR, nid(1))
    with pytest.raises(InvalidNationalIdentityNumber) as err:
        reg.find_patron_by_national_id(OPERATOR, "01017012345")
    assert "01017012345" not in str(err.value)


# ------------------------------------------------------------------ update


def test_update_with_version_check(reg):
    p = add_patron(reg, 0, OSLO, email="kari@example.org", phone="22334455")
    oslo, bergen = client(OSLO), client(BERGEN)
    reg.activate(bergen, p.card, BERGEN)
    seen_by_oslo = reg.find_patron(oslo, p.card)
    seen_by_bergen = reg.find_patron(bergen, p.card)
    changed = reg.update_patron(oslo, p.card, expected_version=seen_by_oslo.version, city="Oslo", email="")
    assert changed.version > seen_by_oslo.version
    assert changed.city == "Oslo" and changed.email is None and changed.phone == "+4722334455"
    with pytest.raises(VersionConflict, match="fetch it again"):
        reg.update_patron(bergen, p.card, expected_version=seen_by_bergen.version, city="Bergen")
    now = reg.find_patron(OPERATOR, p.card)
    assert now.city == "Oslo" and now.version == changed.version
    # with the fresh version Bergen's change goes through
    assert reg.update_patron(bergen, p.card, expected_version=now.version, city="Bergen").city == "Bergen"
    kinds = [c.kind for c in reg.changes()]
    assert kinds.count("updated") == 2


def test_update_without_version_and_field_rules(reg):
    p = add_patron(reg, 0, OSLO, address_line1="Storgata 1", postal_code="0155")
    changed = reg.update_patron(OPERATOR, p.card, surname="Nordmann-Hansen", address_line1="",
                                phone="+47 99 88 77 66", secret_address=True, temp_postal_code="5003",
                                temp_address_until=date(2030, 1, 1))
    assert changed.surname == "Nordmann-Hansen" and changed.address_line1 is None
    assert changed.postal_code == "0155" and changed.phone == "+4799887766"
    assert changed.secret_address and changed.temp_postal_code == "5003"
    for bad, match in (({"surname": ""}, "surname"), ({"email": "nope"}, "e-mail"),
                       ({"postal_code": "12"}, "postal code"), ({"national_id": nid(3)}, "unknown patron field"),
                       ({"pin_hash": "x"}, "unknown patron field"), ({"birth_date": date(2999, 1, 1)}, "birth date")):
        with pytest.raises(InvalidInput, match=match):
            reg.update_patron(OPERATOR, p.card, **bad)
    assert reg.find_patron(OPERATOR, p.card).surname == "Nordmann-Hansen"


def test_only_an_affiliated_library_may_change_the_patron(reg):
    p = add_patron(reg, 0, OSLO)
    bergen = client(BERGEN)
    reg.find_patron(bergen, p.card)  # any library may look up
    with pytest.raises(NotAffiliated):
        reg.update_patron(bergen, p.card, city="Bergen")
    with pytest.raises(NotAffiliated):
        reg.set_pin(bergen, p.card, "9999")
    with pytest.raises(NotAffiliated):
        reg.set_blocked(bergen, p.card, True, "test")
    with pytest.raises(NotAffiliated):
        reg.report_lost(bergen, p.card)
    with pytest.raises(NotAffiliated):
        reg.replace_card(bergen, p.card)
    after = reg.find_patron(OPERATOR, p.card)
    assert after.city is None and not after.blocked and after.card_status == "active"
    assert reg.verify_pin(OPERATOR, p.card, PIN) is PinCheck.OK
    # once the card is activated in Bergen, Bergen may
    reg.activate(bergen, p.card, BERGEN)
    assert reg.update_patron(bergen, p.card, city="Bergen").city == "Bergen"


def test_a_patron_cannot_edit_personal_data_through_the_library_api(reg):
    p = add_patron(reg, 0, OSLO)
    with pytest.raises(PermissionDenied):
        reg.update_patron(patron_actor(p.card), p.card, city="Bergen")


def test_client_without_update_permission_cannot_change(reg):
    p = add_patron(reg, 0, OSLO)
    with pytest.raises(PermissionDenied):
        reg.update_patron(client(OSLO, "lookup"), p.card, city="Oslo")
    with pytest.raises(PermissionDenied):
        reg.set_pin(client(OSLO, "lookup"), p.card, "9999")


# ------------------------------------------------------------------ activation and door agreement


def test_activation_records_channel_and_rules_version_and_is_idempotent(reg):
    p = add_patron(reg, 0, OSLO)
    reg.update_library(OPERATOR, BERGEN, rules_version="bergen-2025")
    first = reg.activate(client(BERGEN), p.card, "2120100").activation_at(BERGEN)
    assert (first.channel, first.rules_version, first.home) == ("ncip", "bergen-2025", False)
    assert first.door_agreement_at is None
    again = reg.activate(OPERATOR, p.card, BERGEN, rules_version="other").activation_at(BERGEN)
    assert again == first  # nothing changed
    assert len(reg.find_patron(OPERATOR, p.card).activations) == 2
    explicit = reg.activate(terminal(TRONDHEIM), p.card, TRONDHEIM, rules_version="tr-9").activation_at(TRONDHEIM)
    assert (explicit.channel, explicit.rules_version) == ("sip2", "tr-9")
    assert [c.kind for c in reg.changes()].count("activated") == 2


def test_library_activates_only_at_itself(reg):
    p = add_patron(reg, 0, OSLO)
    with pytest.raises(PermissionDenied):
        reg.activate(client(BERGEN), p.card, TRONDHEIM)
    assert reg.find_patron(OPERATOR, p.card).activation_at(TRONDHEIM) is None


def test_a_lost_card_cannot_be_activated(reg):
    p = add_patron(reg, 0, OSLO)
    reg.report_lost(OPERATOR, p.card)
    with pytest.raises(InvalidInput, match="lost"):
        reg.activate(client(BERGEN), p.card, BERGEN)


def test_door_agreement_recorded_at_an_already_active_library(reg):
    p = add_patron(reg, 0, OSLO)
    reg.update_library(OPERATOR, OSLO, door_agreement_version="4")
    view = reg.activate(client(OSLO), p.card, OSLO, door_agreement=True)
    act = view.activation_at(OSLO)
    assert act.door_agreement_at is not None and act.door_agreement_version == "4" and act.home
    again = reg.activate(client(OSLO), p.card, OSLO, door_agreement=True).activation_at(OSLO)
    assert again.door_agreement_at == act.door_agreement_at  # idempotent
    door = terminal(OSLO, "door-1")
    assert reg.decide(door, p.card, PIN, door=True).reason is Reason.GRANTED


def test_revoke_and_restore_door_access(reg):
    p = add_patron(reg, 0, OSLO)
    reg.activate(OPERATOR, p.card, OSLO, door_agreement=True)
    door = terminal(OSLO, "door-1")
    revoked = reg.revoke_door(client(OSLO), p.card, OSLO)
    assert revoked.activation_at(OSLO).door_revoked_at is not None
    assert reg.decide(door, p.card, PIN, door=True).reason is Reason.DOOR_REVOKED
    restored = reg.revoke_door(client(OSLO), p.card, OSLO, revoked=False)
    assert restored.activation_at(OSLO).door_revoked_at is None
    assert restored.activation_at(OSLO).door_agreement_at is not None
    assert reg.decide(door, p.card, PIN, door=True).reason is Reason.GRANTED
    kinds = [c.kind for c in reg.changes()]
    assert "door_revoked" in kinds and "door_restored" in kinds


def test_revoke_door_only_by_the_library_itself_where_the_card_is_active(reg):
    p = add_patron(reg, 0, OSLO)
    reg.activate(OPERATOR, p.card, OSLO, door_agreement=True)
    with pytest.raises(PermissionDenied):
        reg.revoke_door(client(BERGEN), p.card, OSLO)
    with pytest.raises(NotAffiliated):
        reg.revoke_door(client(BERGEN), p.card, BERGEN)
    assert reg.find_patron(OPERATOR, p.card).activation_at(OSLO).door_revoked_at is None


# ------------------------------------------------------------------ home library


def test_patron_changes_own_home_library(reg):
    p = add_patron(reg, 0, OSLO)
    reg.activate(client(BERGEN), p.card, BERGEN)  # issue 10: only among the libraries the card is activated at
    moved = reg.set_home_library(patron_actor(p.card), p.card, "2120100")
    assert moved.home_library_isil == BERGEN
    bergen = moved.activation_at(BERGEN)
    assert bergen is not None and bergen.home and bergen.channel == "ncip"
    assert reg.audit_events(p.card)[-1].actor == f"patron:{p.card}"
    assert moved.activation_at(OSLO) is not None and not moved.activation_at(OSLO).home
    assert "home_library" in [c.kind for c in reg.changes()]


def test_patron_cannot_change_someone_elses_home_library(reg):
    p = add_patron(reg, 0, OSLO)
    other = add_patron(reg, 1, OSLO)
    with pytest.raises(PermissionDenied):
        reg.set_home_library(patron_actor(other.card), p.card, BERGEN)
    assert reg.find_patron(OPERATOR, p.card).home_library_isil == OSLO


def test_affiliated_library_may_change_home_library_unaffiliated_may_not(reg):
    p = add_patron(reg, 0, OSLO)
    with pytest.raises(NotAffiliated):
        reg.set_home_library(client(BERGEN), p.card, BERGEN)
    assert reg.find_patron(OPERATOR, p.card).home_library_isil == OSLO
    assert reg.set_home_library(client(OSLO), p.card, TRONDHEIM).home_library_isil == TRONDHEIM
    with pytest.raises(NotFound):
        reg.set_home_library(OPERATOR, p.card, "NO-9999999")


# ------------------------------------------------------------------ block / unblock


def test_block_and_unblock(reg):
    p = add_patron(reg, 0, OSLO)
    kiosk = terminal(OSLO)
    with pytest.raises(InvalidInput, match="reason"):
        reg.set_blocked(client(OSLO), p.card, True)
    blocked = reg.set_blocked(client(OSLO), p.card, True, "kortet tatt av automaten")
    assert blocked.blocked and blocked.block_reason == "kortet tatt av automaten"
    assert reg.decide(kiosk, p.card, PIN).reason is Reason.PATRON_BLOCKED
    unblocked = reg.set_blocked(client(OSLO), p.card, False)
    assert not unblocked.blocked and unblocked.block_reason is None
    assert reg.decide(kiosk, p.card, PIN).reason is Reason.GRANTED
    kinds = [c.kind for c in reg.changes()]
    assert "blocked" in kinds and "unblocked" in kinds


# ------------------------------------------------------------------ lost and replaced cards


def test_report_lost_then_replace_with_an_allocated_number(reg):
    p = add_patron(reg, 0, OSLO)
    kiosk = terminal(OSLO)
    lost = reg.report_lost(client(OSLO), p.card)
    assert lost.card_status == "lost" and lost.current_card is None
    # libraries syncing from the changes feed learn which card was lost
    assert [(c.kind, c.card_number) for c in reg.changes()][-1] == ("card_lost", p.card)
    new = reg.replace_card(client(OSLO), p.card)
    assert new.card == new.current_card == "N000100001" and new.card_status == "active"
    assert [(c.number, c.status) for c in new.cards] == [(p.card, "lost"), ("N000100001", "active")]
    # the old number never authenticates again, the new one does, with the same PIN
    old = reg.decide(kiosk, p.card, PIN)
    assert old.reason is Reason.CARD_LOST and old.card_lost and not old.pin_valid
    assert reg.verify_pin(OPERATOR, p.card, PIN) is not PinCheck.OK
    assert reg.decide(kiosk, new.card, PIN).reason is Reason.GRANTED
    # the old number stays in the history, and finds the patron
    assert reg.find_patron(OPERATOR, p.card).current_card == new.card
    assert [e.detail for e in reg.audit_events(new.card) if e.action == "card_replace"] == [f"replaces {p.card}"]


def test_replace_without_reporting_lost_marks_the_old_card_replaced(reg):
    p = add_patron(reg, 0, OSLO)
    new = reg.replace_card(OPERATOR, p.card, new_card="n000100777")
    assert new.current_card == "N000100777"
    old = reg.decide(terminal(OSLO), p.card, PIN)
    assert old.reason is Reason.CARD_REPLACED and old.card_lost and not old.pin_valid
    assert reg.find_patron(OPERATOR, p.card).card_status == "replaced"
    # a replacement of a replacement: the newest card is current, both old ones stay dead
    newer = reg.replace_card(OPERATOR, new.current_card)
    assert newer.current_card not in (p.card, "N000100777")
    assert [c.status for c in newer.cards] == ["replaced", "replaced", "active"]
    assert reg.decide(terminal(OSLO), "N000100777", PIN).reason is Reason.CARD_REPLACED


def test_replacement_number_must_be_free_and_inside_the_librarys_series(reg):
    p = add_patron(reg, 0, OSLO)
    other = add_patron(reg, 1, OSLO)
    with pytest.raises(CardInUse):
        reg.replace_card(OPERATOR, p.card, new_card=other.card)
    with pytest.raises(CardOutsideSeries):
        reg.replace_card(client(OSLO), p.card, new_card="N000200001")
    after = reg.find_patron(OPERATOR, p.card)
    assert after.current_card == p.card and len(after.cards) == 1


# ------------------------------------------------------------------ delete


def test_delete_erases_personal_data_and_keeps_the_card_numbers(reg):
    p = add_patron(reg, 0, OSLO, email="kari@example.org", phone="22334455", address_line1="Storgata 1",
                   postal_code="0155", city="Oslo")
    reg.activate(OPERATOR, p.card, BERGEN, door_agreement=True)
    new = reg.replace_card(OPERATOR, p.card)
    assert reg.delete_patron(client(OSLO, "delete"), new.current_card) == new.current_card
    with pytest.raises(NotFound):
        reg.find_patron(OPERATOR, p.card)
    with pytest.raises(NotFound):
        reg.find_patron_by_national_id(OPERATOR, nid(0, date(1985, 3, 14)))
    (row,) = raw_rows(reg, "SELECT surname, given_name, national_id_ciphertext, national_id_index, birth_date, "
                           "email, phone, address_line1, postal_code, city, pin_hash, deleted_at FROM patrons")
    assert row[:-1] == (None,) * 11 and row[-1] is not None
    assert raw_rows(reg, "SELECT count(*) FROM activations") == [(0,)]
    cards = sorted(raw_rows(reg, "SELECT number, status FROM cards"))
    assert cards == [(p.card, "deleted"), (new.current_card, "deleted")]
    assert reg.decide(terminal(OSLO), new.current_card, PIN).reason is Reason.UNKNOWN_CARD
    # the numbers are never handed out again, neither explicitly nor by the allocator
    with pytest.raises(CardInUse):
        add_patron(reg, 1, OSLO, card=p.card)
    # the same person may register again, and gets a fresh number
    again = add_patron(reg, 0, OSLO)
    assert again.card not in (p.card, new.current_card)
    assert reg.find_patron_by_national_id(OPERATOR, nid(0, date(1985, 3, 14))).card == again.card
    assert "deleted" in [c.kind for c in reg.changes()]


def test_only_home_library_or_operator_deletes(reg):
    p = add_patron(reg, 0, OSLO)
    reg.activate(OPERATOR, p.card, BERGEN)
    with pytest.raises(PermissionDenied):
        reg.delete_patron(client(BERGEN, "delete"), p.card)
    with pytest.raises(PermissionDenied):
        reg.delete_patron(client(OSLO), p.card)  # no delete permission
    assert reg.find_patron(OPERATOR, p.card).surname == "Nordmann0"
    reg.delete_patron(OPERATOR, p.card)
    with pytest.raises(NotFound):
        reg.delete_patron(OPERATOR, p.card)


# ------------------------------------------------------------------ export (innsyn)


def test_export_holds_everything_and_who_looked_the_patron_up(reg):
    p = add_patron(reg, 0, OSLO, email="kari@example.org", address_line1="Storgata 1", postal_code="0155")
    reg.activate(client(BERGEN), p.card, BERGEN, door_agreement=True)
    reg.find_patron(client(TRONDHEIM, "lookup", name="quria-trondheim"), p.card)
    reg.find_patron_by_national_id(client(BERGEN, "lookup-national-id", name="bibliofil-bergen"),
                                   nid(0, date(1985, 3, 14)))
    reg.decide(terminal(OSLO, "kiosk-7"), p.card, PIN)
    out = reg.export_patron(patron_actor(p.card), p.card)
    full = nid(0, date(1985, 3, 14))
    assert out["national_id"] == full[:6] + "*****"  # issue 10: a card + PIN login sees it masked
    assert reg.export_patron(OPERATOR, p.card)["national_id"] == full
    assert out["surname"] == "Nordmann0" and out["email"] == "kari@example.org" and out["postal_code"] == "0155"
    assert out["home_library_isil"] == OSLO
    assert {a["library_isil"] for a in out["activations"]} == {OSLO, BERGEN}
    assert [c["number"] for c in out["cards"]] == [p.card]
    actors = {(e["action"], e["actor"]) for e in out["audit"]}
    assert ("patron_lookup", "client:quria-trondheim") in actors
    assert ("patron_lookup_national_id", "client:bibliofil-bergen") in actors
    assert ("patron_check", "terminal:kiosk-7") in actors
    assert ("patron_register", "operator:nlr") in actors
    assert {c["kind"] for c in out["changes"]} >= {"registered", "activated", "door_agreement"}
    assert out["pin"].startswith("set")
    dumped = json.dumps(out)  # JSON-ready, and without the PIN or its hash
    (pin_hash,) = raw_rows(reg, "SELECT pin_hash FROM patrons")[0]
    assert "scrypt" not in dumped and pin_hash.split("$")[-1] not in dumped and PIN not in dumped
    # the export itself is audited
    assert reg.audit_events(p.card)[-1].action == "patron_export"


def test_export_only_for_the_patron_or_the_operator(reg):
    p = add_patron(reg, 0, OSLO)
    other = add_patron(reg, 1, OSLO)
    with pytest.raises(PermissionDenied):
        reg.export_patron(patron_actor(other.card), p.card)
    with pytest.raises(PermissionDenied):
        reg.export_patron(client(OSLO, "lookup", "see-national-id"), p.card)
    assert reg.export_patron(OPERATOR, p.card)["national_id"] == nid(0, date(1985, 3, 14))


# ------------------------------------------------------------------ hostile text (it arrives from the network)


HOSTILE = [
    ({"surname": "Nord\x00mann"}, "surname"),
    ({"given_name": "Kari\x1b[2J"}, "given name"),
    ({"city": "Os\ud800lo"}, "city"),
    ({"address_line1": "Storgata\x071"}, "address line1"),
    ({"preferred_contact": "telephone-call"}, "preferred contact"),
    ({"preferred_contact": "fax"}, "preferred contact"),
    ({"gender": "x" * 17}, "gender"),
    ({"gender": "male"}, "gender"),  # M, F, X or none: the same set on every channel
]


def test_hostile_or_oversized_text_refused_cleanly_on_both_backends(reg):
    for fields, match in HOSTILE:
        with pytest.raises(InvalidInput, match=match):
            add_patron(reg, 0, OSLO, **fields)
    assert reg.counts()["patrons"] == 0


def test_text_is_tidied_and_contact_channel_normalised(reg):
    p = add_patron(reg, 0, OSLO, surname=" Ødegård\tBerg ", given_name="Åse\u00a0Marie", preferred_contact=" SMS ")
    assert (p.surname, p.given_name, p.preferred_contact) == ("Ødegård Berg", "Åse Marie", "sms")
    changed = reg.update_patron(OPERATOR, p.card, preferred_contact="letter")
    assert changed.preferred_contact == "letter"
    assert reg.update_patron(OPERATOR, p.card, preferred_contact="").preferred_contact is None
    with pytest.raises(InvalidInput, match="preferred contact"):
        reg.update_patron(OPERATOR, p.card, preferred_contact="pigeon")
    with pytest.raises(InvalidInput, match="city"):
        reg.update_patron(OPERATOR, p.card, city="Oslo\x00")


def test_rules_and_agreement_versions_are_bounded(reg):
    p = add_patron(reg, 0, OSLO)
    with pytest.raises(InvalidInput, match="rules version"):
        reg.activate(OPERATOR, p.card, BERGEN, rules_version="x" * 41)
    with pytest.raises(InvalidInput, match="rules version"):
        reg.self_activate(terminal(OSLO), p.card, PIN, rules_version="v\x00")
    with pytest.raises(InvalidInput, match="door agreement version"):
        reg.update_library(OPERATOR, OSLO, door_agreement_version="x" * 41)
    with pytest.raises(InvalidInput, match="rules version"):
        reg.update_library(OPERATOR, OSLO, rules_version="x" * 41)
    assert reg.find_patron(OPERATOR, p.card).activation_at(BERGEN) is None
    assert reg.update_library(OPERATOR, OSLO, door_agreement_version=" 2025-B ").door_agreement_version == "2025-B"


def test_a_patron_sees_only_their_own_record(reg):
    p = add_patron(reg, 0, OSLO)
    other = add_patron(reg, 1, OSLO)
    assert reg.find_patron(patron_actor(p.card), p.card).surname == "Nordmann0"
    with pytest.raises(PermissionDenied):
        reg.find_patron(patron_actor(p.card), other.card)
    # the refused look is in the other patron's trail, so they see it in innsyn (issue 8, item 4)
    assert [(e.actor, e.outcome) for e in reg.audit_events(other.card) if e.action == "patron_lookup"] == [
        (f"patron:{p.card}", "permission_denied")]


def test_a_refused_lookup_by_national_id_is_audited_against_the_patron(reg):
    p = add_patron(reg, 0, OSLO)
    with pytest.raises(PermissionDenied):
        reg.find_patron_by_national_id(client(BERGEN, "lookup", "create"), nid(0, date(1985, 3, 14)))
    assert [(e.actor, e.outcome) for e in reg.audit_events(p.card) if e.action == "patron_lookup_national_id"] == [
        ("client:ils-NO-2120100", "permission_denied")]


def test_operator_replaces_a_card_after_a_move_to_a_library_without_series(reg):
    reg.add_library(OPERATOR, "NO-0030100", "Nasjonalbiblioteket")
    p = add_patron(reg, 71)
    reg.set_home_library(OPERATOR, p.card, "NO-0030100")
    replaced = reg.replace_card(OPERATOR, p.card)
    # The home library has no series, so the number comes from the series that issued the old card.
    assert replaced.card != p.card and replaced.card_status == "active"
    assert reg.find_patron(OPERATOR, p.card).card_status == "replaced"


def test_a_deleted_patrons_audit_trail_stays_readable(reg):
    p = add_patron(reg, 72)
    reg.delete_patron(OPERATOR, p.card)
    actions = [e.action for e in reg.audit_events(p.card)]
    assert actions[0] == "patron_register" and actions[-1] == "patron_delete"


def test_a_lookup_by_an_unregistered_national_id_is_audited(reg):
    from gateway.register.errors import NotFound

    with pytest.raises(NotFound):
        reg.find_patron_by_national_id(OPERATOR, nid(17))
    last = reg.audit_events()[-1]
    assert (last.action, last.outcome) == ("patron_lookup_national_id", "not_found")


def test_the_innsyn_copy_shows_times_in_oslo_with_the_offset(reg):
    """One time policy (issue 9, item 10): stored in UTC, shown to people in Europe/Oslo."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    p = add_patron(reg, 0, OSLO)
    exported = reg.export_patron(OPERATOR, p.card)
    oslo = datetime.now(ZoneInfo("Europe/Oslo")).strftime("%z")
    offset = f"{oslo[:3]}:{oslo[3:]}"
    assert exported["exported_at"].endswith(offset)
    assert exported["created_at"].endswith(offset)
    assert all(e["at"].endswith(offset) for e in exported["audit"])
