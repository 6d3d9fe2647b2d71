"""SIP2 codec: the test vectors of sip2.md Part B and the behaviour Part A asks for."""

import re
import unicodedata
from datetime import UTC, datetime

import pytest

from protocols.sip2 import (
    DENIED,
    LAYOUTS,
    ChecksumError,
    Framer,
    FrameTooLarge,
    Message,
    SIP2Error,
    build,
    checksum,
    encode,
    format_date,
    looks_like_tls_client_hello,
    parse,
    parse_date,
    redact,
    redact_frame,
    refusal,
)

D = "20250301    101500"
DRE = r"\d{8} {4}\d{6}"
WHEN = datetime(2025, 3, 1, 10, 15)


# --------------------------------------------------------------------------- checksums (B.7)

@pytest.mark.parametrize("signed, expected", [
    (b"9300CNkiosk1|COsecret|CPNB-DEP1|AY0AZ", "F406"),
    (b"96AZ", "FEF6"),
    (b"97AZ", "FEF5"),
    (b"941AY0AZ", "FDFD"),
    (b"940AY0AZ", "FDFE"),
    (b"9900302.00AY1AZ", "FCA5"),
    (b"9300CNuser_id|COpassw0rd|AY1AZ", "F594"),
    (b"9300CNOV|COOV|CPWES|AY1AZ", "F86B"),
    (b"941AY1AZ", "FDFC"),
    (f"23012{D}AONB|AAN000123456|AC|AD1234|AY2AZ".encode(), "F2F5"),
    (f"63012{D}  Y       AONB|AAN000123456|AC|AD1234|BP1|BQ5|AY3AZ".encode(), "EEF4"),
    (f"35{D}AONB|AAN000123456|AY4AZ".encode(), "F64E"),
])
def test_checksum_vectors(signed, expected):
    assert checksum(signed) == expected
    assert (sum(signed) + int(expected, 16)) & 0xFFFF == 0


def test_checksum_is_zero_padded_upper_case():
    # byte sum low 16 bits > 0xF000 → checksum < 0x1000 → must still be 4 digits
    data = bytes([0xFF]) * 242  # byte sum 242*255 = 61710 = 0xF10E
    assert checksum(data) == "0EF2"
    assert checksum(b"") == "0000"
    assert re.fullmatch(r"[0-9A-F]{4}", checksum(b"abc"))


def test_worked_example_login():
    m = parse(b"9300CNkiosk1|COsecret|CPNB-DEP1|AY0AZF406\r")
    assert (m.code, m.name, m.sequence, m.checksum, m.checksum_basis) == ("93", "login", 0, "F406", "bytes")
    assert m.fixed == {"uid_algorithm": "0", "pwd_algorithm": "0"}
    assert (m.get("CN"), m.get("login_password"), m.get("CP")) == ("kiosk1", "secret", "NB-DEP1")
    assert encode(build("94", ok="1"), reply_to=m) == b"941AY0AZFDFD\r"
    assert encode(build("94", ok="0"), sequence=0, checksum=True) == b"940AY0AZFDFE\r"
    assert encode(build("94", ok="1"), reply_to=parse(b"9300CNOV|COOV|CPWES|AY1AZF86B")) == b"941AY1AZFDFC\r"


def test_resend_messages_carry_no_sequence():
    assert encode(build("96"), checksum=True) == b"96AZFEF6\r"
    assert encode(build("96"), checksum=True, sequence=4) == b"96AZFEF6\r"
    assert encode(build("97"), checksum=True) == b"97AZFEF5\r"
    assert parse(b"97AZFEF5\r").code == "97"
    assert parse(b"96AZFEF6").checksum == "FEF6"


@pytest.mark.parametrize("frame", [
    b"9300CNkiosk1|COsecret|CPNB-DEP1|AY0AZF406",
    b"9900302.00AY1AZFCA5",
    b"9300CNuser_id|COpassw0rd|AY1AZF594",
    b"9300CNOV|COOV|CPWES|AY1AZF86B",
    f"23012{D}AONB|AAN000123456|AC|AD1234|AY2AZF2F5".encode(),
    f"63012{D}  Y       AONB|AAN000123456|AC|AD1234|BP1|BQ5|AY3AZEEF4".encode(),
    f"35{D}AONB|AAN000123456|AY4AZF64E".encode(),
])
def test_error_detection_vectors_verify_and_one_altered_byte_fails(frame):
    assert parse(frame).checksum_basis == "bytes"
    body = frame[: frame.rindex(b"AY")]
    for i in range(2, len(body)):
        altered = frame[:i] + bytes([frame[i] ^ 0x01]) + frame[i + 1:]
        with pytest.raises(SIP2Error) as err:
            parse(altered)
        # a changed byte is a checksum failure (answer 96) unless it broke the framing itself
        assert err.value.reason in ("bad_checksum", "bad_fixed_field", "duplicate_field",
                                    "unknown_command", "bad_command")
    with pytest.raises(ChecksumError) as err:
        parse(frame[:-1] + (b"0" if frame[-1:] != b"0" else b"1"))
    assert err.value.reason == "bad_checksum" and err.value.sequence == parse(frame).sequence


def test_lowercase_checksum_accepted_and_verify_can_be_disabled():
    assert parse(b"9900302.00AY1AZfca5").checksum == "FCA5"
    m = parse(b"9900302.00AY1AZ0000", verify=False)
    assert m.sequence == 1 and m.checksum == "0000" and m.checksum_basis is None


def test_sc_status_vector():
    m = parse(b"9900302.00AY1AZFCA5\r")
    assert m.fixed == {"status_code": "0", "max_print_width": "030", "protocol_version": "2.00"}
    assert m.sequence == 1
    m = parse(b"9910302.00\r")
    assert m.fixed["status_code"] == "1" and m.sequence is None and not m.error_detection


# --------------------------------------------------------------------------- charsets (B.8, A.5)

NAME_MSG = dict(patron_status=" " * 14, language="012", transaction_date="20250101    120000",
                AO="NB", AA="N000123456", AE="Bjørnstad, Åse", BL="Y", CQ="Y")


@pytest.mark.parametrize("encoding, expected", [
    ("cp850", "EAB2"), ("latin-1", "EA1F"), ("iso-8859-1", "EA1F"), ("utf-8", "E919"),
    ("utf8", "E919"), ("ascii", "EB2C"),
])
def test_charset_vectors_one_message_five_checksums(encoding, expected):
    wire = encode(build("24", **NAME_MSG), encoding, sequence=1, checksum=True)
    assert wire.endswith(b"AY1AZ" + expected.encode() + b"\r")
    assert checksum(wire[:-5]) == expected  # computed over the exact bytes sent
    back = parse(wire, encoding)
    assert back.checksum_basis == "bytes"
    assert back.get("AE") == ("Bjornstad, Ase" if encoding == "ascii" else "Bjørnstad, Åse")


def test_byte_values_of_norwegian_letters():
    for enc, hexes in [("cp850", "919B8692 9D8F"), ("latin-1", "E6F8E5C6D8C5"),
                       ("utf-8", "C3A6C3B8C3A5C386C398C385")]:
        wire = encode(build("36", end_session="Y", transaction_date=D, AO="NB", AA="x", AF="æøåÆØÅ"), enc)
        assert bytes.fromhex(hexes.replace(" ", "")) in wire


def test_nfd_input_is_encoded_as_nfc():
    nfd = "Bjørnstad, A\u030ase"  # Å as A + combining ring
    wire = encode(build("24", **{**NAME_MSG, "AE": nfd}), "utf-8", sequence=1, checksum=True)
    assert wire.endswith(b"AY1AZE919\r")  # the UTF-8 NFC checksum, not NFD's E8CA
    assert encode(build("24", **{**NAME_MSG, "AE": nfd}), "cp850").count(b"\x8f") == 1


def test_lenient_checksum_over_code_points_and_nfd():
    text = "24" + " " * 14 + "012" + "20250101    120000" + \
        "AONB|AAN000123456|AEBjørnstad, Åse|BLY|CQY|AY1AZ"
    # php-sip2#8: an ILS that checksums code points but sends UTF-8
    m = parse((text + "EA1F").encode("utf-8"), "utf-8")
    assert m.checksum_basis == "codepoints" and m.get("AE") == "Bjørnstad, Åse"
    # Evergreen: checksum over NFD UTF-8 while sending NFC
    m = parse((text + "E8CA").encode("utf-8"), "utf-8")
    assert m.checksum_basis == "nfd" and m.get("AE") == "Bjørnstad, Åse"
    # NFD on the wire, checksummed as sent: verifies over bytes, the value comes back NFC
    m = parse((unicodedata.normalize("NFD", text) + "E8CA").encode("utf-8"), "utf-8")
    assert m.checksum_basis == "bytes" and m.get("AE") == "Bjørnstad, Åse"
    with pytest.raises(ChecksumError):
        parse((text + "EAB2").encode("utf-8"), "utf-8")  # cp850's checksum, UTF-8 bytes


def test_decoding_before_login_utf8_then_cp850():
    utf8 = "9300CNkiosk|COpass|CPBjørnstad|".encode()
    cp850 = "9300CNkiosk|COpass|CPBjørnstad|".encode("cp850")
    assert parse(utf8).get("CP") == "Bjørnstad" and parse(utf8).encoding == "utf-8"
    assert parse(cp850).get("CP") == "Bjørnstad" and parse(cp850).encoding == "cp850"
    # a configured UTF-8 terminal that sends cp850 still decodes (fallback chain, B.8)
    assert parse(cp850, "utf-8").encoding == "cp850"
    assert parse(cp850, "cp850").encoding == "cp850"
    assert parse("9300CN|COÅse|".encode("latin-1"), "latin-1").get("CO") == "Åse"


def test_unsupported_encoding():
    with pytest.raises(SIP2Error) as err:
        encode(build("94"), "utf-16")
    assert err.value.reason == "unsupported_encoding"
    with pytest.raises(SIP2Error):
        parse(b"941", "koi8-r")


# --------------------------------------------------------------------------- display vs identifiers

def _af(encoding, text):
    wire = encode(build("36", end_session="N", transaction_date=D, AO="NB", AA="N1", AF=text), encoding)
    return parse(wire, encoding).get("AF"), wire


@pytest.mark.parametrize("encoding, text, expected", [
    ("cp850", "Lånerregisteret håndterer ikke utlån …", "Lånerregisteret håndterer ikke utlån ..."),
    ("latin-1", "Lånerregisteret håndterer ikke utlån …", "Lånerregisteret håndterer ikke utlån ..."),
    ("utf-8", "Lånerregisteret håndterer ikke utlån …", "Lånerregisteret håndterer ikke utlån …"),
    ("latin-1", "Áŋŋá Čoavddáš – “Đ”", "Ánná Coavddás - \"D\""),  # Sámi letters not in Latin-1
    ("cp850", "Ærøskøbing €5 ‘x’", "Ærøskøbing EUR5 'x'"),
    ("ascii", "Ærø Ståle Œuvre ß", "AEro Stale OEuvre ss"),
    ("cp850", "中文", "??"),
])
def test_display_fields_are_transliterated(encoding, text, expected):
    assert _af(encoding, text)[0] == expected


def test_personal_name_is_transliterated_but_identifiers_are_not():
    m = build("24", **{**NAME_MSG, "AE": "Áŋŋá"})
    assert parse(encode(m, "cp850"), "cp850").get("AE") == "Ánná"
    for fid in ("AA", "AO"):
        with pytest.raises(SIP2Error) as err:
            encode(build("24", **{**NAME_MSG, fid: "Áŋŋá"}), "cp850")
        assert (err.value.reason, err.value.field) == ("unencodable", fid)
        assert "Á" not in str(err.value)
    assert parse(encode(build("24", **{**NAME_MSG, "AA": "Áŋŋá"}), "utf-8")).get("AA") == "Áŋŋá"


def test_delimiter_and_cr_in_display_field_become_spaces():
    value, wire = _af("utf-8", "a|b\rc\nd\x00e")
    assert value == "a b c d e"
    assert wire.count(b"\r") == 1 and wire.endswith(b"\r")


@pytest.mark.parametrize("bad", ["N0001|23", "N0001\r", "N0001\n", "N\x00", "N\x7f"])
def test_delimiter_or_control_in_identifier_is_an_error(bad):
    with pytest.raises(SIP2Error) as err:
        encode(build("24", **{**NAME_MSG, "AA": bad}))
    assert (err.value.reason, err.value.field) == ("bad_value", "AA")


@pytest.mark.parametrize("encoding, char, width", [
    ("utf-8", "ø", 2), ("cp850", "ø", 1), ("latin-1", "ø", 1), ("utf-8", "€", 3), ("utf-8", "a", 1)])
def test_display_field_limit_is_255_encoded_bytes(encoding, char, width):
    value, wire = _af(encoding, char * 300)
    assert len(value.encode(encoding)) <= 255
    assert len(value) == 255 // width  # cut on a character boundary
    assert b"AF" + value.encode(encoding) + b"|" in wire


@pytest.mark.parametrize("encoding, ok, too_long", [
    ("utf-8", "ø" * 127 + "a", "ø" * 128),  # 255 bytes fits, 256 does not
    ("cp850", "ø" * 255, "ø" * 256),
    ("latin-1", "ø" * 255, "ø" * 256),
])
def test_identifier_limit_is_255_encoded_bytes(encoding, ok, too_long):
    assert parse(encode(build("24", **{**NAME_MSG, "AA": ok}), encoding), encoding).get("AA") == ok
    with pytest.raises(SIP2Error) as err:
        encode(build("24", **{**NAME_MSG, "AA": too_long}), encoding)
    assert (err.value.reason, err.value.field) == ("field_too_long", "AA")


# --------------------------------------------------------------------------- strict output

def test_fixed_fields_exact_widths_and_values():
    bad = [("patron_status", "Y"), ("patron_status", "YYYYXXXXXXXXXX"), ("language", "12"),
           ("language", "١٢٣"), ("transaction_date", "2025-03-01 10:15:00"),
           ("transaction_date", " " * 18)]
    for name, value in bad:
        with pytest.raises(SIP2Error) as err:
            encode(build("24", **{**NAME_MSG, name: value}))
        assert (err.value.reason, err.value.field) == ("bad_fixed_field", name)
    with pytest.raises(SIP2Error) as err:
        encode(Message("24", {**build("24", **NAME_MSG).fixed, "bogus": "x"}, (("AO", ""),)))
    assert err.value.reason == "unknown_fixed_field"
    with pytest.raises(SIP2Error) as err:
        encode(Message("24", {"language": "000"}, ()))
    assert err.value.reason == "missing_fixed_field"


def test_required_fields_missing_and_duplicates_refused_on_output():
    with pytest.raises(SIP2Error) as err:
        encode(build("24", **{**NAME_MSG, "AE": None}))
    assert (err.value.reason, err.value.field) == ("missing_field", "AE")
    with pytest.raises(SIP2Error) as err:
        encode(build("24", **{**NAME_MSG, "AA": ["a", "b"]}))
    assert (err.value.reason, err.value.field) == ("duplicate_field", "AA")
    for fid in ("AY", "AZ", "a1", "A"):
        with pytest.raises(SIP2Error):
            encode(Message("94", {"ok": "1"}, ((fid, "1"),)))


def test_fields_emitted_in_spec_order_with_extensions_last():
    m = Message("24", build("24", **NAME_MSG).fixed,
                (("PB", "19800101"), ("AF", "one"), ("AE", "X"), ("AA", "N1"), ("AF", "two"), ("AO", "NB")))
    wire = encode(m)
    assert wire.endswith(b"AONB|AAN1|AEX|AFone|AFtwo|PB19800101|\r")


def test_sequence_and_terminator_rules():
    assert encode(build("94", ok="1"), terminator=b"\r\n") == b"941\r\n"
    for kwargs in [dict(terminator=b"\n"), dict(sequence=1), dict(checksum=True, sequence=10),
                   dict(checksum=True, sequence=True)]:
        with pytest.raises(SIP2Error):
            encode(build("94", ok="1"), **kwargs)
    assert encode(build("94", ok="1"), reply_to=parse(b"9300CNa|COb|")) == b"941\r"
    with pytest.raises(SIP2Error) as err:
        encode(Message("42"))
    assert err.value.reason == "unknown_command"


# --------------------------------------------------------------------------- lenient input

def test_black_box_request_vectors():
    m = parse(b"9300CNuser|COpass|CPinst|")
    assert (m.get("CN"), m.get("CO"), m.get("CP")) == ("user", "pass", "inst")
    m = parse(f"23001{D}AOinst|AAgood|AD1234|AC|".encode())
    assert m.fixed == {"language": "001", "transaction_date": D}
    assert (m.get("AO"), m.get("AA"), m.get("AD"), m.get("AC")) == ("inst", "good", "1234", "")
    m = parse(f"63000{D}{' ' * 10}AOinst|AAgood|".encode())
    assert m.fixed["summary"] == " " * 10 and m.get("AD") is None and "AD" not in m
    m = parse(f"25{D}AOinst|AAgood|".encode())
    assert m.name == "patron_enable"
    m = parse(f"01N{D}AOinst|ALHe's a jerk|AAgood|ACterminal password|".encode())
    assert (m.fixed["card_retained"], m.get("blocked_card_msg")) == ("N", "He's a jerk")
    m = parse(f"09N{D}{D}APUnder the bed|AOinst|ABitem|ACterminal password|".encode())
    assert (m.fixed["return_date"], m.get("AP"), m.get("AB")) == (D, "Under the bed", "item")
    m = parse(f"11YN{D}{' ' * 18}AOinst|AAgood|ABitem|AC|".encode())
    assert m.fixed["nb_due_date"] == " " * 18 and m.get("AB") == "item"
    m = parse(f"15+{D}BW{D}|BSTaylor|BY2|AOinst|AAgood|ABitem|".encode())
    assert (m.fixed["hold_mode"], m.get("BW"), m.get("BS"), m.get("BY")) == ("+", D, "Taylor", "2")


def test_response_shapes_match_black_box_regexes():
    date = format_date(WHEN)
    assert re.match(rf"^98[YN]{{6}}\d{{3}}\d{{3}}{DRE}(2\.00|1\.00)", encode(build(
        "98", online_status="Y", timeout_period="999", retries_allowed="999", date_time_sync=WHEN,
        AO="NB", BX="YNNYYYYYYNNNYNNN")).decode())
    unknown = build("24", patron_status=DENIED, language="012", transaction_date=date, AO="NB",
                    AA="wshakespeare", AE="", BL="N")
    wire = encode(unknown).decode()
    assert re.match(rf"^24Y[ Y]{{13}}\d{{3}}{DRE}", wire) and "|AE|" in wire
    assert re.match(rf"^26 {{4}}[ Y]{{10}}000{DRE}", encode(build(
        "26", language="000", transaction_date=date, AO="NB", AA="N1", AE="x")).decode())
    assert re.match(rf"^64 [ Y]{{13}}\d{{3}}{DRE}(\d{{4}}){{6}}", encode(build(
        "64", language="012", transaction_date=date, AO="NB", AA="N1", AE="x", BL="Y")).decode())


def test_any_field_order_unknown_and_empty_fields():
    m = parse(f"23012{D}ADpin|XYjunk|AAN1|AC|AONB|".encode())
    assert (m.get("AO"), m.get("AA"), m.get("AD"), m.get("AC"), m.get("XY")) == ("NB", "N1", "pin", "", "junk")
    assert m.missing_required() == []
    m = parse(f"23012{D}AAN1|".encode())
    assert m.missing_required() == ["AO", "AC", "AD"]  # lenient: parsed, the caller decides


@pytest.mark.parametrize("frame", [
    f"23012{D}AONB|AAN1|\r".encode(),
    f"23012{D}AONB|AAN1|\r\n".encode(),
    f"23012{D}AONB|AAN1|\n".encode(),
    f"\n23012{D}AONB|AAN1|".encode(),
    f"  \x00\t23012{D}AONB|AAN1|||".encode(),
    f"23012{D}AONB|AAN1|||  \r\n".encode(),
    f"23012{D}AONB|AAN1".encode(),  # no final delimiter
    f"23012{D}AONB||AAN1|\x00\x00".encode(),
])
def test_terminators_and_junk_around_a_message(frame):
    m = parse(frame)
    assert m.fields == (("AO", "NB"), ("AA", "N1"))


def test_trailing_junk_never_cuts_into_fixed_fields():
    m = parse(f"63012{D}{' ' * 10}\r\n".encode())
    assert m.fixed["summary"] == " " * 10 and m.fields == ()
    with pytest.raises(SIP2Error) as err:
        parse(f"63012{D}".encode())
    assert err.value.reason == "short_message"


def test_trailer_after_junk_and_after_unterminated_field():
    assert parse(b"9300CNuser_id|COpassw0rd|AY1AZF594|||\r\n").checksum_basis == "bytes"
    signed = b"9300CNuser_id|COpassw0rdAY1AZ"
    m = parse(signed + checksum(signed).encode())
    assert (m.get("CO"), m.sequence) == ("passw0rd", 1)
    # a value that merely looks like a trailer, followed by its delimiter, is a value
    m = parse(b"9300CNuser_id|COpassw0rdAY1AZ1234|")
    assert (m.get("CO"), m.sequence, m.checksum) == ("passw0rdAY1AZ1234", None, None)


def test_duplicated_fields():
    m = parse(f"23012{D}AONB|AAN1|AAN1|".encode())  # identical repeat: first wins
    assert m.get("AA") == "N1" and m.get_all("AA") == ["N1", "N1"]
    with pytest.raises(SIP2Error) as err:
        parse(f"23012{D}AONB|AAN1|ADsecret1|AAN2|ADsecret2|".encode())
    assert (err.value.reason, err.value.field) == ("duplicate_field", "AA")
    assert "N1" not in str(err.value) and "N2" not in str(err.value)
    m = parse(f"36Y{D}AONB|AAN1|AFone|AFtwo|".encode())  # repeatable
    assert m.get_all("screen_message") == ["one", "two"]


def test_nul_byte_inside_a_message_is_an_error():
    with pytest.raises(SIP2Error) as err:
        parse(f"23012{D}AONB|AAN0\x0001|".encode())
    assert (err.value.reason, err.value.command) == ("control_character", "23")


@pytest.mark.parametrize("frame, reason", [
    (b"", "empty"), (b"\r\n", "empty"), (b"9", "empty"), (b"XX", "bad_command"),
    (b"42abc", "unknown_command"), (b"23012", "short_message"),
    (b"2301220250301 | 101500AONB|", "bad_fixed_field"),
    ("2301220250301 ø 101500AONB|".encode(), "bad_fixed_field"),
    (f"23012{D}AONB|AAN1|AY1AZ0000".encode(), "bad_checksum"),
])
def test_unparsable_frames_raise_the_codec_error(frame, reason):
    with pytest.raises(SIP2Error) as err:
        parse(frame)
    assert err.value.reason == reason


def test_parse_rejects_non_bytes():
    with pytest.raises(SIP2Error):
        parse("9900302.00")


def test_nfc_normalisation_of_input():
    m = parse("36Y20250301    101500AONB|AAN1|AFA\u030ase|".encode("utf-8"))
    assert m.get("AF") == "Åse"


# --------------------------------------------------------------------------- framing (B.11)

def test_two_messages_in_one_write_and_split_messages():
    f = Framer()
    assert f.feed(b"9900302.00AY1AZFCA5\r9300CNa|COb|\r") == [b"9900302.00AY1AZFCA5", b"9300CNa|COb|"]
    assert f.feed(b"9300CN") == [] and f.pending == 6
    assert f.feed(b"a|CO") == []
    assert f.feed(b"b|\r99") == [b"9300CNa|COb|"]
    assert f.feed(b"00302.00\r") == [b"9900302.00"]


def test_framer_crlf_lf_and_blank_lines():
    f = Framer()
    assert f.feed(b"941\r\n940\n\n  \r\n\t 941\r") == [b"941", b"940", b"941"]
    assert f.feed(b"941\r") == [b"941"]
    assert f.feed(b"\n") == []  # LF of a CRLF split across writes


def test_nine_kilobyte_line_without_cr():
    f = Framer()
    with pytest.raises(FrameTooLarge) as err:
        for _ in range(9):
            f.feed(b"9" * 1024)
    assert isinstance(err.value, SIP2Error) and err.value.reason == "frame_too_large"
    assert f.pending == 0
    assert f.feed(b"9" * 2000) == []  # the rest of that line is discarded …
    assert f.feed(b"99\r9900302.00\r") == [b"9900302.00"]  # … and framing resumes


def test_oversized_line_in_one_chunk_keeps_preceding_frames():
    f = Framer(max_size=100)
    with pytest.raises(FrameTooLarge) as err:
        f.feed(b"941\r" + b"x" * 101 + b"\r940\r")
    assert err.value.frames == [b"941"]
    assert f.feed(b"") == [b"940"]
    assert Framer(max_size=100).feed(b"x" * 100 + b"\r") == [b"x" * 100]


def test_tls_client_hello_detection():
    hello = bytes.fromhex("16030100f4010000f00303") + b"\x00" * 32
    assert looks_like_tls_client_hello(hello)
    assert looks_like_tls_client_hello(b"\x16")
    assert not looks_like_tls_client_hello(b"9300CN")
    assert not looks_like_tls_client_hello(b"")
    assert not looks_like_tls_client_hello(b"\x16\x01")
    with pytest.raises(SIP2Error):
        parse(hello)


def test_97_before_any_response_parses():
    assert parse(b"97\r").name == "request_acs_resend"
    assert parse(b"97AZFEF5\r").error_detection


# --------------------------------------------------------------------------- construction helpers

def test_refusal_echoes_ids_never_passwords():
    req = parse(f"11YN{D}{' ' * 18}AONB|AAN000123456|ABitem1|ACtermpw|ADpin|".encode())
    resp = refusal(req, when=WHEN, screen_message="Lånerregisteret håndterer ikke utlån …")
    wire = encode(resp, "cp850")
    assert wire.startswith(b"120NUN20250301    101500AONB|AAN000123456|ABitem1|AJ|AH|AF")
    assert b"termpw" not in wire and b"pin" not in wire


@pytest.mark.parametrize("code", [c for c, lay in LAYOUTS.items() if lay.response])
def test_every_request_has_an_encodable_refusal(code):
    req = Message(code, {ff.name: ff.default or D for ff in LAYOUTS[code].fixed},
                  (("AO", "NB"), ("AA", "N1"), ("AB", "i1"), ("AD", "1234")))
    resp = refusal(req, when=WHEN, screen_message="nei")
    wire = encode(resp, "utf-8", checksum=True, sequence=5)
    back = parse(wire)
    assert back == resp and back.code == LAYOUTS[code].response
    assert "AD" not in back
    assert back.get("AF") == ("nei" if "AF" in LAYOUTS[back.code].fields else None)
    for ff in LAYOUTS[back.code].fixed:
        if ff.kind.name == "status":
            assert back.fixed[ff.name] == DENIED


def test_build_accepts_names_ids_and_datetimes():
    m = build("patron_status_response", patron_status=DENIED, language="012", transaction_date=WHEN,
              institution_id="NB", patron_identifier="N1", personal_name="", valid_patron="N",
              screen_message=["a", "b"], PB="20000101")
    assert m.code == "24" and m.fixed["transaction_date"] == "20250301    101500"
    assert m.fields == (("AO", "NB"), ("AA", "N1"), ("AE", ""), ("BL", "N"), ("AF", "a"), ("AF", "b"),
                        ("PB", "20000101"))
    with pytest.raises(TypeError):
        build("24", bogus="x")
    with pytest.raises(TypeError):
        build("24")  # transaction_date has no default
    with pytest.raises(SIP2Error):
        build("42")


def test_dates():
    assert format_date(WHEN) == "20250301    101500"
    utc = datetime(2025, 3, 1, 9, 15, tzinfo=UTC)
    assert format_date(utc) == "20250301   Z091500"
    assert parse_date("20250301   Z091500") == utc
    assert parse_date("20250301    101500") == WHEN
    assert parse_date(" " * 18) is None
    for bad in ["2025030110150", "20251301    101500", "abcdefgh    101500"]:
        with pytest.raises(SIP2Error):
            parse_date(bad)


def test_redaction():
    m = parse(b"9300CNkiosk1|COsecret|CPNB-DEP1|AY0AZF406")
    assert "secret" not in repr(m) and "secret" not in redact(m) and "kiosk1" in repr(m)
    m = parse(f"23012{D}AONB|AAN1|ACtermpw|AD1234|".encode())
    text = redact(m, hide=["patron_identifier"])
    assert "1234" not in text and "termpw" not in text and "N1" not in text
    assert redact_frame(f"23012{D}AD1234|AONB|AC9|".encode()) == f"23012{D}AD***|AONB|AC***|".encode()
    assert redact_frame(b"9300CNkiosk1|COsecret|AY0AZF406\r") == b"9300CNkiosk1|CO***|AY0AZF406\r"
    assert b"secret" not in redact_frame(b"\x16\x03secret")
    with pytest.raises(SIP2Error) as err:
        parse(b"9300CNkiosk1|COsecret|AY0AZ0000")
    assert "secret" not in str(err.value)


@pytest.mark.parametrize("code", ["24", "26", "64"])
@pytest.mark.parametrize("style", [{}, {"checksum": True}, {"checksum": True, "sequence": 7}])
@pytest.mark.parametrize("terminator", [b"\r", b"\r\n"])
def test_restamp_is_encode_at_another_date(code: str, style: dict, terminator: bytes) -> None:
    """An answer encoded once and given another transaction date is what encode makes at that date."""
    from protocols.sip2 import restamp

    def at(when: str) -> bytes:
        return encode(build(code, patron_status=" " * 14, language="012", transaction_date=when, AO="NO-2030000",
                            AA="N000123456", AE="Åse Bjørnstad", BL="Y", AF="Lånekortet er gyldig."),
                      "utf-8", terminator=terminator, **style)

    early, late = "20250301    101500", "20261231    235959"
    assert restamp(at(early), late) == at(late) and restamp(at(late), early) == at(early)
    with pytest.raises(SIP2Error):
        restamp(at(early), "not a date at all!")
    with pytest.raises(SIP2Error):
        restamp(encode(build("94", ok="1")), late)
