"""TileSource over a local PMTiles v3 archive (memory-mapped, thread-safe).

A rebuild swaps the archive with os.replace, which gives the path a new inode. Every
request compares the path's (inode, size, mtime) with the open archive's and opens the
new file when they differ, so a long-running server serves new builds without a
restart. A replaced archive is never closed under a reader's feet: it stays mapped
until the last request holding it lets go of it.
"""
from __future__ import annotations

import gzip
import json
import mmap
import os
import threading
from functools import lru_cache
from pathlib import Path

from pmtiles.tile import Compression, TileType, deserialize_directory, deserialize_header, find_tile, zxy_to_tileid

from geo.errors import SourceError
from tiles.source import TileSetInfo

_HEADER_BYTES = 127
_MAX_DIRECTORY_DEPTH = 4  # the spec allows root + up to 3 leaf levels


def _stat_key(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class _Archive:
    """One opened version of the archive file."""

    def __init__(self, path: Path):
        try:
            with open(path, "rb") as f:
                self.key = _stat_key(os.fstat(f.fileno()))
                # The mapping stays valid after the file is closed and after it is replaced.
                self.data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except FileNotFoundError:
            raise SourceError(f"tile archive {path} does not exist; run 'citytwin build' first") from None
        except (OSError, ValueError) as exc:
            raise SourceError(f"tile archive {path} cannot be read ({exc}); rebuild it with 'citytwin build'") from None
        try:
            self.header = deserialize_header(self.data[:_HEADER_BYTES])
        except Exception:
            raise SourceError(f"{path} is not a PMTiles v3 archive; rebuild it with 'citytwin build'") from None
        h = self.header
        if h["tile_type"] != TileType.MVT:
            raise SourceError(f"{path} holds {h['tile_type'].name} tiles, not vector tiles (MVT)")
        if h["tile_compression"] not in (Compression.GZIP, Compression.NONE, Compression.UNKNOWN):
            raise SourceError(
                f"{path} uses {h['tile_compression'].name} tile compression; only gzip is supported, "
                "rebuild it with 'citytwin build'"
            )
        self.gzip_tiles = h["tile_compression"] == Compression.GZIP
        self.root = deserialize_directory(self._slice(h["root_offset"], h["root_length"]))
        raw = self._slice(h["metadata_offset"], h["metadata_length"])
        if h["internal_compression"] == Compression.GZIP:
            raw = gzip.decompress(raw)
        self.metadata = json.loads(raw) if raw else {}
        # Leaf directories, parsed once each; lru_cache is safe to share across threads.
        self.leaf = lru_cache(maxsize=256)(self._read_leaf)

    def _slice(self, offset: int, length: int) -> bytes:
        return self.data[offset:offset + length]

    def _read_leaf(self, offset: int, length: int):
        return deserialize_directory(self._slice(self.header["leaf_directory_offset"] + offset, length))

    def get(self, z: int, x: int, y: int) -> bytes | None:
        tile_id = zxy_to_tileid(z, x, y)
        directory = self.root
        for _ in range(_MAX_DIRECTORY_DEPTH):
            entry = find_tile(directory, tile_id)
            if entry is None:
                return None
            if entry.run_length > 0:
                data = self._slice(self.header["tile_data_offset"] + entry.offset, entry.length)
                return gzip.decompress(data) if self.gzip_tiles else data
            directory = self.leaf(entry.offset, entry.length)
        return None


class PMTilesSource:
    """Vector tiles of one layer from ``path`` (a PMTiles v3 archive of MVT)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._archive = _Archive(self.path)

    def _current(self) -> _Archive:
        archive = self._archive
        try:
            key = _stat_key(os.stat(self.path))
        except FileNotFoundError:
            return archive  # mid-swap or removed: keep serving what we have
        if key != archive.key:
            with self._lock:
                if self._archive.key != key:  # another thread may have reopened it already
                    self._archive = _Archive(self.path)
                archive = self._archive
        return archive

    def tile(self, z: int, x: int, y: int) -> bytes | None:
        """Uncompressed MVT bytes of tile z/x/y, or None when the archive has none there."""
        if not (0 <= z <= 30 and 0 <= x < (1 << z) and 0 <= y < (1 << z)):
            return None
        archive = self._current()
        h = archive.header
        if not h["min_zoom"] <= z <= h["max_zoom"]:
            return None
        return archive.get(z, x, y)

    def info(self) -> TileSetInfo:
        archive = self._current()
        h, meta = archive.header, archive.metadata
        layers = meta.get("vector_layers") or []
        name = layers[0]["id"] if layers else meta.get("name", self.path.stem)
        bounds = (h["min_lon_e7"] / 1e7, h["min_lat_e7"] / 1e7, h["max_lon_e7"] / 1e7, h["max_lat_e7"] / 1e7)
        center = (h["center_lon_e7"] / 1e7, h["center_lat_e7"] / 1e7, int(h["center_zoom"]))
        ino, size, mtime_ns = archive.key
        return TileSetInfo(
            layer=name, minzoom=int(h["min_zoom"]), maxzoom=int(h["max_zoom"]), bounds=bounds,
            center=center, vector_layers=layers, etag_seed=f"pmtiles-{size}-{mtime_ns}-{ino}",
        )

    def close(self) -> None:
        """Drop the mapping; a later request reopens the file."""
        with self._lock:
            self._archive.data.close()
            self._archive.key = (-1, -1, -1)
