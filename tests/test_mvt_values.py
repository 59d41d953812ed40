"""Each distinct attribute text becomes one Layer.values message, its bytes written out here by hand."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa

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


def test_every_kind_of_text_column_is_hashed_alike():
    # Python, Arrow (one chunk and several, as a column joined from slices), objects and dates
    texts = ["가나", "", None, "a", "가나", "«b»", None]
    joined = pd.concat([pd.Series(texts[:3], dtype=pd.StringDtype("pyarrow", na_value=float("nan"))),
                        pd.Series(texts[3:], dtype=pd.StringDtype("pyarrow", na_value=float("nan")))],
                       ignore_index=True)
    columns = {"python": pd.Series(texts, dtype="string"), "objects": pd.Series(texts, dtype=object),
               "arrow": pd.Series(texts, dtype="string[pyarrow]"), "joined": joined}
    distinct = ["가나", "", "a", "«b»"]
    for name, col in columns.items():
        table = value_table(pd.DataFrame({name: col}))
        assert table.codes[:, 0].tolist() == [0, 1, -1, 2, 0, 3, -1], name
        assert table.data.tobytes() == b"".join(_value_message(t) for t in distinct), name
    days = pd.Series([dt.date(2024, 1, 31), None, dt.date(2024, 1, 31)], dtype=object)
    table = value_table(pd.DataFrame({"day": days}))
    assert table.codes[:, 0].tolist() == [0, -1, 0] and table.data.tobytes() == _value_message("2024-01-31")
