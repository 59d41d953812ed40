"""Languages for tourists: label fallback (requested -> en -> ko) and walking-turn templates.

Layers carry ``name_<lang>`` / ``description_<lang>`` fields (ko, en, ja, zh); English is
the romanised form, so it is the first fallback, then Korean, the source language.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping

SUPPORTED = ("ko", "en", "ja", "zh")
FALLBACK = ("en", "ko")
DEFAULT_LANG = "en"
_LANG_RE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*$")


class LanguageError(ValueError):
    """A language tag that is not even shaped like one."""


def normalise_lang(tag: str | None) -> str:
    """'ja-JP' -> 'ja', 'zh-Hans-CN' -> 'zh', 'KO' -> 'ko'; None or '' -> the default (en).

    Any well-formed tag is accepted; one we have no text for falls back like a missing name.
    """
    if tag is None or not tag.strip():
        return DEFAULT_LANG
    tag = tag.strip()
    if not _LANG_RE.match(tag):
        raise LanguageError(f"lang {tag!r} is not a language tag; use ko, en, ja or zh (e.g. lang=ja)")
    return re.split(r"[-_]", tag)[0].lower()


def fallback_chain(lang: str) -> tuple[str, ...]:
    """The languages to try, in order: requested, then en, then ko (no repeats)."""
    return tuple(dict.fromkeys((lang, *FALLBACK)))


def pick(lang: str, get: Callable[[str], object]) -> tuple[str | None, str | None]:
    """The first non-empty text ``get(l)`` along the fallback chain, and the language it is in."""
    for code in fallback_chain(lang):
        value = get(code)
        if isinstance(value, str) and value.strip():
            return value, code
    return None, None


def pick_field(props: Mapping[str, object], stem: str, lang: str) -> tuple[str | None, str | None]:
    """``props['<stem>_<lang>']`` with fallback; a bare ``props[stem]`` counts as the last resort."""
    value, code = pick(lang, lambda c: props.get(f"{stem}_{c}"))
    if value is None:
        bare = props.get(stem)
        if isinstance(bare, str) and bare.strip():
            return bare, None
    return value, code


# -- walking directions ---------------------------------------------------------------------
_COMPASS = {
    "en": ("north", "northeast", "east", "southeast", "south", "southwest", "west", "northwest"),
    "ko": ("북", "북동", "동", "남동", "남", "남서", "서", "북서"),
    "ja": ("北", "北東", "東", "南東", "南", "南西", "西", "北西"),
    "zh": ("北", "东北", "东", "东南", "南", "西南", "西", "西北"),
}
_TURNS = {
    "en": {"left": "left", "right": "right", "slight_left": "slightly left", "slight_right": "slightly right",
           "sharp_left": "sharp left", "sharp_right": "sharp right"},
    "ko": {"left": "왼쪽으로", "right": "오른쪽으로", "slight_left": "왼쪽으로 비스듬히",
           "slight_right": "오른쪽으로 비스듬히", "sharp_left": "왼쪽으로 크게", "sharp_right": "오른쪽으로 크게"},
    "ja": {"left": "左に", "right": "右に", "slight_left": "やや左に", "slight_right": "やや右に",
           "sharp_left": "大きく左に", "sharp_right": "大きく右に"},
    "zh": {"left": "向左", "right": "向右", "slight_left": "稍向左", "slight_right": "稍向右",
           "sharp_left": "向左急", "sharp_right": "向右急"},
}
# {street}, {turn}, {direction}, {place}; the *_bare forms are for unnamed streets / places.
_TEMPLATES = {
    "en": {"depart": "Head {direction} on {street}", "depart_bare": "Head {direction}",
           "turn": "Turn {turn} onto {street}", "turn_bare": "Turn {turn}",
           "continue": "Continue onto {street}", "continue_bare": "Continue straight",
           "arrive": "Arrive at {place}", "arrive_bare": "Arrive at your destination"},
    "ko": {"depart": "{street}에서 {direction}쪽으로 출발하세요", "depart_bare": "{direction}쪽으로 출발하세요",
           "turn": "{turn} 돌아 {street}(으)로 가세요", "turn_bare": "{turn} 도세요",
           "continue": "{street}(으)로 계속 직진하세요", "continue_bare": "계속 직진하세요",
           "arrive": "{place}에 도착했습니다", "arrive_bare": "목적지에 도착했습니다"},
    "ja": {"depart": "{street}を{direction}へ進みます", "depart_bare": "{direction}へ進みます",
           "turn": "{turn}曲がって{street}に入ります", "turn_bare": "{turn}曲がります",
           "continue": "そのまま{street}を直進します", "continue_bare": "そのまま直進します",
           "arrive": "{place}に到着します", "arrive_bare": "目的地に到着します"},
    "zh": {"depart": "沿{street}向{direction}出发", "depart_bare": "向{direction}出发",
           "turn": "{turn}转进入{street}", "turn_bare": "{turn}转",
           "continue": "继续直行进入{street}", "continue_bare": "继续直行",
           "arrive": "到达{place}", "arrive_bare": "到达目的地"},
}


def template_lang(lang: str) -> str:
    """The language the instructions are written in: ``lang`` when we have templates, else en."""
    return lang if lang in _TEMPLATES else DEFAULT_LANG


def compass(bearing_deg: float, lang: str) -> str:
    """One of eight compass points for a bearing, in ``lang`` (or English)."""
    return _COMPASS[template_lang(lang)][int(((bearing_deg % 360) + 22.5) // 45) % 8]


def turn_kind(delta_deg: float) -> str | None:
    """'left', 'slight_right', ... for a change of heading (degrees, positive = clockwise);
    None when the walk goes on (nearly) straight."""
    d = (delta_deg + 180.0) % 360.0 - 180.0
    a = abs(d)
    if a < 25:
        return None
    side = "right" if d > 0 else "left"
    if a < 50:
        return f"slight_{side}"
    if a > 135:
        return f"sharp_{side}"
    return side


def instruction(kind: str, lang: str, *, street: str | None = None, turn: str | None = None,
                bearing_deg: float | None = None, place: str | None = None) -> str:
    """The text of one step: kind is depart, turn, continue or arrive."""
    lang = template_lang(lang)
    table = _TEMPLATES[lang]
    key = kind if (place if kind == "arrive" else street) else f"{kind}_bare"
    return table[key].format(
        street=street or "", place=place or "",
        turn=_TURNS[lang][turn] if turn else "",
        direction=compass(bearing_deg, lang) if bearing_deg is not None and not math.isnan(bearing_deg) else "",
    )
