"""The layout table against sip2.md B.4, transcribed independently."""

import pytest

from protocols.sip2 import FIELDS, LAYOUTS, supported_messages

# code: (var@, fixed widths in order, required variable fields) — straight from B.4
B4 = {
    "93": (4, [1, 1], "CN CO"),
    "94": (3, [1], ""),
    "99": (10, [1, 3, 4], ""),
    "98": (36, [1, 1, 1, 1, 1, 1, 3, 3, 18, 4], "AO BX"),
    "23": (23, [3, 18], "AO AA AC AD"),
    "24": (37, [14, 3, 18], "AO AA AE"),
    "63": (33, [3, 18, 10], "AO AA"),
    "64": (61, [14, 3, 18, 4, 4, 4, 4, 4, 4], "AO AA AE"),
    "11": (40, [1, 1, 18, 18], "AO AA AB AC"),
    "12": (24, [1, 1, 1, 1, 18], "AO AA AB AJ AH"),
    "09": (39, [1, 18, 18], "AP AO AB AC"),
    "10": (24, [1, 1, 1, 1, 18], "AO AB AQ"),
    "01": (21, [1, 18], "AO AL AA AC"),
    "17": (20, [18], "AO AB"),
    "18": (26, [2, 2, 2, 18], "AB AJ"),
    "19": (20, [18], "AO AB CH"),
    "20": (21, [1, 18], "AB"),
    "25": (20, [18], "AO AA"),
    "26": (37, [14, 3, 18], "AO AA AE"),
    "15": (21, [1, 18], "AO AA"),
    "16": (22, [1, 1, 18], "AO AA"),
    "29": (40, [1, 1, 18, 18], "AO AA"),
    "30": (24, [1, 1, 1, 1, 18], "AO AA AB AJ AH"),
    "65": (20, [18], "AO AA"),
    "66": (29, [1, 4, 4, 18], "AO"),
    "35": (20, [18], "AO AA"),
    "36": (21, [1, 18], "AO AA"),
    "37": (27, [18, 2, 2, 3], "BV AO AA"),
    "38": (21, [1, 18], "AO AA"),
    "97": (2, [], ""),
    "96": (2, [], ""),
}

# B.3: request → response and the BX position
B3 = {"23": "24", "11": "12", "09": "10", "01": "24", "99": "98", "93": "94", "63": "64",
      "35": "36", "37": "38", "17": "18", "19": "20", "25": "26", "15": "16", "29": "30",
      "65": "66"}


def test_all_31_messages():
    assert set(LAYOUTS) == set(B4) and len(LAYOUTS) == 31


@pytest.mark.parametrize("code", sorted(B4))
def test_layout_matches_b4(code):
    var_at, widths, required = B4[code]
    lay = LAYOUTS[code]
    assert lay.var_offset == var_at
    assert [f.width for f in lay.fixed] == widths
    assert lay.required == frozenset(required.split())
    assert LAYOUTS[code].response == B3.get(code)


def test_repeatable_fields_are_those_of_b1():
    assert {f.id for f in FIELDS.values() if f.repeatable} == set("AF AG AS AT AU AV BU CD BM BN".split())


def test_only_passwords_are_secret_and_display_fields_include_names_and_messages():
    assert {f.id for f in FIELDS.values() if f.secret} == {"AC", "AD", "CO"}
    display = {f.id for f in FIELDS.values() if f.display}
    assert {"AE", "AF", "AG"} <= display
    assert not display & {"AA", "AB", "AO", "AC", "AD", "CN", "CO", "BL", "CQ", "BX"}


def test_bx_positions():
    assert supported_messages(["23", "01", "99", "97", "93", "63", "35", "25"]) == "YNNYYYYYYNNNYNNN"
    assert supported_messages([]) == "N" * 16
    with pytest.raises(ValueError):
        supported_messages(["24"])
