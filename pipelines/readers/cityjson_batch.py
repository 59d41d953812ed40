"""CityJSON building surfaces gathered and checked in batches of many buildings.

A CityJSONSeq feature is a few kB, and the first reader spent more per building on numpy
calls than on parsing it (py-spy: 23 % in a polygon check per building, 10 % in an array per
ring, 2 % in ``json.loads``). Here a geometry's ring indices become one array through list
comprehensions and one ``np.fromiter``; the polygons of a batch (about ``BATCH_VERTICES`` ring
vertices, from many buildings and lines) are checked in one ``check_flat`` call, then cut back
into ``FlatBuilding`` per building and LOD, so nothing is made per ring or per surface.

With ``ecef``, the kept vertices also come in ECEF (what the 3D export spills): PROJ runs
once per batch over the distinct vertices its kept rings use, not per ring vertex per tile
(a vertex is shared by 4-5 triangles; PROJ from a projected CRS to ECEF was 22 % of an export).

A geometry whose boundaries are malformed or whose indices are out of range, and every
textured geometry, goes surface by surface (as the first reader did), so each bad surface is
skipped and named alone and textures keep their coordinates per ring.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import numpy as np

from geo.city3d import FlatBuilding, ReadReport
from geo.ecef import to_ecef
from pipelines.readers.city_common import (
    BAD_COORDS, DEGENERATE_HOLE, KINDS, NO_LOD, NO_SURFACES, check_flat, crs_info,
)

#: ring vertices gathered before a batch is checked (check_flat makes a few MB of arrays of them)
BATCH_VERTICES = 50_000
_SURFACE_DEPTH = {"MultiSurface": 1, "CompositeSurface": 1, "Solid": 2, "MultiSolid": 3, "CompositeSolid": 3}


@dataclass
class _Pending:
    """A building added to the batch: its candidate LODs as surface ranges of the batch."""

    key: str
    attributes: dict
    candidates: list[tuple[int, int, int]]  # (lod, first surface, end surface)
    best: bool  # keep only the first candidate with surfaces
    had_geometry: bool
    present: list[int]
    wanted: list[int]


class SurfaceBatch:
    """Buildings of one CRS whose surfaces are checked together; ``flush`` yields them."""

    def __init__(self, crs: str, report: ReadReport, textures: bool = False, ecef: bool = False) -> None:
        self.crs = crs
        self.geographic = crs_info(crs)[0]
        self.report = report
        self.textures = textures
        self.ecef = ecef
        self._reset()

    def _reset(self) -> None:
        self._blocks: list[np.ndarray] = []  # vertex arrays, each kept so its id() stays unique
        self._block_at: dict[int, int] = {}  # id(array) -> its first row in the batch
        self._rows = 0
        self._indices: list[np.ndarray] = []
        self._sizes: list[int] = []
        self._counts: list[int] = []
        self._kinds: list[str] = []
        self._images: list[str | None] = []
        self._uv: list[tuple[int, np.ndarray]] = []  # (first ring vertex, (m, 2) u, v)
        self._names: list[str] = []
        self._name_first: list[int] = []  # first surface of each named geometry
        self._ring_vertices = 0
        self._pending: list[_Pending] = []

    @property
    def full(self) -> bool:
        return self._ring_vertices >= BATCH_VERTICES

    def add_building(self, key: str, attributes: dict, doc, per_lod: list[tuple[int, list[tuple[str, dict]]]], *,
                     best: bool, present: list[int]) -> None:
        """``per_lod``: for each wanted LOD in order, the (name, geometry) pairs of the building
        and its parts at that LOD; ``doc`` gives vertices, templates and textures."""
        candidates, had = [], False
        for lod, geoms in per_lod:
            first = len(self._counts)
            for name, geom in geoms:
                had = True
                self._add_geometry(geom, doc, name)
            candidates.append((lod, first, len(self._counts)))
        self._pending.append(_Pending(key, attributes, candidates, best, had, present, [lod for lod, _ in per_lod]))

    def flush(self):
        """The buildings added so far, checked, as ``{lod: FlatBuilding}`` (those with surfaces)."""
        pending = self._pending
        if not pending:
            return
        found, base, rows, kept_images = self._check()
        report = self.report
        ok_before = np.concatenate(([0], np.cumsum(found.ok))).tolist()
        rings_before = np.concatenate(([0], np.cumsum(found.kept_counts))).tolist()
        vertices_before = np.concatenate(([0], np.cumsum(found.kept_sizes))).tolist()
        kept_rows = rows[found.kept_vertex]
        kept = base[kept_rows]
        kept_ecef = _ecef_rows(base, kept_rows, self.crs) if self.ecef else None
        kinds = [k for k, ok in zip(self._kinds, found.ok.tolist()) if ok]
        self._reset()
        for p in pending:
            out: dict[int, FlatBuilding] = {}
            for lod, s0, s1 in p.candidates:
                j0, j1 = ok_before[s0], ok_before[s1]
                if j1 == j0:
                    continue
                r0, r1 = rings_before[j0], rings_before[j1]
                v0, v1 = vertices_before[r0], vertices_before[r1]
                out[lod] = FlatBuilding(
                    p.key, lod, self.crs, dict(p.attributes), found.kept_counts[j0:j1], found.kept_sizes[r0:r1],
                    kept[v0:v1], kinds[j0:j1], kept_images[j0:j1] if self.textures else None,
                    found.uv[v0:v1] if self.textures else None,
                    kept_ecef[v0:v1] if kept_ecef is not None else None)
                if p.best:
                    break
            if out:
                report.read += 1
                yield out
            elif p.had_geometry:
                report.skip(NO_SURFACES, f"building {p.key}")
            else:
                have = ", ".join(f"LOD{n}" for n in sorted(p.present)) or "none"
                want = ", ".join(f"LOD{n}" for n in p.wanted) or "any LOD"
                report.skip(NO_LOD, f"building {p.key} (asked for {want}, has {have})")

    def _check(self):
        base = np.concatenate(self._blocks) if self._blocks else np.zeros((0, 3))
        rows = np.concatenate(self._indices) if self._indices else np.zeros(0, dtype=np.int64)
        pts = base[rows]
        uv = None
        if self.textures:
            uv = np.full((len(pts), 2), np.nan)
            for row, tex in self._uv:
                uv[row:row + len(tex)] = tex
        found = check_flat(pts, np.array(self._sizes, dtype=np.int64), np.array(self._counts, dtype=np.int64),
                           geographic=self.geographic, uv=uv)
        geometry_of = np.searchsorted(np.array(self._name_first, dtype=np.int64), np.arange(len(found.ok)),
                                      side="right") - 1
        for k in np.flatnonzero(~found.ok).tolist():
            reason, detail = found.verdict(k)
            self.report.skip(reason, f"{self._names[geometry_of[k]]} surface, {detail},")
        for k in np.flatnonzero(found.ok & (found.dropped_holes > 0)).tolist():
            for _ in range(int(found.dropped_holes[k])):
                self.report.skip(DEGENERATE_HOLE,
                                 f"{self._names[geometry_of[k]]} surface, a hole with fewer than 3 distinct vertices,")
        images = [im for im, ok in zip(self._images, found.ok.tolist()) if ok] if self.textures else []
        return found, base, rows, images

    def _add_geometry(self, geom: dict, doc, name: str) -> None:
        vertices = doc.vertices
        if geom.get("type") == "GeometryInstance":
            geom, vertices = _instance(geom, doc)
            if geom is None:
                self.report.skip(BAD_COORDS, f"{name}, a geometry template that cannot be resolved,")
                return
        depth = _SURFACE_DEPTH.get(geom.get("type"))
        if depth is None:
            return  # points and curves are not surfaces
        self._names.append(name)
        self._name_first.append(len(self._counts))
        semantics = geom.get("semantics") or {}
        table = [KINDS.get(s.get("type"), "other") if isinstance(s, dict) else "other"
                 for s in semantics.get("surfaces") or []]
        boundaries = geom.get("boundaries") or []
        tex_values = _theme_values(geom) if self.textures else None
        if tex_values is None and self._add_whole(boundaries, semantics.get("values"), table, depth, vertices):
            return
        self._add_each(boundaries, semantics.get("values"), table, depth, vertices, name, doc, tex_values)

    def _rows_of(self, vertices: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """The batch rows of vertices ``idx``: a feature's vertex array joins the batch whole (once);
        from a big one (a whole plain file's, or its memory map) only those rows are taken."""
        if len(vertices) > 4 * BATCH_VERTICES:
            self._blocks.append(np.asarray(vertices[idx], dtype=np.float64))
            self._rows += len(idx)
            return np.arange(self._rows - len(idx), self._rows)
        at = self._block_at.get(id(vertices))
        if at is None:
            at = self._block_at[id(vertices)] = self._rows
            self._blocks.append(vertices)
            self._rows += len(vertices)
        return idx + at

    def _add_whole(self, boundaries, values, table: list[str], depth: int, vertices: np.ndarray) -> bool:
        """One geometry's surfaces at once; False (nothing added) when any of them is malformed."""
        if not isinstance(boundaries, list):
            return False
        try:  # chain and map iterate in C: half the time of the same list comprehensions
            surfaces = boundaries
            for _ in range(depth - 1):
                surfaces = list(chain.from_iterable(surfaces))
            counts = list(map(len, surfaces))
            rings = list(chain.from_iterable(surfaces))
            sizes = list(map(len, rings))
            idx = np.fromiter(chain.from_iterable(rings), dtype=np.int64, count=sum(sizes))
        except (TypeError, ValueError, OverflowError):
            return False
        if 0 in counts or 0 in sizes or len(idx) and (idx.min() < 0 or idx.max() >= len(vertices)):
            return False
        self._indices.append(self._rows_of(vertices, idx))
        self._sizes += sizes
        self._counts += counts
        self._ring_vertices += len(idx)
        if table and values is not None:
            self._kinds += [table[v] if isinstance(v, int) and 0 <= v < len(table) else "other"
                            for _, v in _flatten(boundaries, values, depth)]
        else:
            self._kinds += ["other"] * len(counts)
        if self.textures:
            self._images += [None] * len(counts)
        return True

    def _add_each(self, boundaries, values, table: list[str], depth: int, vertices: np.ndarray, name: str, doc,
                  tex_values) -> None:
        """Surface by surface: a malformed one is skipped and named, the others kept."""
        textured = _flatten(boundaries, tex_values, depth) if tex_values is not None else None
        try:
            for surface, value in _flatten(boundaries, values, depth):
                tex = next(textured)[1] if textured is not None else None
                try:
                    idx = [np.asarray(ring, dtype=np.int64).reshape(-1) for ring in surface]
                    if any(len(i) and (i.min() < 0 or i.max() >= len(vertices)) for i in idx):
                        raise IndexError("vertex index out of range")
                except (IndexError, ValueError, TypeError, OverflowError):
                    self.report.skip(BAD_COORDS, f"{name}, a surface with vertex indices out of range,")
                    continue
                if not idx:
                    continue
                if self.textures:
                    image, uv = _surface_texture(tex, idx, doc)
                    if uv is not None:
                        self._uv.append((self._ring_vertices, np.concatenate(uv)))
                    self._images.append(image if uv is not None else None)
                flat = np.concatenate(idx)
                self._indices.append(self._rows_of(vertices, flat))
                self._sizes += [len(i) for i in idx]
                self._counts.append(len(idx))
                self._kinds.append(table[value] if isinstance(value, int) and 0 <= value < len(table) else "other")
                self._ring_vertices += len(flat)
        except TypeError:  # boundaries nested other than the geometry type says
            self.report.skip(BAD_COORDS, f"{name}, boundaries not nested as a {depth}-level surface list,")


def _ecef_rows(base: np.ndarray, rows: np.ndarray, crs: str) -> np.ndarray:
    """``base[rows]`` in ECEF, each distinct row transformed once."""
    used = np.zeros(len(base), dtype=bool)
    used[rows] = True
    slot = np.cumsum(used) - 1
    return to_ecef(base[used], crs)[slot[rows]]


def _flatten(boundaries: list, values, depth: int):
    """(surface, semantic value) pairs; ``depth`` is how many list levels wrap a surface."""
    if depth == 1:
        for i, surface in enumerate(boundaries):
            yield surface, (values[i] if isinstance(values, list) and i < len(values) else None)
        return
    for i, inner in enumerate(boundaries):
        sub = values[i] if isinstance(values, list) and i < len(values) else None
        yield from _flatten(inner, sub, depth - 1)


def _instance(geom: dict, doc) -> tuple[dict | None, np.ndarray]:
    """A GeometryInstance as its template geometry with transformed template vertices."""
    try:
        template = doc.templates[int(geom["template"])]
        anchor = doc.vertices[int(geom["boundaries"][0])]
        matrix = np.asarray(geom.get("transformationMatrix") or np.eye(4).ravel(), dtype=np.float64).reshape(4, 4)
    except (KeyError, IndexError, TypeError, ValueError):
        return None, doc.vertices
    local = np.hstack([doc.template_vertices, np.ones((len(doc.template_vertices), 1))]) @ matrix.T
    return template, local[:, :3] + anchor


def _theme_values(geom: dict):
    """The texture values of a geometry's first theme, or None."""
    themes = geom.get("texture")
    if not isinstance(themes, dict) or not themes:
        return None
    first = next(iter(themes.values()))
    return first.get("values") if isinstance(first, dict) else None


def _surface_texture(tex, idx: list[np.ndarray], doc) -> tuple[str | None, list[np.ndarray] | None]:
    """Image and per-ring (u, v) of one surface from its texture values ([texture, uv index per
    vertex] per ring); (None, None) unless every ring has them with one image."""
    if not isinstance(tex, list) or len(tex) != len(idx):
        return None, None
    try:
        rings = [np.asarray(r, dtype=np.int64) for r in tex]
    except (ValueError, TypeError):  # a null texture, or not numbers
        return None, None
    if any(r.ndim != 1 or len(r) != len(i) + 1 for r, i in zip(rings, idx)) or len({int(r[0]) for r in rings}) != 1:
        return None, None
    t = int(rings[0][0])
    uv_idx = np.concatenate([r[1:] for r in rings])
    if not 0 <= t < len(doc.textures) or not doc.textures[t] or uv_idx.min(initial=0) < 0 \
            or uv_idx.max(initial=0) >= len(doc.texture_vertices):
        return None, None
    return doc.textures[t], [doc.texture_vertices[r[1:]] for r in rings]
