"""The one table of SIP2 2.00 message layouts (sip2.md B.4), used for parsing *and* encoding.

Two small text tables are turned into frozen objects at import time:

``FIELDS`` – every variable field id we know: attribute name, class, repeatability.
    class ``id``      identifier / code: never transliterated, never altered (encode error instead)
    class ``text``    display text: transliterated, sanitised and truncated to fit (A.5, B.1)
    class ``secret``  a password (AC, AD, CO): treated like ``id`` and redacted in every log line
    a trailing ``*`` marks a repeatable field (B.1); everything else is single-valued.

``MESSAGES`` – one line per command: ``CC>RR name  fixed fields | variable fields``.
    ``>RR``  the response code (B.3), for requests that have one.
    fixed fields ``name:kind[=default]`` in wire order; the kind fixes width and allowed value.
    variable fields in the order the SIP2 2.00 spec lists them (which is the order we emit);
    ``!`` marks a field the spec requires (encode demands it, parse is lenient about it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

# --------------------------------------------------------------------------- fixed-field kinds

_DATE = r"\d{8}[ A-Z]{4}\d{6}"


@dataclass(frozen=True)
class Kind:
    """How a fixed field looks on the wire: its width, the regex a value must match on output,
    and the default used when a message is built without it (``None``: must be given)."""

    name: str
    width: int
    pattern: re.Pattern[str]
    default: str | None


def _kind(name: str, width: int, pattern: str, default: str | None) -> Kind:
    return Kind(name, width, re.compile(pattern, re.ASCII), default)


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        _kind("01", 1, "[01]", "0"),  # ok / not ok
        _kind("YN", 1, "[YN]", "N"),  # flag
        _kind("YNU", 1, "[YNU]", "U"),  # flag with "unknown"
        _kind("date", 18, _DATE, None),  # YYYYMMDDZZZZHHMMSS (B.6)
        _kind("date?", 18, f"{_DATE}| {{18}}", " " * 18),  # may be 18 blanks (nb due / return date)
        _kind("status", 14, "[ Y]{14}", " " * 14),  # patron status (B.5)
        _kind("summary", 10, "[ Y]{10}", " " * 10),  # 63 summary
        *(_kind(f"n{w}", w, rf"\d{{{w}}}", "0" * w) for w in (1, 2, 3, 4)),  # digits
        *(_kind(f"a{w}", w, rf"[ -{{}}~]{{{w}}}", None) for w in (1, 3, 4)),  # printable, no '|'
    )
}


@dataclass(frozen=True)
class FixedField:
    name: str
    kind: Kind
    default: str | None

    @property
    def width(self) -> int:
        return self.kind.width


# --------------------------------------------------------------------------- variable fields

FIELD_ID = re.compile(r"[A-Z][A-Z0-9]")
TRAILER_IDS = frozenset({"AY", "AZ"})  # sequence number and checksum: never ordinary fields

_FIELDS = """
AA patron_identifier      id       AB item_identifier        id       AC terminal_password      secret
AD patron_password        secret   AE personal_name          text     AF screen_message         text*
AG print_line             text*    AH due_date               text     AJ title_identifier       text
AL blocked_card_msg       text     AM library_name           text     AN terminal_location      id
AO institution_id         id       AP current_location       id       AQ permanent_location     id
AS hold_items             id*      AT overdue_items          id*      AU charged_items          id*
AV fine_items             id*      BD home_address           text     BE e_mail_address         id
BF home_phone_number      id       BG owner                  id       BH currency_type          id
BI cancel                 id       BK transaction_id         id       BL valid_patron           id
BM renewed_items          id*      BN unrenewed_items        id*      BO fee_acknowledged       id
BP start_item             id       BQ end_item               id       BR queue_position         id
BS pickup_location        id       BT fee_type               id       BU recall_items           id*
BV fee_amount             id       BW expiration_date        id       BX supported_messages     id
BY hold_type              id       BZ hold_items_limit       id       CA overdue_items_limit    id
CB charged_items_limit    id       CC fee_limit              id       CD unavailable_hold_items id*
CF hold_queue_length      id       CG fee_identifier         id       CH item_properties        id
CI security_inhibit       id       CJ recall_date            id       CK media_type             id
CL sort_bin               id       CM hold_pickup_date       id       CN login_user_id          id
CO login_password         secret   CP location_code          id       CQ valid_patron_password  id
CR collection_code        id       CS call_number            id       CT destination_location   id
CV alert_type             id       CY hold_patron_id         id       DA hold_patron_name       text
PB patron_birth_date      id       PC patron_class           id       PI patron_internet_profile id
"""


@dataclass(frozen=True)
class Field:
    id: str
    name: str
    cls: str  # "id" | "text" | "secret"
    repeatable: bool

    @property
    def display(self) -> bool:
        return self.cls == "text"

    @property
    def secret(self) -> bool:
        return self.cls == "secret"


def _parse_fields(table: str) -> dict[str, Field]:
    words = table.split()
    out = {}
    for fid, name, cls in zip(words[0::3], words[1::3], words[2::3], strict=True):
        out[fid] = Field(fid, name, cls.rstrip("*"), cls.endswith("*"))
    return out


FIELDS: dict[str, Field] = _parse_fields(_FIELDS)
FIELD_BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS.values()}
SECRET_IDS = frozenset(f.id for f in FIELDS.values() if f.secret)


def field(fid: str) -> Field:
    """The ``Field`` for an id; unknown (extension) ids are single-valued identifiers."""
    return FIELDS.get(fid) or Field(fid, fid, "id", False)


# --------------------------------------------------------------------------- messages

_DATE_TX = "transaction_date:date"
_CHECKOUT_RESP = f"ok:01 renewal_ok:YN magnetic_media:YNU desensitize:YNU=N {_DATE_TX} | " \
                 "AO! AA! AB! AJ! AH! BT CI BH BV CK CH BK AF AG"

# One message a row: code[>answer code], name, fixed fields (name:kind[=default]), then | and the variable
# field ids (! = required). A line that starts with blanks continues the row above.
_MESSAGES = f"""
93>94 login                  uid_algorithm:a1=0 pwd_algorithm:a1=0 | CN! CO! CP
94 login_response            ok:01 |
99>98 sc_status              status_code:n1 max_print_width:n3 protocol_version:a4=2.00 |
98 acs_status                online_status:YN checkin_ok:YN checkout_ok:YN acs_renewal_policy:YN status_update_ok:YN
                             offline_ok:YN timeout_period:n3 retries_allowed:n3 date_time_sync:date
                             protocol_version:a4=2.00
                             | AO! AM AN BX! AF AG
97 request_acs_resend        |
96 request_sc_resend         |
23>24 patron_status          language:n3 {_DATE_TX} | AO! AA! AC! AD!
24 patron_status_response    patron_status:status language:n3 {_DATE_TX} | AO! AA! AE! BL CQ BH BV AF AG
63>64 patron_information     language:n3 {_DATE_TX} summary:summary | AO! AA! AC AD BP BQ
64 patron_information_response patron_status:status language:n3 {_DATE_TX} hold_items_count:n4
                             overdue_items_count:n4 charged_items_count:n4 fine_items_count:n4 recall_items_count:n4
                             unavailable_holds_count:n4
                             | AO! AA! AE! BZ CA CB BL CQ BH BV CC AS AT AU AV BU CD BD BE BF AF AG
11>12 checkout               sc_renewal_policy:YN no_block:YN {_DATE_TX} nb_due_date:date? | AO! AA! AB! AC! CH AD BO BI
12 checkout_response         {_CHECKOUT_RESP}
09>10 checkin                no_block:YN {_DATE_TX} return_date:date? | AP! AO! AB! AC! CH BI
10 checkin_response          ok:01 resensitize:YN magnetic_media:YNU alert:YN {_DATE_TX}
                             | AO! AB! AQ! AJ CL AA CK CH CR CS CT CV CY DA AF AG
01>24 block_patron           card_retained:YN {_DATE_TX} | AO! AL! AA! AC!
17>18 item_information       {_DATE_TX} | AO! AB! AC
18 item_information_response circulation_status:n2=01 security_marker:n2=00 fee_type:n2=01 {_DATE_TX}
                             | CF AH CJ CM AB! AJ! BG BH BV CK AQ AP CH AF AG
19>20 item_status_update     {_DATE_TX} | AO! AB! AC CH!
20 item_status_update_response item_properties_ok:01 {_DATE_TX} | AB! AJ CH AF AG
25>26 patron_enable          {_DATE_TX} | AO! AA! AC AD
26 patron_enable_response    patron_status:status language:n3 {_DATE_TX} | AO! AA! AE! BL CQ AF AG
15>16 hold                   hold_mode:a1=+ {_DATE_TX} | BW BS BY AO! AA! AD AB AJ AC BO
16 hold_response             ok:01 available:YN {_DATE_TX} | BW BR BS AO! AA! AB AJ AF AG
29>30 renew                  third_party_allowed:YN no_block:YN {_DATE_TX} nb_due_date:date? | AO! AA! AD AB AJ AC CH BO
30 renew_response            {_CHECKOUT_RESP}
65>66 renew_all              {_DATE_TX} | AO! AA! AD AC BO
66 renew_all_response        ok:01 renewed_count:n4 unrenewed_count:n4 {_DATE_TX} | AO! BM BN AF AG
35>36 end_patron_session     {_DATE_TX} | AO! AA! AC AD
36 end_session_response      end_session:YN {_DATE_TX} | AO! AA! AF AG
37>38 fee_paid               {_DATE_TX} fee_type:n2=01 payment_type:n2=00 currency_type:a3 | BV! AO! AA! AC AD CG BK
38 fee_paid_response         payment_accepted:YN {_DATE_TX} | AO! AA! BK AF AG
"""

#: The request behind each position of ``BX`` supported messages (B.3).
BX_ORDER = ("23", "11", "09", "01", "99", "97", "93", "63", "35", "37", "17", "19", "25", "15",
            "29", "65")


def supported_messages(answered: Iterable[str]) -> str:
    """The 16-character ``BX`` value advertising the request codes in ``answered``."""
    codes = set(answered)
    unknown = codes - set(BX_ORDER)
    if unknown:
        raise ValueError(f"not a BX request code: {sorted(unknown)}")
    return "".join("Y" if code in codes else "N" for code in BX_ORDER)


#: 96 and 97 carry a checksum but never a sequence number (B.4: ``96AZFEF6``, ``97AZFEF5``).
UNSEQUENCED = frozenset({"96", "97"})


@dataclass(frozen=True)
class Layout:
    code: str
    name: str
    response: str | None  # the code of the answer (B.3), for requests
    fixed: tuple[FixedField, ...]
    fields: tuple[str, ...]  # variable field ids, in emitting order
    required: frozenset[str]

    @cached_property  # (computed once: the codec asks on every message)
    def var_offset(self) -> int:
        """Byte offset of the first variable field (the ``var@`` column of B.4)."""
        return 2 + sum(f.width for f in self.fixed)

    @cached_property
    def fixed_names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fixed)

    @cached_property
    def field_rank(self) -> dict[str, int]:
        """Variable field id → its place in the emitting order (ids not in the layout come after)."""
        return {fid: i for i, fid in enumerate(self.fields)}


def _parse_layout(line: str) -> Layout:
    head, _, var = line.partition("|")
    words = head.split()
    code, _, response = words[0].partition(">")
    fixed = []
    for spec in words[2:]:
        name, _, rest = spec.partition(":")
        kind_name, eq, default = rest.partition("=")
        kind = KINDS[kind_name]
        fixed.append(FixedField(name, kind, default if eq else kind.default))
    ids = [v.rstrip("!") for v in var.split()]
    required = frozenset(v.rstrip("!") for v in var.split() if v.endswith("!"))
    return Layout(code, words[1], response or None, tuple(fixed), tuple(ids), required)


def _rows(table: str) -> list[str]:
    """The table's rows: a line that starts with blanks continues the row above."""
    rows: list[str] = []
    for line in table.strip().splitlines():
        if line[:1].isspace() and rows:
            rows[-1] += " " + line.strip()
        elif line:
            rows.append(line)
    return rows


LAYOUTS: dict[str, Layout] = {lay.code: lay for lay in map(_parse_layout, _rows(_MESSAGES))}
LAYOUT_BY_NAME: dict[str, Layout] = {lay.name: lay for lay in LAYOUTS.values()}


def _self_check() -> None:
    assert len(LAYOUTS) == 31, len(LAYOUTS)
    for lay in LAYOUTS.values():
        unknown = set(lay.fields) - FIELDS.keys()
        assert not unknown, (lay.code, unknown)
        assert len(set(lay.fields)) == len(lay.fields), lay.code
        clash = set(lay.fixed_names) & {FIELDS[f].name for f in lay.fields}
        assert not clash, (lay.code, clash)  # keyword names must be unambiguous per message
        assert lay.response is None or lay.response in LAYOUTS, lay.code
        for f in lay.fixed:
            assert f.default is None or f.kind.pattern.fullmatch(f.default), (lay.code, f.name)


_self_check()
