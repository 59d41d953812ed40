"""Keep personal data out of published layers: field whitelist, detectors, mask/hash/drop, audit.

Detectors:
    rrn      resident registration numbers (주민등록번호): YYMMDD-SNNNNNN with a real date;
             the check digit is verified and reported, but numbers that fail it are
             removed too (numbers issued since October 2020 carry no check digit)
    mobile   personal mobile numbers: 010/011/016/017/018/019, also written +82 10 ...
    email    e-mail addresses
    name     every value of the configured person-name fields (성명, 담당자 ...)

Actions: mask (the match becomes "[rrn]" etc.), hash (a keyed HMAC-SHA256, so equal
values stay linkable without being reversible; key from $CITYTWIN_PRIVACY_KEY), drop
(the whole value becomes empty). The audit says per field and detector how many
values were touched and in which records; it never repeats the values themselves.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date

import pandas as pd

from geo.errors import CitytwinError

DETECTORS = ("rrn", "mobile", "email")
ACTIONS = ("mask", "hash", "drop")
KEY_ENV = "CITYTWIN_PRIVACY_KEY"
#: column names that hold names of persons in Korean administrative records
PERSON_NAME_COLUMNS = ("성명", "이름", "담당자", "담당자명", "신청인", "신청인명", "민원인", "대표자", "대표자명",
                       "작성자", "소유자", "person_name", "owner_name", "applicant", "contact_name")

RRN_RE = re.compile(r"(?<![0-9.])(\d{2})(\d{2})(\d{2})\s?[-–]?\s?([1-8])(\d{6})(?![0-9])")
MOBILE_RE = re.compile(r"(?<![0-9+.])(?:\+82[\s.\-]?|0)(1[016789])[\s.\-)]?(\d{3,4})[\s.\-]?(\d{4})(?![0-9])")
EMAIL_RE = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")


_HEX_TO_LETTERS = str.maketrans("0123456789", "ghijklmnop")


class PrivacyError(CitytwinError):
    """Personal data would be published; nothing was written."""


def rrn_checksum_ok(rrn: str) -> bool:
    """The 13th digit of a resident registration number checks the first 12 (weights 2-9,2-5)."""
    digits = re.sub(r"\D", "", rrn)
    if len(digits) != 13:
        return False
    weights = (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)
    total = sum(int(d) * w for d, w in zip(digits[:12], weights))
    return (11 - total % 11) % 10 == int(digits[12])


def _rrn_date_ok(yy: str, mm: str, dd: str, s: str) -> bool:
    century = {"1": 1900, "2": 1900, "5": 1900, "6": 1900, "3": 2000, "4": 2000, "7": 2000, "8": 2000}[s]
    try:
        date(century + int(yy), int(mm), int(dd))
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Finding:
    kind: str  # rrn | mobile | email
    start: int
    end: int
    verified: bool = True  # rrn: check digit holds


def find_personal(text: str, detect: tuple[str, ...] = DETECTORS) -> list[Finding]:
    """Every personal-data match in ``text``, left to right, without overlaps."""
    if not text:
        return []
    found: list[Finding] = []
    if "rrn" in detect:
        for m in RRN_RE.finditer(text):
            if _rrn_date_ok(m.group(1), m.group(2), m.group(3), m.group(4)):
                found.append(Finding("rrn", m.start(), m.end(), rrn_checksum_ok(m.group(0))))
    if "mobile" in detect:
        found += [Finding("mobile", m.start(), m.end()) for m in MOBILE_RE.finditer(text)]
    if "email" in detect:
        found += [Finding("email", m.start(), m.end()) for m in EMAIL_RE.finditer(text)]
    found.sort(key=lambda f: (f.start, -(f.end - f.start)))
    out: list[Finding] = []
    for f in found:
        if not out or f.start >= out[-1].end:
            out.append(f)
    return out


@dataclass
class PrivacyPolicy:
    publish: list[str] | None = None  # whitelist of source fields; None keeps all (still scanned)
    detect: tuple[str, ...] = DETECTORS
    person_name_fields: list[str] = field(default_factory=list)
    action: str = "mask"

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise CitytwinError(f"privacy.action '{self.action}' is not one of {', '.join(ACTIONS)}")
        bad = [d for d in self.detect if d not in DETECTORS]
        if bad:
            raise CitytwinError(f"privacy.detect: unknown detector(s) {', '.join(bad)}; use {', '.join(DETECTORS)}")


@dataclass
class PrivacyAudit:
    layer: str
    action: str
    fields_dropped: list[str] = field(default_factory=list)  # not in the whitelist
    name_fields: list[str] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # field -> detector -> values touched
    records: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # field -> detector -> record ids
    rrn_unverified: int = 0  # RRN-shaped numbers whose check digit fails (removed anyway)
    warnings: list[str] = field(default_factory=list)

    def total(self, kind: str | None = None) -> int:
        return sum(n for per in self.counts.values() for k, n in per.items() if kind is None or k == kind)

    def as_dict(self) -> dict:
        return {"layer": self.layer, "action": self.action, "fields_dropped": self.fields_dropped,
                "name_fields": self.name_fields, "counts": self.counts, "records": self.records,
                "totals": {k: self.total(k) for k in (*DETECTORS, "name")}, "rrn_unverified": self.rrn_unverified,
                "warnings": self.warnings}

    def summary(self) -> str:
        totals = ", ".join(f"{k} {self.total(k)}" for k in (*DETECTORS, "name"))
        line = f"privacy ({self.action}): {totals}"
        if self.fields_dropped:
            line += f"; fields not published: {', '.join(self.fields_dropped)}"
        return line


class _Replacer:
    def __init__(self, action: str) -> None:
        self.action = action
        key = os.environ.get(KEY_ENV)
        self.key = key.encode() if key else secrets.token_bytes(32)
        self.key_is_ephemeral = not key

    def token(self, kind: str, value: str) -> str | None:
        if self.action == "mask":
            return f"[{kind}]"
        if self.action == "hash":
            digest = hmac.new(self.key, value.encode(), hashlib.sha256).hexdigest()[:16]
            # letters only: a hash must never itself look like a phone number or an RRN
            return f"[{kind}:" + digest.translate(_HEX_TO_LETTERS) + "]"
        return None


def scrub(table: pd.DataFrame, policy: PrivacyPolicy, layer: str, *, ids: pd.Series,
          keep: tuple[str, ...] = ()) -> tuple[pd.DataFrame, PrivacyAudit]:
    """Apply ``policy`` to the attribute table (no geometry); ``keep`` columns are ours and always published.

    Returns the scrubbed table and its audit. ``ids`` (same index) name records in the audit.
    """
    audit = PrivacyAudit(layer=layer, action=policy.action)
    rep = _Replacer(policy.action)
    cols = [c for c in table.columns if c not in keep]
    if policy.publish is not None:
        missing = [c for c in policy.publish if c not in table.columns]
        if missing:
            audit.warnings.append(f"privacy.publish names field(s) not in the records: {', '.join(missing)}")
        audit.fields_dropped = [c for c in cols if c not in policy.publish]
        cols = [c for c in cols if c in policy.publish]
    names = [c for c in policy.person_name_fields if c in table.columns]
    guessed = [c for c in table.columns if c in PERSON_NAME_COLUMNS and c not in names]
    if guessed:
        audit.warnings.append(f"field(s) {', '.join(guessed)} look like person names; treated as such "
                              "(list them in privacy.person_name_fields)")
        names += guessed
    audit.name_fields = names
    out = table[list(keep) + cols].copy()
    id_list = ids.astype(str).tolist()
    counts: dict[str, Counter] = defaultdict(Counter)
    where: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for col in cols:
        values = out[col]
        new = []
        for i, v in enumerate(values.tolist()):
            if v is None or (isinstance(v, float) and pd.isna(v)) or v is pd.NA:
                new.append(v)
                continue
            text = str(v)
            if col in names:
                if text.strip():
                    counts[col]["name"] += 1
                    where[col]["name"].append(id_list[i])
                    new.append(rep.token("name", text))
                else:
                    new.append(v)
                continue
            found = find_personal(text, policy.detect)
            if not found:
                new.append(v)
                continue
            if policy.action == "drop":
                new.append(None)
            else:
                parts, pos = [], 0
                for f in found:
                    parts += [text[pos:f.start], rep.token(f.kind, text[f.start:f.end])]
                    pos = f.end
                parts.append(text[pos:])
                new.append("".join(parts))
            for f in found:
                counts[col][f.kind] += 1
                if f.kind == "rrn" and not f.verified:
                    audit.rrn_unverified += 1
                if not where[col][f.kind] or where[col][f.kind][-1] != id_list[i]:
                    where[col][f.kind].append(id_list[i])
        if any(a is not b for a, b in zip(new, values.tolist())):  # untouched columns keep their dtype
            out[col] = pd.Series(new, index=out.index, dtype="object")
    audit.counts = {c: dict(v) for c, v in counts.items()}
    audit.records = {c: {k: list(r) for k, r in v.items()} for c, v in where.items()}
    if policy.action == "hash" and rep.key_is_ephemeral:
        audit.warnings.append(f"no ${KEY_ENV}: hashes use a one-off key and will not match between runs")
    return out, audit


def assert_clean(table: pd.DataFrame, layer: str, detect: tuple[str, ...] = DETECTORS) -> None:
    """Last gate before publishing: raise PrivacyError if any value still holds personal data."""
    for col in table.columns:
        if col == "geometry":
            continue
        for i, v in enumerate(table[col].tolist()):
            if isinstance(v, str) and find_personal(v, detect):
                kinds = sorted({f.kind for f in find_personal(v, detect)})
                raise PrivacyError(f"layer '{layer}': field '{col}' of record {i} still holds {', '.join(kinds)} "
                                   "after scrubbing; nothing was published")
