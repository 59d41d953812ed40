"""3D Tiles 1.1 implicit tiling: a quadtree of templated content and binary subtree files.

An explicit tileset lists every tile in one JSON document, which a client must fetch whole
before drawing anything; at city scale (hundreds of thousands of buildings) that document
alone runs to megabytes. Here the root tile carries ``implicitTiling`` instead, and clients
learn which tiles exist from small subtree files, one per ``SUBTREE_LEVELS`` levels.

- Buildings are placed on a grid over the extent of their centres, each level halving it in
  longitude and latitude. A building belongs to the cell holding its centre, found by integer
  cell numbers (never by comparing halved floats), so it lands in exactly one tile per LOD.
- A building may reach past its cell, so every tile's region is also stored in its subtree
  (TILE_BOUNDING_REGION metadata): what its content and children hold, with their heights.
  The root region is the union of the grid and all content.
- A cell with more than ``max_items`` buildings is split, as in the explicit tree. Inner cells
  hold no content. With LOD1 and LOD2, the cell's LOD1 is its content and its LOD2 is split
  into the four children one level down: refinement is REPLACE, so near views swap the
  blocks for the detailed models.
- Every content file shares one local frame (the root transform), as implicit tiles cannot
  carry their own transform; positions stay exact since each mesh is quantized around its
  own centre.
- Geometric error halves per level (the rule of implicit tiling), from a tenth of the root's
  diagonal, the error the explicit tree gives its upper tiles.
"""
from __future__ import annotations

import json
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from geo.errors import SourceError
from tiles.publish import scratch_dir
from tiles.threed.mesh import LocalFrame
from tiles.threed.tileset import (MeshMaker, TilesetReport, _swap_in, diagonal_m, frame_at, frame_transform,
                                  render_content)

# An explicit tileset.json grows with the city: the sample city's is 30 kB for 5,768 buildings
# (5 bytes a building), so 50,000 buildings make ~260 kB, which a phone on a mobile network must
# fetch and parse before its first tile, and 600,000 make ~3 MB. From this size on, layers are
# written with implicit tiling unless the catalog says otherwise.
IMPLICIT_MIN_BUILDINGS = 50_000
# At most 6 levels a subtree: it holds at most 1,365 tiles (171-byte bitstreams, 48 bytes of
# region per available tile), small enough to fetch before the tiles it lists.
SUBTREE_LEVELS = 6
MAX_LEVEL = 18  # the deepest split, as in the explicit tree: cells of ~0.1 m over a 30 km city
RENDER_BATCH = 256  # contents rendered before they are written: bounds memory; few enough batches for Dask
SUBTREE_MAGIC = 0x74627573  # "subt"
CONTENT_TEMPLATE = "content/{level}/{x}/{y}"
SUBTREE_TEMPLATE = "subtrees/{level}/{x}/{y}.subtree"
# Each tile's region, stored per tile in the subtrees: tighter than the halved root region (the
# heights of what the tile holds) and holding the buildings that reach past their centre's cell.
TILE_SCHEMA = {"id": "citytwin_tiles", "classes": {"tile": {"properties": {"region": {
    "type": "SCALAR", "componentType": "FLOAT64", "array": True, "count": 6, "semantic": "TILE_BOUNDING_REGION"}}}}}


def use_implicit(buildings: int, requested: bool | None) -> bool:
    """Implicit tiling when asked for, else when the layer has at least IMPLICIT_MIN_BUILDINGS buildings."""
    return requested if requested is not None else buildings >= IMPLICIT_MIN_BUILDINGS


@dataclass(frozen=True)
class Cell:
    level: int
    x: int
    y: int
    lod: int
    items: np.ndarray  # indices into the caller's building list


def _spread(v: np.ndarray) -> np.ndarray:
    """The bits of ``v`` (< 2**31) moved to the even positions of an int64."""
    v = v.astype(np.int64) & 0x7FFFFFFF
    v = (v | (v << 16)) & 0x0000FFFF0000FFFF
    v = (v | (v << 8)) & 0x00FF00FF00FF00FF
    v = (v | (v << 4)) & 0x0F0F0F0F0F0F0F0F
    v = (v | (v << 2)) & 0x3333333333333333
    v = (v | (v << 1)) & 0x5555555555555555
    return v


def morton(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Quadtree Morton index: x on the even bits, y on the odd ones."""
    return _spread(x) | (_spread(y) << 1)


def place(lon: np.ndarray, lat: np.ndarray, bounds: tuple[float, float, float, float], lods: list[int],
          max_items: int, max_level: int = MAX_LEVEL) -> list[Cell]:
    """The content cells: each building once per LOD, in the cell of its centre."""
    depth = max_level + len(lods)  # the LOD chain goes that many levels below the deepest split
    w, s, e, n = bounds
    side = 1 << depth
    ix = np.clip(((lon - w) / (e - w) * side).astype(np.int64), 0, side - 1)
    iy = np.clip(((lat - s) / (n - s) * side).astype(np.int64), 0, side - 1)
    codes = morton(ix, iy)
    order = np.argsort(codes, kind="stable")
    codes = codes[order]
    cells: list[Cell] = []
    stack = [(0, 0, 0, 0, len(codes))]
    while stack:
        level, x, y, a, b = stack.pop()
        if b - a <= max_items or level >= max_level:
            _chain(cells, codes, order, depth, level, x, y, a, b, lods)
            continue
        stack += [(level + 1, *child) for child in _split(codes, depth, level, x, y, a, b)]
    return cells


def _split(codes: np.ndarray, depth: int, level: int, x: int, y: int, a: int, b: int) -> list[tuple[int, int, int, int]]:
    """The non-empty children (x, y, start, end) of cell (level, x, y) over sorted ``codes[a:b]``."""
    digits = (codes[a:b] >> (2 * (depth - level - 1))) & 3
    ends = a + np.searchsorted(digits, np.arange(5))
    return [(2 * x + (d & 1), 2 * y + (d >> 1), int(ends[d]), int(ends[d + 1]))
            for d in range(4) if ends[d + 1] > ends[d]]


def _chain(cells: list[Cell], codes: np.ndarray, order: np.ndarray, depth: int, level: int, x: int, y: int,
           a: int, b: int, lods: list[int]) -> None:
    """The first LOD at this cell, each next LOD split one level further down."""
    parts = [(x, y, a, b)]
    for i, lod in enumerate(lods):
        if i:
            parts = [c for p in parts for c in _split(codes, depth, level + i - 1, *p)]
        cells += [Cell(level + i, cx, cy, lod, order[ca:cb]) for cx, cy, ca, cb in parts]


def render_cell(cell: tuple[np.ndarray, int], lods: dict[int, MeshMaker], b3dm_mode: bool, frame: LocalFrame,
                compress: bool = True) -> dict | None:
    """One partition: the content of one cell in the tileset's frame."""
    items, lod = cell
    return render_content(items, lod, lods[lod], frame, b3dm_mode, compress)


def write_implicit(out: Path, lon: np.ndarray, lat: np.ndarray, lods: dict[int, MeshMaker], *, max_per_tile: int,
                   b3dm_mode: bool, progress: bool, report: TilesetReport, runner,
                   compress: bool = True) -> TilesetReport:
    """Write an implicit tileset into a scratch folder and swap it in at ``out``."""
    pad = 1e-9
    bounds = (float(lon.min()) - pad, float(lat.min()) - pad, float(lon.max()) + pad, float(lat.max()) + pad)
    cells = place(lon, lat, bounds, sorted(lods), max_per_tile)
    frame = frame_at((bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2)
    ext = "b3dm" if b3dm_mode else "glb"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = scratch_dir(out)
    try:
        written: dict[tuple[int, int, int], list[float]] = {}  # content tiles and their regions
        with tqdm(total=len(cells), desc=f"3D tiles {out.name}", unit="tile", disable=not progress) as bar:
            for start in range(0, len(cells), RENDER_BATCH):
                batch = cells[start:start + RENDER_BATCH]
                rendered = runner.map(render_cell, [(c.items, c.lod) for c in batch],
                                      shared={"lods": lods, "b3dm_mode": b3dm_mode, "frame": frame,
                                              "compress": compress})
                for cell, part in zip(batch, rendered):
                    if part is None:
                        continue
                    path = tmp / CONTENT_TEMPLATE.format(level=cell.level, x=cell.x, y=cell.y)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.with_suffix(f".{ext}").write_bytes(part["data"])
                    written[(cell.level, cell.x, cell.y)] = part["region"]
                    for why, k in part["skipped"].items():
                        report.skipped[why] = report.skipped.get(why, 0) + k
                bar.update(len(batch))
        if not written:
            raise SourceError(f"3D Tiles {out.name}: none of the {len(lon)} buildings has a surface that can be "
                              "triangulated (all flat or degenerate); nothing was written")
        levels = max(level for level, _, _ in written) + 1
        subtree_levels = levels_per_subtree(levels)
        regions = tile_regions(written)
        for (level, x, y), data in subtrees(regions, set(written), subtree_levels).items():
            path = tmp / SUBTREE_TEMPLATE.format(level=level, x=x, y=y)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        error = max(diagonal_m(bounds) / 10, 1.0)
        root = {
            "boundingVolume": {"region": _union([regions[(0, 0, 0)], [*np.radians(bounds), *regions[(0, 0, 0)][4:]]])},
            "geometricError": error, "refine": "REPLACE", "transform": frame_transform(frame),
            "content": {"uri": f"{CONTENT_TEMPLATE}.{ext}"},
            "implicitTiling": {"subdivisionScheme": "QUADTREE", "subtreeLevels": subtree_levels,
                               "availableLevels": levels, "subtrees": {"uri": SUBTREE_TEMPLATE}},
        }
        tileset = {"asset": {"version": "1.1", "generator": "citytwin"}, "schema": TILE_SCHEMA,
                   "geometricError": error * 2, "root": root}
        (tmp / "tileset.json").write_text(json.dumps(tileset, indent=1))
        report.tiles = len(written)
        report.implicit = True
        report.buildings = len(lon)
        report.bytes = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def levels_per_subtree(levels: int) -> int:
    """Up to SUBTREE_LEVELS, spread evenly over the rows of subtrees: 7 levels make two rows of 4
    (not 6 and 1, whose last row would be a subtree file for every single tile of level 6)."""
    rows = -(-levels // SUBTREE_LEVELS)
    return -(-levels // rows)


def _union(regions: list[list[float]]) -> list[float]:
    r = np.array(regions, dtype=np.float64)
    return [*r[:, :2].min(axis=0).tolist(), *r[:, 2:4].max(axis=0).tolist(), float(r[:, 4].min()),
            float(r[:, 5].max())]


def tile_regions(content: dict[tuple[int, int, int], list[float]]) -> dict[tuple[int, int, int], list[float]]:
    """The region of every available tile (those with content and their ancestors): its own
    content's and its children's together, so each tile holds its children (spatial coherence)."""
    regions = dict(content)
    for level, x, y in sorted(content, reverse=True):  # deepest first: a parent sees all its children
        child = (level, x, y)
        while child[0] > 0:
            parent = (child[0] - 1, child[1] >> 1, child[2] >> 1)
            regions[parent] = _union([regions[parent], regions[child]]) if parent in regions else regions[child]
            child = parent
    return regions


def subtrees(regions: dict[tuple[int, int, int], list[float]], content: set[tuple[int, int, int]],
             subtree_levels: int) -> dict[tuple[int, int, int], bytes]:
    """Binary subtree files, by subtree root, for the available tiles (the keys of ``regions``)."""
    available = set(regions)
    size = (4 ** subtree_levels - 1) // 3
    roots: dict[tuple[int, int, int], dict[str, np.ndarray]] = {}

    def bits(level: int, x: int, y: int) -> tuple[dict[str, np.ndarray], int]:
        rl = level // subtree_levels * subtree_levels
        key = (rl, x >> (level - rl), y >> (level - rl))
        if key not in roots:
            roots[key] = {"tile": np.zeros(size, bool), "content": np.zeros(size, bool),
                          "child": np.zeros(4 ** subtree_levels, bool), "region": np.zeros((size, 6))}
        local = level - rl
        lx, ly = x - (key[1] << local), y - (key[2] << local)
        return roots[key], (4 ** local - 1) // 3 + int(morton(np.array([lx]), np.array([ly]))[0])

    for level, x, y in available:
        streams, i = bits(level, x, y)
        streams["tile"][i] = True
        streams["content"][i] = (level, x, y) in content
        streams["region"][i] = regions[(level, x, y)]
    for level, x, y in available:
        if level >= subtree_levels and level % subtree_levels == 0:  # the root of a child subtree
            streams, i = bits(level - 1, x >> 1, y >> 1)
            lx = x - ((x >> subtree_levels) << subtree_levels)
            ly = y - ((y >> subtree_levels) << subtree_levels)
            streams["child"][int(morton(np.array([lx]), np.array([ly]))[0])] = True
    return {key: subtree_file(s["tile"], s["content"], s["child"], s["region"][s["tile"]])
            for key, s in roots.items()}


def subtree_file(tile: np.ndarray, content: np.ndarray, child: np.ndarray, regions: np.ndarray) -> bytes:
    """The binary subtree format: header, JSON, and one buffer holding the bitstreams that are not
    constant and the tile metadata table (the region of each available tile, in availability order)."""
    views: list[dict] = []
    buffer = bytearray()

    def view(data: bytes) -> int:
        views.append({"buffer": 0, "byteOffset": len(buffer), "byteLength": len(data)})
        buffer.extend(data + b"\0" * (-len(data) % 8))  # each view starts on 8 bytes
        return len(views) - 1

    def availability(flags: np.ndarray) -> dict:
        if flags.all() or not flags.any():
            return {"constant": int(flags.all())}
        return {"bitstream": view(np.packbits(flags, bitorder="little").tobytes()), "availableCount": int(flags.sum())}

    doc: dict = {"tileAvailability": availability(tile), "contentAvailability": [availability(content)],
                 "childSubtreeAvailability": availability(child)}
    values = view(np.ascontiguousarray(regions, dtype="<f8").tobytes())
    doc = {"buffers": [{"byteLength": len(buffer)}], "bufferViews": views, **doc, "tileMetadata": 0,
           "propertyTables": [{"class": "tile", "count": len(regions), "properties": {"region": {"values": values}}}]}
    raw = json.dumps(doc, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<IIQQ", SUBTREE_MAGIC, 1, len(raw), len(buffer)) + raw + bytes(buffer)
