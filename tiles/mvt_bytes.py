"""Protocol-buffer framing for MVT, on whole arrays at once (no per-value Python).

An MVT tile is a handful of protobuf messages whose payloads are mostly unsigned varints
(commands, zig-zag deltas, tag indices). These helpers encode many varints, and copy many
byte ranges, with numpy operations over the whole batch.
"""
from __future__ import annotations

import numpy as np

_U8 = np.uint8
_SCATTER_RECORDS = 65_536  # records interleaved at once


def varint_len(values: np.ndarray) -> np.ndarray:
    """Bytes each unsigned value takes as a protobuf varint (1-10)."""
    v = np.asarray(values, dtype=np.uint64)
    n = np.ones(v.shape, dtype=np.int64)
    for shift in range(7, 64, 7):
        n += v >= (np.uint64(1) << np.uint64(shift))
    return n


def varints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bytes, byte length per value) of the unsigned values as consecutive varints."""
    v = np.asarray(values, dtype=np.uint64)
    lens = varint_len(v)
    total = int(lens.sum())
    out = np.empty(total, dtype=_U8)
    starts = np.cumsum(lens) - lens
    for k in range(int(lens.max(initial=0))):
        has = lens > k
        byte = (v[has] >> np.uint64(7 * k)) & np.uint64(0x7F)
        more = lens[has] > k + 1  # continuation bit on all but the last byte
        out[starts[has] + k] = (byte | (more.astype(np.uint64) << np.uint64(7))).astype(_U8)
    return out, lens


def zigzag(values: np.ndarray) -> np.ndarray:
    """Signed integers to protobuf's zig-zag unsigned form."""
    v = np.asarray(values, dtype=np.int64)
    return ((v << 1) ^ (v >> 63)).astype(np.uint64)


def segment_ids(lens: np.ndarray) -> np.ndarray:
    """For segments of the given lengths laid end to end, the segment of each element."""
    return np.repeat(np.arange(len(lens)), lens)


def ragged_take(buf: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """buf[starts[0]:starts[0]+lens[0]] + buf[starts[1]:...] + ..., in one gather."""
    lens = np.asarray(lens, dtype=np.int64)
    total = int(lens.sum())
    if total == 0:
        return np.empty(0, dtype=buf.dtype)
    ends = np.cumsum(lens)
    # index of each output byte in buf: its segment's start plus its offset in the segment
    shift = np.repeat(np.asarray(starts, dtype=np.int64) - (ends - lens), lens)
    return buf[np.arange(total, dtype=np.int64) + shift]


def interleave(pieces: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate, record by record, several byte streams split into the same number of records.

    ``pieces`` holds (bytes, length per record) pairs; record i of the output is record i of
    the first stream, then of the second, and so on. Returns (bytes, length per record).
    """
    lens = np.stack([np.asarray(n, dtype=np.int64) for _, n in pieces], axis=1)  # (count, streams)
    rec_len = lens.sum(axis=1)
    out = np.empty(int(rec_len.sum()), dtype=_U8)
    out_start = np.cumsum(rec_len) - rec_len
    col_off = np.cumsum(lens, axis=1) - lens  # where each stream's bytes start inside a record
    for j, (data, n) in enumerate(pieces):
        n = np.asarray(n, dtype=np.int64)
        if not len(data):
            continue
        src_start = np.cumsum(n) - n
        shift = out_start + col_off[:, j] - src_start
        # each stream is already in record order: scatter it in runs of records, since the
        # index costs 8 bytes per byte moved (a layer's value table is megabytes of text)
        for a in range(0, len(n), _SCATTER_RECORDS):
            b = min(a + _SCATTER_RECORDS, len(n))
            lo, hi = src_start[a], src_start[b - 1] + n[b - 1]
            out[np.arange(lo, hi, dtype=np.int64) + np.repeat(shift[a:b], n[a:b])] = data[lo:hi]
    return out, rec_len
