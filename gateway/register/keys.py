"""Key rotation: re-encrypting national ids under the active key, and which keys seal how many.

National ids are held in two tables: the patrons', and the quarantine's (rows of a legacy import
not imported, until they are resolved or discarded). Both are re-encrypted and counted, so an older
key can be retired once ``key_usage`` names only the active one."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import InstrumentedAttribute

from gateway.register import crypto
from gateway.register.context import Area
from gateway.register.models import Patron, QuarantineEntry

# Every table holding an encrypted national id: the row's key and its ciphertext.
_SEALED: tuple[tuple[type[Patron] | type[QuarantineEntry], InstrumentedAttribute[int],
                     InstrumentedAttribute[bytes | None]], ...] = (
    (Patron, Patron.id, Patron.national_id_ciphertext),
    (QuarantineEntry, QuarantineEntry.id, QuarantineEntry.national_id_ciphertext),
)


class Keys(Area):
    """Re-encryption and key usage."""

    def reencrypt(self, batch_size: int = 500) -> int:
        """Re-encrypt every national id not sealed with the active key (patrons' and the
        quarantine's), in small transactions, so the gateway keeps serving meanwhile. Returns how
        many rows were re-encrypted."""
        active, done = self.keys.active_key_id, 0
        for table, key, column in _SEALED:
            last_id = 0
            while True:
                with self._tx() as s:
                    rows = s.execute(
                        select(key, column).where(key > last_id, column.is_not(None)).order_by(key).limit(batch_size)
                    ).all()
                    if not rows:
                        break
                    for row_id, cipher in rows:
                        assert cipher is not None  # selected so
                        if crypto.KeyRing.key_id_of(cipher) != active:
                            # only if unchanged meanwhile (a resolution erases it, a re-run does not touch it)
                            s.execute(update(table).where(key == row_id, column == cipher)
                                      .values({column: self.keys.encrypt(self.keys.decrypt(cipher))})
                                      .execution_options(synchronize_session=False))
                            done += 1
                    last_id = rows[-1][0]
        return done

    def key_usage(self) -> dict[int, int]:
        """How many national ids (patrons' and the quarantine's) each key seals."""
        with self._tx() as s:
            counts: dict[int, int] = {}
            for _table, _key, column in _SEALED:
                for (cipher,) in s.execute(select(column).where(column.is_not(None))):
                    assert cipher is not None  # selected so
                    kid = crypto.KeyRing.key_id_of(cipher)
                    counts[kid] = counts.get(kid, 0) + 1
            return counts
