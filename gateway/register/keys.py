"""Key rotation: re-encrypting national ids under the active key, and which keys seal how many."""

from __future__ import annotations

from sqlalchemy import select, update

from gateway.register import crypto
from gateway.register.context import Area
from gateway.register.models import (
    Patron,
)


class Keys(Area):
    """Re-encryption and key usage."""

    def reencrypt(self, batch_size: int = 500) -> int:
        """Re-encrypt every national id not sealed with the active key, in small transactions, so
        the gateway keeps serving meanwhile. Returns how many rows were re-encrypted."""
        active, done, last_id = self.keys.active_key_id, 0, 0
        while True:
            with self._tx() as s:
                rows = s.execute(
                    select(Patron.id, Patron.national_id_ciphertext)
                    .where(Patron.id > last_id, Patron.national_id_ciphertext.is_not(None))
                    .order_by(Patron.id).limit(batch_size)
                ).all()
                if not rows:
                    return done
                for patron_id, cipher in rows:
                    assert cipher is not None  # selected so
                    if crypto.KeyRing.key_id_of(cipher) != active:
                        s.execute(update(Patron).where(Patron.id == patron_id, Patron.national_id_ciphertext == cipher)
                                  .values(national_id_ciphertext=self.keys.encrypt(self.keys.decrypt(cipher)))
                                  .execution_options(synchronize_session=False))
                        done += 1
                last_id = rows[-1][0]

    def key_usage(self) -> dict[int, int]:
        with self._tx() as s:
            counts: dict[int, int] = {}
            ciphers = select(Patron.national_id_ciphertext).where(Patron.national_id_ciphertext.is_not(None))
            for (cipher,) in s.execute(ciphers):
                assert cipher is not None  # selected so
                kid = crypto.KeyRing.key_id_of(cipher)
                counts[kid] = counts.get(kid, 0) + 1
            return counts
