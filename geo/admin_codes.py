"""Korean administrative codes and names: 시/도 variants, admin levels from codes, name fields.

Korean boundary layers come from several publishers with different field names
(SIG_CD/SIG_KOR_NM, EMD_CD/EMD_KOR_NM, adm_cd/adm_nm, code/name ...). What they share
is the code system, so the admin level is read from the codes' digit count and the
name fields from their contents.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from geo.errors import SourceError

SIDO = "sido"
SIGUNGU = "sigungu"
LEGAL_DONG = "legal_dong"
ADMIN_DONG = "admin_dong"
LEGAL_RI = "legal_ri"
ADMIN_LEVELS = (SIDO, SIGUNGU, LEGAL_DONG, ADMIN_DONG, LEGAL_RI)
DONG_LEVELS = (LEGAL_DONG, ADMIN_DONG, LEGAL_RI)

# (MOIS 2-digit code, official name, short names people write)
_SIDO_TABLE: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("11", "서울특별시", ("서울시", "서울")),
    ("26", "부산광역시", ("부산시", "부산")),
    ("27", "대구광역시", ("대구시", "대구")),
    ("28", "인천광역시", ("인천시", "인천")),
    ("29", "광주광역시", ("광주시", "광주")),
    ("30", "대전광역시", ("대전시", "대전")),
    ("31", "울산광역시", ("울산시", "울산")),
    ("36", "세종특별자치시", ("세종시", "세종")),
    ("41", "경기도", ("경기",)),
    ("51", "강원특별자치도", ("강원도", "강원")),
    ("43", "충청북도", ("충북",)),
    ("44", "충청남도", ("충남",)),
    ("52", "전북특별자치도", ("전라북도", "전북")),
    ("46", "전라남도", ("전남",)),
    ("47", "경상북도", ("경북",)),
    ("48", "경상남도", ("경남",)),
    ("50", "제주특별자치도", ("제주도", "제주")),
)
#: every written form of a 시/도 -> its official name
SIDO_VARIANTS: dict[str, str] = {}
#: MOIS 2-digit code -> official name (old codes of renamed provinces included)
SIDO_BY_CODE: dict[str, str] = {"42": "강원특별자치도", "45": "전북특별자치도"}
for _code, _name, _short in _SIDO_TABLE:
    SIDO_BY_CODE[_code] = _name
    for _v in (_name, *_short):
        SIDO_VARIANTS[_v] = _name

#: Seoul's 25 gu, so that unspaced text ("서울시중구세종대로110") still splits correctly
SEOUL_GU = (
    "종로구", "중구", "용산구", "성동구", "광진구", "동대문구", "중랑구", "성북구", "강북구", "도봉구",
    "노원구", "은평구", "서대문구", "마포구", "양천구", "강서구", "구로구", "금천구", "영등포구", "동작구",
    "관악구", "서초구", "강남구", "송파구", "강동구",
)

_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_LATIN = re.compile(r"^[A-Za-z][\x20-\x7e]*$")  # romanised names: "Taepyeongno 1(il)-ga"
_DIGITS = re.compile(r"^\d+$")


def sido_name(text: str) -> str | None:
    """The official 시/도 name for any written form ("서울", "서울시" -> "서울특별시")."""
    return SIDO_VARIANTS.get(text.strip())


def level_from_code(code: str) -> str | None:
    """Admin level of one code, from its digit count.

    2 -> 시/도, 5 -> 시군구, 7 -> 행정동 (statistical office), 8 -> 법정 읍면동,
    10 -> 법정동/리 or 행정동: a 10-digit code ending in a non-zero 리 part is a 리; the
    행정동 codes of MOIS number their 읍면동 part from 500 upward, the 법정동 ones below.
    """
    code = str(code).strip()
    if not _DIGITS.match(code):
        return None
    n = len(code)
    if n == 2:
        return SIDO
    if n == 5:
        return SIGUNGU
    if n == 7:
        return ADMIN_DONG
    if n == 8:
        return LEGAL_DONG
    if n == 10:
        if code[8:] != "00":
            return LEGAL_RI
        return ADMIN_DONG if int(code[5:8]) >= 500 else LEGAL_DONG
    return None


@dataclass(frozen=True)
class ReferenceFields:
    """How one boundary layer is read: its admin level and which fields hold what."""

    level: str
    code_field: str | None
    name_ko_field: str
    name_en_field: str | None


def _as_text(values: pd.Series) -> pd.Series:
    s = values.dropna()
    if s.dtype.kind in "iu":
        return s.astype(str)
    if s.dtype.kind == "f":
        # integral floats (codes read as numbers) only
        if not (s == s.round()).all():
            return pd.Series([], dtype=str)
        return s.astype("int64").astype(str)
    return s.astype(str).str.strip()


def _code_field(df: pd.DataFrame) -> tuple[str, str] | None:
    """The column whose values are all digit codes of one known length, with its level."""
    best: tuple[float, str, str] | None = None
    for col in df.columns:
        s = _as_text(df[col])
        if s.empty or not s.str.fullmatch(r"\d+").all():
            continue
        lengths = s.str.len().unique()
        if len(lengths) != 1:
            continue
        levels = {level_from_code(v) for v in s}
        levels.discard(None)
        if not levels:
            continue
        # 10-digit layers may mix legal and admin parts only by error; take the majority
        level = pd.Series([level_from_code(v) for v in s]).mode().iloc[0]
        unique = s.nunique() / len(s)
        name_bonus = 0.5 if re.search(r"(cd|code|코드)", str(col), re.I) else 0.0
        score = unique + name_bonus
        if best is None or score > best[0]:
            best = (score, str(col), level)
    return None if best is None else (best[1], best[2])


def _text_field(df: pd.DataFrame, pattern: re.Pattern, exclude: set[str]) -> str | None:
    """The column whose values most often match ``pattern`` and are mostly distinct."""
    best: tuple[float, str] | None = None
    for col in df.columns:
        if col in exclude or df[col].dtype.kind not in "OSU" and str(df[col].dtype) not in ("string", "str"):
            continue
        s = df[col].dropna().astype(str).str.strip()
        s = s[s != ""]
        if s.empty:
            continue
        share = s.map(lambda v: bool(pattern.search(v))).mean()
        if share < 0.8:
            continue
        score = share + s.nunique() / len(s)
        if best is None or score > best[0]:
            best = (score, str(col))
    return None if best is None else best[1]


def detect_reference_fields(df: pd.DataFrame, source: str, *, level: str | None = None,
                            code_field: str | None = None, name_ko_field: str | None = None,
                            name_en_field: str | None = None) -> ReferenceFields:
    """Find the admin level, code and name fields of a boundary table; arguments override.

    Raises SourceError naming the layer and the override to set when a part cannot be found.
    """
    columns = [c for c in df.columns if c != "geometry"]
    for given, what in ((code_field, "code_field"), (name_ko_field, "name_ko_field"), (name_en_field, "name_en_field")):
        if given is not None and given not in columns:
            raise SourceError(f"{source}: reference.{what} '{given}' is not a field (fields: {', '.join(columns)})")
    if level is not None and level not in ADMIN_LEVELS:
        raise SourceError(f"{source}: reference.admin_level '{level}' is not one of {', '.join(ADMIN_LEVELS)}")
    table = df[columns]
    if code_field is None:
        found = _code_field(table)
        if found:
            code_field, code_level = found
            level = level or code_level
    elif level is None:
        level = _as_text(table[code_field]).map(level_from_code).mode().iloc[0] if len(table) else None
    if level is None:
        raise SourceError(
            f"{source}: cannot tell the admin level (no field of 2/5/7/8/10-digit Korean admin codes); "
            "set reference.admin_level (sido, sigungu, legal_dong, admin_dong) in citytwin.yaml"
        )
    skip = {code_field} if code_field else set()
    name_ko_field = name_ko_field or _text_field(table, _HANGUL, skip)
    if name_ko_field is None:
        raise SourceError(f"{source}: no field of Korean names found; set reference.name_ko_field in citytwin.yaml")
    name_en_field = name_en_field or _text_field(table, _LATIN, skip | {name_ko_field})
    return ReferenceFields(level=level, code_field=code_field, name_ko_field=name_ko_field,
                           name_en_field=name_en_field)
