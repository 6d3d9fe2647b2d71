"""The register end to end on both backends: libraries, a series, a patron, a door decision."""

from datetime import date

import pytest

from gateway.demo import synthetic_fnr
from gateway.register.errors import DuplicatePatron
from gateway.register.views import OPERATOR, Actor, Reason


def test_register_and_decide(register):
    register.add_library(OPERATOR, "2030000", "Deichman Oslo", door_min_age=15)
    assert register.reserve_series(OPERATOR, "NO-2030000", count=1000).range == "N000000001-N000001000"
    nid = synthetic_fnr(date(1985, 3, 14), 10)
    p = register.register_patron(OPERATOR, "NO-2030000", national_id=nid, surname="Nordmann", given_name="Kari",
                                 birth_date=date(1985, 3, 14), pin="1234")
    assert p.card == "N000000001"
    with pytest.raises(DuplicatePatron) as err:
        register.register_patron(OPERATOR, "NO-2030000", national_id=nid, surname="X", given_name="Y")
    assert err.value.existing_card == "N000000001"
    door = Actor("terminal", "door-1", "NO-2030000")
    assert register.decide(door, p.card, "1234", door=True).reason is Reason.DOOR_NO_AGREEMENT
    register.activate(OPERATOR, p.card, "NO-2030000", door_agreement=True)
    assert register.decide(door, p.card, "1234", door=True).reason is Reason.GRANTED
    assert register.decide(door, p.card, "9999", door=True).reason is Reason.PIN_WRONG


def test_schema_head_names_the_newest_migration(database_url):
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from gateway.register.database import MIGRATIONS, SCHEMA_HEAD, make_engine, schema_is_current

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_current_head() == SCHEMA_HEAD
    engine = make_engine(database_url)
    assert schema_is_current(engine)
    engine.dispose()
