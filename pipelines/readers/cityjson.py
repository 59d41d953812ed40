"""CityJSON 1.0/1.1/2.0 (``.city.json``) and CityJSONSeq (``.jsonl``) building reader.

A CityJSON file is one JSON document, so it is loaded whole (vertices become one numpy array);
files above ``MAX_CITYJSON_BYTES`` are refused with a pointer to CityJSONSeq. A CityJSONSeq
file is streamed line by line (``pipelines.readers.cityjson_seq``): its first line holds the
transform and CRS, each further line is one feature with its own vertices, so memory stays
at one feature; a big one is read in byte ranges, one partition each.

Conventions, the same as the CityGML reader:
- **BuildingParts are merged into their Building** (one id, one feature, one tile per building);
  attributes come from the Building, missing core ones from its first part. A BuildingPart
  whose parent is missing is skipped and counted.
- **LOD**: CityJSON LODs like "1.2" and "1.3" both count as LOD1; per integer LOD the highest
  such geometry of each object is used. ``lod=None`` takes the highest LOD that yields valid
  surfaces; a requested LOD a building lacks skips it (counted). ``read_cityjson_lods`` yields
  ``{lod: Building3D}`` for several LODs at once.
- **Surfaces**: semantic surfaces (RoofSurface, WallSurface, GroundSurface, ClosureSurface)
  give the kind, everything else is ``other``. GeometryInstance (templates) are resolved.
- **CRS**: ``metadata.referenceSystem`` (a given ``crs`` overrides it); without either the
  reader raises CRSError asking for --crs. Vertices are taken as x, y, z as written.
- **Attributes**: ``measuredHeight`` becomes ``height``, ``storeysAboveGround`` ``storeys``,
  ``usage`` (else ``function``) ``usage``; the rest is kept under its own name, nested values
  as JSON text.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from geo.city3d import Building3D, ReadReport, SkipReason, Surface, SurfaceTexture
from geo.errors import CRSError, SourceError
from pipelines.readers.city_common import (
    BAD_COORDS, DEGENERATE_HOLE, KINDS, NO_LOD, NO_SURFACES, check_polygons, crs_info, lod_number,
    srs_to_crs,
)
from pipelines.readers.citygml_split import ByteRange
from pipelines.readers.cityjson_seq import MAX_FEATURE_VERTICES, is_seq, line_number, lines


ORPHAN_PART = SkipReason("BuildingPart without its Building", "BuildingPart")
#: a plain CityJSON file is parsed whole (about 10x its size in memory); above this, CityJSONSeq
MAX_CITYJSON_BYTES = 256 * 1024 * 1024
_SURFACE_DEPTH = {"MultiSurface": 1, "CompositeSurface": 1, "Solid": 2, "MultiSolid": 3, "CompositeSolid": 3}


def read_cityjson(path: Path, *, crs: str | None = None, lod: int | None = None,
                  report: ReadReport | None = None) -> Iterator[Building3D]:
    """Buildings of a CityJSON file (parts merged), at ``lod`` or the highest LOD available."""
    for found in _read(Path(path), crs=crs, lods=None if lod is None else (lod,), best=lod is None,
                       report=report):
        yield next(iter(found.values()))


def read_cityjson_lods(path: Path, *, lods: tuple[int, ...] = (1, 2), crs: str | None = None,
                       report: ReadReport | None = None, part: ByteRange | None = None,
                       textures: bool = False) -> Iterator[dict[int, Building3D]]:
    """Per building, ``{lod: Building3D}`` for those of ``lods`` it has (of one byte range of a
    CityJSONSeq file when ``part`` is given). ``textures``: surfaces get the first texture theme
    of their geometry, from the file's ``appearance`` (plain CityJSON only)."""
    yield from _read(Path(path), crs=crs, lods=tuple(lods), best=False, report=report, part=part,
                     textures=textures)


class _Doc:
    """What every object needs from its document: vertices, templates, CRS."""

    def __init__(self, data: dict, *, path: Path, crs: str, vertices: np.ndarray) -> None:
        self.path = path
        self.crs = crs
        self.vertices = vertices
        templates = data.get("geometry-templates") or {}
        self.templates = templates.get("templates") or []
        self.template_vertices = np.asarray(templates.get("vertices-templates") or np.zeros((0, 3)),
                                            dtype=np.float64)
        self.textures: list[str] | None = None  # image per texture index, when textures are read
        self.texture_vertices = np.zeros((0, 2))

    def with_vertices(self, vertices: np.ndarray) -> "_Doc":
        """The same document (templates, CRS) for one CityJSONSeq feature's vertices."""
        doc = object.__new__(_Doc)
        doc.__dict__.update(self.__dict__, vertices=vertices)
        return doc


def _read(path: Path, *, crs: str | None, lods: tuple[int, ...] | None, best: bool,
          report: ReadReport | None, part: ByteRange | None = None,
          textures: bool = False) -> Iterator[dict[int, Building3D]]:
    _check_file(path)
    report = report if report is not None else ReadReport(str(path))
    declared = srs_to_crs(crs, source="--crs") if crs else None
    if is_seq(path):
        yield from _read_seq(path, declared=declared, lods=lods, best=best, report=report, part=part)
        return
    size = path.stat().st_size
    if size > MAX_CITYJSON_BYTES:
        raise SourceError(
            f"{path}: is {size / 1e6:,.0f} MB; a CityJSON file is parsed whole, so at most "
            f"{MAX_CITYJSON_BYTES >> 20} MB is read this way. Convert it to CityJSONSeq, which is streamed: "
            f"cjio {path.name} export jsonl {path.stem}.jsonl")
    data = _load(path, path.read_bytes())
    header_crs = _crs(data, path, declared)
    doc = _Doc(data, path=path, crs=header_crs, vertices=_vertices(data, data, path))
    if textures:
        doc.textures, doc.texture_vertices = _appearance(data, path)
    objects = data.get("CityObjects")
    if not isinstance(objects, dict):
        raise SourceError(f"{path}: has no 'CityObjects'; is it a CityJSON file?")
    if not any(_is_building(o) for o in objects.values()):
        raise SourceError(f"{path}: holds no Building among its {len(objects)} city objects")
    yield from _buildings(objects, doc, lods=lods, best=best, report=report)


def _read_seq(path: Path, *, declared: str | None, lods, best: bool, report: ReadReport,
              part: ByteRange | None) -> Iterator[dict[int, Building3D]]:
    base = None
    found = False
    for offset, line in lines(path, part):
        where = lambda: line_number(path, offset)  # noqa: E731 - counted only for a message
        item = _load(path, line, line=where)
        if base is None:
            if item.get("type") != "CityJSON":
                raise SourceError(f"{path}: line {where()} is a {item.get('type')}, not the CityJSON header "
                                  "line a CityJSONSeq file starts with (transform, CRS); add the header first")
            base = _Doc(item, path=path, crs=_crs(item, path, declared), vertices=np.zeros((0, 3)))
            header = item
            continue
        if item.get("type") != "CityJSONFeature":
            continue
        count = len(item.get("vertices") or ())
        if count > MAX_FEATURE_VERTICES:
            raise SourceError(f"{path}: line {where()} (feature {item.get('id')}) has {count:,} vertices, more than "
                              f"{MAX_FEATURE_VERTICES:,} per feature; split the object")
        objects = item.get("CityObjects") or {}
        found = found or any(_is_building(o) for o in objects.values())
        doc = base.with_vertices(_vertices(item, header, path))
        yield from _buildings(objects, doc, lods=lods, best=best, report=report)
    if base is None:
        raise SourceError(f"{path}: holds no CityJSON header line")
    if not found and part is None:  # a range may hold no building; the export checks the whole
        raise SourceError(f"{path}: holds no Building")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise SourceError(f"{path}: no such file. Check the path.")
    if path.is_dir():
        raise SourceError(f"{path}: is a folder; give the CityJSON file itself (.city.json)")
    if path.stat().st_size == 0:
        raise SourceError(f"{path}: the file is empty (0 bytes); re-export or re-download it")


def _load(path: Path, raw: bytes, *, line: Callable[[], int] | None = None) -> dict:
    """One JSON document; ``line`` gives the number of the CityJSONSeq line ``raw`` is."""
    try:
        data = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: is not UTF-8 text ({exc.reason}); CityJSON must be UTF-8") from None
    except json.JSONDecodeError as exc:
        at = f"line {line()}, column {exc.colno}" if line else f"line {exc.lineno}, column {exc.colno}"
        raise SourceError(
            f"{path}: broken JSON at {at} ({exc.msg}); "
            "the file is cut off or not valid JSON. Re-export or re-download it."
        ) from None
    except RecursionError:  # the parser recurses once per nested array or object
        raise SourceError(
            f"{path}: arrays or objects nest thousands of levels deep; no CityJSON nests like that. "
            "The file is damaged; re-export it."
        ) from None
    if not isinstance(data, dict) or data.get("type") not in ("CityJSON", "CityJSONFeature"):
        where = f" at line {line()}" if line else ""
        raise SourceError(f"{path}: is JSON but not CityJSON{where} (no \"type\": \"CityJSON\")")
    return data


def _crs(data: dict, path: Path, declared: str | None) -> str:
    if declared:
        return declared
    ref = (data.get("metadata") or {}).get("referenceSystem")
    if not ref:
        raise CRSError(
            f"{path}: has no metadata.referenceSystem. Declare the CRS with --crs, "
            "e.g. --crs EPSG:7415 (Dutch RD New + NAP) or --crs EPSG:25832+5783."
        )
    return srs_to_crs(str(ref), source=str(path))


def _vertices(item: dict, header: dict, path: Path) -> np.ndarray:
    raw = item.get("vertices") or []
    try:
        verts = np.asarray(raw, dtype=np.float64).reshape(-1, 3)
    except (ValueError, TypeError):
        raise SourceError(f"{path}: 'vertices' is not a list of [x, y, z] numbers") from None
    transform = header.get("transform")
    if transform:
        verts = verts * np.asarray(transform["scale"], dtype=np.float64) + np.asarray(
            transform["translate"], dtype=np.float64)
    return verts


def _is_building(obj) -> bool:
    return isinstance(obj, dict) and obj.get("type") == "Building"


def _buildings(objects: dict, doc: _Doc, *, lods, best: bool,
               report: ReadReport) -> Iterator[dict[int, Building3D]]:
    for key, obj in objects.items():
        if not isinstance(obj, dict):
            continue
        if obj.get("type") == "BuildingPart":
            parents = obj.get("parents") or []
            if not any(_is_building(objects.get(p)) or _is_part(objects.get(p)) for p in parents):
                report.skip(ORPHAN_PART, f"BuildingPart {key}")
            continue
        if not _is_building(obj):
            continue
        parts = _parts(obj, objects)
        out = _building(key, [(key, obj), *parts], doc, lods=lods, best=best, report=report)
        if out:
            report.read += 1
            yield out


def _is_part(obj) -> bool:
    return isinstance(obj, dict) and obj.get("type") == "BuildingPart"


def _parts(obj: dict, objects: dict, seen: set | None = None) -> list[tuple[str, dict]]:
    seen = seen if seen is not None else set()
    out = []
    for child in obj.get("children") or []:
        part = objects.get(child)
        if _is_part(part) and child not in seen:
            seen.add(child)
            out += [(child, part), *_parts(part, objects, seen)]
    return out


def _best_geometries(obj: dict, doc: _Doc) -> dict[int, dict]:
    """Per integer LOD, the object's geometry with the highest sub-LOD ("1.3" over "1.2")."""
    best: dict[int, tuple[float, dict]] = {}
    for g in obj.get("geometry") or []:
        if not isinstance(g, dict):
            continue
        raw = g.get("lod")
        if g.get("type") == "GeometryInstance":  # its LOD is the template's
            t = g.get("template")
            raw = doc.templates[t].get("lod") if isinstance(t, int) and 0 <= t < len(doc.templates) else None
        lod = lod_number(raw)
        if lod is None:
            continue
        fine = float(str(raw))
        if lod not in best or fine > best[lod][0]:
            best[lod] = (fine, g)
    return {k: v[1] for k, v in best.items()}


def _building(key: str, objs: list[tuple[str, dict]], doc: _Doc, *, lods, best: bool,
              report: ReadReport) -> dict[int, Building3D]:
    per_obj = [(k, o, _best_geometries(o, doc)) for k, o in objs]
    present = sorted({lod for _, _, g in per_obj for lod in g}, reverse=True)
    wanted = present if best else list(lods or ())
    geographic = crs_info(doc.crs)[0]
    attributes = _attributes(objs, doc.path)
    out: dict[int, Building3D] = {}
    had_geometry = False
    for lod in wanted:
        surfaces: list[Surface] = []
        for k, _, geoms in per_obj:
            if lod in geoms:
                had_geometry = True
                name = f"building {key}" if k == key else f"building {key} part {k}"
                surfaces += _surfaces(geoms[lod], doc, name, report, geographic)
        if surfaces:
            out[lod] = Building3D(key, lod, surfaces, doc.crs, dict(attributes))
            if best:
                break
    if out:
        return out
    if had_geometry:
        report.skip(NO_SURFACES, f"building {key}")
    else:
        have = ", ".join(f"LOD{n}" for n in sorted(present)) or "none"
        want = ", ".join(f"LOD{n}" for n in wanted) or "any LOD"
        report.skip(NO_LOD, f"building {key} (asked for {want}, has {have})")
    return {}


def _surfaces(geom: dict, doc: _Doc, name: str, report: ReadReport, geographic: bool) -> list[Surface]:
    gtype = geom.get("type")
    vertices = doc.vertices
    if gtype == "GeometryInstance":
        geom, vertices = _instance(geom, doc)
        if geom is None:
            report.skip(BAD_COORDS, f"{name}, a geometry template that cannot be resolved,")
            return []
        gtype = geom.get("type")
    depth = _SURFACE_DEPTH.get(gtype)
    if depth is None:
        return []  # points and curves are not surfaces
    semantics = geom.get("semantics") or {}
    kinds = [KINDS.get(s.get("type"), "other") for s in semantics.get("surfaces") or []]
    values = semantics.get("values")
    polygons, surface_kinds, images, uvs = [], [], [], []
    boundaries = geom.get("boundaries") or []
    tex_values = _theme_values(geom) if doc.textures is not None else None
    textured = _flatten(boundaries, tex_values, depth) if tex_values is not None else None
    for surface, value in _flatten(boundaries, values, depth):
        tex = next(textured)[1] if textured is not None else None
        kind = kinds[value] if isinstance(value, int) and 0 <= value < len(kinds) else "other"
        try:
            idx = [np.asarray(ring, dtype=np.int64).reshape(-1) for ring in surface]
            if any(len(i) and i.min() < 0 for i in idx):
                raise IndexError("negative vertex index")
            rings = [vertices[i] for i in idx]
        except (IndexError, ValueError, TypeError):
            report.skip(BAD_COORDS, f"{name}, a surface with vertex indices out of range,")
            continue
        if rings:
            polygons.append(rings)
            surface_kinds.append(kind)
            image, uv = _surface_texture(tex, idx, doc)
            images.append(image)
            uvs.append(uv)
    out = []
    checks = check_polygons(polygons, geographic=geographic, uv=uvs if doc.textures is not None else None)
    for kind, image, checked in zip(surface_kinds, images, checks):
        if checked.rings is None:
            report.skip(checked.reason, f"{name} surface, {checked.detail},")
            continue
        for _ in range(checked.dropped_holes):
            report.skip(DEGENERATE_HOLE, f"{name} surface, a hole with fewer than 3 distinct vertices,")
        texture = SurfaceTexture(image, checked.uv) if checked.uv is not None else None
        out.append(Surface(checked.rings, kind, texture))
    return out


def _appearance(data: dict, path: Path) -> tuple[list[str], np.ndarray]:
    """The image of each texture and the texture vertices of a CityJSON file's appearance."""
    appearance = data.get("appearance") if isinstance(data.get("appearance"), dict) else {}
    images = [t.get("image") if isinstance(t, dict) and isinstance(t.get("image"), str) else ""
              for t in appearance.get("textures") or []]
    try:
        uv = np.asarray(appearance.get("vertices-texture") or np.zeros((0, 2)), dtype=np.float64).reshape(-1, 2)
    except (ValueError, TypeError):
        raise SourceError(f"{path}: 'appearance.vertices-texture' is not a list of [u, v] numbers") from None
    return images, uv


def _theme_values(geom: dict):
    """The texture values of a geometry's first theme, or None."""
    themes = geom.get("texture")
    if not isinstance(themes, dict) or not themes:
        return None
    first = next(iter(themes.values()))
    return first.get("values") if isinstance(first, dict) else None


def _surface_texture(tex, idx: list[np.ndarray], doc: _Doc) -> tuple[str | None, list[np.ndarray] | None]:
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


def _flatten(boundaries: list, values, depth: int):
    """(surface, semantic value) pairs; ``depth`` is how many list levels wrap a surface."""
    if depth == 1:
        for i, surface in enumerate(boundaries):
            yield surface, (values[i] if isinstance(values, list) and i < len(values) else None)
        return
    for i, inner in enumerate(boundaries):
        sub = values[i] if isinstance(values, list) and i < len(values) else None
        yield from _flatten(inner, sub, depth - 1)


def _instance(geom: dict, doc: _Doc) -> tuple[dict | None, np.ndarray]:
    """A GeometryInstance as its template geometry with transformed template vertices."""
    try:
        template = doc.templates[int(geom["template"])]
        anchor = doc.vertices[int(geom["boundaries"][0])]
        matrix = np.asarray(geom.get("transformationMatrix") or np.eye(4).ravel(), dtype=np.float64).reshape(4, 4)
    except (KeyError, IndexError, TypeError, ValueError):
        return None, doc.vertices
    local = np.hstack([doc.template_vertices, np.ones((len(doc.template_vertices), 1))]) @ matrix.T
    return template, local[:, :3] + anchor


_CORE = {"measuredHeight": "height", "storeysAboveGround": "storeys"}


def _attributes(objs: list[tuple[str, dict]], path: Path) -> dict:
    """The Building's attributes, with core ones its parts give when it lacks them."""
    merged: dict = {}
    biggest: dict[str, list] = {"height": [], "storeys": []}
    for i, (_, obj) in enumerate(objs):
        for k, v in _own(obj.get("attributes") or {}).items():
            if i and k in biggest:
                biggest[k].append(v)
            else:
                merged.setdefault(k, v)
    for k, values in biggest.items():  # as in CityGML: the tallest part when the parent has none
        if k not in merged and values:
            merged[k] = max(values)
    merged["id"] = objs[0][0]
    merged["source"] = path.name
    return merged


def _own(attrs: dict) -> dict:
    out: dict = {}
    usage = attrs.get("usage") if attrs.get("usage") is not None else attrs.get("function")
    for k, v in attrs.items():
        if v is None or k in ("usage", "function") and v is usage:
            continue
        if isinstance(v, (dict, list)):
            v = json.dumps(v, ensure_ascii=False)
        out[_CORE.get(k, k)] = v
    if usage is not None:
        out["usage"] = json.dumps(usage, ensure_ascii=False) if isinstance(usage, (dict, list)) else str(usage)
    if "height" in out:
        out["height"] = _float(out["height"])
    if "storeys" in out:
        out["storeys"] = _int(out["storeys"])
    return {k: v for k, v in out.items() if v is not None}


def _float(v) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _int(v) -> int | None:
    try:
        return int(float(v))
    except (TypeError, ValueError):
        return None
