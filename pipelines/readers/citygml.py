"""Streaming CityGML 1.0/2.0/3.0 building reader.

The file is parsed with lxml's ``iterparse``, which hands Python only the end of each
``bldg:Building`` and of each city object member: every other element stays in C. Each
building subtree is turned into a :class:`Building3D` when it closes and is then dropped,
and everything outside buildings (relief, appearance, other features) is dropped as soon as
its member closes. Coordinates are parsed by numpy in one call per posList. Memory is
bounded by the largest single member, not by the file.

Conventions:
- **BuildingParts are merged into their Building**: one id, one feature, one tile per building.
  Scalar attributes the parent lacks come from its first part (height and storeys: the
  largest among the parts).
- **LOD choice**: ``lod=None`` takes the highest LOD that yields valid surfaces (LOD3 > LOD2 >
  LOD1 > LOD0). A requested ``lod`` that a building lacks skips the building (counted).
  ``read_citygml_lods`` yields, per building, a ``{lod: Building3D}`` for several LODs at once
  (the tiler shows LOD1 far and LOD2 near) from a single pass over the file.
- **Surfaces**: semantic boundary surfaces (Roof/Wall/Ground/ClosureSurface) keep their kind;
  geometry from lodNSolid / lodNMultiSurface that no boundary surface already holds is kind
  ``other``. xlink:href references inside the building are resolved and each polygon is
  emitted once (a wall shared by a building and its part is the same polygon, so it appears
  once). Openings (windows, doors; LOD3) are kind ``other``. BuildingInstallations are left out.
- **LOD0** is the footprint only (lod0FootPrint, lod0MultiSurface, GroundSurface at LOD0) as
  kind ``ground``; roof edges are ignored. The writer extrudes it by ``height``.
- **CRS**: the building's first srsName, else the file's (its Envelope), else ``crs``; a given
  ``crs`` overrides the file. Lat-first geographic CRSs (EPSG:6697, 4326) are swapped to
  x=lon, y=lat. Projected CRSs are taken as written (easting first), as files do in practice.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from lxml import etree

from geo.city3d import Building3D, ReadReport, SkipReason, Surface, SurfaceTexture
from geo.errors import CRSError, SourceError
from pipelines.readers.citygml_split import ByteRange, RangeReader
from pipelines.readers.city_common import (
    BAD_COORDS, DEGENERATE_HOLE, KINDS, NO_LOD, NO_SURFACES, check_polygons, crs_info, srs_to_crs,
)

if TYPE_CHECKING:  # the appearance pass imports this module
    from pipelines.readers.citygml_appearance import TextureTable

_XLINK = "{http://www.w3.org/1999/xlink}href"
_GML_IDS = ("{http://www.opengis.net/gml}id", "{http://www.opengis.net/gml/3.2}id")
_BUILDING_NS = "http://www.opengis.net/citygml/building/"
_POLYGONS = {"Polygon", "Triangle", "Rectangle", "PolygonPatch"}
_LOD_PROP = re.compile(r"^lod([0-4])(Solid|MultiSurface|MultiSolid|Geometry|FootPrint)$")
_ANY_LOD = re.compile(r"^lod([0-4])(Solid|MultiSurface|MultiSolid|Geometry|FootPrint|RoofEdge|MultiCurve)$")
_PART_PROPS = {"consistsOfBuildingPart", "buildingPart"}
_BOUNDARY_PROPS = {"boundedBy", "boundary"}
_OPENING_PROPS = {"opening", "fillingSurface"}
UNRESOLVED = SkipReason("unresolved xlink", "geometry reference", "its target is not in the file")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _gml_id(elem: etree._Element) -> str | None:
    for key in _GML_IDS:
        if key in elem.attrib:
            return elem.attrib[key]
    return None


@dataclass
class _Raw:
    """A polygon found for one LOD before checking: its element and orientation."""

    elem: etree._Element
    kind: str
    reverse: bool
    dim: int


@dataclass
class _Ctx:
    source: str
    building_id: str
    building: etree._Element
    default_dim: int
    report: ReadReport
    emitted: set[int] = field(default_factory=set)
    textures: TextureTable | None = None
    _index: dict[str, etree._Element] | None = None

    def target(self, gid: str) -> etree._Element | None:
        """The element of the building with gml:id ``gid`` (the index is made on the first lookup)."""
        if self._index is None:
            self._index = {_gml_id(e): e for e in _WITH_ID(self.building)}
        return self._index.get(gid)


# searches run by libxml2 in C: one Python step per match, not per element
_GML_NS = {"g": "http://www.opengis.net/gml", "g32": "http://www.opengis.net/gml/3.2"}
_WITH_ID = etree.XPath("descendant-or-self::*[@g:id or @g32:id]", namespaces=_GML_NS)
_LOD_NAMED = etree.XPath("descendant::*[starts-with(local-name(), 'lod')]")
_SRS_NAMES = etree.XPath("descendant-or-self::*/@srsName")


def read_citygml(path: Path, *, crs: str | None = None, lod: int | None = None,
                 report: ReadReport | None = None) -> Iterator[Building3D]:
    """Buildings of a CityGML file, one per bldg:Building (parts merged), at ``lod`` or the
    highest LOD available."""
    for found in _read(Path(path), crs=crs, lods=None if lod is None else (lod,), best=lod is None,
                       report=report):
        yield next(iter(found.values()))


def read_citygml_lods(path: Path, *, lods: tuple[int, ...] = (1, 2), crs: str | None = None,
                      report: ReadReport | None = None, part: ByteRange | None = None,
                      textures: TextureTable | None = None) -> Iterator[dict[int, Building3D]]:
    """Per building, ``{lod: Building3D}`` for those of ``lods`` it has (at least one; a
    building with none of them is skipped and counted). ``part``: only the members in one
    byte range of the file (``citygml_split``). ``textures``: the file's texture table
    (``citygml_appearance``); surfaces whose rings it names get their texture."""
    yield from _read(Path(path), crs=crs, lods=tuple(lods), best=False, report=report, part=part,
                     textures=textures)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise SourceError(f"{path}: no such file. Check the path.")
    if path.is_dir():
        raise SourceError(f"{path}: is a folder; give the CityGML file itself (.gml)")
    if path.stat().st_size == 0:
        raise SourceError(f"{path}: the file is empty (0 bytes); re-export or re-download it")


#: end events lxml hands to Python (all others stay in C): buildings, the members that hold
#: city objects (cleared once read) and envelopes (the file's CRS)
_EVENT_TAGS = ("{*}Building", "{*}cityObjectMember", "{*}featureMember", "{*}member", "{*}appearanceMember",
               "{*}Envelope")


def _read(path: Path, *, crs: str | None, lods: tuple[int, ...] | None, best: bool,
          report: ReadReport | None, part: ByteRange | None = None,
          textures: TextureTable | None = None) -> Iterator[dict[int, Building3D]]:
    _check_file(path)
    source = RangeReader(path, part) if part is not None else str(path)
    where = f" (in the part of bytes {part.start:,}-{part.stop:,})" if part is not None else ""
    unnamed = f"{path.stem}:part{part.index}:building" if part is not None else f"{path.stem}:building"
    report = report if report is not None else ReadReport(str(path))
    declared = srs_to_crs(crs, source="--crs") if crs else None
    file_srs: str | None = None
    file_dim = 3
    found = 0
    # no DTD, no entities, no network; lxml's default limits on depth and text size stay on
    events = etree.iterparse(source, events=("end",), tag=_EVENT_TAGS, remove_comments=True, remove_pis=True,
                             resolve_entities=False, no_network=True, load_dtd=False)
    try:
        for _, elem in events:
            tag = elem.tag
            if found == 0 and file_srs is None and "srsName" in elem.attrib and tag.endswith("}Envelope"):
                file_srs = elem.attrib["srsName"]
                file_dim = _int(elem.attrib.get("srsDimension"), 3)
            if _is_building(tag, "Building"):
                found += 1
                out = _building(elem, path, f"{unnamed}{found}", declared=declared, file_srs=file_srs,
                                file_dim=file_dim, lods=lods, best=best, report=report, textures=textures)
                if out:
                    report.read += 1
                    yield out
                elem.clear()
            elif not tag.endswith("}Envelope"):
                _drop_read(elem)
    except etree.XMLSyntaxError as exc:
        line, col = exc.position
        raise SourceError(
            f"{path}: broken XML at line {line}, column {col}{where} ({_reason(exc)}); the file is cut off "
            "or not well-formed. Re-export or re-download it."
        ) from None
    finally:
        if part is not None:
            source.close()
    if found == 0 and part is None:
        raise SourceError(f"{path}: holds no bldg:Building; is it a CityGML building file?")


def _drop_read(member: etree._Element) -> None:
    """Free a member of the root that closed and everything before it, keeping memory flat
    (a member nested in a building is left to its building)."""
    parent = member.getparent()
    if parent is None or parent.getparent() is not None:
        return
    member.clear()
    while member.getprevious() is not None:
        del parent[0]


def _reason(exc: etree.XMLSyntaxError) -> str:
    return (exc.msg or str(exc)).split(",")[0].strip()


def _is_building(tag: str, name: str) -> bool:
    return tag.startswith("{" + _BUILDING_NS) and tag.endswith("}" + name)


def _int(value, default: int) -> int:
    if value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _building(elem: etree._Element, path: Path, unnamed: str, *, declared: str | None, file_srs: str | None,
              file_dim: int, lods: tuple[int, ...] | None, best: bool,
              report: ReadReport, textures: TextureTable | None = None) -> dict[int, Building3D]:
    bid = _gml_id(elem) or unnamed  # stable: the building's place in the file (or its part)
    crs = declared or _building_crs(elem, path, file_srs)
    _, swap = crs_info(crs)
    present: set[int] = set()
    for e in _LOD_NAMED(elem):
        m = _ANY_LOD.match(_local(e.tag))
        if m:
            present.add(int(m.group(1)))
    ctx = _Ctx(str(path), bid, elem, file_dim, report, textures=textures)
    objects = [elem, *_parts(elem)]
    attributes = _attributes(objects, path)
    wanted = sorted(present, reverse=True) if best else list(lods or ())
    out: dict[int, Building3D] = {}
    geographic = crs_info(crs)[0]
    # the best LOD is looked for one LOD after another; several LODs are checked in one call
    batches = [[lod] for lod in wanted] if best else [wanted]
    had_geometry = False
    for batch in batches:
        raws = {lod: _gather(objects, lod, ctx) for lod in batch if lod in present}
        raws = {lod: raw for lod, raw in raws.items() if raw}
        had_geometry = had_geometry or bool(raws)
        checked = iter(_check([r for raw in raws.values() for r in raw], ctx, swap=swap, geographic=geographic))
        for lod, raw in raws.items():
            surfaces = [s for s in (next(checked) for _ in raw) if s is not None]
            if surfaces:
                out[lod] = Building3D(bid, lod, surfaces, crs, dict(attributes))
        if out and best:
            break
    if out:
        return out
    if had_geometry:
        report.skip(NO_SURFACES, f"building {bid}")
    else:
        have = ", ".join(f"LOD{n}" for n in sorted(present)) or "none"
        want = ", ".join(f"LOD{n}" for n in wanted) or "any LOD"
        report.skip(NO_LOD, f"building {bid} (asked for {want}, has {have})")
    return {}


def _building_crs(elem: etree._Element, path: Path, file_srs: str | None) -> str:
    srs = next(iter(_SRS_NAMES(elem)), None) or file_srs
    if srs is None:
        raise CRSError(
            f"{path}: has no srsName (neither on its Envelope nor on building {_gml_id(elem)}'s "
            "geometry). Declare the CRS with --crs, e.g. --crs EPSG:6697 or --crs EPSG:25832+5783."
        )
    return srs_to_crs(srs, source=str(path))


def _parts(obj: etree._Element) -> list[etree._Element]:
    out = []
    for prop in obj:
        if _local(prop.tag) in _PART_PROPS:
            for part in prop:
                if _local(part.tag) == "BuildingPart":
                    out += [part, *_parts(part)]
    return out


# -- geometry --------------------------------------------------------------------------------

def _gather(objects: list[etree._Element], lod: int, ctx: _Ctx) -> list[_Raw]:
    """Polygons of one LOD over the building and its parts: semantic boundaries first, so
    their kind wins over untyped solids that reference the same polygons."""
    ctx.emitted = set()
    out: list[_Raw] = []
    want = f"lod{lod}MultiSurface"
    for obj in objects:
        for prop in obj:
            if _local(prop.tag) not in _BOUNDARY_PROPS:
                continue
            for surf in prop:
                name = _local(surf.tag)
                kind = KINDS.get(name, "other")
                if lod == 0 and kind != "ground":
                    continue  # LOD0 is the footprint; roof edges are not a footprint
                for child in surf:
                    local = _local(child.tag)
                    if local == want:
                        _collect(child, kind, False, ctx.default_dim, ctx, out)
                    elif local in _OPENING_PROPS and lod > 0:
                        for opening in child:
                            for g in opening:
                                if _local(g.tag) == want:
                                    _collect(g, "other", False, ctx.default_dim, ctx, out)
    for obj in objects:
        for prop in obj:
            m = _LOD_PROP.match(_local(prop.tag))
            if m and int(m.group(1)) == lod:
                kind = "ground" if lod == 0 else "other"
                _collect(prop, kind, False, ctx.default_dim, ctx, out)
    return out


def _collect(elem: etree._Element, kind: str, reverse: bool, dim: int, ctx: _Ctx, out: list[_Raw]) -> None:
    href = elem.attrib.get(_XLINK)
    if href is not None:
        target = ctx.target(href.lstrip("#"))
        if target is None:
            ctx.report.skip(UNRESOLVED, f"building {ctx.building_id}: reference {href}")
            return
        _collect(target, kind, reverse, dim, ctx, out)
        return
    dim = _int(elem.attrib.get("srsDimension"), dim)
    local = _local(elem.tag)
    if local in _POLYGONS:
        if id(elem) not in ctx.emitted:
            ctx.emitted.add(id(elem))
            out.append(_Raw(elem, kind, reverse, dim))
        return
    if local == "OrientableSurface":
        reverse ^= elem.attrib.get("orientation", "+") == "-"
    for child in elem:
        _collect(child, kind, reverse, dim, ctx, out)


def _name(ctx: _Ctx, polygon: etree._Element) -> str:
    """How messages name a polygon (made only for those skipped)."""
    return f"building {ctx.building_id} polygon {_gml_id(polygon) or '(no id)'}"


def _check(raw: list[_Raw], ctx: _Ctx, *, swap: bool, geographic: bool) -> list[Surface | None]:
    """Each polygon as a checked Surface, or None when it is skipped (counted in the report)."""
    polygons, kept, uv = [], [], []
    for i, r in enumerate(raw):
        try:
            rings = _rings(r.elem, r.dim)
        except ValueError as exc:
            ctx.report.skip(BAD_COORDS, f"{_name(ctx, r.elem)}, {exc},")
            continue
        if not rings:
            ctx.report.skip(BAD_COORDS, f"{_name(ctx, r.elem)}, no exterior ring,")
            continue
        polygons.append(rings)
        kept.append(i)
        if ctx.textures is not None:
            uv.append(_texture(r.elem, ctx.textures))
    if swap and polygons:  # lat-first: one column swap for the whole building
        sizes = [len(ring) for rings in polygons for ring in rings]
        flat = np.split(np.concatenate([ring for rings in polygons for ring in rings])[:, [1, 0, 2]],
                        np.cumsum(sizes)[:-1])
        at = np.cumsum([0, *(len(rings) for rings in polygons)])
        polygons = [flat[at[k]:at[k + 1]] for k in range(len(polygons))]
    out: list[Surface | None] = [None] * len(raw)
    images = [t[0] if t else None for t in uv]
    checks = check_polygons(polygons, geographic=geographic,
                            uv=[t[1] if t else None for t in uv] if ctx.textures is not None else None)
    for k, (i, checked) in enumerate(zip(kept, checks)):
        r = raw[i]
        if checked.rings is None or checked.dropped_holes:
            name = _name(ctx, r.elem)
        if checked.rings is None:
            ctx.report.skip(checked.reason, f"{name}, {checked.detail},")
            continue
        for _ in range(checked.dropped_holes):
            ctx.report.skip(DEGENERATE_HOLE, f"{name}, a hole with fewer than 3 distinct vertices,")
        rings = [ring[::-1] for ring in checked.rings] if r.reverse else checked.rings
        texture = None
        if checked.uv is not None:
            texture = SurfaceTexture(images[k], [t[::-1] for t in checked.uv] if r.reverse else checked.uv)
        out[i] = Surface(rings, r.kind, texture)
    return out


def _texture(poly: etree._Element, table: TextureTable) -> tuple[str, list[np.ndarray]] | None:
    """The image and per-ring texture coordinates of a polygon, in the order ``_rings`` gives
    its rings; None unless the table has one image for all of them."""
    exterior, interiors = [], []
    for child in poly:
        local = _local(child.tag)
        if local in ("exterior", "outerBoundaryIs", "interior", "innerBoundaryIs"):
            ring = next((c for c in child if _local(c.tag) == "LinearRing"), None)
            (exterior if local in ("exterior", "outerBoundaryIs") else interiors).append(
                table.ring(_gml_id(ring)) if ring is not None else None)
    found = exterior[:1] + interiors
    if not found or any(f is None for f in found) or len({f[0] for f in found}) != 1:
        return None
    return found[0][0], [f[1] for f in found]


def _rings(poly: etree._Element, dim: int) -> list[np.ndarray]:
    exterior, interiors = None, []
    for child in poly:
        local = _local(child.tag)
        if local in ("exterior", "outerBoundaryIs"):
            exterior = _ring(child, dim)
        elif local in ("interior", "innerBoundaryIs"):
            interiors.append(_ring(child, dim))
    return [] if exterior is None else [exterior, *interiors]


def _ring(boundary: etree._Element, dim: int) -> np.ndarray:
    ring = next((c for c in boundary if _local(c.tag) == "LinearRing"), None)
    if ring is None:
        raise ValueError("ring is not a gml:LinearRing")
    dim = _int(ring.attrib.get("srsDimension"), dim)
    pos = []
    for c in ring:
        local = _local(c.tag)
        if local == "posList":
            d = _int(c.attrib.get("srsDimension"), dim)
            return _coords(_numbers(c.text), d)
        if local == "pos":
            pos.append(_numbers(c.text))
    if not pos:
        raise ValueError("ring has no gml:posList or gml:pos")
    d = len(pos[0])
    if d not in (2, 3) or any(len(p) != d for p in pos):
        raise ValueError("gml:pos with differing or unusable dimensions")
    return _coords(np.concatenate(pos), d)


def _numbers(text: str | None) -> np.ndarray:
    """The numbers of a posList or pos, parsed in C; ValueError names what is wrong."""
    if not text or text.isspace():
        return np.zeros(0)
    try:
        return np.fromstring(text, sep=" ")
    except ValueError:
        raise ValueError("unparsable numbers in the coordinates") from None


def _coords(values: np.ndarray, dim: int) -> np.ndarray:
    if dim not in (2, 3):
        raise ValueError(f"srsDimension {dim} is not 2 or 3")
    if not len(values) or len(values) % dim:
        raise ValueError(f"{len(values)} numbers is not a multiple of srsDimension {dim}")
    arr = values.reshape(-1, dim)
    if not math.isfinite(arr.sum()):  # a NaN or infinity anywhere makes the sum so
        raise ValueError("non-finite coordinates")
    if dim == 2:  # a 2D ring sits at height 0
        arr = np.hstack([arr, np.zeros((len(arr), 1))])
    return arr


# -- attributes ------------------------------------------------------------------------------

_GENERIC_2 = {"stringAttribute": str, "uriAttribute": str, "dateAttribute": str,
              "intAttribute": int, "doubleAttribute": float, "measureAttribute": float}
_GENERIC_3 = {"StringAttribute": str, "UriAttribute": str, "DateAttribute": str, "CodeAttribute": str,
              "IntAttribute": int, "DoubleAttribute": float, "MeasureAttribute": float}


def _attributes(objects: list[etree._Element], path: Path) -> dict:
    """Core attributes of the building (falling back to its parts) over its generic ones."""
    generic: dict = {}
    core: dict = {}
    heights, storeys = [], []
    for obj in objects:
        own = _own_attributes(obj)
        for k, v in own.pop("generic").items():
            generic.setdefault(k, v)
        if own.get("height") is not None:
            heights.append(own["height"])
        if own.get("storeys") is not None:
            storeys.append(own["storeys"])
        for key in ("name", "usage"):
            if core.get(key) is None and own.get(key) is not None:
                core[key] = own[key]
    own_parent = _own_attributes(objects[0])
    height = own_parent.get("height")
    core["height"] = height if height is not None else (max(heights) if heights else None)
    n = own_parent.get("storeys")
    core["storeys"] = n if n is not None else (max(storeys) if storeys else None)
    core["id"] = _gml_id(objects[0])
    core["source"] = path.name
    return {**generic, **{k: v for k, v in core.items() if v is not None}}


def _own_attributes(obj: etree._Element) -> dict:
    out: dict = {"generic": {}}
    usage = function = None
    for prop in obj:
        local = _local(prop.tag)
        text = (prop.text or "").strip()
        if local == "name" and "name" not in out and text:
            out["name"] = text
        elif local == "measuredHeight":
            out["height"] = _float(text)
        elif local == "height" and "height" not in out:  # CityGML 3.0 con:height
            out["height"] = _height3(prop)
        elif local == "storeysAboveGround":
            out["storeys"] = _int(text, None)
        elif local == "usage" and usage is None and text:
            usage = text
        elif local == "function" and function is None and text:
            function = text
        elif local in _GENERIC_2 or local == "genericAttributeSet":
            _generic2(prop, out["generic"])
        elif local == "genericAttribute":
            for attr in prop:
                _generic3(attr, out["generic"])
    out["usage"] = usage or function
    return out


def _height3(prop: etree._Element) -> float | None:
    """The highest-roof-edge Height if given, else the first one."""
    heights = [h for h in prop if _local(h.tag) == "Height"]
    best = next((h for h in heights if any(_local(c.tag) == "highReference" and (c.text or "").strip()
                                           == "highestRoofEdge" for c in h)), heights[0] if heights else None)
    if best is None:
        return None
    value = next((c for c in best if _local(c.tag) == "value"), None)
    return _float((value.text or "").strip()) if value is not None else None


def _generic2(elem: etree._Element, out: dict) -> None:
    local = _local(elem.tag)
    if local == "genericAttributeSet":
        for child in elem:
            _generic2(child, out)
        return
    name = elem.attrib.get("name")
    value = next((c for c in elem if _local(c.tag) == "value"), None)
    if name and value is not None and name not in out:
        out[name] = _typed((value.text or "").strip(), _GENERIC_2.get(local, str))


def _generic3(elem: etree._Element, out: dict) -> None:
    local = _local(elem.tag)
    if local == "GenericAttributeSet":
        for child in elem:
            if _local(child.tag) == "genericAttribute":
                for attr in child:
                    _generic3(attr, out)
        return
    name = next(((c.text or "").strip() for c in elem if _local(c.tag) == "name"), None)
    value = next((c for c in elem if _local(c.tag) == "value"), None)
    if name and value is not None and name not in out:
        out[name] = _typed((value.text or "").strip(), _GENERIC_3.get(local, str))


def _typed(text: str, kind: type):
    try:
        return kind(text)
    except ValueError:
        return text


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
