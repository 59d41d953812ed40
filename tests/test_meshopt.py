"""EXT_meshopt_compression: what we write decodes to the uncompressed mesh, validates, is
smaller, and the choice is kept by the commands that write 3D Tiles."""
from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from click.testing import CliRunner
from gltf_read import accessor, iter_content, property_strings, split_glb
from pyproj import Transformer
from shapely.geometry import Polygon
from validators import gltf_validate

from pipelines.cli import main
from pipelines.export3d import footprints_to_tileset, models_to_tileset
from shared_data import SHARED_DATA as SHARED

PLATEAU = SHARED / "citygml" / "plateau_yokosuka_52397519_bldg_6697_op.gml"
ROTTERDAM = SHARED / "cityjson" / "rotterdam_subset.city.json"
EXT = "EXT_meshopt_compression"
TO_LL = Transformer.from_crs(5186, 4326, always_xy=True)


@pytest.fixture(scope="module")
def footprints() -> gpd.GeoDataFrame:
    rng = np.random.default_rng(11)
    x0, y0 = 198_000.0, 552_000.0  # central Seoul in EPSG:5186
    geoms, heights = [], []
    for i in range(240):
        x, y = x0 + (i % 16) * 35, y0 + (i // 16) * 35
        w, h = rng.uniform(8, 25, 2)
        ring = [(x, y), (x + w, y), (x + w * 0.6, y + h), (x, y + h * 1.2)]  # not a box: slanted walls
        geoms.append(Polygon([TO_LL.transform(px, py) for px, py in ring]))
        heights.append(float(rng.uniform(5, 90)))
    return gpd.GeoDataFrame({"id": [f"b{i}" for i in range(240)], "height": heights}, geometry=geoms, crs=4326)


def pairs(compressed: Path, plain: Path):
    """(gltf, blob) of the same tile in both tilesets; the tile trees are the same."""
    a, b = list(iter_content(compressed)), list(iter_content(plain))
    assert [t["content"]["uri"] for t, _, _ in a] == [t["content"]["uri"] for t, _, _ in b] and a
    for (_, pa, _), (_, pb, _) in zip(a, b):
        yield split_glb(pa.read_bytes()), split_glb(pb.read_bytes())


def triangles(gltf: dict, blob: bytes) -> dict[str, np.ndarray]:
    """Each triangle's corners (positions in the node's frame, normals, feature id), rotated so
    its smallest corner comes first: the codecs may reorder triangles and rotate them, but a
    triangle's corners and their winding must survive."""
    prim = gltf["meshes"][0]["primitives"][0]
    node = gltf["nodes"][0]
    pos = accessor(gltf, blob, prim["attributes"]["POSITION"]) * node["scale"][0] + node["translation"]
    nrm = accessor(gltf, blob, prim["attributes"]["NORMAL"])
    fid = accessor(gltf, blob, prim["attributes"]["_FEATURE_ID_0"])
    tri = accessor(gltf, blob, prim["indices"]).astype(int).reshape(-1, 3)
    corners = pos[tri]  # (m, 3, 3)
    _, rank = np.unique(np.round(corners, 3).reshape(-1, 3), axis=0, return_inverse=True)
    first = np.argmin(rank.reshape(-1, 3), axis=1)  # the lexicographically smallest corner
    rolled = (first[:, None] + np.arange(3)) % 3
    rows = np.arange(len(tri))[:, None]
    tri = tri[rows, rolled]
    order = np.lexsort(np.round(pos[tri].reshape(len(tri), 9), 3).T[::-1])
    tri = tri[order]
    return {"positions": pos[tri], "normals": nrm[tri], "fid": fid[tri], "step": node["scale"][0] / 32767}


def assert_same_mesh(compressed: tuple[dict, bytes], plain: tuple[dict, bytes]) -> None:
    a, b = triangles(*compressed), triangles(*plain)
    assert a["positions"].shape == b["positions"].shape
    # positions: the same int16 grid both ways, so equal to a fraction of one quantization step
    assert np.abs(a["positions"] - b["positions"]).max() <= 1e-6 + a["step"] * 1e-3
    assert np.array_equal(a["fid"], b["fid"])
    # normals: 8-bit octahedral; unit vectors within 2 degrees of the 16-bit ones
    na = a["normals"] / np.linalg.norm(a["normals"], axis=-1, keepdims=True)
    nb = b["normals"] / np.linalg.norm(b["normals"], axis=-1, keepdims=True)
    assert np.degrees(np.arccos(np.clip((na * nb).sum(-1), -1, 1))).max() < 2.0


def assert_meshopt_layout(gltf: dict) -> None:
    """What the extension asks of a file whose fallback buffer has no data of its own."""
    assert EXT in gltf["extensionsUsed"] and EXT in gltf["extensionsRequired"]
    assert "KHR_mesh_quantization" in gltf["extensionsRequired"]
    main_buffer, fallback = gltf["buffers"]
    assert "uri" not in main_buffer and "uri" not in fallback
    assert fallback["extensions"][EXT] == {"fallback": True}
    prim = gltf["meshes"][0]["primitives"][0]
    modes = {}
    for name, index in [*prim["attributes"].items(), ("indices", prim["indices"])]:
        view = gltf["bufferViews"][gltf["accessors"][index]["bufferView"]]
        ext = view["extensions"][EXT]
        assert view["buffer"] == 1 and ext["buffer"] == 0
        assert view["byteLength"] == ext["count"] * ext["byteStride"]
        assert ext["byteStride"] % (4 if ext["mode"] == "ATTRIBUTES" else 2) == 0
        modes[name] = (ext["mode"], ext.get("filter"))
    assert modes == {"POSITION": ("ATTRIBUTES", None), "NORMAL": ("ATTRIBUTES", "OCTAHEDRAL"),
                     "_FEATURE_ID_0": ("ATTRIBUTES", None), "indices": ("TRIANGLES", None)}
    # the metadata stays plain in the GLB's own buffer
    table = gltf["extensions"]["EXT_structural_metadata"]["propertyTables"][0]
    for prop in table["properties"].values():
        assert gltf["bufferViews"][prop["values"]]["buffer"] == 0
    assert prim["extensions"]["EXT_mesh_features"]["featureIds"][0]["attribute"] == 0


def content_bytes(out: Path) -> int:
    return sum(p.stat().st_size for _, p, _ in iter_content(out))


def test_lod1_decodes_to_the_uncompressed_mesh_and_is_smaller(footprints, tmp_path: Path):
    packed = footprints_to_tileset(footprints, tmp_path / "m", source="b", progress=False, max_per_tile=60)
    plain = footprints_to_tileset(footprints, tmp_path / "p", source="b", progress=False, max_per_tile=60,
                                  compress=False)
    assert packed.buildings == plain.buildings == 240
    ids = []
    for (ga, ba), (gb, bb) in pairs(tmp_path / "m", tmp_path / "p"):
        assert_meshopt_layout(ga)
        assert EXT not in gb.get("extensionsUsed", []) and len(gb["buffers"]) == 1
        assert_same_mesh((ga, ba), (gb, bb))
        ids += property_strings(ga, ba, "id")
        assert property_strings(ga, ba, "id") == property_strings(gb, bb, "id")
    assert sorted(ids) == sorted(footprints["id"])
    assert content_bytes(tmp_path / "m") <= 0.5 * content_bytes(tmp_path / "p")


@pytest.mark.realdata
@pytest.mark.parametrize("src, crs", [(PLATEAU, None), (ROTTERDAM, "EPSG:7415")])
def test_lod2_decodes_to_the_uncompressed_mesh(src: Path, crs: str | None, tmp_path: Path):
    models_to_tileset([src], tmp_path / "m", crs=crs, progress=False)
    models_to_tileset([src], tmp_path / "p", crs=crs, progress=False, compress=False)
    for (ga, ba), (gb, bb) in pairs(tmp_path / "m", tmp_path / "p"):
        assert_meshopt_layout(ga)
        assert_same_mesh((ga, ba), (gb, bb))
        assert property_strings(ga, ba, "id") == property_strings(gb, bb, "id")
    assert content_bytes(tmp_path / "m") < content_bytes(tmp_path / "p")


@pytest.mark.realdata
def test_meshopt_glbs_pass_khronos_validator(footprints, tmp_path: Path):
    footprints_to_tileset(footprints, tmp_path / "lod1", source="b", progress=False, max_per_tile=60)
    models_to_tileset([PLATEAU], tmp_path / "lod2", progress=False)
    files = [p for out in ("lod1", "lod2") for _, p, _ in iter_content(tmp_path / out)]
    assert all(EXT in split_glb(p.read_bytes())[0]["extensionsRequired"] for p in files)
    reports = gltf_validate(files)
    assert [r["numErrors"] for r in reports] == [0] * len(files), reports


def compressed(out: Path) -> set[bool]:
    return {EXT in split_glb(p.read_bytes())[0].get("extensionsUsed", []) for _, p, _ in iter_content(out)}


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.realdata
def test_export_flag_and_b3dm(tmp_path: Path):
    cli("export-3dtiles", str(PLATEAU), "--out", str(tmp_path / "on"))
    cli("export-3dtiles", str(PLATEAU), "--no-meshopt", "--out", str(tmp_path / "off"))
    assert compressed(tmp_path / "on") == {True} and compressed(tmp_path / "off") == {False}
    cli("export-3dtiles", str(PLATEAU), "--implicit", "--out", str(tmp_path / "ion"))
    cli("export-3dtiles", str(PLATEAU), "--implicit", "--no-meshopt", "--out", str(tmp_path / "ioff"))
    implicit_glbs = {out: [split_glb(p.read_bytes())[0] for p in (tmp_path / out).rglob("*.glb")]
                     for out in ("ion", "ioff")}
    assert implicit_glbs["ion"] and all(EXT in g["extensionsRequired"] for g in implicit_glbs["ion"])
    assert implicit_glbs["ioff"] and not any(EXT in g.get("extensionsUsed", []) for g in implicit_glbs["ioff"])
    cli("export-3dtiles", str(PLATEAU), "--b3dm", "--out", str(tmp_path / "b3dm"))  # older clients: plain
    glbs = [p.read_bytes() for p in (tmp_path / "b3dm").rglob("*.b3dm")]
    assert glbs and not any(EXT.encode() in data for data in glbs)


@pytest.mark.realdata
def test_build_keeps_the_choice_in_the_catalog(tmp_path: Path):
    catalog = tmp_path / "citytwin.yaml"
    catalog.write_text(f"layers:\n  plateau:\n    kind: city_model  # Yokosuka\n    source: {PLATEAU}\n")
    out = tmp_path / "build" / "3dtiles" / "plateau"
    cli("build", "--project", str(tmp_path))
    assert compressed(out) == {True} and "meshopt" not in catalog.read_text()
    cli("build", "--project", str(tmp_path), "--no-meshopt")
    assert compressed(out) == {False} and "meshopt: false" in catalog.read_text()
    assert "# Yokosuka" in catalog.read_text()
    cli("build", "--project", str(tmp_path))  # the next build keeps it
    assert compressed(out) == {False}
    cli("build", "--project", str(tmp_path), "--meshopt")
    assert compressed(out) == {True} and "meshopt: true" in catalog.read_text()


def test_tile_over_65535_vertices_uses_32_bit_indices(tmp_path: Path):
    """A big tile: the TRIANGLES stream decodes to 4-byte indices, still equal and valid."""
    from tiles.threed.glb import TileMesh, write_glb

    nx, ny = 300, 240  # 72,000 vertices on a wavy sheet, one feature per row
    x, y = np.meshgrid(np.arange(nx, dtype=float), np.arange(ny, dtype=float))
    z = np.sin(x / 7) * np.cos(y / 5) * 3
    positions = np.column_stack([x.ravel(), y.ravel(), z.ravel()])
    corner = (np.arange(ny - 1)[:, None] * nx + np.arange(nx - 1)[None, :]).ravel()
    quads = np.column_stack([corner, corner + 1, corner + nx + 1, corner, corner + nx + 1, corner + nx])
    mesh = TileMesh(positions, np.tile([0.0, 0.0, 1.0], (len(positions), 1)), np.repeat(np.arange(ny), nx),
                    quads.ravel().astype(np.uint32), ny)
    props = {"id": ("STRING", [f"row{i}" for i in range(ny)])}
    packed, plain = write_glb(mesh, props, compress=True), write_glb(mesh, props)
    ga, ba = split_glb(packed)
    gb, bb = split_glb(plain)
    assert_meshopt_layout(ga)
    index_view = ga["bufferViews"][ga["accessors"][ga["meshes"][0]["primitives"][0]["indices"]]["bufferView"]]
    assert index_view["extensions"][EXT]["byteStride"] == 4
    assert_same_mesh((ga, ba), (gb, bb))
    assert len(packed) < len(plain) / 4
    (tmp_path / "big.glb").write_bytes(packed)
    assert gltf_validate([tmp_path / "big.glb"])[0]["numErrors"] == 0
