"""Korean address parsing and normalisation: 도로명 (road-name) and 지번 (lot-number) addresses.

The parser is tolerant: it takes what it can recognise from left to right, in the order
Korean addresses are written (시/도, 시군구, then a road + building number or a legal
dong + lot number), and returns the rest as unrecognised text instead of failing.

    >>> a = parse_address("서울시 중구 세종대로 110 (태평로1가) 서울시청 3층")
    >>> a.kind, a.sido, a.sigungu, a.road, a.building_main, a.dong_hint
    ('road', '서울특별시', '중구', '세종대로', 110, '태평로1가')
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from geo.admin_codes import SEOUL_GU, SIDO_VARIANTS

ROAD = "road"
LOT = "lot"
AREA = "area"
UNKNOWN = "unknown"

_SIDO_ALT = "|".join(sorted(SIDO_VARIANTS, key=len, reverse=True))
_SIDO_RE = re.compile(rf"({_SIDO_ALT})(?=\s|$|[가-힣])")
# 시 + 구 (일반구: 성남시 분당구), else one 시/군/구 word followed by a space
_SIGUNGU_SPACED_RE = re.compile(r"([가-힣]{1,6}시)\s*([가-힣]{1,5}구)(?=\s|$)|([가-힣]{1,6}[시군구])(?=\s|$)")
_KNOWN_GU_RE = re.compile("(" + "|".join(sorted(SEOUL_GU, key=len, reverse=True)) + ")")
_EUP_MYEON_RE = re.compile(r"([가-힣]{1,6}[읍면])(?=\s|$)")
# road names end in 로 or 길 and may carry numbers: 퇴계로34길, 종로40가길, 올림픽로35다길, 63로
_ROAD_RE = re.compile(r"([가-힣0-9A-Za-z]*[가-힣][가-힣0-9A-Za-z]*?(?:로|길)|\d+로)\s*(지하\s*)?(\d{1,5})(?:\s*-\s*(\d{1,5}))?(?![0-9가-힣])(\s*번?길)?")
_ROAD_ONLY_RE = re.compile(r"([가-힣0-9A-Za-z]*[가-힣](?:로|길))(?=\s|$)")
# legal dong / ri names end in 동, 가 (태평로1가), 리, or 로 (종로구 세종로)
_DONG_RE = re.compile(r"([가-힣][가-힣0-9]*(?:동|가|리|로|길))(?=\s|$|산\d|\d)")
_LOT_RE = re.compile(r"(산\s*)?(\d{1,5})(?:\s*-\s*(\d{1,5}))?(?:\s*번지)?(?:\s*(\d{1,5})\s*호)?(?![0-9])")
_PAREN_RE = re.compile(r"\(([^()]*)\)")
_HINT_DONG_RE = re.compile(r"^[가-힣][가-힣0-9]*(?:동|가|리|로)$")
# floors, units and vague-area words: recognised as detail, not part of the location
_NOISE_RE = re.compile(
    r"(지하\s*\d+\s*층|B\s*\d+\s*층?|\d+\s*층|\d+\s*호|\d+\s*동\s*\d+\s*호|일대|일원|부근|인근|주변|앞|옆)"
)


@dataclass
class ParsedAddress:
    """What a free-text Korean address says, and what could not be read."""

    raw: str
    kind: str = UNKNOWN  # road | lot | area | unknown
    sido: str | None = None  # official name, e.g. 서울특별시
    sigungu: str | None = None  # e.g. 중구, 성남시 분당구
    eup_myeon: str | None = None
    road: str | None = None
    underground: bool = False
    building_main: int | None = None
    building_sub: int | None = None
    dong: str | None = None  # legal dong or ri written in a lot-number address
    san: bool = False
    lot_main: int | None = None
    lot_sub: int | None = None
    dong_hint: str | None = None  # from "(여의도동)"
    building_name: str | None = None  # from "(공덕동, 롯데캐슬)" or trailing text
    detail: list[str] = field(default_factory=list)  # floors, units, "일대"
    unrecognised: list[str] = field(default_factory=list)

    @property
    def recognised(self) -> dict[str, str]:
        """The parts that were read, by name (only those present)."""
        parts = {
            "sido": self.sido, "sigungu": self.sigungu, "eup_myeon": self.eup_myeon, "road": self.road,
            "building_number": self.building_number, "dong": self.dong, "lot_number": self.lot_number,
            "dong_hint": self.dong_hint, "building_name": self.building_name,
        }
        return {k: v for k, v in parts.items() if v}

    @property
    def building_number(self) -> str | None:
        if self.building_main is None:
            return None
        n = str(self.building_main) + (f"-{self.building_sub}" if self.building_sub else "")
        return ("지하 " if self.underground else "") + n

    @property
    def lot_number(self) -> str | None:
        if self.lot_main is None:
            return None
        return ("산" if self.san else "") + str(self.lot_main) + (f"-{self.lot_sub}" if self.lot_sub else "")

    @property
    def area(self) -> list[str]:
        return [p for p in (self.sido, self.sigungu, self.eup_myeon) if p]

    def normalised(self) -> str:
        """The canonical one-line form, e.g. '서울특별시 중구 세종대로 110'."""
        parts = self.area
        if self.kind == ROAD:
            parts = parts + [self.road or "", self.building_number or ""]
        elif self.kind in (LOT, AREA):
            parts = parts + [p for p in (self.dong, self.lot_number) if p]
        return " ".join(p for p in parts if p)


def clean_text(text: str) -> str:
    """NFKC (full-width digits and brackets), one space between words."""
    text = unicodedata.normalize("NFKC", str(text))
    text = text.replace("ㆍ", "·").replace("–", "-").replace("—", "-").replace("~", " ~ ")
    text = re.sub(r"\s*-\s*", "-", text)
    return re.sub(r"\s+", " ", text).strip()


def name_key(name: str) -> str:
    """The lookup form of a name: no spaces, no punctuation."""
    return re.sub(r"[\s·.,\-]", "", unicodedata.normalize("NFKC", name))


def parse_address(text: str) -> ParsedAddress:
    """Parse one free-text Korean address; never raises on messy input."""
    raw = "" if text is None else str(text)
    out = ParsedAddress(raw=raw)
    s = clean_text(raw)
    s = _take_parentheses(s, out)
    s = _take_area(s, out)

    m = _ROAD_RE.match(s)
    if m and not _looks_like_dong_lot(m.group(1), s):
        out.kind = ROAD
        out.road = m.group(1)
        out.underground = bool(m.group(2))
        out.building_main = int(m.group(3))
        out.building_sub = int(m.group(4)) if m.group(4) else None
        s = s[m.end():].strip()
    else:
        s = _take_lot(s, out)
    _take_rest(s, out)
    return out


def _take_parentheses(s: str, out: ParsedAddress) -> str:
    """Pull "(여의도동)" / "(공덕동,롯데캐슬)" hints out of the text."""
    for inner in _PAREN_RE.findall(s):
        for part in (p.strip() for p in inner.split(",")):
            if not part:
                continue
            if out.dong_hint is None and _HINT_DONG_RE.match(part):
                out.dong_hint = part
            elif out.building_name is None:
                out.building_name = part
            else:
                out.unrecognised.append(part)
    s = _PAREN_RE.sub(" ", s)
    return re.sub(r"\s+", " ", s.replace("(", " ").replace(")", " ")).strip(" ,")


def _take_area(s: str, out: ParsedAddress) -> str:
    m = _SIDO_RE.match(s)
    if m:
        rest = s[m.end():].lstrip()
        # "서울숲길" is a road, not 서울 + 숲길: a 시/도 written without a space must be followed by a 시군구
        if m.end() == len(s) or s[m.end()] == " " or _KNOWN_GU_RE.match(rest) or _SIGUNGU_SPACED_RE.match(rest):
            out.sido = SIDO_VARIANTS[m.group(1)]
            s = rest
    m = _KNOWN_GU_RE.match(s) if out.sido in (None, "서울특별시") else None
    if m:
        out.sigungu = m.group(1)
        s = s[m.end():].lstrip()
    else:
        m = _SIGUNGU_SPACED_RE.match(s)
        if m:
            out.sigungu = f"{m.group(1)} {m.group(2)}" if m.group(1) else m.group(3)
            s = s[m.end():].lstrip()
    m = _EUP_MYEON_RE.match(s)
    if m:
        out.eup_myeon = m.group(1)
        s = s[m.end():].lstrip()
    return s


def _looks_like_dong_lot(word: str, s: str) -> bool:
    """'태평로1가 31' is a dong + lot, and the road pattern must not take it."""
    return bool(re.match(re.escape(word) + r"\d+가", s))


def _take_lot(s: str, out: ParsedAddress) -> str:
    m = _DONG_RE.match(s)
    if not m:
        return s
    word = m.group(1)
    rest = s[m.end():].lstrip()
    lot = _LOT_RE.match(rest)
    if word.endswith(("로", "길")) and not (lot and lot.group(2)):
        # "관악로 (신림동)": a road without a building number; the area comes from the hint
        out.road = word
        out.kind = AREA
        return rest
    out.dong = word
    s = rest
    if lot and lot.group(2):
        out.kind = LOT
        out.san = bool(lot.group(1))
        out.lot_main = int(lot.group(2))
        out.lot_sub = int(lot.group(3)) if lot.group(3) else None
        if lot.group(4):
            out.detail.append(f"{lot.group(4)}호")
        s = s[lot.end():].lstrip()
    else:
        out.kind = AREA
    return s


def _take_rest(s: str, out: ParsedAddress) -> None:
    """Floors, units and vague words are detail; a trailing name is the building; the rest is unread."""
    s = s.strip(" ,")
    for m in _NOISE_RE.finditer(s):
        out.detail.append(re.sub(r"\s+", "", m.group(1)))
    s = _NOISE_RE.sub(" ", s)
    s = re.sub(r"\s+", " ", s).strip(" ,")
    if not s:
        return
    if out.kind == UNKNOWN and out.road is None:
        m = _ROAD_ONLY_RE.match(s)
        if m:  # "서초구 반포대로 (반포동)": a road without a number still tells the area
            out.road = m.group(1)
            out.kind = AREA
            s = s[m.end():].strip(" ,")
    if not s:
        return
    if out.kind in (ROAD, LOT) and out.building_name is None and not s.startswith("~") and "," not in s:
        out.building_name = s
    else:
        out.unrecognised.append(s)
    if out.kind == UNKNOWN and (out.sigungu or out.dong_hint):
        out.kind = AREA


# --- messy-row flags ----------------------------------------------------------------------
_VAGUE = ("일대", "일원", "부근", "인근", "주변")
_FLOOR_RE = re.compile(r"^(지하)?\d+층$|^B\d+층?$|^\d+호$")
_GU_WORD_RE = re.compile("(?<![가-힣])(" + "|".join(sorted(SEOUL_GU, key=len, reverse=True)) + ")(?![가-힣])")
# other 시/도 written in full or with their 도/시 suffix ("경기도", "인천시"); bare short names
# ("서울", "부산") are skipped: they appear inside place names (서울숲, 부산집)
_OTHER_SIDO_RE = re.compile("(?<![가-힣])(" + "|".join(sorted(
    (v for v in SIDO_VARIANTS if v.endswith(("도", "시")) and len(v) > 2), key=len, reverse=True)) + ")(?![가-힣])")

#: what each flag means (for reports and docs)
ADDRESS_FLAGS = {
    "empty": "no address text",
    "range": "a stretch between two places ('A ~ B'), not one place",
    "several_gu": "names more than one gu",
    "other_sido": "names a second 시/도 after the first",
    "vague_area": "an area around a place (일대, 일원, 부근, 인근, 주변)",
    "road_without_number": "a road without a building number",
    "gu_only": "nothing finer than the 시군구 is given",
    "office_address": "a building name and a floor/unit but no street or lot number: "
                      "likely the mailing address of an office, not the place itself",
    "unrecognised_text": "some of the text was not understood",
}


def address_flags(p: ParsedAddress) -> list[str]:
    """Why an address may not locate one place; [] for a clean address. See ADDRESS_FLAGS."""
    text = clean_text(p.raw)
    if not text:
        return ["empty"]
    flags = []
    if "~" in text:
        flags.append("range")
    if len(set(_GU_WORD_RE.findall(text))) > 1:
        flags.append("several_gu")
    sidos = {SIDO_VARIANTS[m] for m in _OTHER_SIDO_RE.findall(text)}
    if sidos - {p.sido}:
        flags.append("other_sido")
    if any(d in _VAGUE for d in p.detail):
        flags.append("vague_area")
    if p.road and p.building_main is None:
        flags.append("road_without_number")
    finer = p.kind in (ROAD, LOT) or p.road or p.dong or p.dong_hint
    if not finer:
        flags.append("gu_only" if p.sigungu else "empty" if not p.unrecognised else "unrecognised_text")
        if any(_FLOOR_RE.match(d) for d in p.detail):
            flags.append("office_address")
    if p.unrecognised and "unrecognised_text" not in flags:
        flags.append("unrecognised_text")
    return flags
