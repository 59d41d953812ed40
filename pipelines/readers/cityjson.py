"""CityJSON 1.0/1.1/2.0 (``.city.json``) and CityJSONSeq (``.jsonl``) building reader.

A CityJSON file is one JSON document, so it is loaded whole (vertices become one numpy array);
files above ``MAX_CITYJSON_BYTES`` are streamed member by member (``cityjson_stream``: vertices
through a scratch file, city objects one at a time; without textures). A CityJSONSeq
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
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import orjson

from geo.city3d import Building3D, FlatBuilding, ReadReport, SkipReason
from geo.errors import CRSError, SourceError
from pipelines.readers.city_common import lod_number, srs_to_crs
from pipelines.readers import cityjson_stream
from pipelines.readers.citygml_split import ByteRange
from pipelines.readers.cityjson_batch import SurfaceBatch
from pipelines.readers.cityjson_seq import MAX_FEATURE_VERTICES, is_seq, line_number, lines


ORPHAN_PART = SkipReason("BuildingPart without its Building", "BuildingPart")
#: a plain CityJSON file is parsed whole (about 10x its size in memory); above this it is streamed
MAX_CITYJSON_BYTES = 256 * 1024 * 1024


def read_cityjson(path: Path, *, crs: str | None = None, lod: int | None = None,
                  report: ReadReport | None = None) -> Iterator[Building3D]:
    """Buildings of a CityJSON file (parts merged), at ``lod`` or the highest LOD available."""
    for found in _read(Path(path), crs=crs, lods=None if lod is None else (lod,), best=lod is None,
                       report=report):
        yield next(iter(found.values())).building()


def read_cityjson_lods(path: Path, *, lods: tuple[int, ...] = (1, 2), crs: str | None = None,
                       report: ReadReport | None = None, part: ByteRange | None = None,
                       textures: bool = False) -> Iterator[dict[int, Building3D]]:
    """Per building, ``{lod: Building3D}`` for those of ``lods`` it has (of one byte range of a
    CityJSONSeq file when ``part`` is given). ``textures``: surfaces get the first texture theme
    of their geometry, from the file's ``appearance`` (plain CityJSON only)."""
    for found in _read(Path(path), crs=crs, lods=tuple(lods), best=False, report=report, part=part,
                       textures=textures):
        yield {lod: b.building() for lod, b in found.items()}


def read_cityjson_flat(path: Path, *, lods: tuple[int, ...] = (1, 2), crs: str | None = None,
                       report: ReadReport | None = None, part: ByteRange | None = None
                       ) -> Iterator[dict[int, FlatBuilding]]:
    """``read_cityjson_lods`` as flat arrays per building (no object per ring or surface), with
    only the attributes the 3D export writes and the coordinates also in ECEF: what it spills."""
    yield from _read(Path(path), crs=crs, lods=tuple(lods), best=False, report=report, part=part,
                     attributes=TILE_ATTRIBUTES, ecef=True)


class _Doc:
    """What every object needs from its document: vertices, templates, CRS."""

    def __init__(self, data: dict, *, path: Path, crs: str, vertices: np.ndarray,
                 attributes: frozenset[str] | None = None) -> None:
        self.path = path
        self.attributes = attributes
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
          textures: bool = False, attributes: frozenset[str] | None = None,
          ecef: bool = False) -> Iterator[dict[int, FlatBuilding]]:
    """``attributes``: the source attribute names kept (all when None); ``ecef``: buildings carry
    their coordinates in ECEF too (``SurfaceBatch``)."""
    _check_file(path)
    report = report if report is not None else ReadReport(str(path))
    declared = srs_to_crs(crs, source="--crs") if crs else None
    if is_seq(path):
        yield from _read_seq(path, declared=declared, lods=lods, best=best, report=report, part=part,
                             attributes=attributes, ecef=ecef)
        return
    size, whole = path.stat().st_size, _whole_limit()
    if size > whole:
        if textures:
            raise SourceError(
                f"{path}: is {size / 1e6:,.0f} MB, over the {whole >> 20} MB a CityJSON file is parsed "
                "whole, and textures are read only from files parsed whole; export it without --textures")
        yield from _read_streamed(path, declared=declared, lods=lods, best=best, report=report,
                                  attributes=attributes, ecef=ecef)
        return
    data = _load(path, path.read_bytes())
    header_crs = _crs(data, path, declared)
    doc = _Doc(data, path=path, crs=header_crs, vertices=_vertices(data, data, path), attributes=attributes)
    if textures:
        doc.textures, doc.texture_vertices = _appearance(data, path)
    objects = data.get("CityObjects")
    if not isinstance(objects, dict):
        raise SourceError(f"{path}: has no 'CityObjects'; is it a CityJSON file?")
    if not any(_is_building(o) for o in objects.values()):
        raise SourceError(f"{path}: holds no Building among its {len(objects)} city objects")
    batch = SurfaceBatch(header_crs, report, textures=textures, ecef=ecef)
    yield from _buildings(objects, doc, lods=lods, best=best, batch=batch)
    yield from batch.flush()


def _read_seq(path: Path, *, declared: str | None, lods, best: bool, report: ReadReport,
              part: ByteRange | None, attributes: frozenset[str] | None,
              ecef: bool = False) -> Iterator[dict[int, FlatBuilding]]:
    base = batch = None
    found = False
    for offset, line in lines(path, part):
        where = lambda: line_number(path, offset)  # noqa: E731 - counted only for a message
        item = _load(path, line, line=where)
        if base is None:
            if item.get("type") != "CityJSON":
                raise SourceError(f"{path}: line {where()} is a {item.get('type')}, not the CityJSON header "
                                  "line a CityJSONSeq file starts with (transform, CRS); add the header first")
            base = _Doc(item, path=path, crs=_crs(item, path, declared), vertices=np.zeros((0, 3)),
                        attributes=attributes)
            batch = SurfaceBatch(base.crs, report, ecef=ecef)
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
        yield from _buildings(objects, doc, lods=lods, best=best, batch=batch)
    if base is None:
        raise SourceError(f"{path}: holds no CityJSON header line")
    if not found and part is None:  # a range may hold no building; the export checks the whole
        raise SourceError(f"{path}: holds no Building")
    yield from batch.flush()


def _whole_limit() -> int:
    """``MAX_CITYJSON_BYTES``, or ``$CITYTWIN_CITYJSON_WHOLE_MB`` megabytes when set."""
    mb = os.environ.get("CITYTWIN_CITYJSON_WHOLE_MB", "").strip()
    return int(mb) << 20 if mb.isdigit() else MAX_CITYJSON_BYTES


def _read_streamed(path: Path, *, declared: str | None, lods, best: bool, report: ReadReport,
                   attributes: frozenset[str] | None, ecef: bool = False) -> Iterator[dict[int, FlatBuilding]]:
    """A plain CityJSON file over ``MAX_CITYJSON_BYTES``, its members streamed
    (``cityjson_stream``): memory follows a batch of buildings, not the file."""
    head = cityjson_stream.header(path)
    if head.get("type") != "CityJSON":
        raise SourceError(f"{path}: is JSON but not CityJSON (no \"type\": \"CityJSON\")")
    crs = _crs(head, path, declared)
    with tempfile.TemporaryDirectory(prefix="citytwin-cityjson-") as scratch:
        vertices = cityjson_stream.VertexFile(path, head.get("transform"), Path(scratch) / "vertices")
        doc = _Doc(head, path=path, crs=crs, vertices=vertices.array, attributes=attributes)
        batch = SurfaceBatch(crs, report, ecef=ecef)
        held = cityjson_stream.Held(path, Path(scratch) / "held")
        family: set[str] = set()  # every Building and BuildingPart id, for the orphan check
        seen = buildings = 0
        try:
            for key, obj in cityjson_stream.objects(path):
                seen += 1
                if not (_is_building(obj) or _is_part(obj)):
                    continue
                family.add(key)
                buildings += _is_building(obj)
                if _is_part(obj) or obj.get("children"):  # its family may come later in the file
                    held.put(key, obj)
                    continue
                yield from _buildings({key: obj}, doc, lods=lods, best=best, batch=batch)
                if seen % 4096 == 0:
                    vertices.reopen()
                    doc.vertices = vertices.array
            if not buildings:
                raise SourceError(f"{path}: holds no Building among its {seen} city objects")
            yield from _held_buildings(held, family, doc, lods=lods, best=best, batch=batch)
            yield from batch.flush()
        finally:
            held.close()


def _held_buildings(held: cityjson_stream.Held, family: set[str], doc: _Doc, *, lods, best: bool,
                    batch: SurfaceBatch) -> Iterator[dict[int, FlatBuilding]]:
    """The set-aside buildings, each with its parts; parts whose parents are none of ``family``
    are counted as orphans."""
    used: set[str] = set()
    for key in held.keys():
        obj = held.get(key)
        if not _is_building(obj):
            continue
        group, todo = {key: obj}, [obj]
        while todo:
            for child in todo.pop().get("children") or []:
                if child in held and child not in group:
                    part = held.get(child)
                    if _is_part(part):
                        group[child] = part
                        todo.append(part)
        used |= group.keys()
        yield from _buildings(group, doc, lods=lods, best=best, batch=batch)
    for key in held.keys():
        if key not in used and not any(p in family for p in held.get(key).get("parents") or []):
            batch.report.skip(ORPHAN_PART, f"BuildingPart {key}")


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
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "UTF-8" in exc.msg:
            raise SourceError(f"{path}: is not UTF-8 text ({exc.msg}); CityJSON must be UTF-8") from None
        if "recursion" in exc.msg:  # orjson stops at 1,024 levels
            raise SourceError(
                f"{path}: arrays or objects nest over a thousand levels deep; no CityJSON nests like that. "
                "The file is damaged; re-export it."
            ) from None
        at = f"line {line()}, column {exc.colno}" if line else f"line {exc.lineno}, column {exc.colno}"
        raise SourceError(
            f"{path}: broken JSON at {at} ({exc.msg}); "
            "the file is cut off or not valid JSON. Re-export or re-download it."
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
               batch: SurfaceBatch) -> Iterator[dict[int, FlatBuilding]]:
    """Adds the document's buildings to ``batch``, yielding what it checks each time it is full."""
    report = batch.report
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
        _building(key, [(key, obj), *_parts(obj, objects)], doc, lods=lods, best=best, batch=batch)
        if batch.full:
            yield from batch.flush()


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
              batch: SurfaceBatch) -> None:
    per_obj = [(f"building {key}" if k == key else f"building {key} part {k}", _best_geometries(o, doc))
               for k, o in objs]
    present = sorted({lod for _, g in per_obj for lod in g}, reverse=True)
    wanted = present if best else list(lods or ())
    batch.add_building(key, _attributes(objs, doc.path, doc.attributes), doc,
                       [(lod, [(name, g[lod]) for name, g in per_obj if lod in g]) for lod in wanted],
                       best=best, present=present)


_CORE = {"measuredHeight": "height", "storeysAboveGround": "storeys"}
#: the source attributes that become the tile properties (name, height, storeys, usage)
TILE_ATTRIBUTES = frozenset({"name", "height", "storeys", "usage", "function", *_CORE})


def _attributes(objs: list[tuple[str, dict]], path: Path, keep: frozenset[str] | None = None) -> dict:
    """The Building's attributes (those named in ``keep``, when given), with core ones its parts
    give when it lacks them."""
    merged: dict = {}
    biggest: dict[str, list] = {"height": [], "storeys": []}
    for i, (_, obj) in enumerate(objs):
        attrs = obj.get("attributes") or {}
        if keep is not None and isinstance(attrs, dict):
            attrs = {k: v for k, v in attrs.items() if k in keep}
        for k, v in _own(attrs).items():
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
