"""Resident ID numbers (居民身份证号码, GB 11643-1999): 6 digits of region, the birth date, 3 digits of sequence
(odd for men, even for women) and an ISO 7064 MOD 11-2 check digit (0-9 or X)."""
from __future__ import annotations

import datetime as dt
import re
from typing import Any

_SHAPE = re.compile(r"\d{17}[\dX]")
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


def check_digit(first17: str) -> str:
    """The 18th character for the first 17 digits."""
    return _CHECK[sum(int(d) * w for d, w in zip(first17, _WEIGHTS)) % 11]


def birth_date(value: Any) -> dt.date | None:
    """The birth date of an 18-digit number of the right shape (a lowercase x is read as X), or None."""
    if not isinstance(value, str):
        return None
    text = value.strip().upper()
    if not _SHAPE.fullmatch(text):
        return None
    try:
        return dt.date(int(text[6:10]), int(text[10:12]), int(text[12:14]))
    except ValueError:
        return None


def is_valid(value: Any) -> bool:
    """18 characters, a real birth date and the right check digit."""
    if birth_date(value) is None:
        return False
    text = value.strip().upper()
    return check_digit(text[:17]) == text[17]


def sex(value: Any) -> str | None:
    """``"male"`` (17th digit odd) or ``"female"`` (even) of a valid number, else None."""
    if not is_valid(value):
        return None
    return "male" if int(value.strip()[16]) % 2 else "female"
