"""CityGML and CityJSON building readers: real files, bad input, streaming memory."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pyproj import CRS, Transformer

from geo.city3d import ReadReport
from geo.errors import CRSError, SourceError
from pipelines.readers.city_common import DEGENERATE, NO_LOD, NO_SURFACES, NON_PLANAR
from pipelines.readers.citygml import UNRESOLVED, read_citygml, read_citygml_lods
from pipelines.readers.cityjson import ORPHAN_PART, read_cityjson, read_cityjson_lods
from shared_data import SHARED_DATA

GML = SHARED_DATA / "citygml"
CJ = SHARED_DATA / "cityjson"
PLATEAU = GML / "plateau_yokosuka_52397519_bldg_6697_op.gml"
OGC2_LOD1 = GML / "ogc_v2_Building_LOD1-EPSG25832.gml"
OGC2_LOD2 = GML / "ogc_v2_Building_and_garage_LOD2-EPSG25832.gml"
OGC3_LOD2 = GML / "ogc_v3_Building_LOD2-EPSG25832.gml"

GML2 = "http://www.opengis.net/gml"
BLDG2 = "http://www.opengis.net/citygml/building/2.0"


def _area(ring: np.ndarray) -> float:
    """Vector area of a planar 3D ring: half the norm of the summed cross products of a fan."""
    p = np.asarray(ring, dtype=float)
    total = np.zeros(3)
    for i in range(1, len(p) - 1):
        total += np.cross(p[i] - p[0], p[i + 1] - p[0])
    return float(np.linalg.norm(total)) / 2


def _vertices(building) -> np.ndarray:
    return np.vstack([r for s in building.surfaces for r in s.rings])


# -- real data: PLATEAU -----------------------------------------------------------------------

@pytest.mark.realdata
def test_plateau_buildings_lonlat_and_heights():
    expected = len(re.findall(r"<bldg:Building ", PLATEAU.read_text(encoding="utf-8-sig")))
    report = ReadReport(PLATEAU.name)
    buildings = list(read_citygml(PLATEAU, report=report))
    assert expected == 13
    assert len(buildings) == expected == report.read
    assert report.skipped == {}
    assert len({b.id for b in buildings}) == expected
    for b in buildings:
        assert b.crs == "EPSG:6697"
        assert isinstance(b.attributes["height"], float) and b.attributes["height"] > 0
        assert b.attributes["source"] == PLATEAU.name
        xyz = _vertices(b)
        # x is longitude, y latitude: the file writes lat first
        assert np.all((xyz[:, 0] > 139.6) & (xyz[:, 0] < 139.8)), b.id
        assert np.all((xyz[:, 1] > 35.2) & (xyz[:, 1] < 35.3)), b.id
        assert np.all((xyz[:, 2] > -5) & (xyz[:, 2] < 100)), b.id


@pytest.mark.realdata
def test_plateau_first_footprint_vertex_swapped():
    text = PLATEAU.read_text(encoding="utf-8-sig")
    block = text[text.index("<bldg:lod0FootPrint>"):]
    nums = [float(v) for v in re.search(r"<gml:posList>([^<]+)<", block).group(1).split()[:3]]
    first = next(read_citygml(PLATEAU, lod=0))
    assert first.lod == 0 and {s.kind for s in first.surfaces} == {"ground"}
    np.testing.assert_allclose(first.surfaces[0].rings[0][0], [nums[1], nums[0], nums[2]])
    # an always_xy transform of that vertex lands in Yokosuka
    lon, lat = Transformer.from_crs("EPSG:6668", "EPSG:4326", always_xy=True).transform(nums[1], nums[0])
    assert 139.7 < lon < 139.75 and 35.25 < lat < 35.27


@pytest.mark.realdata
def test_plateau_lod2_kinds_and_polygon_count():
    root = ET.parse(PLATEAU).getroot()
    with_lod2 = {}
    for b in root.iter(f"{{{BLDG2}}}Building"):
        polys = [p for bb in b.iter(f"{{{BLDG2}}}boundedBy") for p in bb.iter(f"{{{GML2}}}Polygon")]
        if polys:
            with_lod2[b.get(f"{{{GML2}}}id")] = len(polys)
    report = ReadReport(PLATEAU.name)
    lod2 = list(read_citygml(PLATEAU, lod=2, report=report))
    assert {b.id: len(b.surfaces) for b in lod2} == with_lod2
    assert report.skipped == {NO_LOD: 13 - len(with_lod2)}
    kinds = Counter(s.kind for b in lod2 for s in b.surfaces)
    assert {"roof", "wall", "ground"} <= set(kinds)
    best = {b.id: b.lod for b in read_citygml(PLATEAU)}
    assert {i for i, lod in best.items() if lod == 2} == set(with_lod2)
    assert set(best.values()) == {1, 2}


@pytest.mark.realdata
def test_plateau_parts_merged_and_generic_attributes():
    root = ET.parse(PLATEAU).getroot()
    parent = next(b for b in root.iter(f"{{{BLDG2}}}Building") if b.find(f".//{{{BLDG2}}}BuildingPart") is not None)
    part_heights = [float(h.text) for p in parent.iter(f"{{{BLDG2}}}BuildingPart")
                    for h in p.findall(f"{{{BLDG2}}}measuredHeight")]
    assert len(part_heights) == 2
    got = {b.id: b for b in read_citygml(PLATEAU, lod=1)}
    merged = got[parent.get(f"{{{GML2}}}id")]
    assert merged.attributes["height"] == max(part_heights)
    # the LOD1 solids of both parts end up in the one building
    solids = [s for p in parent.iter(f"{{{BLDG2}}}lod1Solid") for s in p.iter(f"{{{GML2}}}Polygon")]
    assert len(merged.surfaces) == len(solids)
    first = next(iter(got.values()))
    assert isinstance(first.attributes["図形ID"], int)
    assert isinstance(first.attributes["床面積換算係数"], float)
    assert first.attributes["usage"] == "422" and first.attributes["storeys"] == 1


@pytest.mark.realdata
def test_plateau_lod1_and_lod2_in_one_pass():
    found = list(read_citygml_lods(PLATEAU, lods=(1, 2)))
    assert len(found) == 13
    assert Counter(tuple(sorted(d)) for d in found) == Counter({(1,): 11, (1, 2): 2})
    for d in found:
        assert len({b.id for b in d.values()}) == 1


# -- real data: OGC 2.0 and 3.0 ---------------------------------------------------------------

@pytest.mark.realdata
def test_ogc_compound_crs_and_lod1():
    b = next(read_citygml(OGC2_LOD1))
    assert b.crs == "EPSG:25832+5783"
    crs = CRS.from_user_input(b.crs)
    assert crs.is_compound
    assert [c.to_epsg() for c in crs.sub_crs_list] == [25832, 5783]
    assert b.lod == 1 and len(b.surfaces) == 6
    assert b.attributes == {"name": "Example Building LOD1", "usage": "1000", "height": 5.0, "storeys": 1,
                            "id": "GML_7b1a5a6f-ddad-4c3d-a507-3eb9ee0a8e68", "source": OGC2_LOD1.name}
    # a 10 x 5 x 4 m box: 2 * (50 + 40 + 20) m²
    assert sum(_area(s.rings[0]) for s in b.surfaces) == pytest.approx(220.0)


@pytest.mark.realdata
def test_ogc_v2_and_v3_same_building():
    v2 = next(read_citygml(OGC2_LOD2))
    v3 = next(read_citygml(OGC3_LOD2))
    assert v2.crs == v3.crs == "EPSG:25832+5783"
    assert v2.id == v3.id and v2.lod == v3.lod == 2
    # v2 merges the garage (a BuildingPart) and emits the wall it shares with the house once:
    # 13 polygons in the file, the 14th member is an xlink to one of them
    assert len(v2.surfaces) == OGC2_LOD2.read_text().count("<gml:Polygon ") == 13
    assert len(v3.surfaces) == OGC3_LOD2.read_text().count("<gml:Polygon ") == 7

    def house(b):  # the garage lies east of x = 458885
        return [s for s in b.surfaces if np.all(s.rings[0][:, 0] <= 458885.0)]

    h2, h3 = house(v2), house(v3)
    # v2 splits the east wall at the garage roof line into two polygons; v3 has it whole
    assert Counter(s.kind for s in h2) == {"wall": 5, "roof": 2, "ground": 1}
    assert Counter(s.kind for s in h3) == {"wall": 4, "roof": 2, "ground": 1}
    for kind in ("wall", "roof", "ground"):
        a2 = sum(_area(s.rings[0]) for s in h2 if s.kind == kind)
        a3 = sum(_area(s.rings[0]) for s in h3 if s.kind == kind)
        assert a2 == pytest.approx(a3), kind
    p2 = {tuple(p) for p in _vertices(Building(h2))}
    p3 = {tuple(p) for p in _vertices(Building(h3))}
    assert p3 <= p2
    # the extra v2 vertices are where the garage meets the east wall
    assert p2 - p3 == {(458885.0, 5438351.0, 112.0), (458885.0, 5438351.0, 114.5), (458885.0, 5438355.0, 114.3)}
    assert v3.attributes["height"] == 5.0 and v3.attributes["storeys"] == 1 and v3.attributes["usage"] == "1000"


class Building:  # just enough for _vertices
    def __init__(self, surfaces):
        self.surfaces = surfaces


# -- real data: CityJSON ----------------------------------------------------------------------

@pytest.mark.realdata
def test_cityjson_delft_counts_and_crs():
    data = json.loads((CJ / "delft.city.json").read_text())
    expected = sum(1 for o in data["CityObjects"].values() if o["type"] == "Building")
    report = ReadReport("delft")
    buildings = list(read_cityjson(CJ / "delft.city.json", report=report))
    assert expected == 160
    assert len(buildings) == report.read == expected
    assert {b.crs for b in buildings} == {"EPSG:7415"}
    assert {b.lod for b in buildings} == {1}
    first_key, first = next((k, o) for k, o in data["CityObjects"].items() if o["type"] == "Building")
    assert buildings[0].id == first_key
    assert buildings[0].attributes["height"] == float(first["attributes"]["measuredHeight"])
    # surfaces read + surfaces rejected = surfaces in the file
    in_file = sum(len(shell) for o in data["CityObjects"].values() if o["type"] == "Building"
                  for g in o["geometry"] for shell in g["boundaries"])
    rejected = sum(report.skipped.values())
    assert sum(len(b.surfaces) for b in buildings) + rejected == in_file
    assert set(report.skipped) <= {DEGENERATE}


@pytest.mark.realdata
def test_cityjson_vertices_after_transform():
    data = json.loads((CJ / "multi_lod.city.json").read_text())
    scale, translate = data["transform"]["scale"], data["transform"]["translate"]
    key, obj = next(iter(data["CityObjects"].items()))
    geom = next(g for g in obj["geometry"] if g["lod"] == "2.2")
    expected = [[[v * s + t for v, s, t in zip(data["vertices"][i], scale, translate)] for i in surface[0]]
                for surface in geom["boundaries"][0]]
    b = next(read_cityjson(CJ / "multi_lod.city.json", crs="EPSG:7415", lod=2))
    assert b.id == key and len(b.surfaces) == len(expected) == 36
    for surface, ring in zip(b.surfaces, expected):
        np.testing.assert_allclose(surface.rings[0], ring, rtol=0, atol=1e-9)
    names = [geom["semantics"]["surfaces"][v]["type"] for v in geom["semantics"]["values"][0]]
    kinds = {"GroundSurface": "ground", "RoofSurface": "roof", "WallSurface": "wall"}
    assert [s.kind for s in b.surfaces] == [kinds[n] for n in names]


@pytest.mark.realdata
def test_cityjson_multi_lod_picks_highest_sub_lod():
    data = json.loads((CJ / "multi_lod.city.json").read_text())
    found = list(read_cityjson_lods(CJ / "multi_lod.city.json", crs="EPSG:7415", lods=(1, 2)))
    assert len(found) == len(data["CityObjects"]) == 10
    for d in found:
        assert sorted(d) == [1, 2]
        obj = data["CityObjects"][d[1].id]
        lod13 = next(g for g in obj["geometry"] if g["lod"] == "1.3")
        assert len(d[1].surfaces) == len(lod13["boundaries"][0])  # 1.3 wins over 1.2
        assert {s.kind for s in d[1].surfaces} == {"other"}


@pytest.mark.realdata
def test_cityjson_rotterdam_semantics_and_missing_crs():
    path = CJ / "rotterdam_subset.city.json"
    with pytest.raises(CRSError, match="--crs"):
        next(read_cityjson(path))
    data = json.loads(path.read_text())
    report = ReadReport("rotterdam")
    buildings = list(read_cityjson(path, crs="EPSG:7415", report=report))
    assert len(buildings) == sum(o["type"] == "Building" for o in data["CityObjects"].values()) == 16
    assert {s.kind for b in buildings for s in b.surfaces} == {"roof", "wall", "ground"}
    in_file = sum(len(g["boundaries"]) for o in data["CityObjects"].values() for g in o["geometry"])
    assert sum(len(b.surfaces) for b in buildings) + report.skipped.get(DEGENERATE, 0) == in_file
    # the degenerate ones in this file are surfaces of two distinct vertices; check one independently
    verts = data["vertices"]
    two = sum(1 for o in data["CityObjects"].values() for g in o["geometry"] for s in g["boundaries"]
              if len({tuple(verts[i]) for i in s[0]}) < 3)
    assert two == report.skipped[DEGENERATE] == 12


@pytest.mark.realdata
def test_cityjsonseq_reads_like_cityjson(tmp_path):
    data = json.loads((CJ / "multi_lod.city.json").read_text())
    header = {"type": "CityJSON", "version": "2.0", "transform": data["transform"],
              "metadata": {"referenceSystem": "https://www.opengis.net/def/crs/EPSG/0/7415"},
              "CityObjects": {}, "vertices": []}
    lines = [json.dumps(header)]
    for key, obj in data["CityObjects"].items():
        lines.append(json.dumps({"type": "CityJSONFeature", "id": key, "CityObjects": {key: obj},
                                 "vertices": data["vertices"]}))
    seq = tmp_path / "multi.city.jsonl"
    seq.write_text("\n".join(lines) + "\n")
    a = list(read_cityjson(seq))
    b = list(read_cityjson(CJ / "multi_lod.city.json", crs="EPSG:7415"))
    assert [x.id for x in a] == [x.id for x in b]
    for x, y in zip(a, b):
        assert x.crs == "EPSG:7415" and x.lod == y.lod == 2
        np.testing.assert_array_equal(_vertices(x), _vertices(y))


# -- inline CityGML for bad input and features the real files lack ------------------------------

HEAD2 = ('<?xml version="1.0" encoding="UTF-8"?>\n'
         '<core:CityModel xmlns:core="http://www.opengis.net/citygml/2.0" '
         'xmlns:bldg="http://www.opengis.net/citygml/building/2.0" xmlns:gml="http://www.opengis.net/gml" '
         'xmlns:gen="http://www.opengis.net/citygml/generics/2.0" xmlns:xlink="http://www.w3.org/1999/xlink">\n')
ENVELOPE = ('<gml:boundedBy><gml:Envelope srsName="urn:ogc:def:crs:EPSG::25832" srsDimension="3">'
            '<gml:lowerCorner>0 0 0</gml:lowerCorner><gml:upperCorner>1 1 1</gml:upperCorner>'
            '</gml:Envelope></gml:boundedBy>\n')


def _poly(points, gid=None) -> str:
    pts = list(points) + [points[0]]
    ident = f' gml:id="{gid}"' if gid else ""
    return (f'<gml:surfaceMember><gml:Polygon{ident}><gml:exterior><gml:LinearRing><gml:posList>'
            + " ".join(f"{x} {y} {z}" for x, y, z in pts)
            + "</gml:posList></gml:LinearRing></gml:exterior></gml:Polygon></gml:surfaceMember>")


def _box(x0=0.0, y0=0.0, w=10.0, d=8.0, h=6.0) -> list[list[tuple]]:
    b = [(x0, y0, 0.0), (x0 + w, y0, 0.0), (x0 + w, y0 + d, 0.0), (x0, y0 + d, 0.0)]
    t = [(x, y, h) for x, y, _ in b]
    return [b[::-1], t] + [[b[k], b[(k + 1) % 4], t[(k + 1) % 4], t[k]] for k in range(4)]


def _lod1(gid: str, polys: list[str], extra: str = "") -> str:
    return (f'<core:cityObjectMember><bldg:Building gml:id="{gid}">{extra}'
            '<bldg:lod1Solid><gml:Solid><gml:exterior><gml:CompositeSurface>' + "".join(polys)
            + "</gml:CompositeSurface></gml:exterior></gml:Solid></bldg:lod1Solid>"
            "</bldg:Building></core:cityObjectMember>\n")


def _write(tmp_path: Path, body: str, *, envelope: bool = True, name: str = "city.gml") -> Path:
    path = tmp_path / name
    path.write_text(HEAD2 + (ENVELOPE if envelope else "") + body + "</core:CityModel>\n", encoding="utf-8")
    return path


def test_broken_xml_names_file_and_line(tmp_path):
    body = _lod1("b1", [_poly(p) for p in _box()]) + "<core:cityObjectMember><bldg:Building>\n<oops></core:cityObjectMember>\n"
    path = _write(tmp_path, body)
    line = path.read_text().splitlines().index("<oops></core:cityObjectMember>") + 1
    report = ReadReport(path.name)
    got = []
    with pytest.raises(SourceError) as err:
        for b in read_citygml(path, report=report):
            got.append(b.id)
    assert got == ["b1"]  # what came before the break was read
    assert str(path) in str(err.value) and f"line {line}," in str(err.value)


@pytest.mark.parametrize("content", ["", "   \n", "<?xml version='1.0'?>\n"])
def test_empty_citygml_is_a_source_error(tmp_path, content):
    path = tmp_path / "empty.gml"
    path.write_text(content)
    with pytest.raises(SourceError, match="empty|broken XML"):
        list(read_citygml(path))


def test_citygml_without_buildings(tmp_path):
    path = _write(tmp_path, "")
    with pytest.raises(SourceError, match="no bldg:Building"):
        list(read_citygml(path))


def test_missing_srsname_asks_for_crs(tmp_path):
    path = _write(tmp_path, _lod1("b1", [_poly(p) for p in _box()]), envelope=False)
    with pytest.raises(CRSError, match="--crs"):
        list(read_citygml(path))
    b = next(read_citygml(path, crs="EPSG:25832"))
    assert b.crs == "EPSG:25832" and len(b.surfaces) == 6


def test_unknown_crs_is_a_crs_error(tmp_path):
    path = _write(tmp_path, _lod1("b1", [_poly(p) for p in _box()]).replace(
        "<gml:Solid>", '<gml:Solid srsName="urn:ogc:def:crs:EPSG::999999">'))
    with pytest.raises(CRSError, match="999999"):
        list(read_citygml(path))


def test_requested_lod_missing_is_counted(tmp_path):
    path = _write(tmp_path, _lod1("b1", [_poly(p) for p in _box()]) + _lod1("b2", [_poly(p) for p in _box(20)]))
    report = ReadReport(path.name)
    assert list(read_citygml(path, lod=2, report=report)) == []
    assert report.skipped == {NO_LOD: 2} and report.read == 0
    assert "b1" in report.messages[0] and "has LOD1" in report.messages[0]
    assert list(read_citygml_lods(path, lods=(2, 3), report=ReadReport("x"))) == []


def test_degenerate_and_non_planar_polygons_skipped(tmp_path):
    box = _box()
    slight = [(0, 0, 10), (5, 0, 10), (5, 5, 10.03), (0, 5, 10)]  # 3 cm off: within 0.1 m, kept
    bent = [(0, 0, 10), (5, 0, 10), (5, 5, 11), (0, 5, 10)]  # 1 m off: non-planar
    two = [(0, 0, 0), (1, 0, 0), (0, 0, 0), (1, 0, 0)]  # two distinct vertices
    line = [(0, 0, 0), (1, 0, 0), (2, 0, 0)]  # collinear: zero area
    polys = [_poly(p) for p in box + [slight, bent, two, line]]
    path = _write(tmp_path, _lod1("b1", polys))
    report = ReadReport(path.name)
    (b,) = read_citygml(path, report=report)
    assert len(b.surfaces) == 7
    assert report.skipped == {NON_PLANAR: 1, DEGENERATE: 2}
    # rings come back open, without the repeated closing vertex
    assert all(len(s.rings[0]) == 4 for s in b.surfaces)
    assert any("off its plane" in m for m in report.messages)


def test_building_without_valid_surfaces_skipped(tmp_path):
    bad = [(0, 0, 0), (1, 0, 0), (2, 0, 0)]
    path = _write(tmp_path, _lod1("bad", [_poly(bad)]) + _lod1("good", [_poly(p) for p in _box()]))
    report = ReadReport(path.name)
    got = [b.id for b in read_citygml(path, report=report)]
    assert got == ["good"]
    assert report.skipped == {DEGENERATE: 1, NO_SURFACES: 1} and report.read == 1


def test_bad_coordinates_and_unresolved_xlink_counted(tmp_path):
    odd = ('<gml:surfaceMember><gml:Polygon><gml:exterior><gml:LinearRing><gml:posList>0 0 0 1 0 0 1 1'
           '</gml:posList></gml:LinearRing></gml:exterior></gml:Polygon></gml:surfaceMember>')
    ref = '<gml:surfaceMember xlink:href="#nowhere"/>'
    path = _write(tmp_path, _lod1("b1", [_poly(p) for p in _box()] + [odd, ref]))
    report = ReadReport(path.name)
    (b,) = read_citygml(path, report=report)
    assert len(b.surfaces) == 6
    assert report.skipped == {"bad coordinates": 1, UNRESOLVED: 1}


def test_lod0_footprint_pos_and_2d(tmp_path):
    ring = [(0, 0), (10, 0), (10, 8), (0, 8), (0, 0)]
    pos = "".join(f"<gml:pos>{x} {y}</gml:pos>" for x, y in ring)
    body = ('<core:cityObjectMember><bldg:Building gml:id="fp"><bldg:measuredHeight uom="m">7.5</bldg:measuredHeight>'
            '<bldg:lod0FootPrint><gml:MultiSurface><gml:surfaceMember><gml:Polygon><gml:exterior>'
            f'<gml:LinearRing>{pos}</gml:LinearRing></gml:exterior></gml:Polygon></gml:surfaceMember>'
            '</gml:MultiSurface></bldg:lod0FootPrint></bldg:Building></core:cityObjectMember>\n')
    path = _write(tmp_path, body)
    (b,) = read_citygml(path)
    assert b.lod == 0 and b.attributes["height"] == 7.5
    assert [s.kind for s in b.surfaces] == ["ground"]
    np.testing.assert_array_equal(b.surfaces[0].rings[0], [[0, 0, 0], [10, 0, 0], [10, 8, 0], [0, 8, 0]])


def test_citygml2_generic_attribute_set_and_parts(tmp_path):
    walls = "".join(_poly(p) for p in _box()[2:])
    part = ('<bldg:consistsOfBuildingPart><bldg:BuildingPart gml:id="p1"><gml:name>annex</gml:name>'
            '<bldg:measuredHeight uom="m">4</bldg:measuredHeight>'
            '<bldg:boundedBy><bldg:RoofSurface><bldg:lod2MultiSurface><gml:MultiSurface>'
            + _poly([(20, 0, 4), (25, 0, 4), (25, 5, 4), (20, 5, 4)], "roofp")
            + '</gml:MultiSurface></bldg:lod2MultiSurface></bldg:RoofSurface></bldg:boundedBy>'
            '</bldg:BuildingPart></bldg:consistsOfBuildingPart>')
    body = ('<core:cityObjectMember><bldg:Building gml:id="main">'
            '<gen:genericAttributeSet name="set"><gen:stringAttribute name="owner"><gen:value>city</gen:value>'
            '</gen:stringAttribute><gen:intAttribute name="rooms"><gen:value>12</gen:value></gen:intAttribute>'
            '</gen:genericAttributeSet><gen:doubleAttribute name="ratio"><gen:value>0.5</gen:value></gen:doubleAttribute>'
            '<bldg:function>1000</bldg:function>'
            '<bldg:boundedBy><bldg:WallSurface><bldg:lod2MultiSurface><gml:MultiSurface>' + walls
            + '</gml:MultiSurface></bldg:lod2MultiSurface></bldg:WallSurface></bldg:boundedBy>'
            '<bldg:lod2Solid><gml:Solid><gml:exterior><gml:CompositeSurface>'
            '<gml:surfaceMember xlink:href="#roofp"/>' + _poly(_box()[1]) +
            '</gml:CompositeSurface></gml:exterior></gml:Solid></bldg:lod2Solid>'
            + part + '</bldg:Building></core:cityObjectMember>\n')
    path = _write(tmp_path, body)
    (b,) = read_citygml(path)
    assert b.id == "main" and b.lod == 2
    assert b.attributes == {"owner": "city", "rooms": 12, "ratio": 0.5, "name": "annex", "usage": "1000",
                            "height": 4.0, "id": "main", "source": "city.gml"}
    # 4 walls, the part's roof once (the solid's xlink to it is not repeated), the inline top as 'other'
    assert Counter(s.kind for s in b.surfaces) == {"wall": 4, "roof": 1, "other": 1}


def test_citygml3_generic_attributes_and_building_part(tmp_path):
    head = ('<?xml version="1.0" encoding="UTF-8"?>\n<CityModel xmlns="http://www.opengis.net/citygml/3.0" '
            'xmlns:bldg="http://www.opengis.net/citygml/building/3.0" xmlns:con="http://www.opengis.net/citygml/construction/3.0" '
            'xmlns:gen="http://www.opengis.net/citygml/generics/3.0" xmlns:gml="http://www.opengis.net/gml/3.2">\n')

    def boundary(kind, polys):
        return (f'<boundary><con:{kind}><lod2MultiSurface><gml:MultiSurface>' + "".join(_poly(p) for p in polys)
                + f'</gml:MultiSurface></lod2MultiSurface></con:{kind}></boundary>')

    box, annex = _box(), _box(20, 0, 5, 5, 3)
    body = ('<cityObjectMember><bldg:Building gml:id="b3">'
            '<genericAttribute><gen:StringAttribute><gen:name>owner</gen:name><gen:value>city</gen:value>'
            '</gen:StringAttribute></genericAttribute>'
            '<genericAttribute><gen:GenericAttributeSet><gen:name>s</gen:name><gen:genericAttribute>'
            '<gen:IntAttribute><gen:name>rooms</gen:name><gen:value>3</gen:value></gen:IntAttribute>'
            '</gen:genericAttribute></gen:GenericAttributeSet></genericAttribute>'
            + boundary("GroundSurface", [box[0]]) + boundary("RoofSurface", [box[1]]) + boundary("WallSurface", box[2:])
            + '<con:height><con:Height><con:highReference>highestRoofEdge</con:highReference>'
            '<con:value uom="#m">6.0</con:value></con:Height></con:height>'
            '<bldg:storeysAboveGround>2</bldg:storeysAboveGround>'
            '<bldg:buildingPart><bldg:BuildingPart gml:id="b3p">'
            + boundary("RoofSurface", [annex[1]]) + boundary("ClosureSurface", [annex[2]])
            + '</bldg:BuildingPart></bldg:buildingPart></bldg:Building></cityObjectMember>\n')
    path = tmp_path / "v3.gml"
    path.write_text(head + body + "</CityModel>\n")
    (b,) = read_citygml(path, crs="EPSG:25832")
    assert b.crs == "EPSG:25832"
    assert b.attributes == {"owner": "city", "rooms": 3, "height": 6.0, "storeys": 2, "id": "b3", "source": "v3.gml"}
    assert Counter(s.kind for s in b.surfaces) == {"wall": 4, "roof": 2, "ground": 1, "closure": 1}


def test_srsname_forms(tmp_path):
    from pipelines.readers.city_common import srs_to_crs

    cases = {
        "urn:ogc:def:crs,crs:EPSG::25832,crs:EPSG::5783": "EPSG:25832+5783",
        "EPSG:25832": "EPSG:25832",
        "http://www.opengis.net/def/crs/EPSG/0/6697": "EPSG:6697",
        "https://www.opengis.net/def/crs/EPSG/0/7415": "EPSG:7415",
        "urn:ogc:def:crs:EPSG:6.12:4326": "EPSG:4326",
        "urn:adv:crs:ETRS89_UTM32*DE_DHHN2016_NH": "EPSG:25832+7837",
        "http://www.opengis.net/def/crs-compound?1=http://www.opengis.net/def/crs/EPSG/0/25833"
        "&2=http://www.opengis.net/def/crs/EPSG/0/5783": "EPSG:25833+5783",
    }
    for srs, want in cases.items():
        got = srs_to_crs(srs, source="t")
        assert got == want
        assert CRS.from_user_input(got) is not None
    with pytest.raises(CRSError, match="--crs"):
        srs_to_crs("urn:ogc:def:crs:local::foo", source="t")


def test_lat_first_crs_is_swapped(tmp_path):
    ring = [(35.0, 139.0, 0), (35.0, 139.001, 0), (35.001, 139.001, 0), (35.001, 139.0, 0)]
    path = _write(tmp_path, _lod1("g", [_poly(ring)]).replace("<gml:Solid>", '<gml:Solid srsName="EPSG:4326">'))
    (b,) = read_citygml(path)
    assert b.crs == "EPSG:4326"
    assert np.all(b.surfaces[0].rings[0][:, 0] > 138) and np.all(b.surfaces[0].rings[0][:, 1] < 36)


# -- inline CityJSON --------------------------------------------------------------------------

def _cityjson(objects: dict, vertices: list, *, crs: str | None = "https://www.opengis.net/def/crs/EPSG/0/7415") -> dict:
    doc = {"type": "CityJSON", "version": "2.0", "transform": {"scale": [0.01, 0.01, 0.01], "translate": [1000, 2000, 0]},
           "CityObjects": objects, "vertices": vertices}
    if crs:
        doc["metadata"] = {"referenceSystem": crs}
    return doc


_CUBE_V = [[0, 0, 0], [100, 0, 0], [100, 100, 0], [0, 100, 0], [0, 0, 100], [100, 0, 100], [100, 100, 100], [0, 100, 100]]
_CUBE_B = [[[0, 3, 2, 1]], [[4, 5, 6, 7]], [[0, 1, 5, 4]], [[1, 2, 6, 5]], [[2, 3, 7, 6]], [[3, 0, 4, 7]]]


def test_cityjson_parts_merged_and_orphans_counted(tmp_path):
    vertices = _CUBE_V + [[v[0] + 200, v[1], v[2]] for v in _CUBE_V]
    part_b = [[[i + 8 for i in ring] for ring in s] for s in _CUBE_B]
    objects = {
        "house": {"type": "Building", "attributes": {"function": "shed", "extra": {"a": 1}}, "children": ["annex"],
                  "geometry": [{"type": "Solid", "lod": "2.2", "boundaries": [_CUBE_B],
                                "semantics": {"surfaces": [{"type": "GroundSurface"}, {"type": "RoofSurface"},
                                                           {"type": "WallSurface"}],
                                              "values": [[0, 1, 2, 2, 2, None]]}}]},
        "annex": {"type": "BuildingPart", "parents": ["house"], "attributes": {"measuredHeight": 1.0, "storeysAboveGround": 1},
                  "geometry": [{"type": "MultiSurface", "lod": "2", "boundaries": part_b}]},
        "lost": {"type": "BuildingPart", "parents": ["gone"], "geometry": []},
        "tree": {"type": "SolitaryVegetationObject", "geometry": []},
    }
    path = tmp_path / "parts.city.json"
    path.write_text(json.dumps(_cityjson(objects, vertices)))
    report = ReadReport(path.name)
    (b,) = read_cityjson(path, report=report)
    assert b.id == "house" and b.lod == 2 and b.crs == "EPSG:7415"
    assert len(b.surfaces) == 12
    assert [s.kind for s in b.surfaces[:6]] == ["ground", "roof", "wall", "wall", "wall", "other"]
    assert b.attributes == {"extra": '{"a": 1}', "usage": "shed", "height": 1.0, "storeys": 1, "id": "house",
                            "source": "parts.city.json"}
    np.testing.assert_allclose(b.surfaces[6].rings[0][0], [1002.0, 2000.0, 0.0])
    assert report.skipped == {ORPHAN_PART: 1}


def test_cityjson_bad_input(tmp_path):
    empty = tmp_path / "empty.city.json"
    empty.write_text("")
    with pytest.raises(SourceError, match="empty"):
        list(read_cityjson(empty))
    broken = tmp_path / "broken.city.json"
    broken.write_text('{"type": "CityJSON",\n"CityObjects": {\n"a": [1, 2\n}')
    with pytest.raises(SourceError, match=r"broken JSON at line 4"):
        list(read_cityjson(broken))
    other = tmp_path / "other.json"
    other.write_text('{"type": "FeatureCollection", "features": []}')
    with pytest.raises(SourceError, match="not CityJSON"):
        list(read_cityjson(other))
    nocrs = tmp_path / "nocrs.city.json"
    nocrs.write_text(json.dumps(_cityjson({"b": {"type": "Building", "geometry": []}}, _CUBE_V, crs=None)))
    with pytest.raises(CRSError, match="--crs"):
        list(read_cityjson(nocrs))
    nob = tmp_path / "nob.city.json"
    nob.write_text(json.dumps(_cityjson({"r": {"type": "Road", "geometry": []}}, _CUBE_V)))
    with pytest.raises(SourceError, match="no Building"):
        list(read_cityjson(nob))


def test_cityjson_bad_indices_and_missing_lod_counted(tmp_path):
    objects = {
        "ok": {"type": "Building", "geometry": [{"type": "Solid", "lod": "1", "boundaries": [_CUBE_B]}]},
        "bad": {"type": "Building", "geometry": [{"type": "MultiSurface", "lod": "1",
                                                  "boundaries": [[[0, 1, 99]], [[0, -1, 2]]]}]},
        "nogeom": {"type": "Building", "geometry": []},
    }
    path = tmp_path / "bad.city.json"
    path.write_text(json.dumps(_cityjson(objects, _CUBE_V)))
    report = ReadReport(path.name)
    got = [b.id for b in read_cityjson(path, report=report)]
    assert got == ["ok"]
    assert report.skipped == {"bad coordinates": 2, NO_SURFACES: 1, NO_LOD: 1}
    report2 = ReadReport(path.name)
    assert list(read_cityjson(path, lod=2, report=report2)) == []
    assert report2.skipped == {NO_LOD: 3}


# -- streaming --------------------------------------------------------------------------------

def _building_xml(i: int) -> str:
    x0, y0 = 400000 + (i % 1000) * 20, 5000000 + (i // 1000) * 20
    box = _box(x0, y0, 10, 8, 9)

    def bounded(kind, polys):
        return (f"<bldg:boundedBy><bldg:{kind}><bldg:lod2MultiSurface><gml:MultiSurface>"
                + "".join(_poly(p) for p in polys)
                + f"</gml:MultiSurface></bldg:lod2MultiSurface></bldg:{kind}></bldg:boundedBy>")

    return (f'<core:cityObjectMember><bldg:Building gml:id="b{i}"><gml:name>house {i}</gml:name>'
            f'<gen:stringAttribute name="note"><gen:value>{"n" * 200}</gen:value></gen:stringAttribute>'
            '<bldg:measuredHeight uom="m">9</bldg:measuredHeight>'
            + bounded("GroundSurface", [box[0]]) + bounded("RoofSurface", [box[1]]) + bounded("WallSurface", box[2:])
            + "</bldg:Building></core:cityObjectMember>\n")


def test_streaming_memory_stays_far_below_file_size(tmp_path):
    n = 22_000
    path = tmp_path / "big.gml"
    with path.open("w", encoding="utf-8") as fh:
        fh.write(HEAD2 + ENVELOPE)
        for i in range(n):
            fh.write(_building_xml(i))
        fh.write("</core:CityModel>\n")
    size = path.stat().st_size
    assert size > 50e6
    script = textwrap.dedent(f"""
        import resource, sys
        from pathlib import Path
        from pipelines.readers.citygml import read_citygml
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        count = surfaces = 0
        for b in read_citygml(Path({str(path)!r})):
            count += 1
            surfaces += len(b.surfaces)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(count, surfaces, (peak - base) * 1024)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    count, surfaces, grown = map(int, out.stdout.split())
    assert count == n and surfaces == 6 * n
    # a parsed tree of this file would take several times its size; streaming needs a few MB
    assert grown < size / 10, f"peak RSS grew {grown / 1e6:.1f} MB reading a {size / 1e6:.0f} MB file"
