"""Libraries and their settings: door age, self- and auto-activation, rules and agreement versions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from gateway.register import actors, audit, fields, records
from gateway.register.actors import Actor
from gateway.register.context import Area
from gateway.register.errors import (
    AlreadyExists,
)
from gateway.register.models import (
    Library,
)
from gateway.register.reading import library_view
from gateway.register.views import (
    LibraryView,
)
from gateway.register.vocabulary import Action


class Libraries(Area):
    """Adding libraries and changing their settings (the operator, or the library itself)."""

    def add_library(
        self, actor: Actor, isil: str, name: str, *, door_min_age: int = 18, self_activation: bool = False,
        auto_activation: bool = False, rules_version: str = "1",
    ) -> LibraryView:
        actors.require_operator(actor)
        isil = fields.isil(isil)
        name = fields.text(name, "name", 200, required=True) or ""  # required: never empty
        self._check_library_settings(door_min_age, rules_version)
        try:
            with self._tx() as s:
                lib = Library(isil=isil, name=name, door_min_age=door_min_age, self_activation=self_activation,
                              auto_activation=auto_activation,
                              rules_version=fields.version(rules_version, "rules version"),
                              door_agreement_version="1")
                s.add(lib)
                s.flush()
                audit.record(s, actor, Action.LIBRARY_ADD, "ok", library=isil)
                return library_view(lib)
        except IntegrityError:
            raise AlreadyExists(f"library {isil} is already in the register") from None

    @staticmethod
    def _check_library_settings(door_min_age: int | None, rules_version: str | None) -> None:
        if door_min_age is not None and not 0 <= door_min_age <= 120:
            raise fields.bad("door minimum age must be between 0 and 120")
        fields.version(rules_version, "rules version")

    def update_library(self, actor: Actor, isil: str, **settings: Any) -> LibraryView:
        """Change a library's settings: name, door_min_age, self_activation, auto_activation,
        rules_version, door_agreement_version. The library itself or the operator may."""
        allowed = {"name", "door_min_age", "self_activation", "auto_activation", "rules_version",
                   "door_agreement_version"}
        unknown = set(settings) - allowed
        if unknown:
            raise fields.bad(f"unknown library setting {sorted(unknown)[0]}")
        self._check_library_settings(settings.get("door_min_age"), settings.get("rules_version"))
        fields.version(settings.get("door_agreement_version"), "door agreement version")
        with self._tx() as s:
            lib = records.library(s, isil)
            actors.require_library_actor(actor, lib.isil)
            for key, value in settings.items():
                if value is not None:
                    if key == "name":
                        value = fields.text(value, key, 200, required=True)
                    elif key in ("rules_version", "door_agreement_version"):
                        value = fields.version(value, key.replace("_", " "))
                    setattr(lib, key, value)
            audit.record(s, actor, Action.LIBRARY_SETTINGS, "ok", library=lib.isil,
                        detail=",".join(sorted(k for k, v in settings.items() if v is not None)))
            return library_view(lib)

    def list_libraries(self) -> list[LibraryView]:
        with self._tx() as s:
            return [library_view(lib) for lib in s.scalars(select(Library).order_by(Library.isil))]

    def get_library(self, isil: str) -> LibraryView:
        with self._tx() as s:
            return library_view(records.library(s, isil))
