"""MVT attributes: each distinct value encoded once per build, each tile's value table per batch.

A layer's values are factorised column by column once; every distinct (column, value) gets
a global id and its ``Layer.values`` message bytes. A tile lists the values its features use,
in the order they first appear (features go largest first), so the table of any leading
run of a tile's features is that run's exact table: the size budget relies on it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines.store.base import field_type
from tiles.mvt_bytes import interleave, varint_len, varints, zigzag

_VALUES_FIELD = 0x22  # Layer.values, length-delimited
_STRING, _DOUBLE, _SINT, _BOOL = 0x0A, 0x19, 0x30, 0x38  # Value fields with their wire types
_VALUES_AT_ONCE = 65_536  # distinct values of a column encoded together


@dataclass(frozen=True)
class ValueTable:
    codes: np.ndarray  # (features, columns) global value id, -1 where the value is null
    data: np.ndarray  # uint8: every value's Layer.values field (tag, length, Value message)
    starts: np.ndarray
    lengths: np.ndarray


def value_table(attrs: pd.DataFrame) -> ValueTable:
    # int32: distinct values number at most features x columns, far below 2**31 for any layer in memory
    codes = np.full((len(attrs), len(attrs.columns)), -1, dtype=np.int32)
    pieces: list[tuple[np.ndarray, np.ndarray]] = []
    offset = 0
    for j, name in enumerate(attrs.columns):
        col = attrs[name]
        kind = field_type(col.dtype)
        if kind == "string":  # text, and anything else (dates) as its text
            c, uniques = _factorized_text(col)
        else:
            c, uniques = pd.factorize(col, use_na_sentinel=True)
            c = np.asarray(c, dtype=np.int64)
        codes[:, j] = np.where(c >= 0, c + offset, -1)
        offset += len(uniques)
        # in runs: encoding costs ~150 bytes of index arrays per value while it runs (ids are all distinct)
        pieces.extend(_messages(uniques[a:a + _VALUES_AT_ONCE], kind) for a in range(0, len(uniques), _VALUES_AT_ONCE))
    data = np.concatenate([d for d, _ in pieces]) if pieces else np.empty(0, dtype=np.uint8)
    lengths = np.concatenate([n for _, n in pieces]) if pieces else np.empty(0, dtype=np.int64)
    return ValueTable(codes, data, np.cumsum(lengths) - lengths, lengths)


def _factorized_text(col: pd.Series) -> tuple[np.ndarray, pa.Array]:
    """Each row's index into the column's distinct texts (-1 for null) and those texts in order of
    first use, as pd.factorize gives them, but hashed by Arrow over its buffers: on Python strings
    it took half of the 600k city's value table."""
    text = col if isinstance(col.dtype, pd.StringDtype) else col.astype("string")
    arr = pa.array(text, type=pa.large_string())
    if isinstance(arr, pa.ChunkedArray):  # an Arrow-backed column joined from several
        arr = arr.combine_chunks()
    encoded = arr.dictionary_encode()
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, encoded.dictionary


def _messages(uniques: pd.Index | pa.Array, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(bytes, length each) of Layer.values fields for the distinct values of one column."""
    n = len(uniques)
    values = uniques.to_numpy() if kind != "string" else None
    if kind == "number":
        body = (np.full(n, _DOUBLE, np.uint8), np.ones(n, np.int64)), \
               (values.astype("<f8").view(np.uint8), np.full(n, 8, np.int64))
    elif kind == "integer":
        body = (np.full(n, _SINT, np.uint8), np.ones(n, np.int64)), varints(zigzag(values.astype(np.int64)))
    elif kind == "boolean":
        body = (np.full(n, _BOOL, np.uint8), np.ones(n, np.int64)), \
               (values.astype(np.uint8), np.ones(n, np.int64))
    else:
        text, text_len = _utf8(uniques)
        body = (np.full(n, _STRING, np.uint8), np.ones(n, np.int64)), varints(text_len), (text, text_len)
    value, value_len = interleave(list(body))
    return interleave([(np.full(n, _VALUES_FIELD, np.uint8), np.ones(n, np.int64)), varints(value_len),
                       (value, value_len)])


def _utf8(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The texts' UTF-8 bytes end to end and each one's length, through Arrow's buffers: a Python
    bytes object per value would cost a whole-layer read's worth of memory on an id column."""
    arr = texts.cast(pa.large_string())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset:arr.offset + len(arr) + 1]
    data = arr.buffers()[2]
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.empty(0, dtype=np.uint8)
    return data[offsets[0]:offsets[-1]], np.diff(offsets)


@dataclass(frozen=True)
class TileTags:
    """Tags of a batch of (feature, tile) pairs and the value tables of their tiles."""
    tag_ints: np.ndarray  # uint64 key/value index pairs, pair after pair
    tag_bytes: np.ndarray  # varint bytes of the tags per pair
    values: np.ndarray  # global value ids, tile after tile, each tile's in first-use order
    values_per_tile: np.ndarray
    first_use_bytes: np.ndarray  # per pair: bytes of the values it adds to its tile's table
    ints_per_pair: np.ndarray


def tile_tags(table: ValueTable, feat: np.ndarray, tile: np.ndarray, n_tiles: int) -> TileTags:
    """Pairs ``(feat[i], tile[i])`` sorted by tile, each tile's features in drawing priority."""
    codes = table.codes[feat].astype(np.int64)
    has = codes >= 0
    pair_idx, col_idx = np.nonzero(has)  # row-major: pair after pair, column order inside
    gid = codes[has]
    n_values = max(len(table.lengths), 1)
    key = tile[pair_idx].astype(np.int64) * n_values + gid
    # a hash table numbers the distinct (tile, value) keys in order of first use, which is the
    # order they take in the tiles' tables (pairs come tile after tile): no sort needed
    inverse, used = pd.factorize(key)
    first = np.flatnonzero(np.diff(np.maximum.accumulate(inverse), prepend=-1) > 0)  # where each key is new
    u_tile = used // n_values
    rank = np.arange(len(used)) - np.searchsorted(u_tile, u_tile, side="left")
    ints = np.empty(2 * len(gid), dtype=np.uint64)
    ints[0::2] = col_idx
    ints[1::2] = rank[inverse]
    ints_per_pair = 2 * np.bincount(pair_idx, minlength=len(feat))
    tag_bytes = np.bincount(np.repeat(np.arange(len(feat)), ints_per_pair), weights=varint_len(ints),
                            minlength=len(feat)).astype(np.int64)
    new_bytes = np.bincount(pair_idx[first], weights=table.lengths[used % n_values],
                            minlength=len(feat)).astype(np.int64)
    return TileTags(ints, tag_bytes, used % n_values, np.bincount(u_tile, minlength=n_tiles), new_bytes,
                    ints_per_pair)
