"""Libraries in the register: what the national operator and the libraries themselves see."""

from __future__ import annotations

import pytest
from register_helpers import BERGEN, OSLO, client, raw_rows, terminal

from gateway.register.errors import AlreadyExists, InvalidInput, NotFound, PermissionDenied
from gateway.register.views import OPERATOR


def test_add_library_by_isil_or_bare_number_stores_the_isil(register):
    oslo = register.add_library(OPERATOR, "NO-2030000", "Deichman Oslo", door_min_age=15, self_activation=True)
    bergen = register.add_library(OPERATOR, " 2120100 ", "Bergen offentlige bibliotek")
    lower = register.add_library(OPERATOR, "no-2160100", "Trondheim folkebibliotek", auto_activation=True)
    assert (oslo.isil, bergen.isil, lower.isil) == ("NO-2030000", "NO-2120100", "NO-2160100")
    assert oslo.door_min_age == 15 and oslo.self_activation and not oslo.auto_activation
    assert lower.auto_activation and not lower.self_activation
    # defaults: a library that says nothing lets no one under 18 through its door, activates nobody by itself
    assert (bergen.door_min_age, bergen.self_activation, bergen.auto_activation) == (18, False, False)
    assert register.get_library("2120100").name == "Bergen offentlige bibliotek"


def test_list_libraries_sorted_by_isil(register):
    register.add_library(OPERATOR, "2160100", "Trondheim folkebibliotek")
    register.add_library(OPERATOR, "0030100", "Nasjonalbiblioteket")
    register.add_library(OPERATOR, "2030000", "Deichman Oslo")
    assert [lib.isil for lib in register.list_libraries()] == ["NO-0030100", "NO-2030000", "NO-2160100"]


def test_duplicate_library_refused_in_any_spelling(register):
    register.add_library(OPERATOR, "NO-2030000", "Deichman Oslo")
    for second in ("NO-2030000", "2030000", " no-2030000 "):
        with pytest.raises(AlreadyExists, match="NO-2030000"):
            register.add_library(OPERATOR, second, "Deichman igjen")
    assert [lib.name for lib in register.list_libraries()] == ["Deichman Oslo"]


def test_malformed_library_id_refused_with_the_right_form(register):
    for isil in ("NO-203000", "SE-2030000", "20300001", "Deichman", ""):
        with pytest.raises(InvalidInput, match="NO-"):
            register.add_library(OPERATOR, isil, "Some library")
    assert register.list_libraries() == []


def test_library_needs_a_name_and_sane_settings(register):
    with pytest.raises(InvalidInput, match="name"):
        register.add_library(OPERATOR, OSLO, "   ")
    with pytest.raises(InvalidInput, match="age"):
        register.add_library(OPERATOR, OSLO, "Deichman Oslo", door_min_age=-1)
    with pytest.raises(InvalidInput, match="age"):
        register.add_library(OPERATOR, OSLO, "Deichman Oslo", door_min_age=121)
    assert register.list_libraries() == []


def test_only_the_operator_adds_libraries(register):
    with pytest.raises(PermissionDenied):
        register.add_library(client(OSLO), OSLO, "Deichman Oslo")
    with pytest.raises(PermissionDenied):
        register.add_library(terminal(OSLO), OSLO, "Deichman Oslo")
    assert register.list_libraries() == []


def test_library_settings_update_and_audit(register):
    register.add_library(OPERATOR, OSLO, "Deichman Oslo")
    updated = register.update_library(OPERATOR, "2030000", door_min_age=15, self_activation=True,
                                      auto_activation=True, rules_version="2025-01", door_agreement_version="3")
    assert (updated.door_min_age, updated.self_activation, updated.auto_activation) == (15, True, True)
    assert (updated.rules_version, updated.door_agreement_version) == ("2025-01", "3")
    again = register.get_library(OSLO)
    assert again == updated
    # None leaves a setting alone, False switches it off
    later = register.update_library(OPERATOR, OSLO, door_min_age=None, self_activation=False)
    assert later.door_min_age == 15 and not later.self_activation and later.auto_activation
    (action, outcome, isil), = raw_rows(
        register, "SELECT action, outcome, library_isil FROM audit_events WHERE action = 'library_settings' "
                  "ORDER BY id LIMIT 1")
    assert (action, outcome, isil) == ("library_settings", "ok", OSLO)


def test_library_may_change_its_own_settings_but_not_anothers(register):
    register.add_library(OPERATOR, OSLO, "Deichman Oslo")
    register.add_library(OPERATOR, BERGEN, "Bergen offentlige bibliotek")
    assert register.update_library(client(OSLO), OSLO, rules_version="7").rules_version == "7"
    with pytest.raises(PermissionDenied):
        register.update_library(client(OSLO), BERGEN, door_min_age=0)
    assert register.get_library(BERGEN).door_min_age == 18


def test_library_settings_refuse_nonsense(register):
    register.add_library(OPERATOR, OSLO, "Deichman Oslo", door_min_age=15)
    with pytest.raises(InvalidInput, match="unknown library setting"):
        register.update_library(OPERATOR, OSLO, colour="red")
    with pytest.raises(InvalidInput):
        register.update_library(OPERATOR, OSLO, door_min_age=200)
    with pytest.raises(InvalidInput):
        register.update_library(OPERATOR, OSLO, rules_version="   ")
    with pytest.raises(NotFound, match="NO-2120100"):
        register.update_library(OPERATOR, BERGEN, door_min_age=10)
    assert register.get_library(OSLO).door_min_age == 15
