"""Property tests for the SIP2 codec: round trip for every message type, robustness on junk."""

import unicodedata

from hypothesis import HealthCheck, given, settings, strategies as st

from protocols.sip2 import FIELDS, LAYOUTS, Framer, FrameTooLarge, Message, SIP2Error, encode, parse
from protocols.sip2.layouts import field

ENCODINGS = ["utf-8", "cp850", "latin-1"]
EXTENSION_IDS = ["PB", "PC", "XY", "WS", "ZZ", "Q9"]


def _alphabet(encoding: str) -> st.SearchStrategy[str]:
    if encoding == "utf-8":
        return st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="|")
    chars = bytes(range(0x20, 0x100)).decode(encoding)
    return st.sampled_from([c for c in chars if c not in "|\x7f"])


def clean_text(encoding: str) -> st.SearchStrategy[str]:
    """What a value can be and come back unchanged: NFC, no delimiter or control character,
    encodable, at most 255 encoded bytes."""
    return (st.text(_alphabet(encoding), max_size=70)
            .map(lambda s: unicodedata.normalize("NFC", s))
            .filter(lambda s: len(s.encode(encoding)) <= 255))


@st.composite
def messages(draw, code: str, encoding: str) -> Message:
    lay = LAYOUTS[code]
    fixed = {ff.name: draw(st.from_regex(ff.kind.pattern, fullmatch=True)) for ff in lay.fixed}
    ids = [f for f in lay.fields if f in lay.required or draw(st.booleans())]
    ids += [f for f in EXTENSION_IDS if f not in lay.fields and draw(st.integers(0, 4)) == 0]
    fields = []
    for fid in ids:
        count = draw(st.integers(1, 3)) if field(fid).repeatable else 1
        fields += [(fid, draw(clean_text(encoding))) for _ in range(count)]
    return Message(code, fixed, tuple(fields))


def check_round_trip(code, data):
    encoding = data.draw(st.sampled_from(ENCODINGS))
    message = data.draw(messages(code, encoding))
    with_checksum = data.draw(st.booleans())
    sequence = data.draw(st.none() | st.integers(0, 9)) if with_checksum else None
    terminator = data.draw(st.sampled_from([b"\r", b"\r\n"]))
    wire = encode(message, encoding, sequence=sequence, checksum=with_checksum, terminator=terminator)
    assert wire.endswith(terminator) and wire.count(b"\r") == 1 and b"\n" not in wire[:-1]
    back = parse(wire, encoding)
    assert back == message
    assert back.fixed == message.fixed and back.fields == message.fields
    assert back.error_detection == with_checksum
    assert back.sequence == (None if code in ("96", "97") else sequence)
    if with_checksum:
        assert back.checksum_basis == "bytes"
    assert encode(back, encoding, sequence=back.sequence, checksum=with_checksum,
                  terminator=terminator) == wire
    # the same bytes through the framer, in two pieces
    cut = data.draw(st.integers(0, len(wire)))
    framer = Framer()
    assert framer.feed(wire[:cut]) + framer.feed(wire[cut:]) == [wire[:-len(terminator)]]


# One test function per message type. (Not ``pytest.mark.parametrize``: pytest-twisted wraps a
# hypothesis test's inner function once per parameter, which nests its reactor calls.)
def _round_trip_test(code):
    @settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def test(data):
        check_round_trip(code, data)

    test.__name__ = test.__qualname__ = f"test_encode_parse_round_trip_{code}"
    return test


for _code in sorted(LAYOUTS):
    globals()[f"test_encode_parse_round_trip_{_code}"] = _round_trip_test(_code)


DISPLAY_IDS = sorted(f.id for f in FIELDS.values() if f.display)


@settings(max_examples=300)
@given(encoding=st.sampled_from(ENCODINGS + ["ascii"]), text=st.text(max_size=400),
       fid=st.sampled_from(DISPLAY_IDS))
def test_any_text_fits_a_display_field(encoding, text, fid):
    m = Message("24", {"language": "012", "transaction_date": "20250301    101500"},
                (("AO", "NB"), ("AA", "N1"), ("AE", ""), (fid, text)) if fid != "AE"
                else (("AO", "NB"), ("AA", "N1"), ("AE", text)))
    wire = encode(m, encoding)
    assert wire.count(b"\r") == 1 and b"\n" not in wire
    value = parse(wire, encoding).get(fid)
    assert len(value.encode(encoding)) <= 255 and "|" not in value


@settings(max_examples=300)
@given(encoding=st.sampled_from(ENCODINGS), text=st.text(max_size=300))
def test_identifier_is_exact_or_refused(encoding, text):
    m = Message("23", {"language": "012", "transaction_date": "20250301    101500"},
                (("AO", "NB"), ("AA", text), ("AC", ""), ("AD", "")))
    try:
        wire = encode(m, encoding)
    except SIP2Error as err:
        assert err.reason in ("bad_value", "unencodable", "field_too_long") and err.field == "AA"
        return
    assert parse(wire, encoding).get("AA") == unicodedata.normalize("NFC", text)


@settings(max_examples=1500)
@given(frame=st.binary(max_size=300), encoding=st.sampled_from([None, *ENCODINGS]),
       verify=st.booleans())
def test_arbitrary_bytes_raise_only_the_codec_error(frame, encoding, verify):
    try:
        parse(frame, encoding, verify=verify)
    except SIP2Error:
        pass


SEEDS = [
    b"9300CNkiosk1|COsecret|CPNB-DEP1|AY0AZF406",
    b"2301220250301    101500AONB|AAN000123456|AC|AD1234|AY2AZF2F5",
    b"6301220250301    101500  Y       AONB|AAN000123456|AC|AD1234|BP1|BQ5|AY3AZEEF4",
    b"9900302.00AY1AZFCA5",
    b"96AZFEF6",
]


@settings(max_examples=1500)
@given(seed=st.sampled_from(SEEDS), edits=st.lists(
    st.tuples(st.integers(0, 200), st.binary(max_size=3), st.integers(0, 3)), max_size=4),
    encoding=st.sampled_from([None, *ENCODINGS]))
def test_mutated_messages_raise_only_the_codec_error(seed, edits, encoding):
    frame = seed
    for pos, insert, delete in edits:
        pos %= len(frame) + 1
        frame = frame[:pos] + insert + frame[pos + delete:]
    try:
        m = parse(frame, encoding)
    except SIP2Error:
        return
    assert all("|" not in v for _, v in m.fields)


@settings(max_examples=500)
@given(chunks=st.lists(st.binary(max_size=200), max_size=20), limit=st.integers(1, 300))
def test_framer_on_arbitrary_chunks(chunks, limit):
    framer = Framer(max_size=limit)
    for chunk in chunks:
        while True:  # after FrameTooLarge, feed(b"") goes on with what followed the long line
            try:
                frames = framer.feed(chunk)
                done = True
            except FrameTooLarge as err:
                frames, done, chunk = err.frames, False, b""
            for frame in frames:
                assert b"\r" not in frame and b"\n" not in frame and 0 < len(frame) <= limit
            if done:
                break
        assert framer.pending <= limit
