"""Textures in 3D Tiles (``export-3dtiles --textures``): copies of the shared PLATEAU CityGML
and CityJSON files get small solid-colour JPEGs where their textures are named (the real
images are not shipped), one distinct colour per image. Each textured triangle must sample,
in its tile's atlas, the colour of an image that textures the source surface its corners
come from (found by parsing the sources here, not with the readers under test)."""
from __future__ import annotations

import io
import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from gltf_read import accessor, iter_content, split_glb
from lxml import etree
from PIL import Image
from pyproj import Transformer
from scipy.spatial import cKDTree
from validators import gltf_validate

from pipelines.cli import main
from shared_data import SHARED_DATA as SHARED

PLATEAU = SHARED / "citygml" / "plateau_yokosuka_52397519_bldg_6697_op.gml"
ROTTERDAM = SHARED / "cityjson" / "rotterdam_subset.city.json"
LEVELS = (0, 64, 128, 192, 255)
PALETTE = np.array([(r, g, b) for r in LEVELS for g in LEVELS for b in LEVELS][1:], dtype=float)  # no black
MATCH_M = 0.05  # int16 positions over a tile of some 100 m: a few mm off


def run(*args: str) -> tuple[int, str]:
    """The command's exit code and output (stdout and stderr); an uncaught exception fails."""
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def write_images(folder: Path, names: list[str]) -> dict[str, np.ndarray]:
    """One solid-colour JPEG per image name; the colour of each."""
    colours = {}
    for k, name in enumerate(sorted(set(names))):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        colours[name] = PALETTE[k * 7 % len(PALETTE)]
        Image.new("RGB", (40 + k % 5 * 9, 30 + k % 3 * 11), tuple(int(c) for c in colours[name])).save(path, "JPEG")
    return colours


# -- what the sources say, parsed here -------------------------------------------------------

def gml_textured_points(path: Path) -> dict[str, np.ndarray]:
    """Per image: the ECEF points of the rings it textures (lat-first EPSG:6697 + height)."""
    tree = etree.parse(str(path))
    ns = {"gml": "http://www.opengis.net/gml", "app": "http://www.opengis.net/citygml/appearance/2.0"}
    pos = {r.get("{http://www.opengis.net/gml}id"): r.findtext("gml:posList", namespaces=ns)
           for r in tree.iterfind(".//gml:LinearRing", ns)}
    to_ecef = Transformer.from_crs("EPSG:6697", "EPSG:4978", always_xy=True)
    out: dict[str, list] = {}
    for tex in tree.iterfind(".//app:ParameterizedTexture", ns):
        image = tex.findtext("app:imageURI", namespaces=ns)
        for coords in tex.iterfind(".//app:textureCoordinates", ns):
            xyz = np.array(pos[coords.get("ring").lstrip("#")].split(), dtype=float).reshape(-1, 3)
            out.setdefault(image, []).append(np.column_stack(to_ecef.transform(xyz[:, 1], xyz[:, 0], xyz[:, 2])))
    return {k: np.vstack(v) for k, v in out.items()}


def cityjson_textured_points(path: Path) -> dict[str, np.ndarray]:
    """Per image: the ECEF points of the surfaces it textures (MultiSurface, RD New + NAP)."""
    data = json.loads(path.read_text())
    verts = np.array(data["vertices"], dtype=float) * data["transform"]["scale"] + data["transform"]["translate"]
    to_ecef = Transformer.from_crs("EPSG:7415", "EPSG:4978", always_xy=True)
    ecef = np.column_stack(to_ecef.transform(verts[:, 0], verts[:, 1], verts[:, 2]))
    images = [t["image"] for t in data["appearance"]["textures"]]
    out: dict[str, list] = {}
    for obj in data["CityObjects"].values():
        for g in obj.get("geometry", []):
            assert g["type"] == "MultiSurface"
            values = next(iter(g.get("texture", {}).values()), {}).get("values", [])
            for surface, tex in zip(g["boundaries"], values):
                if tex[0][0] is not None:
                    out.setdefault(images[tex[0][0]], []).append(ecef[[i for ring in surface for i in ring]])
    return {k: np.vstack(v) for k, v in out.items()}


# -- what the tiles say ----------------------------------------------------------------------

def textured_triangles(out: Path):
    """Per content file: its gltf, and for each triangle of the textured primitive the ECEF
    corners and the atlas colour at the triangle's centre in texture space."""
    for _, path, matrix in iter_content(out):
        gltf, blob = split_glb(path.read_bytes())
        prims = gltf["meshes"][0]["primitives"]
        textured = [p for p in prims if p["material"] == 1]
        if not textured:
            assert "images" not in gltf
            continue
        (prim,) = textured
        node = gltf["nodes"][0]
        local = accessor(gltf, blob, prim["attributes"]["POSITION"]) * node["scale"] + node["translation"]
        uv = accessor(gltf, blob, prim["attributes"]["TEXCOORD_0"])
        tri = accessor(gltf, blob, prim["indices"]).astype(int).reshape(-1, 3)
        y_up_to_tile = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=float)  # glTF y-up -> 3D Tiles z-up
        ecef = (np.column_stack([local @ y_up_to_tile.T, np.ones(len(local))]) @ matrix.T)[:, :3]
        view = gltf["bufferViews"][gltf["images"][0]["bufferView"]]
        atlas = np.asarray(Image.open(io.BytesIO(blob[view["byteOffset"]:view["byteOffset"] + view["byteLength"]])))
        centre = uv[tri].mean(axis=1)
        h, w = atlas.shape[:2]
        rows = np.minimum((centre[:, 1] * h).astype(int), h - 1)
        colour = atlas[rows, np.minimum((centre[:, 0] * w).astype(int), w - 1)]
        yield gltf, uv, ecef[tri], colour.astype(float)


def check_textured(out: Path, expected: dict[str, np.ndarray], colours: dict[str, np.ndarray]) -> int:
    """Every textured triangle samples the colour of an image that textures all its corners
    in the source; returns how many textured triangles there are."""
    trees = {name: cKDTree(points) for name, points in expected.items()}
    palette = np.array([colours[n] for n in expected])
    names = list(expected)
    count = 0
    for gltf, uv, corners, colour in textured_triangles(out):
        assert gltf["samplers"] and gltf["textures"] == [{"sampler": 0, "source": 0}]
        assert gltf["images"][0]["mimeType"] == "image/jpeg"
        assert ((uv >= 0) & (uv <= 1)).all()
        nearest = np.linalg.norm(colour[:, None, :] - palette[None, :, :], axis=2)
        assert nearest.min(axis=1).max() < 24, "a triangle samples a colour that is no image's"
        which = nearest.argmin(axis=1)
        for k, name in enumerate(names):
            sel = which == k
            if sel.any():
                dist, _ = trees[name].query(corners[sel].reshape(-1, 3))
                assert dist.max() < MATCH_M, f"triangles coloured like {name} have corners its surfaces lack"
        count += len(corners)
    return count


@pytest.fixture()
def plateau(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    src = tmp_path / "plateau" / PLATEAU.name
    src.parent.mkdir()
    shutil.copy(PLATEAU, src)
    names = [t.text for t in etree.parse(str(src)).iter("{*}imageURI")]
    return src, write_images(src.parent, names)


@pytest.fixture()
def rotterdam(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    src = tmp_path / "rotterdam" / ROTTERDAM.name
    src.parent.mkdir()
    shutil.copy(ROTTERDAM, src)
    names = [t["image"] for t in json.loads(src.read_text())["appearance"]["textures"]]
    return src, write_images(src.parent, names)


@pytest.mark.realdata
@pytest.mark.parametrize("meshopt", ["--meshopt", "--no-meshopt"])
def test_plateau_textures_sample_their_surfaces_images(plateau, meshopt: str, tmp_path: Path):
    src, colours = plateau
    code, output = run("export-3dtiles", str(src), "--textures", meshopt, "--out", str(tmp_path / "out"))
    assert code == 0, output
    triangles = check_textured(tmp_path / "out", gml_textured_points(src), colours)
    assert triangles > 300  # 335 textured polygons, each at least one triangle
    files = [p for _, p, _ in iter_content(tmp_path / "out")]
    gltfs = [split_glb(p.read_bytes())[0] for p in files]
    assert all(("EXT_meshopt_compression" in g["extensionsUsed"]) == (meshopt == "--meshopt") for g in gltfs)
    assert [r["numErrors"] for r in gltf_validate(files)] == [0] * len(files)


@pytest.mark.realdata
def test_cityjson_textures_sample_their_surfaces_images(rotterdam, tmp_path: Path):
    src, colours = rotterdam
    code, output = run("export-3dtiles", str(src), "--crs", "EPSG:7415", "--textures", "--out", str(tmp_path / "out"))
    assert code == 0, output
    expected = cityjson_textured_points(src)
    assert len(expected) > 50
    assert check_textured(tmp_path / "out", expected, colours) > 200
    files = [p for _, p, _ in iter_content(tmp_path / "out")]
    assert [r["numErrors"] for r in gltf_validate(files)] == [0] * len(files)


@pytest.mark.realdata
def test_without_the_flag_nothing_changes(plateau, tmp_path: Path):
    """Without --textures the output has no texture and is the same bytes as with the flag but
    no image on disk (the untextured path writes what it always wrote)."""
    src, _ = plateau
    assert run("export-3dtiles", str(src), "--out", str(tmp_path / "plain"))[0] == 0
    shutil.rmtree(src.parent / "52397519_bldg_6697_appearance")
    code, output = run("export-3dtiles", str(src), "--textures", "--out", str(tmp_path / "none"))
    assert code == 0
    files = sorted(p.relative_to(tmp_path / "plain") for p in (tmp_path / "plain").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "none") for p in (tmp_path / "none").rglob("*") if p.is_file())
    for f in files:
        assert (tmp_path / "plain" / f).read_bytes() == (tmp_path / "none" / f).read_bytes(), f
        if f.suffix == ".glb":
            gltf = split_glb((tmp_path / "plain" / f).read_bytes())[0]
            assert "images" not in gltf and len(gltf["meshes"][0]["primitives"]) == 1


@pytest.mark.realdata
def test_missing_image_warns_and_leaves_its_surfaces_untextured(plateau, tmp_path: Path):
    src, colours = plateau
    gone = "52397519_bldg_6697_appearance/14201-bldg-158971-1.jpg"
    tree = etree.parse(str(src))
    surfaces = sum(len(t.findall(".//{*}textureCoordinates")) for t in tree.iter("{*}ParameterizedTexture")
                   if t.findtext("{*}imageURI") == gone)
    (src.parent / gone).unlink()
    code, output = run("export-3dtiles", str(src), "--textures", "--out", str(tmp_path / "out"))
    assert code == 0, output
    assert f"texture image '{gone}' is not there; {surfaces} surfaces left untextured" in output
    expected = gml_textured_points(src)
    del expected[gone]  # no triangle may sample its colour any more
    assert check_textured(tmp_path / "out", expected, colours) > 0


@pytest.mark.realdata
def test_image_paths_cannot_leave_the_model_folder(plateau, tmp_path: Path):
    """An absolute path, a '..' and a link out of the folder are not followed, though the
    files they name exist: their surfaces stay untextured, with a warning each."""
    src, colours = plateau
    secret = tmp_path / "secret.jpg"
    Image.new("RGB", (8, 8), (255, 255, 255)).save(secret)
    (src.parent / "link.jpg").symlink_to(secret)
    images = sorted(colours)
    text = src.read_text()
    for old, new in zip(images, (str(secret), "../secret.jpg", "link.jpg")):
        text = text.replace(f">{old}<", f">{new}<")
    src.write_text(text)
    code, output = run("export-3dtiles", str(src), "--textures", "--out", str(tmp_path / "out"))
    assert code == 0, output
    for name in (str(secret), "../secret.jpg", "link.jpg"):
        assert f"texture image '{name}' is outside the file's folder" in output
    assert not any("images" in split_glb(p.read_bytes())[0] for _, p, _ in iter_content(tmp_path / "out"))


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels (only its header is read before refusing)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


@pytest.mark.realdata
@pytest.mark.parametrize("size", [(9000, 9000), (60000, 60000)])  # over our bound; over Pillow's bomb limit too
def test_huge_image_is_refused_before_decoding(plateau, size: tuple[int, int], tmp_path: Path):
    src, colours = plateau
    name = sorted(colours)[0]
    (src.parent / name).write_bytes(png_header(*size))
    code, output = run("export-3dtiles", str(src), "--textures", "--out", str(tmp_path / "out"))
    assert code == 2, output
    assert f"texture image '{name}'" in output and "downscale it" in output and str(src) in output
    assert "Traceback" not in output and not (tmp_path / "out").exists()


@pytest.mark.realdata
def test_build_city_model_layer_with_textures(plateau, tmp_path: Path):
    src, colours = plateau
    (tmp_path / "citytwin.yaml").write_text(f"layers:\n  plateau:\n    kind: city_model\n    source: {src}\n"
                                            "    textures: true\n")
    code, output = run("build", "--project", str(tmp_path))
    assert code == 0, output
    assert check_textured(tmp_path / "build" / "3dtiles" / "plateau", gml_textured_points(src), colours) > 300


def test_atlas_keeps_each_image_upright_and_fits_the_bound(tmp_path: Path):
    """Texture coordinates have their origin at the image's lower left (CityGML, CityJSON), glTF's
    at the upper left: a (u, v) in an image's top half must sample that half's colour in the atlas,
    also when the images together are too big for one atlas and are scaled down to fit."""
    from tiles.threed.atlas import MAX_ATLAS_PX, with_atlas
    from tiles.threed.glb import TileMesh

    top = [(230, 20, 20), (20, 230, 20), (20, 20, 230)]
    bottom = [(230, 230, 20), (20, 230, 230), (230, 20, 230)]
    paths = []
    for k in range(3):  # 3 x 3000 x 2000 px: more than 4096 x 4096 holds
        pixels = np.zeros((2000, 3000, 3), dtype=np.uint8)
        pixels[:1000], pixels[1000:] = top[k], bottom[k]
        paths.append(str(tmp_path / f"{k}.jpg"))
        Image.fromarray(pixels).save(paths[-1])
    uv = np.array([[0.5, 0.75], [0.1, 0.6], [0.9, 0.25], [0.3, 0.05]] * 3 + [[0.5, 0.5]])
    image = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, -1])
    n = len(uv)
    mesh = TileMesh(np.zeros((n, 3)), np.tile([0.0, 0.0, 1.0], (n, 1)), np.zeros(n, dtype=np.int64),
                    np.arange(n - 1, dtype=np.uint32)[:12], 1, uv=uv, image=image)
    texture = with_atlas(mesh, paths).texture
    atlas = np.asarray(Image.open(io.BytesIO(texture.data)).convert("RGB")).astype(float)
    h, w = atlas.shape[:2]
    assert max(h, w) <= MAX_ATLAS_PX and texture.mime_type == "image/jpeg"
    assert texture.textured.tolist() == [True] * 12 + [False]
    sampled = atlas[(texture.uv[:12, 1] * h).astype(int), (texture.uv[:12, 0] * w).astype(int)]
    expected = [(top if v > 0.5 else bottom)[k] for k, v in zip(image[:12], uv[:12, 1])]
    assert np.abs(sampled - np.array(expected)).max() < 24, (sampled, expected)


@pytest.mark.realdata
def test_hostile_image_names_are_warned_about_not_followed(rotterdam, tmp_path: Path):
    """A NUL in the name, a name too long for the file system, a URL: warnings, no crash."""
    src, colours = rotterdam
    data = json.loads(src.read_text())
    names = ["a\u0000b.jpg", "x" * 5000 + ".jpg", "http://example.com/a.jpg"]
    for texture, name in zip(data["appearance"]["textures"], names):
        texture["image"] = name
    src.write_text(json.dumps(data))
    code, output = run("export-3dtiles", str(src), "--crs", "EPSG:7415", "--textures", "--out", str(tmp_path / "out"))
    assert code == 0, output
    assert "texture image 'a?b.jpg' is outside the file's folder" in output
    assert f"texture image '{'x' * 200}...' is not there" in output
    assert "texture image 'http://example.com/a.jpg' is outside the file's folder" in output


@pytest.mark.realdata
def test_texture_table_over_its_bound_is_refused(plateau, tmp_path: Path, monkeypatch):
    """The texture coordinates of a CityGML file stay in memory, so their count is bounded (the
    bound lowered here below the 335 rings of the PLATEAU file)."""
    from pipelines.readers import citygml_appearance

    monkeypatch.setattr(citygml_appearance, "MAX_TEXTURED_RINGS", 100)
    src, _ = plateau
    code, output = run("export-3dtiles", str(src), "--textures", "--out", str(tmp_path / "out"))
    assert code == 2 and output.count("\n") == 1, output
    assert f"error: {src}: holds over 100 textured rings" in output and "split the file" in output
    assert not (tmp_path / "out").exists()
