"""Revised Romanization: known official spellings (National Institute of Korean Language examples)."""
from __future__ import annotations

import pytest

from geo.romanize import romanize, romanize_admin, romanize_word

# (Hangul, official RR): the brief's pairs, then one per implemented rule
KNOWN = [
    ("서울", "Seoul"), ("경복궁", "Gyeongbokgung"), ("종로", "Jongno"), ("신라", "Silla"), ("부산", "Busan"),
    ("광화문", "Gwanghwamun"), ("덕수궁", "Deoksugung"),
    ("한라산", "Hallasan"),  # ㄴ+ㄹ -> ll
    ("대관령", "Daegwallyeong"),
    ("설날", "Seollal"),  # ㄹ+ㄴ -> ll
    ("왕십리", "Wangsimni"),  # ㅂ+ㄹ -> m n
    ("독립", "Dongnip"),
    ("백마", "Baengma"),  # nasalisation
    ("선릉", "Seolleung"),
    ("압구정", "Apgujeong"), ("여의도", "Yeouido"), ("청계천", "Cheonggyecheon"), ("북한산", "Bukhansan"),
    ("묵호", "Mukho"), ("집현전", "Jiphyeonjeon"),  # nouns keep h after k/p
    ("같이", "Gachi"), ("굳이", "Guji"),  # palatalisation
    ("좋고", "Joko"),  # ㅎ + ㄱ -> k
    ("울산", "Ulsan"), ("독도", "Dokdo"), ("한국어", "Hangugeo"),  # liaison
]


@pytest.mark.parametrize("ko,en", KNOWN)
def test_known_pairs(ko: str, en: str) -> None:
    assert romanize(ko) == en


def test_words_digits_and_latin_are_kept() -> None:
    assert romanize("서울 밤도깨비 야시장 2018") == "Seoul Bamdokkaebi Yasijang 2018"
    assert romanize("DDP 디자인") == "DDP Dijain"
    assert romanize("") == "" and romanize_word("abc") == "abc"


def test_admin_units_are_hyphenated_without_assimilation() -> None:
    assert romanize_admin("종로구") == "Jongno-gu"
    assert romanize_admin("중구") == "Jung-gu"
    assert romanize_admin("인왕동") == "Inwang-dong"
    assert romanize_admin("명륜4가") == "Myeongnyun 4-ga"
