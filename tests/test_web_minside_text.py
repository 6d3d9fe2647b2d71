"""Min side's texts (gateway/web/minside/i18n.py), without a server: every catalogue has every key, with
the same placeholders, and the nynorsk reads as nynorsk (no key left to fall back to bokmål, no
bokmål-only word)."""

from __future__ import annotations

import re
import string

import pytest

from gateway.web.minside import i18n

CATALOGUES = {"nb": i18n.NB, "en": i18n.EN, "nn": i18n.NN}
# Words that are bokmål and never nynorsk; a nynorsk text that has one was left in bokmål.
BOKMAL_ONLY = frozenset({
    "ikke", "noe", "noen", "hva", "hvem", "hvor", "hvilke", "hvilket", "hvordan", "allerede", "ble", "fra",
    "mye", "meldte", "siden", "endret", "lagret", "sperret", "slettet", "erstattet", "jeg", "aldersgrensen",
    "hjemmebibliotek", "hjemmebiblioteket", "lånerregister", "bibliotekene", "opplysningene", "oppføringer",
})


def placeholders(text: str) -> set[str]:
    """The names ``str.format`` fills in ``text`` (a stray brace fails here, as it would on the page)."""
    return {name for _literal, name, _spec, _conv in string.Formatter().parse(text) if name is not None}


def test_every_catalogue_has_the_same_keys() -> None:
    nb = set(i18n.NB)
    for lang, catalogue in CATALOGUES.items():
        assert set(catalogue) == nb, (lang, sorted(nb - set(catalogue)), sorted(set(catalogue) - nb))
    assert set(i18n.CATALOGUES) == set(i18n.LANGUAGES) == set(CATALOGUES)


@pytest.mark.parametrize("lang", ["en", "nn"])
def test_the_placeholders_match_per_key(lang: str) -> None:
    catalogue = CATALOGUES[lang]
    wrong = {key: (placeholders(text), placeholders(catalogue[key])) for key, text in i18n.NB.items()
             if placeholders(text) != placeholders(catalogue[key])}
    assert not wrong, wrong


def test_every_text_formats_and_is_plain() -> None:
    for lang, catalogue in CATALOGUES.items():
        for key, text in catalogue.items():
            assert text.strip() and text == text.strip(), (lang, key)
            text.format(**dict.fromkeys(placeholders(text), "x"))
            assert "<" not in text and ">" not in text, (lang, key)  # plain text: the templates escape it


def test_nynorsk_is_nynorsk() -> None:
    found = {key: sorted(set(re.findall(r"\w+", text.lower())) & BOKMAL_ONLY) for key, text in i18n.NN.items()}
    assert not {key: words for key, words in found.items() if words}, found
    for key in ("out.not_affiliated", "out.duplicate_patron", "out.door_underage", "act.card_lost"):
        assert i18n.NN[key] != i18n.NB[key], key


def test_a_translator_never_shows_a_key() -> None:
    for lang in i18n.LANGUAGES:
        t = i18n.Translator(lang)
        for key in i18n.NB:
            assert t(key, **dict.fromkeys(placeholders(i18n.NB[key]), "x")) != key, (lang, key)
