"""A raster in a Bessel grid without datum shift is refused like a vector source (real CLI).

``citytwin raster`` and ``citytwin build`` refuse it (exit 2, one line naming the file, the
EPSG codes to declare and the way to keep it anyway); ``--crs EPSG:5174`` or
``--accept-source-crs`` go into the layer's catalog entry and the next build follows them.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import rasterio
import yaml
from click.testing import CliRunner
from pyproj import CRS, Transformer
from rasterio.transform import from_origin

from pipelines.cli import main

# the Korean 1985 Modified Central Belt grid written without its datum shift
SHIFTLESS = ("+proj=tmerc +lat_0=38 +lon_0=127.0028902777778 +k=1 +x_0=200000 +y_0=500000 +ellps=bessel "
             "+units=m +no_defs")
# the same grid with the published 7-parameter shift, written out independently of EPSG:5174
BESSEL_TRUTH = CRS.from_proj4(SHIFTLESS.replace("+units", "+towgs84=-115.80,474.99,674.11,1.16,-2.31,-1.63,6.43 +units"))


def run(*args) -> tuple[int, str]:
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return res.exit_code, res.output


def write_depth(path: Path) -> None:
    x, y = Transformer.from_crs(4326, BESSEL_TRUTH, always_xy=True).transform(126.9779, 37.5663)
    profile = {"driver": "GTiff", "width": 64, "height": 64, "count": 1, "dtype": "float32",
               "crs": rasterio.crs.CRS.from_proj4(SHIFTLESS), "transform": from_origin(x, y, 5, 5), "nodata": -9999}
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(np.linspace(0, 3, 64 * 64, dtype="float32").reshape(64, 64), 1)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def entry(project: Path, name: str) -> dict:
    return yaml.safe_load((project / "citytwin.yaml").read_text(encoding="utf-8"))["layers"][name]


def test_raster_without_datum_shift_is_refused_and_nothing_is_written(tmp_path: Path):
    project = tmp_path / "proj"
    assert run("init", project)[0] == 0
    write_depth(project / "depth.tif")
    before = digest(project / "citytwin.yaml")
    code, out = run("raster", project / "depth.tif", "--name", "depth", "--project", project)
    assert code == 2, out
    line = out.strip().splitlines()[-1]
    assert line.startswith(f"error: {project / 'depth.tif'}: its CRS ") and "without a datum shift" in line, out
    assert "--crs EPSG:5174" in line and "--accept-source-crs" in line, out
    assert digest(project / "citytwin.yaml") == before
    assert not (project / "build" / "cog" / "depth.tif").exists()


def test_declared_grid_or_acceptance_goes_into_the_entry_and_the_build_follows(tmp_path: Path):
    project = tmp_path / "proj"
    assert run("init", project)[0] == 0
    write_depth(project / "depth.tif")
    cog = project / "build" / "cog" / "depth.tif"

    code, out = run("raster", project / "depth.tif", "--name", "depth", "--accept-source-crs", "--project", project)
    assert code == 0, out
    assert "warning: " in out and "has no datum shift and was kept as asked" in out, out
    assert entry(project, "depth") == {"kind": "raster", "source": "depth.tif", "accept_source_crs": True}
    code, out = run("build", "--project", project, "--layer", "depth")
    assert code == 0 and "has no datum shift and was kept as asked" in out, out

    code, out = run("raster", project / "depth.tif", "--name", "depth", "--crs", "EPSG:5174", "--project", project)
    assert code == 0, out
    assert entry(project, "depth") == {"kind": "raster", "source": "depth.tif", "crs": "EPSG:5174"}
    with rasterio.open(cog) as ds:
        assert CRS.from_wkt(ds.crs.to_wkt()).to_epsg() == 5174
        # the corner lands where the grid with its datum shift puts it (within a metre)
        corner = ds.xy(0, 0, offset="ul")
    truth = Transformer.from_crs(BESSEL_TRUTH, 4326, always_xy=True).transform(*corner)
    served = Transformer.from_crs(5174, 4326, always_xy=True).transform(*corner)
    assert abs(truth[0] - served[0]) < 1e-5 and abs(truth[1] - served[1]) < 1e-5

    # the same file in an entry that neither declares nor accepts: build refuses in catalog words
    text = (project / "citytwin.yaml").read_text(encoding="utf-8").replace("    crs: EPSG:5174\n", "")
    (project / "citytwin.yaml").write_text(text, encoding="utf-8")
    before = digest(cog)
    code, out = run("build", "--project", project, "--layer", "depth")
    assert code == 2, out
    line = out.strip().splitlines()[-1]
    assert line.startswith(f"error: layer 'depth' in {project / 'citytwin.yaml'}: ") and "crs: EPSG:5174" in line
    assert "accept_source_crs: true" in line, out
    assert digest(cog) == before
