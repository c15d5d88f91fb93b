"""person_key: one HMAC per identity document, stable across the ways people type it."""

from __future__ import annotations

import re

import pytest

from fangkong_common.identity import PERSON_KEY_PATTERN, normalise_id_number, normalise_id_type, person_key

SECRET = "unit-test-secret"
ID_NUMBER = "11010519491231002X"


def test_same_input_gives_the_same_key() -> None:
    assert person_key("resident_id", ID_NUMBER, SECRET) == person_key("resident_id", ID_NUMBER, SECRET)


def test_key_is_64_lower_case_hex_chars() -> None:
    key = person_key("resident_id", ID_NUMBER, SECRET)
    assert len(key) == 64
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert re.match(PERSON_KEY_PATTERN, key)


def test_bytes_and_str_secret_give_the_same_key() -> None:
    assert person_key("resident_id", ID_NUMBER, SECRET.encode()) == person_key("resident_id", ID_NUMBER, SECRET)


def test_key_changes_with_the_secret() -> None:
    assert person_key("resident_id", ID_NUMBER, "secret-a") != person_key("resident_id", ID_NUMBER, "secret-b")


def test_key_changes_with_the_id_type() -> None:
    assert person_key("resident_id", ID_NUMBER, SECRET) != person_key("passport", ID_NUMBER, SECRET)


def test_key_changes_with_the_number() -> None:
    assert person_key("resident_id", "110105194912310021", SECRET) != person_key(
        "resident_id", "110105194912310030", SECRET
    )


@pytest.mark.parametrize(
    "typed",
    [
        "11010519491231002x",  # lower-case check character
        "110105 19491231 002X",  # spaces between groups
        " 11010519491231002X ",  # surrounding blanks
        "110105-19491231-002X",  # hyphens
        "110105\t1949-1231 002x",  # a mix
        "１１０１０５１９４９１２３１００２Ｘ",  # full-width digits and letter
        "１１０１０５１９４９１２３１００２ｘ",  # full-width lower-case x
        "１１０１０５　１９４９１２３１　００２Ｘ",  # ideographic spaces
    ],
)
def test_number_spellings_of_the_same_card_give_the_same_key(typed: str) -> None:
    assert person_key("resident_id", typed, SECRET) == person_key("resident_id", ID_NUMBER, SECRET)


@pytest.mark.parametrize("alias", ["resident_id", "RESIDENT_ID", " resident_id ", "身份证", "id_card", "ID_CARD", "sfz"])
def test_id_type_aliases_give_the_resident_id_key(alias: str) -> None:
    assert normalise_id_type(alias) == "resident_id"
    assert person_key(alias, ID_NUMBER, SECRET) == person_key("resident_id", ID_NUMBER, SECRET)


def test_normalise_id_number_folds_full_width_to_ascii_upper_case() -> None:
    assert normalise_id_number("１１０-１０５ ｘ") == "110105X"


@pytest.mark.parametrize("secret", ["", b""])
def test_empty_secret_raises(secret: str | bytes) -> None:
    with pytest.raises(ValueError, match="secret"):
        person_key("resident_id", ID_NUMBER, secret)


@pytest.mark.parametrize("number", ["", "   ", " - - "])
def test_empty_number_raises(number: str) -> None:
    with pytest.raises(ValueError):
        person_key("resident_id", number, SECRET)


def test_empty_id_type_raises() -> None:
    with pytest.raises(ValueError):
        person_key("  ", ID_NUMBER, SECRET)
