"""Security and privacy at rest (PRODUCT §2.12, §6): national ids encrypted, PINs hashed, audit clean,
keys rotate."""

from __future__ import annotations

from pathlib import Path

import pytest
from register_helpers import BERGEN, OSLO, add_patron, client, nid, raw_rows, terminal
from sqlalchemy import text

from gateway.register import Register
from gateway.register.crypto import KeyRing, KeysError, hash_secret, verify_secret
from gateway.register.errors import DuplicatePatron
from gateway.register.models import Base
from gateway.register.views import OPERATOR, PinCheck, Reason

PINS = ("86420975", "75318642", "97531864")


def _ids(n: int) -> list[str]:
    return [nid(k) for k in range(n)]


def _populate(reg) -> list[str]:
    """Patrons, lookups, decisions, lost cards: everything that might leak a national id or a PIN."""
    ids = _ids(3)
    cards = []
    for k, (number, pin) in enumerate(zip(ids, PINS, strict=True)):
        p = add_patron(reg, k, OSLO, birth=None, national_id=number, pin=pin, email=f"p{k}@example.org")
        cards.append(p.card)
    reg.find_patron_by_national_id(client(OSLO, "lookup-national-id"), ids[0])
    reg.find_patron(client(OSLO, "lookup", "see-national-id"), cards[0], with_national_id=True)
    reg.export_patron(OPERATOR, cards[1])
    reg.decide(terminal(OSLO), cards[0], PINS[0])
    reg.decide(terminal(OSLO), cards[0], PINS[2])  # wrong
    reg.verify_pin(OPERATOR, cards[1], PINS[0])  # wrong
    reg.set_pin(OPERATOR, cards[2], "13579246")
    reg.replace_card(OPERATOR, cards[1])
    with pytest.raises(DuplicatePatron):
        add_patron(reg, 9, BERGEN, national_id=ids[2])
    return ids


def _every_value(reg) -> list[tuple[str, str, object]]:
    out = []
    with reg.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in conn.execute(table.select()):
                for column, value in zip(table.columns.keys(), row, strict=True):
                    out.append((table.name, column, value))
    return out


def _as_text(value: object) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("latin-1")
    return str(value)


def test_no_national_id_or_pin_in_any_column(reg):
    ids = _populate(reg)
    values = _every_value(reg)
    assert values
    for table, column, value in values:
        if value is None:
            continue
        shown = _as_text(value)
        for number in ids:
            assert number not in shown, f"national id in {table}.{column}"
            assert number[:6] + "*****" not in shown, f"masked national id in {table}.{column}"
        for pin in PINS + ("13579246",):
            assert pin not in shown, f"PIN in {table}.{column}"


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)  # SQLite: the file's bytes, below
def test_no_national_id_in_any_text_column_on_postgres_dump(reg, database_url):
    """PostgreSQL: every text-typed column of every table, as the database itself renders it."""
    ids = _populate(reg)
    with reg.engine.connect() as conn:
        tables = [t for (t,) in conn.execute(text(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"))]
        assert "patrons" in tables and "audit_events" in tables
        for table in tables:
            dump = conn.execute(text(f'SELECT t::text FROM "{table}" t')).scalars().all()
            joined = "\n".join(dump)
            for number in ids:
                assert number not in joined, f"national id in {table}"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_no_national_id_in_the_sqlite_file_bytes(reg, database_url):
    ids = _populate(reg)
    reg.delete_patron(OPERATOR, reg.find_patron_by_national_id(OPERATOR, ids[2]).card)
    path = Path(database_url.split("///", 1)[1])
    # search the database, its write-ahead log and shared memory, before and after a checkpoint
    for checkpoint in (False, True):
        if checkpoint:
            reg.engine.dispose()
        blobs = {p.name: p.read_bytes() for p in path.parent.glob(path.name + "*")}
        assert path.name in blobs and sum(map(len, blobs.values())) > 0
        for name, blob in blobs.items():
            for number in ids:
                assert number.encode() not in blob, f"national id in {name}"
                assert number.encode("utf-16-le") not in blob, f"national id (UTF-16) in {name}"
            for pin in PINS:
                assert pin.encode() not in blob, f"PIN in {name}"


def test_national_id_stored_encrypted_with_a_key_id_and_a_keyed_index(reg):
    number = nid(0)
    add_patron(reg, 0, OSLO, birth=None, national_id=number)
    add_patron(reg, 1, OSLO, birth=None, national_id=nid(1))
    rows = raw_rows(reg, "SELECT national_id_ciphertext, national_id_index, national_id_kind FROM patrons ORDER BY id")
    (cipher, index, kind), (cipher2, _, _) = rows
    cipher = bytes(cipher)
    assert KeyRing.key_id_of(cipher) == reg.keys.active_key_id == 1
    assert reg.keys.decrypt(cipher) == number
    assert kind == "fnr" and len(index) == 64
    import hashlib
    assert index != hashlib.sha256(number.encode()).hexdigest()  # not a plain (brute-forceable) hash
    # the same number encrypts differently each time (random nonce)
    assert reg.keys.encrypt(number) != reg.keys.encrypt(number)
    assert bytes(cipher2) != cipher


def test_pins_stored_as_salted_scrypt_hashes_with_parameters(reg):
    a = add_patron(reg, 0, OSLO, pin="86420975")
    b = add_patron(reg, 1, OSLO, pin="86420975")
    (ha,), (hb,) = raw_rows(reg, "SELECT pin_hash FROM patrons ORDER BY id")
    for h in (ha, hb):
        scheme, params, salt, digest = h.split("$")
        assert (scheme, params) == ("scrypt", "10,8,1")
        assert len(salt) >= 20 and len(digest) >= 40
        assert "86420975" not in h
    assert ha != hb  # salted: the same PIN gives different hashes
    assert verify_secret("86420975", ha) and not verify_secret("86420976", ha)
    assert reg.verify_pin(OPERATOR, a.card, "86420975") is PinCheck.OK
    assert reg.verify_pin(OPERATOR, b.card, "86420975") is PinCheck.OK


def test_secret_hashes_refuse_damaged_input():
    good = hash_secret("1234", 10)
    assert verify_secret("1234", good)
    for damaged in ("", None, "plain", "md5$10,8,1$a$b", good.replace("scrypt$10", "scrypt$40")):
        assert not verify_secret("1234", damaged)


def test_views_and_errors_never_show_the_national_id(reg):
    number = nid(0)
    p = add_patron(reg, 0, OSLO, birth=None, national_id=number)
    view = reg.find_patron(OPERATOR, p.card, with_national_id=True)
    assert view.national_id == number
    assert number not in repr(view) and number not in str(view)
    decision = reg.decide(terminal(OSLO), p.card, "2468")
    assert number not in repr(decision)
    with pytest.raises(DuplicatePatron) as err:
        add_patron(reg, 0, BERGEN, national_id=number)
    assert number not in str(err.value) and number not in repr(err.value)


# ------------------------------------------------------------------ key rotation


def test_key_rotation_reencrypts_every_row_and_lookups_still_work(reg):
    ids = _ids(7)
    cards = [add_patron(reg, k, OSLO, birth=None, national_id=n, pin=None).card for k, n in enumerate(ids)]
    assert reg.key_usage() == {1: 7}
    new_id = reg.keys.add_key()
    assert new_id == 2 and reg.keys.active_key_id == 2
    assert reg.key_usage() == {1: 7}  # nothing changes until reencrypt
    assert reg.reencrypt(batch_size=3) == 7
    assert reg.key_usage() == {2: 7}
    assert reg.reencrypt() == 0  # idempotent
    for (cipher,) in raw_rows(reg, "SELECT national_id_ciphertext FROM patrons"):
        assert KeyRing.key_id_of(bytes(cipher)) == 2
    for card, number in zip(cards, ids, strict=True):
        assert reg.find_patron_by_national_id(OPERATOR, number).card == card
        assert reg.find_patron(OPERATOR, card, with_national_id=True).national_id == number
    # duplicates are still caught (the lookup index does not depend on the encryption key)
    with pytest.raises(DuplicatePatron):
        add_patron(reg, 0, BERGEN, national_id=ids[0])
    # new registrations use the new key
    add_patron(reg, 8, OSLO, birth=None, national_id=nid(8))
    assert reg.key_usage() == {2: 8}


def test_key_rotation_covers_the_quarantine_so_the_old_key_can_be_dropped(reg, keys_path):
    """National ids held in quarantine rows (issue 12) are counted and re-encrypted as patrons' are:
    once `keys status` names only the new key, the old one can leave the keys file and every open
    quarantine entry still shows and resolves."""
    import yaml

    from gateway.register.legacy import ImportRow

    def legacy(number, card, national_id):
        return ImportRow(number, {"card": card, "national_id": national_id, "surname": f"Legacy{number}",
                                  "given_name": "Kari", "birth_date": "1985-03-14"})

    add_patron(reg, 0, OSLO, national_id=nid(0))
    summary = reg.import_rows(OPERATOR, OSLO, [
        legacy(1, "N000100101", nid(1)),  # imported
        legacy(2, "N000900001", nid(2)),  # card_outside_series: a valid national id, quarantined
        legacy(3, "N000100103", "12345678901"),  # invalid_national_id: encrypted all the same
        legacy(4, "N000100104", nid(0)),  # person_registered
    ])
    assert summary.imported == 1 and summary.quarantined_total == 3
    assert reg.key_usage() == {1: 5}  # two patrons, three quarantined rows
    (old_cipher,) = raw_rows(reg, "SELECT national_id_ciphertext FROM quarantine WHERE row_number = 2")[0]
    reg.keys.add_key()
    assert reg.reencrypt(batch_size=2) == 5
    assert reg.key_usage() == {2: 5}
    for (cipher,) in raw_rows(reg, "SELECT national_id_ciphertext FROM quarantine"):
        assert KeyRing.key_id_of(bytes(cipher)) == 2
    # retire key 1: the keys file keeps only key 2
    document = yaml.safe_load(keys_path.read_text(encoding="utf-8"))
    document["national_id_keys"] = [k for k in document["national_id_keys"] if k["id"] != 1]
    keys_path.write_text(yaml.safe_dump(document), encoding="utf-8")
    reg.keys.reload()
    with pytest.raises(KeysError, match="key 1"):
        reg.keys.decrypt(bytes(old_cipher))  # gone for good
    entries = {q.row: q for q in reg.list_quarantine(OSLO)}
    assert {row: q.reason for row, q in entries.items()} == {
        2: "card_outside_series", 3: "invalid_national_id", 4: "person_registered"}
    for q in entries.values():
        assert reg.show_quarantine(OPERATOR, q.id).national_id_masked
    resolved = reg.resolve_quarantine(OPERATOR, entries[2].id, new_card=True)
    card = resolved.resolution.rsplit(" ", 1)[1]
    assert reg.find_patron_by_national_id(OPERATOR, nid(2)).card == card
    assert reg.find_patron(OPERATOR, card, with_national_id=True).national_id == nid(2)
    assert reg.key_usage() == {2: 5}  # the resolved row's national id left the quarantine for the patron


def test_a_process_with_the_old_keys_file_reloads_on_an_unknown_key(reg, keys_path):
    old_ring = KeyRing.load(keys_path)  # another gateway process, started before the rotation
    other = Register(reg.engine, old_ring, reg.settings)
    number = nid(0)
    p = add_patron(reg, 0, OSLO, birth=None, national_id=number)
    reg.keys.add_key()
    reg.reencrypt()
    assert old_ring.active_key_id == 1
    assert other.find_patron(OPERATOR, p.card, with_national_id=True).national_id == number
    assert old_ring.active_key_id == 2  # it picked up the new file
    assert other.decide(terminal(OSLO), p.card, "2468").reason is Reason.GRANTED


def test_a_missing_key_is_a_clear_error(reg, tmp_path):
    p = add_patron(reg, 0, OSLO)
    stranger = KeyRing.create(tmp_path / "other-keys.yaml")
    stranger.add_key()
    stranger.add_key()
    (cipher,) = raw_rows(reg, "SELECT national_id_ciphertext FROM patrons")[0]
    # a keys file with key 1 but a different secret cannot read it, and says so without the plaintext
    with pytest.raises(KeysError, match="does not decrypt"):
        stranger.decrypt(bytes(cipher))
    reg.keys.add_key()
    foreign = stranger.encrypt("x")  # sealed with key 3, which the register's file does not have
    with pytest.raises(KeysError, match="key 3"):
        reg.keys.decrypt(foreign)
    assert reg.find_patron(OPERATOR, p.card).surname == "Nordmann0"


def test_keys_file_is_private(keys_path):
    assert keys_path.stat().st_mode & 0o077 == 0
    ring = KeyRing.load(keys_path)
    ring.add_key()
    assert keys_path.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("damage", [
    lambda h: h.rsplit("$", 1)[0] + "$",                      # empty digest
    lambda h: h[: len(h) - 8],                                 # truncated digest
    lambda h: h.replace("scrypt$", "bcrypt$"),                 # unknown scheme
    lambda h: "$".join(h.split("$")[:2] + ["", h.split("$")[3]]),  # empty salt
])
def test_a_damaged_hash_never_accepts_a_secret(damage):
    from gateway.register.crypto import hash_secret, verify_secret

    stored = hash_secret("1234", 10)
    assert verify_secret("1234", stored)
    assert not verify_secret("1234", damage(stored))


def test_database_errors_never_carry_the_sql_parameters(register):
    """A failing statement's message (which may reach a log) shows no bound values. (PostgreSQL's own
    DETAIL line may still quote a failing row; the register never lets such errors reach a client.)"""
    from sqlalchemy.exc import IntegrityError

    from gateway.register.models import Library

    secret = "NO-7777777"
    with pytest.raises(IntegrityError) as caught:  # name is NOT NULL
        with register.engine.begin() as conn:
            conn.execute(Library.__table__.insert(), [{"isil": secret, "name": None, "door_min_age": 0}])
    assert "SQL parameters hidden" in str(caught.value)
    if register.engine.dialect.name == "sqlite":
        assert secret not in str(caught.value)
