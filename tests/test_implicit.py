"""3D Tiles implicit tiling, read back by a subtree reader of our own written from the specification.

The reader walks the subtree files from the root and checks what the specification asks of
them (header, 8-byte alignment, availability counts, a tile available only under an available
parent, content only on available tiles, child subtrees only under the subtree's last level);
the tests then hold that against the files on disk (every available content exists, every
content file is available, every child subtree exists and no other) and against the source
buildings (each exactly once per LOD, in the cell of its centre, at its place on the globe).
"""
from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import httpx
import numpy as np
import pytest
import shapely
import yaml
from pyproj import Transformer
from shapely.geometry import Polygon

from api_server import run_citytwin, serve
from gltf_read import mesh_local_enu, property_strings, split_glb
from pipelines.export3d import footprints_to_tileset, models_to_tileset
from tiles.threed.implicit import IMPLICIT_MIN_BUILDINGS, MAX_LEVEL
from validators import gltf_validate

TO_M = Transformer.from_crs(4326, 5186, always_xy=True)
TO_LL = Transformer.from_crs(5186, 4326, always_xy=True)
LLH_TO_ECEF = Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True)
ECEF_TO_LLH = Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True)
PLATEAU = Path("/work/shared/data/citygml/plateau_yokosuka_52397519_bldg_6697_op.gml")
MAX_PER_TILE = 100
STACKED = 150  # buildings sharing one centre: no split can separate them


# -- an independent reader of implicit tilesets --------------------------------------------------

def interleave(x: int, y: int) -> int:
    """Morton index, bit by bit: x on the even bits, y on the odd ones (spec, Appendix A)."""
    return sum((((x >> i) & 1) << (2 * i)) | (((y >> i) & 1) << (2 * i + 1)) for i in range(32))


def read_subtree(data: bytes, subtree_levels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(tile, content, child subtree) availability of one binary subtree file, and the
    TILE_BOUNDING_REGION of each available tile from its tile metadata."""
    magic, version, json_len, bin_len = struct.unpack_from("<4sIQQ", data, 0)
    assert magic == b"subt" and version == 1
    assert json_len % 8 == 0 and bin_len % 8 == 0 and len(data) == 24 + json_len + bin_len
    doc = json.loads(data[24:24 + json_len])
    binary = data[24 + json_len:]
    for buffer in doc.get("buffers", []):
        assert "uri" not in buffer and buffer["byteLength"] <= bin_len

    def bits(availability: dict, n: int) -> np.ndarray:
        if "constant" in availability:
            assert availability["constant"] in (0, 1)
            return np.full(n, bool(availability["constant"]))
        view = doc["bufferViews"][availability["bitstream"]]
        assert view["buffer"] == 0 and view["byteOffset"] % 8 == 0 and view["byteLength"] == -(-n // 8)
        raw = np.frombuffer(binary, np.uint8, view["byteLength"], view["byteOffset"])
        out = np.unpackbits(raw, bitorder="little")[:n].astype(bool)
        assert out.sum() == availability["availableCount"]
        return out

    tiles = (4 ** subtree_levels - 1) // 3
    assert len(doc["contentAvailability"]) == 1
    tile_bits = bits(doc["tileAvailability"], tiles)
    table = doc["propertyTables"][doc["tileMetadata"]]
    assert table["class"] == "tile" and table["count"] == tile_bits.sum()
    view = doc["bufferViews"][table["properties"]["region"]["values"]]
    assert view["byteOffset"] % 8 == 0 and view["byteLength"] == table["count"] * 6 * 8
    regions = np.frombuffer(binary, "<f8", table["count"] * 6, view["byteOffset"]).reshape(-1, 6)
    return (tile_bits, bits(doc["contentAvailability"][0], tiles),
            bits(doc["childSubtreeAvailability"], 4 ** subtree_levels), regions)


def walk(folder: Path) -> tuple[set, set, set, dict]:
    """Available tiles, tiles with content and subtree files reached, each as (level, x, y), and
    the region of each available tile."""
    root = json.loads((folder / "tileset.json").read_text())["root"]
    imp = root["implicitTiling"]
    levels, template = imp["subtreeLevels"], imp["subtrees"]["uri"]
    available: set = set()
    content: set = set()
    reached: set = set()
    regions: dict = {}
    pending = [(0, 0, 0)]
    while pending:
        sl, sx, sy = pending.pop()
        reached.add((sl, sx, sy))
        path = folder / template.format(level=sl, x=sx, y=sy)
        assert path.is_file(), f"child subtree {path} is available but missing"
        tile_bits, content_bits, child_bits, tile_regions = read_subtree(path.read_bytes(), levels)
        # tile metadata rows follow the available tiles in bit order
        regions_of = dict(zip(np.flatnonzero(tile_bits), tile_regions))
        assert tile_bits[0], "a subtree's root tile must be available"
        for local in range(levels):
            offset = (4 ** local - 1) // 3
            for lx in range(1 << local):
                for ly in range(1 << local):
                    i = offset + interleave(lx, ly)
                    key = (sl + local, (sx << local) + lx, (sy << local) + ly)
                    assert not content_bits[i] or tile_bits[i], f"content without its tile at {key}"
                    if tile_bits[i]:
                        if local:
                            parent = offset - 4 ** (local - 1) + interleave(lx >> 1, ly >> 1)
                            assert tile_bits[parent], f"tile {key} is available under an unavailable parent"
                        available.add(key)
                        regions[key] = regions_of[i]
                    if content_bits[i]:
                        content.add(key)
        for cx in range(1 << levels):
            for cy in range(1 << levels):
                if child_bits[interleave(cx, cy)]:
                    last = (levels - 1, cx >> 1, cy >> 1)
                    parent = (sl + last[0], (sx << last[0]) + last[1], (sy << last[0]) + last[2])
                    assert parent in available, f"child subtree under unavailable tile {parent}"
                    pending.append((sl + levels, (sx << levels) + cx, (sy << levels) + cy))
    assert max(level for level, _, _ in available) + 1 == imp["availableLevels"]
    return available, content, reached, regions


def content_path(folder: Path, key: tuple[int, int, int]) -> Path:
    template = json.loads((folder / "tileset.json").read_text())["root"]["content"]["uri"]
    return folder / template.format(level=key[0], x=key[1], y=key[2])


def centre_grid(footprints: gpd.GeoDataFrame) -> tuple[float, float, float, float]:
    """The extent of the buildings' centres (degrees), the grid buildings are placed on."""
    centres = shapely.point_on_surface(footprints.geometry.to_numpy())
    return (shapely.get_x(centres).min(), shapely.get_y(centres).min(), shapely.get_x(centres).max(),
            shapely.get_y(centres).max())


def cell_bounds(grid: tuple[float, float, float, float], key: tuple[int, int, int]) -> tuple[float, float, float, float]:
    """The cell of tile (level, x, y) in degrees: the grid halved ``level`` times."""
    w, s, e, n = grid
    level, x, y = key
    dx, dy = (e - w) / 2 ** level, (n - s) / 2 ** level
    return w + dx * x, s + dy * y, w + dx * (x + 1), s + dy * (y + 1)


def ids_by_tile(folder: Path, content: set) -> dict[tuple[int, int, int], list[str]]:
    out = {}
    for key in content:
        gltf, blob = split_glb(content_path(folder, key).read_bytes())
        out[key] = property_strings(gltf, blob, "id")
    return out


def check_files_match(folder: Path) -> tuple[set, set]:
    available, content, reached, _ = walk(folder)
    on_disk = {p for p in (folder / "content").rglob("*") if p.is_file()}
    assert on_disk == {content_path(folder, k) for k in content}  # each available content exists, no other file
    subtrees = {p for p in (folder / "subtrees").rglob("*") if p.is_file()}
    template = json.loads((folder / "tileset.json").read_text())["root"]["implicitTiling"]["subtrees"]["uri"]
    assert subtrees == {folder / template.format(level=lv, x=x, y=y) for lv, x, y in reached}
    return available, content


# -- footprints ----------------------------------------------------------------------------

def square(cx: float, cy: float, size: float) -> Polygon:
    return Polygon([TO_LL.transform(x, y) for x, y in
                    [(cx, cy), (cx + size, cy), (cx + size, cy + size), (cx, cy + size)]])


@pytest.fixture(scope="module")
def footprints() -> gpd.GeoDataFrame:
    """3,000 buildings over 2 km, with 150 of them stacked on one spot."""
    x0, y0 = TO_M.transform(126.9779, 37.5663)
    rng = np.random.default_rng(15)
    xy = rng.uniform(0, 2000, (3000, 2))
    xy[:STACKED] = [700.0, 900.0]
    sizes = rng.uniform(6, 20, 3000)
    sizes[:STACKED] = 10.0
    geoms = [square(x0 + x, y0 + y, s) for (x, y), s in zip(xy, sizes)]
    return gpd.GeoDataFrame({"id": [f"b{i}" for i in range(3000)], "height": rng.uniform(4, 80, 3000)},
                            geometry=geoms, crs=4326)


@pytest.fixture(scope="module")
def tileset(footprints, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("implicit") / "buildings"
    report = footprints_to_tileset(footprints, out, source="buildings", progress=False, max_per_tile=MAX_PER_TILE,
                                   implicit=True)
    assert report.implicit and report.buildings == 3000
    return out


def test_tileset_json_is_an_implicit_quadtree(tileset: Path, footprints):
    ts = json.loads((tileset / "tileset.json").read_text())
    assert ts["asset"]["version"] == "1.1"
    root = ts["root"]
    assert "children" not in root and "boundingVolume" not in root["content"]
    assert root["refine"] == "REPLACE" and ts["geometricError"] > root["geometricError"] > 0
    assert root["content"]["uri"] == "content/{level}/{x}/{y}.glb"
    imp = root["implicitTiling"]
    assert imp["subdivisionScheme"] == "QUADTREE" and imp["subtrees"]["uri"] == "subtrees/{level}/{x}/{y}.subtree"
    assert 1 <= imp["subtreeLevels"] <= imp["availableLevels"]
    region_property = ts["schema"]["classes"]["tile"]["properties"]["region"]
    assert region_property == {"type": "SCALAR", "componentType": "FLOAT64", "array": True, "count": 6,
                               "semantic": "TILE_BOUNDING_REGION"}
    # the 150 stacked buildings split down to the deepest level: four subtree levels deep
    assert imp["availableLevels"] == MAX_LEVEL + 1
    w, s, e, n, lo, hi = root["boundingVolume"]["region"]
    centres = shapely.point_on_surface(footprints.geometry.to_numpy())
    lon, lat = np.radians(shapely.get_x(centres)), np.radians(shapely.get_y(centres))
    assert w <= lon.min() and lon.max() <= e and s <= lat.min() and lat.max() <= n
    assert e - w < np.radians(0.03) and n - s < np.radians(0.03)  # the extent of the buildings, not more
    corners = footprints.total_bounds  # the buildings reach past their centres: the region holds them
    assert w <= np.radians(corners[0]) and np.radians(corners[2]) <= e
    assert s <= np.radians(corners[1]) and np.radians(corners[3]) <= n
    # heights: the ground (0 m) to the tallest roof
    assert lo == pytest.approx(0, abs=0.01) and hi == pytest.approx(footprints["height"].max(), abs=0.01)


def test_availability_matches_the_files(tileset: Path):
    available, content = check_files_match(tileset)
    assert len(content) > 30
    levels = {lv for lv, _, _ in available}
    assert levels == set(range(MAX_LEVEL + 1))  # every level down to the stacked buildings' cell
    # 19 levels in four rows of subtrees of 5 levels (0, 5, 10, 15), never a row of one level,
    # which would make a subtree file for every tile of that level
    imp = json.loads((tileset / "tileset.json").read_text())["root"]["implicitTiling"]
    assert imp["subtreeLevels"] == 5
    roots = {int(p.relative_to(tileset / "subtrees").parts[0]) for p in (tileset / "subtrees").rglob("*.subtree")}
    assert roots == {0, 5, 10, 15}


def test_each_building_once_in_the_cell_of_its_centre(tileset: Path, footprints):
    _, content, *_ = walk(tileset)
    by_tile = ids_by_tile(tileset, content)
    seen = [i for ids in by_tile.values() for i in ids]
    assert sorted(seen) == sorted(footprints["id"])  # every building, none twice
    centres = footprints.set_index("id").geometry.apply(shapely.point_on_surface)  # the centre footprints are placed by
    for key, ids in by_tile.items():
        w, s, e, n = cell_bounds(centre_grid(footprints), key)
        pts = centres.loc[ids]
        tol = 1e-9  # the grid's own margin, in degrees
        assert ((pts.x >= w - tol) & (pts.x <= e + tol) & (pts.y >= s - tol) & (pts.y <= n + tol)).all(), key
        # tiles stay bounded like the explicit tree's: only the deepest cell may hold more
        assert len(ids) <= MAX_PER_TILE or (key[0] == MAX_LEVEL and len(ids) == STACKED)
    # no tile with content is an ancestor of another: single LOD, content at the leaves only
    for level, x, y in content:
        assert all((level - d, x >> d, y >> d) not in content for d in range(1, level + 1))


def test_vertices_land_on_the_source_footprints(tileset: Path, footprints):
    root = json.loads((tileset / "tileset.json").read_text())["root"]
    m = np.array(root["transform"]).reshape(4, 4).T
    by_id = footprints.set_index("id")
    _, content, *_ = walk(tileset)
    worst, checked = 0.0, 0
    for key in sorted(content)[::7]:
        gltf, blob = split_glb(content_path(tileset, key).read_bytes())
        mesh = mesh_local_enu(gltf, blob)
        ecef = mesh["positions"] @ m[:3, :3].T + m[:3, 3]
        for fid, bid in enumerate(property_strings(gltf, blob, "id")[:10]):
            row = by_id.loc[bid]
            lon, lat = np.asarray(row.geometry.exterior.coords).T
            got = ecef[mesh["feature_ids"] == fid]
            for h in (0.0, row.height):
                src = np.column_stack(LLH_TO_ECEF.transform(lon, lat, np.full(len(lon), h)))
                worst = max(worst, float(np.linalg.norm(src[:, None] - got[None], axis=2).min(axis=1).max()))
            checked += 1
    assert checked > 20 and worst < 0.05


def test_tile_regions_hold_their_content_and_children(tileset: Path, footprints):
    """Each tile's region (its metadata) holds its decoded vertices, and each child's region lies in
    its parent's; so the halved grid cells, which a building can overhang, are never relied on."""
    root = json.loads((tileset / "tileset.json").read_text())["root"]
    m = np.array(root["transform"]).reshape(4, 4).T
    available, content, _, regions = walk(tileset)
    assert set(regions) == available
    eps = np.array([-1e-9, -1e-9, 1e-9, 1e-9, -0.01, 0.01])
    overhang = 0
    for key in content:
        gltf, blob = split_glb(content_path(tileset, key).read_bytes())
        ecef = mesh_local_enu(gltf, blob)["positions"] @ m[:3, :3].T + m[:3, 3]
        lon, lat, h = ECEF_TO_LLH.transform(*ecef.T)
        w, s, e, n, lo, hi = regions[key] + eps
        assert (np.radians(lon) >= w).all() and (np.radians(lon) <= e).all(), key
        assert (np.radians(lat) >= s).all() and (np.radians(lat) <= n).all(), key
        assert (h >= lo).all() and (h <= hi).all() and h.max() - h.min() == pytest.approx(hi - lo, abs=0.05)
        cw, cs, ce, cn = cell_bounds(centre_grid(footprints), key)
        overhang += int(lon.min() < cw or lon.max() > ce or lat.min() < cs or lat.max() > cn)
    assert overhang > 0  # the case the regions are there for does occur in this city
    for level, x, y in available - {(0, 0, 0)}:
        child, parent = regions[(level, x, y)], regions[(level - 1, x >> 1, y >> 1)]
        assert parent[0] <= child[0] and parent[1] <= child[1] and child[2] <= parent[2] and child[3] <= parent[3]
        assert parent[4] <= child[4] and child[5] <= parent[5]
    assert list(regions[(0, 0, 0)]) == root["boundingVolume"]["region"]


def test_contents_pass_the_khronos_validator(tileset: Path):
    _, content, *_ = walk(tileset)
    reports = gltf_validate([content_path(tileset, k) for k in sorted(content)])
    assert len(reports) == len(content)
    assert not [r for r in reports if r["numErrors"]], [r for r in reports if r["numErrors"]][:2]


def test_threshold_chooses_implicit_tiling(footprints, tmp_path: Path):
    """Below IMPLICIT_MIN_BUILDINGS the tree stays explicit; at it, the layer is implicit."""
    small = tmp_path / "small"
    footprints_to_tileset(footprints, small, source="b", progress=False)
    assert "implicitTiling" not in json.loads((small / "tileset.json").read_text())["root"]
    x0, y0 = TO_M.transform(127.0, 37.5)
    k = IMPLICIT_MIN_BUILDINGS
    xs, ys = x0 + (np.arange(k) % 250) * 12.0, y0 + (np.arange(k) // 250) * 12.0
    boxes = shapely.box(xs, ys, xs + 8, ys + 8)
    big = gpd.GeoDataFrame({"id": [f"g{i}" for i in range(k)], "height": np.full(k, 10.0)},
                           geometry=gpd.GeoSeries(boxes, crs=5186).to_crs(4326).values, crs=4326)
    out = tmp_path / "big"
    report = footprints_to_tileset(big, out, source="b", progress=False)
    assert report.implicit
    _, content = check_files_match(out)
    assert sum(len(ids) for ids in ids_by_tile(out, content).values()) == k


# -- LOD1 refining to LOD2 -------------------------------------------------------------------

def test_lod1_refines_to_lod2_one_level_down(tmp_path: Path):
    out = tmp_path / "plateau"
    report, _ = models_to_tileset([PLATEAU], out, max_per_tile=3, progress=False, implicit=True)
    available, content = check_files_match(out)
    by_tile = ids_by_tile(out, content)
    lod1 = {k for k in content if any((k[0] + 1, 2 * k[1] + dx, 2 * k[2] + dy) in content
                                      for dx in (0, 1) for dy in (0, 1))}
    lod2 = content - lod1
    assert len(lod1) > 1
    every = sorted(i for k in lod1 for i in by_tile[k])
    assert every == sorted(i for k in lod2 for i in by_tile[k]) and len(every) == len(set(every)) == report.buildings
    for level, x, y in lod1:  # the children hold exactly the parent's buildings, in their quarter
        children = [(level + 1, 2 * x + dx, 2 * y + dy) for dx in (0, 1) for dy in (0, 1)]
        assert sorted(by_tile[(level, x, y)]) == sorted(i for c in children if c in content for i in by_tile[c])
        assert all(c not in available or c in content for c in children)  # no empty tile between the LODs
        assert len(by_tile[(level, x, y)]) <= 3
    ts = json.loads((out / "tileset.json").read_text())
    assert ts["root"]["refine"] == "REPLACE"


# -- the option in the catalog, the build and the server --------------------------------------

@pytest.fixture(scope="module")
def implicit_city(implicit_sample_city: Path) -> Path:
    return implicit_sample_city


def entry(project: Path) -> dict:
    return yaml.safe_load((project / "citytwin.yaml").read_text(encoding="utf-8"))["layers"]["buildings"]


def is_implicit(project: Path) -> bool:
    root = json.loads((project / "build" / "3dtiles" / "buildings" / "tileset.json").read_text())["root"]
    return "implicitTiling" in root


def test_build_keeps_the_choice_in_the_catalog(implicit_city: Path, built_sample_city: Path, tmp_path: Path):
    # the sample city (5,768 buildings) is under the threshold: explicit unless asked
    assert "implicit" not in entry(built_sample_city) and not is_implicit(built_sample_city)
    assert entry(implicit_city)["implicit"] is True and is_implicit(implicit_city)
    project = tmp_path / "city"
    shutil.copytree(implicit_city, project, symlinks=True)
    run_citytwin("build", "--project", str(project), "--layer", "buildings", "--skip-ingest")
    assert is_implicit(project)  # the next build follows the entry
    proc = run_citytwin("build", "--project", str(project), "--layer", "buildings", "--skip-ingest", "--no-implicit")
    assert "implicit: False (was True)" in proc.stdout
    assert entry(project)["implicit"] is False and not is_implicit(project)


def test_build_implicit_without_a_3d_layer_is_one_line_exit_2(built_sample_city: Path, tmp_path: Path):
    import subprocess
    import sys

    project = tmp_path / "city"
    shutil.copytree(built_sample_city, project, symlinks=True)
    before = (project / "citytwin.yaml").read_bytes()
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "build", "--project", str(project), "--layer", "gu",
                           "--skip-ingest", "--implicit"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: --implicit: no layer of kind buildings or city_model to build in {project.resolve() / 'citytwin.yaml'}; "
        "name one with --layer"]
    assert (project / "citytwin.yaml").read_bytes() == before


@pytest.fixture(scope="module")
def server(implicit_city: Path) -> Iterator[str]:
    with serve(implicit_city) as url:
        yield url


def test_server_resolves_the_templates(server: str, implicit_city: Path):
    base = f"{server}/collections/buildings/3dtiles"
    ts = httpx.get(f"{base}/tileset.json").json()
    root = ts["root"]
    folder = implicit_city / "build" / "3dtiles" / "buildings"
    available, content, *_ = walk(folder)
    sub = httpx.get(f"{base}/{root['implicitTiling']['subtrees']['uri'].format(level=0, x=0, y=0)}")
    assert sub.status_code == 200 and sub.headers["content-type"] == "application/octet-stream"
    assert sub.content == (folder / "subtrees/0/0/0.subtree").read_bytes()
    for level, x, y in sorted(content)[:5]:
        r = httpx.get(f"{base}/{root['content']['uri'].format(level=level, x=x, y=y)}")
        assert r.status_code == 200 and r.headers["content-type"] == "model/gltf-binary"
        assert r.content == content_path(folder, (level, x, y)).read_bytes()
    missing = httpx.get(f"{base}/subtrees/40/0/0.subtree")
    assert missing.status_code == 404
