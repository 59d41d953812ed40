"""Keep personal data out of published layers: field whitelist, detectors, mask/hash/drop, audit.

Text is NFKC-normalised before detection, so full-width digits, dashes, @ and spaces
(７００３１３－１２３４５６７) are found like their ASCII forms.

Detectors:
    rrn      resident registration numbers (주민등록번호, also 외국인등록번호): YYMMDD-SNNNNNN.
             Next to a label (주민번호, 주민등록번호, 외국인등록번호, 주민등록증, RRN, jumin,
             resident registration ...) any 13-digit number of that shape is one, whatever its date
             and check digit, and so is a partly starred one (700313-1******: birth date and sex). Without a label it must carry a real date: the check digit is
             verified and reported, but numbers that fail it are removed too (numbers issued
             since October 2020 carry no check digit). A date is required there because a bare
             13-digit number is as often a product code or an order number.
    mobile   personal mobile numbers: 010/011/016/017/018/019, also written +82 10 ...
    email    e-mail addresses
    name     every value of the configured person-name fields (성명, 담당자 ...)

Columns are withheld whole (never published, not even masked) when their name marks a
personal identifier (pipelines.steps.identifiers) or when more than half of their non-empty
values are, each as a whole, an RRN, a mobile number or an e-mail address; the audit says
which column and why.

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
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from geo.errors import CitytwinError
from pipelines.steps.identifiers import identifier_name

if TYPE_CHECKING:
    from pipelines.catalog import PrivacyConfig

DETECTORS = ("rrn", "mobile", "email")
ACTIONS = ("mask", "hash", "drop")
KEY_ENV = "CITYTWIN_PRIVACY_KEY"
#: column names that hold names of persons in Korean administrative records
PERSON_NAME_COLUMNS = ("성명", "이름", "담당자", "담당자명", "신청인", "신청인명", "민원인", "대표자", "대표자명",
                       "작성자", "소유자", "person_name", "owner_name", "applicant", "contact_name")

#: hyphens and dashes that survive NFKC (full-width and small hyphen-minus become "-")
_DASH = "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212"
_SEP = rf"\s?[{_DASH}]?\s?"
RRN_RE = re.compile(rf"(?<![\d.])(\d{{2}})(\d{{2}})(\d{{2}}){_SEP}([1-8])(\d{{6}})(?!\d)")
#: a label, a few characters without digits (": ", "는 ", "(", a line break ...), then 13 digits in
#: RRN shape, or the birth date and sex digit with the rest starred out (700313-1******)
RRN_LABELLED_RE = re.compile(
    r"(?:(?:주민|외국인)\s*(?:등록\s*)?(?:번호|증)|(?<![a-z])(?:rrn|jumin)(?![a-z])"
    r"|(?:resident|alien|foreigner)\s*registration)"
    rf"\D{{0,12}}?(\d{{6}}{_SEP}(?:\d{{7}}(?!\d)|\d?[*xX●○]{{6,7}}))", re.I)
MOBILE_RE = re.compile(rf"(?<![\d+.])(?:\+82[{_DASH}\s.]?|0)(1[016789])[{_DASH}\s.)]?(\d{{3,4}})[{_DASH}\s.]?(\d{{4}})(?!\d)")
# the local part starts where a run of its characters starts: tried from every position of a long
# run, the search was quadratic (a 40 kB value without '@' took 12 s)
EMAIL_RE = re.compile(r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")


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
    labelled: bool = False  # rrn: next to an RRN label, so taken whatever its date


def normalise(text: str) -> str:
    """NFKC: full-width digits, dashes, @ and spaces become their ASCII forms."""
    return unicodedata.normalize("NFKC", text)


def find_personal(text: str, detect: tuple[str, ...] = DETECTORS) -> list[Finding]:
    """Every personal-data match in ``normalise(text)``, left to right, without overlaps.

    Positions index the normalised text: callers that cut matches out normalise first.
    """
    if not text:
        return []
    text = normalise(text)
    found: list[Finding] = []
    if "rrn" in detect:
        found += [Finding("rrn", m.start(1), m.end(1), rrn_checksum_ok(m.group(1)), labelled=True)
                  for m in RRN_LABELLED_RE.finditer(text)]
        for m in RRN_RE.finditer(text):
            if _rrn_date_ok(m.group(1), m.group(2), m.group(3), m.group(4)):
                found.append(Finding("rrn", m.start(), m.end(), rrn_checksum_ok(m.group(0))))
    if "mobile" in detect:
        found += [Finding("mobile", m.start(), m.end()) for m in MOBILE_RE.finditer(text)]
    if "email" in detect:
        found += [Finding("email", m.start(), m.end()) for m in EMAIL_RE.finditer(text)]
    found.sort(key=lambda f: (f.start, -(f.end - f.start), not f.labelled))
    out: list[Finding] = []
    for f in found:
        if not out or f.start >= out[-1].end:
            out.append(f)
    return out


_KIND_WORDS = {"rrn": "resident registration numbers", "mobile": "mobile numbers", "email": "e-mail addresses"}


def _present(v: object) -> bool:
    return not (v is None or v is pd.NA or (isinstance(v, float) and pd.isna(v)) or not str(v).strip())


def _whole_value_kind(text: str, detect: tuple[str, ...]) -> str | None:
    """The detector whose pattern the whole value is (an RRN counts with a real date or a valid check digit)."""
    t = normalise(text).strip()
    m = RRN_RE.fullmatch(t) if "rrn" in detect else None
    if m and (_rrn_date_ok(*m.groups()[:4]) or rrn_checksum_ok(t)):
        return "rrn"
    if "mobile" in detect and MOBILE_RE.fullmatch(t):
        return "mobile"
    if "email" in detect and EMAIL_RE.fullmatch(t):
        return "email"
    return None


class ColumnTally:
    """A column's values seen one at a time (a scan sees features one by one): is it a column of identifiers?"""

    def __init__(self, detect: tuple[str, ...] = DETECTORS) -> None:
        self.detect = detect
        self.values = 0  # non-empty
        self.kinds: Counter = Counter()  # values that are, as a whole, an RRN, a mobile number or an e-mail

    def add(self, value: object) -> None:
        if _present(value):
            self.values += 1
            kind = _whole_value_kind(str(value), self.detect)
            if kind:
                self.kinds[kind] += 1

    def reason(self, column: str) -> str | None:
        """Why ``column`` is one of identifiers: its name, or more than half of its non-empty values; else None."""
        what = identifier_name(column)
        if what:
            return f"its name marks {what}"
        n = sum(self.kinds.values())
        if 2 * n <= self.values:
            return None
        return f"{n} of its {self.values} values are " + " or ".join(_KIND_WORDS[k] for k, _ in self.kinds.most_common())

    def leak(self, column: str) -> str | None:
        """``reason`` for a column that holds at least one value (an empty column publishes nothing)."""
        return self.reason(column) if self.values else None


#: Once NFKC-normalised, every detector's match holds an '@' (an e-mail) or a run of digits
#: of one of these lengths: 6 or 13 (an RRN, with or without its dash); 4, or 7 to 12 for the
#: run that ends a mobile number (010-1234-5678, 01012345678, +82 10 1234 5678 ...).
_RUN_LENGTHS = np.array([4, 6, 7, 8, 9, 10, 11, 12, 13])
_CHUNK = 200_000  # values screened at once (their text is held as 4-byte code points)

Hints = tuple[np.ndarray, np.ndarray]


def candidates(values: pd.Series | list) -> Hints:
    """Positions of the present (non-empty) values, and of those that may hold personal data.

    Only the second set goes through the detectors: a 600k-feature layer is mostly names,
    codes and numbers that no detector could match, and those are ruled out with array
    operations on their code points rather than a regex per value.
    """
    s = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
    s = s.reset_index(drop=True)
    if s.dtype.kind in "iuf":  # a number can only be an RRN written without its dash (13 digits)
        a = s.astype("float64").to_numpy()
        return np.flatnonzero(~np.isnan(a)), np.flatnonzero(np.abs(a) >= 1e5)
    s = s.astype(object)
    notna = np.flatnonzero(s.notna().to_numpy())
    text = s.iloc[notna].astype(str).tolist()
    present, maybe = [], []
    for i in range(0, len(text), _CHUNK):
        filled, hit = _screen(text[i:i + _CHUNK])
        present.append(notna[i:i + _CHUNK][filled])
        maybe.append(notna[i:i + _CHUNK][hit])
    if not present:
        return notna, notna
    return np.concatenate(present), np.concatenate(maybe)


def _screen(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Which of ``texts`` are not blank, and which hold an '@' or a digit run of a length in
    ``_RUN_LENGTHS`` after NFKC."""
    joined = "\x00".join(texts)
    if joined.count("\x00") != len(texts) - 1:  # a value holds NUL itself: another control character there
        joined = "\x00".join(t.replace("\x00", "\x01") for t in texts)
    codes = np.frombuffer(unicodedata.normalize("NFKC", joined).encode("utf-32-le"), dtype=np.uint32)
    row = np.cumsum(codes == 0)
    digit = (codes >= 48) & (codes <= 57)
    # digits of other scripts (Hangul syllables, most of a Korean text, are none)
    wide = np.unique(codes[(codes > 127) & ((codes < 0xAC00) | (codes > 0xD7A3))])
    other = wide[[unicodedata.category(chr(c)) == "Nd" for c in wide.tolist()]]
    if len(other):
        digit |= np.isin(codes, other)
    edges = np.diff(np.concatenate(([0], digit.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    hit = np.zeros(len(texts), dtype=bool)
    hit[row[starts[np.isin(ends - starts, _RUN_LENGTHS)]]] = True
    hit[row[codes == ord("@")]] = True
    filled = np.zeros(len(texts), dtype=bool)
    # white space as str.strip() sees it, once NFKC has turned the other spaces into U+0020
    space = (((codes >= 9) & (codes <= 13)) | ((codes >= 28) & (codes <= 32)) | (codes == 0x85)
             | (codes == 0x1680) | (codes == 0x2028) | (codes == 0x2029))
    filled[row[(codes != 0) & ~space]] = True
    return filled, hit & filled


def column_tally(values: pd.Series | list, detect: tuple[str, ...] = DETECTORS, hints: Hints | None = None
                 ) -> ColumnTally:
    """A ``ColumnTally`` of a whole column at once (values that cannot match are only counted)."""
    tally = ColumnTally(detect)
    present, maybe = hints if hints is not None else candidates(values)
    tally.values = len(present)
    values = values.to_numpy(dtype=object) if isinstance(values, pd.Series) else values
    for i in maybe:
        kind = _whole_value_kind(str(values[i]), detect)
        if kind:
            tally.kinds[kind] += 1
    return tally


def withhold_reason(column: str, values: pd.Series | list, detect: tuple[str, ...] = DETECTORS,
                    hints: Hints | None = None) -> str | None:
    """Why a column must not be published at all, or None.

    Its name marks a personal identifier, or more than half of its non-empty values are,
    each as a whole, an RRN, a mobile number or an e-mail address. The reason names no value.
    """
    if identifier_name(column) is not None:  # the name alone decides
        return ColumnTally(detect).reason(column)
    return column_tally(values, detect, hints).reason(column)


def leaking_column(column: str, values: pd.Series | list, detect: tuple[str, ...] = DETECTORS,
                   hints: Hints | None = None) -> str | None:
    """``withhold_reason`` for a column that holds at least one value (an empty column publishes nothing)."""
    return column_tally(values, detect, hints).leak(column)


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


def policy_of(config: PrivacyConfig | None) -> PrivacyPolicy:
    """The policy a layer's ``privacy:`` entry sets (the defaults when it has none)."""
    if config is None:
        return PrivacyPolicy()
    return PrivacyPolicy(publish=config.publish, detect=tuple(config.detect),
                         person_name_fields=list(config.person_name_fields), action=config.action)


def check_id_column(column: str, values: list, where: str, fix: str) -> None:
    """An id column is published as ``id``, never masked: refuse one that holds personal data."""
    hints = candidates(values)
    why = withhold_reason(column, values, hints=hints) or ("RRN, phone or e-mail" if any(
        find_personal(str(values[i])) for i in hints[1]) else None)
    if why:
        raise PrivacyError(f"{where}: id column '{column}' holds personal data ({why}); {fix}")


@dataclass
class PrivacyAudit:
    layer: str
    action: str
    fields_dropped: list[str] = field(default_factory=list)  # not in the whitelist
    fields_withheld: dict[str, str] = field(default_factory=dict)  # personal identifiers -> why
    name_fields: list[str] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # field -> detector -> values touched
    records: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # field -> detector -> record ids
    rrn_unverified: int = 0  # RRN-shaped numbers whose check digit fails (removed anyway)
    warnings: list[str] = field(default_factory=list)

    def total(self, kind: str | None = None) -> int:
        return sum(n for per in self.counts.values() for k, n in per.items() if kind is None or k == kind)

    def as_dict(self) -> dict:
        return {"layer": self.layer, "action": self.action, "fields_dropped": self.fields_dropped,
                "fields_withheld": self.fields_withheld,
                "name_fields": self.name_fields, "counts": self.counts, "records": self.records,
                "totals": {k: self.total(k) for k in (*DETECTORS, "name")}, "rrn_unverified": self.rrn_unverified,
                "warnings": self.warnings}

    def summary(self) -> str:
        totals = ", ".join(f"{k} {self.total(k)}" for k in (*DETECTORS, "name"))
        line = f"privacy ({self.action}): {totals}"
        if self.fields_dropped:
            line += f"; fields not published: {', '.join(self.fields_dropped)}"
        if self.fields_withheld:
            line += "; withheld as personal identifiers: " + ", ".join(
                f"{c} ({why})" for c, why in self.fields_withheld.items())
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


def replace_found(text: str, found: list[Finding], token: Callable[[str, str], str | None]) -> str:
    """``text`` (NFKC-normalised: the positions of ``found`` index that form) with each match
    replaced by ``token(kind, match)``."""
    text = normalise(text)
    parts, pos = [], 0
    for f in found:
        parts += [text[pos:f.start], token(f.kind, text[f.start:f.end]) or ""]
        pos = f.end
    parts.append(text[pos:])
    return "".join(parts)


def _mask_token(kind: str, _match: str) -> str:
    return f"[{kind}]"


@dataclass
class PropertyScreen:
    """What screening did to free-form properties: property names and counts, never values."""

    masked: dict[str, Counter] = field(default_factory=dict)  # property path -> detector -> values masked
    dropped: dict[str, str] = field(default_factory=dict)  # property path -> why it was dropped

    def merge(self, other: PropertyScreen) -> None:
        for path, kinds in other.masked.items():
            self.masked.setdefault(path, Counter()).update(kinds)
        self.dropped.update(other.dropped)

    def as_dict(self) -> dict:
        return {"masked": {p: dict(k) for p, k in self.masked.items()}, "dropped": dict(self.dropped)}


def screen_properties(props: dict, skip: tuple[str, ...] = ()) -> PropertyScreen:
    """Mask RRNs, mobile numbers and e-mails in the values of ``props`` (nested ones too), mask
    person-name properties and drop properties whose name marks an identifier or holds
    personal data; in place. ``skip`` names top-level properties left as they are.

    For free-form items (live layers), which have no columns to judge by their content. Walks
    without recursion: nesting may be deep.
    """
    screen = PropertyScreen()
    stack: list[tuple[dict | list, str | int, str]] = [(props, k, str(k)) for k in props if k not in skip]
    while stack:
        box, key, path = stack.pop()
        value = box[key]
        if isinstance(box, dict):
            named = find_personal(str(key))
            what = identifier_name(str(key))
            if what or named:
                del box[key]
                shown = path[:len(path) - len(str(key))] + replace_found(str(key), named, _mask_token)
                screen.dropped[shown] = f"its name marks {what}" if what else "its name holds " + " and ".join(
                    _KIND_WORDS[k] for k in sorted({f.kind for f in named}))
                continue
            if box is props and key in PERSON_NAME_COLUMNS and _present(value):
                box[key] = "[name]"
                screen.masked.setdefault(path, Counter())["name"] += 1
                continue
        if isinstance(value, dict):
            stack += [(value, k, f"{path}.{k}") for k in value]
        elif isinstance(value, list):
            stack += [(value, i, f"{path}[]") for i in range(len(value))]
        elif isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**5):
            found = find_personal(str(value))
            if found:
                box[key] = replace_found(str(value), found, _mask_token)
                screen.masked.setdefault(path, Counter()).update(f.kind for f in found)
    return screen


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
    # never published, even when whitelisted: masking would still publish that the column exists per record
    hints = {c: candidates(table[c]) for c in cols}
    audit.fields_withheld = {c: why for c in cols
                             if (why := withhold_reason(c, table[c], policy.detect, hints[c]))}
    cols = [c for c in cols if c not in audit.fields_withheld]
    names = [c for c in policy.person_name_fields if c in table.columns and c not in audit.fields_withheld]
    guessed = [c for c in table.columns if c in PERSON_NAME_COLUMNS and c not in names
               and c not in audit.fields_withheld]
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
        values = out[col].tolist()
        new = list(values)
        present, maybe = hints[col]
        if col in names:
            for i in present:
                counts[col]["name"] += 1
                where[col]["name"].append(id_list[i])
                new[i] = rep.token("name", str(values[i]))
            maybe = []
        for i in maybe:
            found = find_personal(str(values[i]), policy.detect)
            if not found:
                continue
            new[i] = None if policy.action == "drop" else replace_found(str(values[i]), found, rep.token)
            for f in found:
                counts[col][f.kind] += 1
                if f.kind == "rrn" and not f.verified:
                    audit.rrn_unverified += 1
                if not where[col][f.kind] or where[col][f.kind][-1] != id_list[i]:
                    where[col][f.kind].append(id_list[i])
        if counts.get(col):  # untouched columns keep their dtype
            out[col] = pd.Series(new, index=out.index, dtype="object")
    audit.counts = {c: dict(v) for c, v in counts.items()}
    audit.records = {c: {k: list(r) for k, r in v.items()} for c, v in where.items()}
    if policy.action == "hash" and rep.key_is_ephemeral:
        audit.warnings.append(f"no ${KEY_ENV}: hashes use a one-off key and will not match between runs")
    return out, audit


def assert_clean(table: pd.DataFrame, layer: str, detect: tuple[str, ...] = DETECTORS) -> None:
    """Last gate before publishing: raise PrivacyError if a column or a value still holds personal data."""
    for col in table.columns:
        if col == "geometry":
            continue
        hints = candidates(table[col])
        why = leaking_column(col, table[col], detect, hints)
        if why:
            raise PrivacyError(f"layer '{layer}': field '{col}' is still there after scrubbing and {why}; "
                               "nothing was published")
        values = table[col].tolist()
        for i in hints[1]:
            v = values[i]
            if isinstance(v, str) and find_personal(v, detect):
                kinds = sorted({f.kind for f in find_personal(v, detect)})
                raise PrivacyError(f"layer '{layer}': field '{col}' of record {i} still holds {', '.join(kinds)} "
                                   "after scrubbing; nothing was published")
