"""Each distinct attribute text becomes one Layer.values message, its bytes written out here by hand."""
from __future__ import annotations

import pandas as pd

from tiles import mvt_values
from tiles.mvt_values import value_table


def _value_message(text: str) -> bytes:
    utf8 = text.encode("utf-8")
    value = b"\x0a" + bytes([len(utf8)]) + utf8  # Value.string_value (field 1, length-delimited)
    return b"\x22" + bytes([len(value)]) + value  # Layer.values (field 4, length-delimited)


def test_texts_are_encoded_once_each_in_first_seen_order():
    texts = ["가나", "", None, "a", "가나", "«b»", "2024-01-31"]
    table = value_table(pd.DataFrame({"name": pd.Series(texts, dtype=object)}))
    distinct = ["가나", "", "a", "«b»", "2024-01-31"]
    assert table.data.tobytes() == b"".join(_value_message(t) for t in distinct)
    assert table.lengths.tolist() == [len(_value_message(t)) for t in distinct]
    assert table.codes[:, 0].tolist() == [0, 1, -1, 2, 0, 3, 4]


def test_a_column_of_arrow_strings_is_encoded_the_same_in_runs(monkeypatch):
    monkeypatch.setattr(mvt_values, "_VALUES_AT_ONCE", 7)  # runs end inside the column
    texts = pd.Series([f"id-{i}" for i in range(1000)] + [None], dtype="string[pyarrow]")
    table = value_table(pd.DataFrame({"id": texts}))
    assert table.data.tobytes() == b"".join(_value_message(f"id-{i}") for i in range(1000))
    assert (table.codes[:1000, 0] == range(1000)).all() and table.codes[1000, 0] == -1
