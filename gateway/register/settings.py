"""The register's settings, as the ``register:`` section of the config gives them."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

OSLO = ZoneInfo("Europe/Oslo")  # the register's day: ages, "today", times shown to patrons


@dataclass(frozen=True)
class Settings:
    agency_id: str = "NLR"
    allow_synthetic_ids: bool = False
    pin_max_failures: int = 5
    pin_lock_minutes: int = 15
    pin_hash_cost: int = 14  # keep equal to gateway.config.RegisterConfig
    audit_retention_days: int = 365  # lookup and decision audit rows (gateway.register.retention)
    change_retention_days: int = 365  # change feed entries
    quarantine_retention_days: int = 365  # settled quarantine entries of a legacy import
    cache_size: int = 100_000  # cards whose decision facts a gateway process keeps (gateway.hot_path)
    audit_queue_max: int = 20_000  # lookup and decision audit rows a gateway process may hold unwritten
