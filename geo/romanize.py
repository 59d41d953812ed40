"""Revised Romanization of Korean (국어의 로마자 표기법, 2000) for place and POI names.

Hangul syllables are decomposed arithmetically (U+AC00 + (initial*21 + vowel)*28 + final)
and transcribed jamo by jamo. RR writes the pronunciation, so the sound changes at a
syllable boundary are applied before the letters are chosen. Implemented:

* liaison: a final before a silent ㅇ moves over (한국어 -> hangugeo, 밝음 -> balgeum);
  a final ㅎ before a vowel is silent (좋아 -> joa);
* nasalisation: ㄱ/ㄷ/ㅂ-class finals before ㄴ or ㅁ become ng/n/m (백마 -> baengma,
  합니다 -> hamnida);
* ㄹ: ㄴ+ㄹ and ㄹ+ㄴ and ㄹ+ㄹ are "ll" (신라 -> silla, 설날 -> seollal); ㄹ after ㅁ or ㅇ
  is n (종로 -> jongno, 음료 -> eumnyo); after a ㄱ/ㄷ/ㅂ-class final both change
  (독립 -> dongnip, 백리 -> baengni);
* aspiration with ㅎ: final ㅎ + ㄱ/ㄷ/ㅈ -> k/t/ch (좋고 -> joko); ㄱ/ㄷ/ㅂ + ㅎ keep the h,
  as RR prescribes for nouns (묵호 -> mukho, 집현전 -> jiphyeonjeon);
* palatalisation: final ㄷ/ㅌ before 이 -> j/ch (굳이 -> guji, 같이 -> gachi).

Not implemented (they need a dictionary, not letters): tensing (never written in RR
anyway), ㄴ-insertion in compounds (학여울 -> Hangnyeoul comes out Hagyeoul), ㄹ read as ㄴ
after ㄴ in some compounds (신문로 -> Sinmunno comes out Sinmullo, by the ㄴ+ㄹ rule), and the
optional hyphen between syllables that would otherwise read ambiguously (중앙 -> Jungang).
Administrative units are hyphenated without assimilation across the hyphen
(종로구 -> Jongno-gu, 인왕동 -> Inwang-dong) by :func:`romanize_admin`.
"""
from __future__ import annotations

import re

_BASE, _LAST = 0xAC00, 0xD7A3
# index 19 is not a jamo: an initial ㄹ that is pronounced (and written) l after ㄹ or ㄴ
_INITIALS = ("g", "kk", "n", "d", "tt", "r", "m", "b", "pp", "s", "ss", "", "j", "jj", "ch", "k", "t", "p", "h", "l")
_VOWELS = ("a", "ae", "ya", "yae", "eo", "e", "yeo", "ye", "o", "wa", "wae", "oe", "yo", "u", "wo", "we", "wi",
           "yu", "eu", "ui", "i")
# initial indices
_G, _KK, _N, _D, _TT, _R, _M, _B, _PP, _S, _SS, _NG, _J, _JJ, _CH, _K, _T, _P, _H, _L = range(20)
# finals (index 0 = none): how each sounds at the end of a word or before a consonant
_FINAL_SOUND = ("", "k", "k", "k", "n", "n", "n", "t", "l", "k", "m", "l", "l", "l", "p", "l", "m", "p", "p", "t",
                "t", "ng", "t", "t", "k", "t", "p", "t")
# a final that moves to a following ㅇ: (what stays, the initial it becomes); None when nothing moves
_FINAL_SPLIT: dict[int, tuple[int, int | None]] = {
    1: (0, _G), 2: (0, _KK), 3: (1, _S), 4: (0, _N), 5: (4, _J), 6: (0, _N), 7: (0, _D), 8: (0, _R),
    9: (8, _G), 10: (8, _M), 11: (8, _B), 12: (8, _S), 13: (8, _T), 14: (8, _P), 15: (0, _R), 16: (0, _M),
    17: (0, _B), 18: (17, _S), 19: (0, _S), 20: (0, _SS), 21: (21, None), 22: (0, _J), 23: (0, _CH), 24: (0, _K),
    25: (0, _T), 26: (0, _P), 27: (0, None),
}
_HIEUT = 27
_VOWEL_I = 20
_ADMIN_UNITS = {"특별시": "si", "광역시": "si", "도": "do", "시": "si", "군": "gun", "구": "gu", "읍": "eup",
                "면": "myeon", "동": "dong", "리": "ri", "가": "ga"}
_UNIT_RE = re.compile(r"^(.+?)(\d*)(특별시|광역시|도|시|군|구|읍|면|동|리|가)$")


def _syllables(word: str) -> list[list[int] | str]:
    """[initial, vowel, final] for each Hangul syllable, other characters as they are."""
    out: list[list[int] | str] = []
    for ch in word:
        code = ord(ch)
        if _BASE <= code <= _LAST:
            n = code - _BASE
            out.append([n // 588, (n % 588) // 28, n % 28])
        else:
            out.append(ch)
    return out


def _sound(final: int) -> str:
    return _FINAL_SOUND[final]


def _assimilate(cur: list[int], nxt: list[int]) -> tuple[str | None, int]:
    """Apply the boundary rules between two syllables.

    Returns (how ``cur``'s final is written, overriding the default when not None) and
    the (possibly changed) initial of ``nxt``.
    """
    final, init = cur[2], nxt[0]
    if final == 0:
        return None, init
    if init == _NG:  # liaison
        stay, moved = _FINAL_SPLIT[final]
        if moved is None:  # ㅇ stays ng (강원 gangwon); ㅎ falls silent (좋아 joa)
            return ("" if final == _HIEUT else _sound(final)), init
        if moved in (_D, _T) and nxt[1] == _VOWEL_I:  # palatalisation: 굳이, 같이
            moved = _J if moved == _D else _CH
        return _sound(stay), moved
    s = _sound(final)
    if final == _HIEUT and init in (_G, _D, _J):  # 좋고, 놓다: ㅎ + plain -> aspirate
        return "", {_G: _K, _D: _T, _J: _CH}[init]
    if init == _R:
        if s in ("n", "l"):
            return "l", _L  # 신라 silla, 별로 byeollo
        if s in ("m", "ng"):
            return s, _N  # 종로 jongno
        if s in ("k", "t", "p"):
            return {"k": "ng", "t": "n", "p": "m"}[s], _N  # 독립 dongnip
    if init == _N and s == "l":
        return "l", _L  # 설날 seollal: ㄹ + ㄴ -> ll
    if init in (_N, _M) and s in ("k", "t", "p"):
        return {"k": "ng", "t": "n", "p": "m"}[s], init  # 백마 baengma, 합니다 hamnida
    return None, init


def romanize_word(word: str) -> str:
    """One word, lower case: 서울 -> seoul, 경복궁 -> gyeongbokgung."""
    sy = _syllables(word)
    out: list[str] = []
    for i, s in enumerate(sy):
        if isinstance(s, str):
            out.append(s)
            continue
        init, vowel, final = s
        # the initial may have been changed by the previous syllable
        out.append(_INITIALS[init] + _VOWELS[vowel])
        nxt = sy[i + 1] if i + 1 < len(sy) else None
        if isinstance(nxt, list):
            written, new_init = _assimilate(s, nxt)
            nxt[0] = new_init
            out.append(_sound(final) if written is None else written)
        else:
            out.append(_sound(final))
    return "".join(out)


def _has_hangul(text: str) -> bool:
    return any(_BASE <= ord(c) <= _LAST for c in text)


def romanize(text: str) -> str:
    """A name in Revised Romanization, each Hangul word capitalised: 경복궁 -> Gyeongbokgung.

    Non-Hangul parts (digits, Latin letters, punctuation) are kept as written.
    """
    if not text:
        return ""
    parts = re.split(r"(\s+)", str(text).strip())
    out = []
    for p in parts:
        if _has_hangul(p):
            r = romanize_word(p)
            out.append(r[:1].upper() + r[1:])
        else:
            out.append(p)
    return "".join(out)


def romanize_admin(name: str) -> str:
    """An administrative name with its unit hyphenated: 종로구 -> Jongno-gu, 명륜4가 -> Myeongnyun 4-ga.

    Assimilation is not applied across the hyphen (RR: 인왕동 Inwang-dong). A name that is
    only a unit word (e.g. '중구' -> Jung-gu) keeps its stem.
    """
    words = str(name).split()
    out = []
    for w in words:
        m = _UNIT_RE.match(w)
        if m and _has_hangul(m.group(1)):
            stem = romanize(m.group(1))
            num = f" {m.group(2)}" if m.group(2) else ""
            out.append(f"{stem}{num}-{_ADMIN_UNITS[m.group(3)]}")
        else:
            out.append(romanize(w))
    return " ".join(out)
