"""The person key: how services agree on who a person is without passing ID numbers.

``person_key`` normalises the identity document and takes an HMAC-SHA256 of it
with the deployment secret. Any service holding the document can compute the
key; only the registry keeps the way back to the person.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from datetime import date

_SPACES = re.compile(r"[\s\-]+")
_ALIASES = {"id_card": "resident_id", "身份证": "resident_id", "sfz": "resident_id"}

PERSON_KEY_PATTERN = r"^[0-9a-f]{64}$"


def normalise_id_type(id_type: str) -> str:
    value = id_type.strip().lower()
    return _ALIASES.get(value, value)


def normalise_id_number(id_number: str) -> str:
    """Drop spaces and hyphens, upper-case (a resident ID may end in ``x``/``X``).

    Full-width digits and letters (common in hand-typed Chinese forms) are folded
    to ASCII so that the same card always gives the same key.
    """
    folded = unicodedata.normalize("NFKC", id_number)
    return _SPACES.sub("", folded).upper()


def person_key(id_type: str, id_number: str, secret: str | bytes) -> str:
    if not secret:
        raise ValueError("person_key needs the deployment secret")
    kind = normalise_id_type(id_type)
    number = normalise_id_number(id_number)
    if not kind or not number:
        raise ValueError("id_type and id_number must not be empty")
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, f"{kind}:{number}".encode(), hashlib.sha256).hexdigest()


# --- resident ID numbers (GB 11643-1999) --------------------------------------------
# The registry validates them, the simulator, the benchmarks and the tests make them:
# 6-digit region, 8-digit birth date, 3-digit sequence (odd for men), ISO 7064 MOD 11-2.

RESIDENT_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
RESIDENT_ID_CHECK_CHARS = "10X98765432"


def resident_id_check_character(first17: str) -> str:
    """The 18th character of a resident ID number whose first 17 digits are ``first17``."""
    return RESIDENT_ID_CHECK_CHARS[sum(int(c) * w for c, w in zip(first17, RESIDENT_ID_WEIGHTS, strict=True)) % 11]


def make_resident_id(region: str, born: date, sequence: int) -> str:
    """A valid number for ``region``, ``born`` and a 3-digit sequence (demo data, simulations, tests)."""
    body = f"{region}{born:%Y%m%d}{sequence % 1000:03d}"
    return body + resident_id_check_character(body)
