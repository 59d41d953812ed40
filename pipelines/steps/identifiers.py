"""Column names that mark personal identifiers: such a column is withheld whole, never published masked.

The list follows the four unique identifiers of the Personal Information Protection Act
(개인정보 보호법 시행령 제19조, 고유식별정보), in the Korean and English spellings found in
administrative records, plus the US social security number seen in imported data:

    resident registration number   주민등록번호, 주민번호, 주민 등록 번호, rrn, jumin, jumin_no,
                                   resident registration number/no
    alien registration number      외국인등록번호, 외국인번호, alien/foreigner registration number
    passport number                여권번호, passport, passport_no
    driver's licence number        운전면허번호, driver('s) licence/license, driving licence
    social security number         ssn

Names are compared after NFKC, case folding and removal of spaces and punctuation, and a
name matches when it contains one of these (신청인주민번호, 주민등록번호(앞자리) and
"Resident Registration No." all do). The short Latin forms (rrn, ssn, jumin...) must be a
word of their own, so that they are not found inside unrelated words.
"""
from __future__ import annotations

import re
import unicodedata

#: squashed (no spaces or punctuation, case-folded) fragments and what they mark
_FRAGMENTS = {
    "주민등록번호": "resident registration numbers",
    "주민번호": "resident registration numbers",
    "residentregistration": "resident registration numbers",
    "외국인등록번호": "alien registration numbers",
    "외국인번호": "alien registration numbers",
    "alienregistration": "alien registration numbers",
    "foreignerregistration": "alien registration numbers",
    "여권번호": "passport numbers",
    "passport": "passport numbers",
    "운전면허번호": "driver's licence numbers",
    "driverlicen": "driver's licence numbers",
    "driverslicen": "driver's licence numbers",
    "drivinglicen": "driver's licence numbers",
}
#: Latin words (after splitting on punctuation, digits and camelCase) and what they mark
_WORDS = {
    "rrn": "resident registration numbers",
    "rrno": "resident registration numbers",
    "jumin": "resident registration numbers",
    "juminno": "resident registration numbers",
    "juminbeonho": "resident registration numbers",
    "ssn": "social security numbers",
}


def identifier_name(column: str) -> str | None:
    """What personal identifier the column's name announces (e.g. 'resident registration numbers'), or None."""
    text = unicodedata.normalize("NFKC", str(column))
    squashed = re.sub(r"[\W_]+", "", text).casefold()
    for fragment, what in _FRAGMENTS.items():
        if fragment in squashed:
            return what
    words = re.split(r"[^a-z]+", re.sub(r"([a-z])([A-Z])", r"\1 \2", text).casefold())
    return next((_WORDS[w] for w in words if w in _WORDS), None)
