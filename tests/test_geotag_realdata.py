"""Evidence: the real KTO tourism POIs placed by their address alone, against the real Seoul boundaries.

The truth is each row's own coordinates: the gu and the legal dong that contain them (a
geopandas sjoin here, not the geocoder). The geocoder never sees those coordinates
(--ignore-coordinates). Figures are printed (run with -s to see them).
"""
from __future__ import annotations

import re
from collections import Counter

import geopandas as gpd
import pandas as pd
import pyogrio
import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.project import init_project
from shared_data import SHARED_DATA

SEOUL = SHARED_DATA / "seoul"
KTO = SEOUL / "kto_tourism_pois_a.csv"
# an address that names a place finer than the gu: a road + number, a lot, or a dong/ga word (also in "(...)")
FINER_THAN_GU = re.compile(r"[가-힣0-9]+(?:로|길)\s*(?:지하\s*)?\d|[가-힣][가-힣0-9]*(?:동|가)(?=[\s),]|$)")

pytestmark = pytest.mark.realdata("seoul")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def geotagged(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    project = root / "seoul"
    init_project(project)
    for layer, f in (("gu", "seoul_municipalities_geo.json"), ("legal_dong", "seoul_neighborhoods_geo_simple.json"),
                     ("admin_dong", "seoul_submunicipalities_geo_simple.json")):
        res = run("ingest", SEOUL / f, "--layer", layer, "--kind", "boundaries", "--project", project)
        assert res.exit_code == 0, res.output
    out = root / "kto.gpkg"
    res = run("geotag", KTO, "--address-column", "address", "--ignore-coordinates", "--out", out, "--project", project)
    assert res.exit_code == 0, res.output
    print("\n" + res.output)
    return out, res.output


def test_address_alone_places_rows_in_the_right_gu_and_dong(geotagged):
    out, output = geotagged
    src = pd.read_csv(KTO, dtype=str)
    got = pyogrio.read_dataframe(out)
    assert len(got) == len(src) == 145  # every row kept, matched or not
    assert got["address"].tolist() == src["address"].tolist()
    assert (got.position_source.dropna() == "geocoded").all()

    gu = gpd.read_file(SEOUL / "seoul_municipalities_geo.json")[["SIG_KOR_NM", "geometry"]]
    dong = gpd.read_file(SEOUL / "seoul_neighborhoods_geo_simple.json")[["EMD_CD", "geometry"]]

    def where(points: gpd.GeoDataFrame) -> pd.DataFrame:
        g = gpd.sjoin(points, gu, how="left", predicate="within")
        g = g[~g.index.duplicated()]
        d = gpd.sjoin(points, dong, how="left", predicate="within")
        d = d[~d.index.duplicated()]
        return pd.DataFrame({"gu": g.SIG_KOR_NM, "dong": d.EMD_CD})

    truth = where(gpd.GeoDataFrame(geometry=gpd.points_from_xy(src.lon.astype(float), src.lat.astype(float)), crs=4326))
    placed = where(gpd.GeoDataFrame(geometry=got.geometry.set_crs(4326, allow_override=True), crs=4326))
    gu_ok = (truth.gu == placed.gu) & truth.gu.notna()
    dong_ok = (truth.dong == placed.dong) & truth.dong.notna()

    in_seoul = src.address.str.contains("서울")  # the address names Seoul
    locating = in_seoul & src.address.map(lambda a: bool(FINER_THAN_GU.search(a)))
    figures = {}
    for label, rows in (("address names Seoul", in_seoul), ("... and names a place below the gu", locating)):
        n = int(rows.sum())
        figures[label] = (n, gu_ok[rows].mean(), dong_ok[rows].mean())
        print(f"{label}: {n} rows, right gu {gu_ok[rows].sum()}/{n} = {gu_ok[rows].mean():.1%}, "
              f"right dong {dong_ok[rows].sum()}/{n} = {dong_ok[rows].mean():.1%}")
    flags = Counter(f for v in got.address_flags.dropna() for f in v.split(","))
    print(f"tiers {dict(Counter(got.geocode_tier))}; flags {dict(flags)}")

    n_all, gu_all, dong_all = figures["address names Seoul"]
    n_loc, gu_loc, dong_loc = figures["... and names a place below the gu"]
    assert n_all == 145 and n_loc >= 130
    # the targets, over rows whose address locates a place (an office address naming only the
    # gu cannot be placed by any address geocoder: its records sit all over Seoul)
    assert gu_loc >= 0.95 and dong_loc >= 0.85
    # over every row that names Seoul, what is reached today (below the 95 % gu target, see above)
    assert gu_all >= 0.88 and dong_all >= 0.85

    # the rows that fail the test's own "locates a place" rule are all flagged by the pipeline
    not_locating = in_seoul & ~locating
    assert got.address_flags[not_locating.to_numpy()].notna().all()
    # and messy rows are detected, not deleted
    assert flags["range"] >= 2 and flags["vague_area"] >= 4 and flags["office_address"] >= 1


def test_reports_next_to_out(geotagged):
    out, output = geotagged
    unmatched = pd.read_csv(out.with_suffix("").as_posix() + ".unmatched.csv", dtype=str)
    got = pyogrio.read_dataframe(out)
    assert len(unmatched) == int((got.geocode_tier == "none").sum())
    dis = pd.read_csv(out.with_suffix("").as_posix() + ".disagreements.csv", dtype=str)
    assert len(dis) == int((got.coord_check == "disagrees").sum()) == 0  # no record coordinates were used
    counts = Counter(got.geocode_tier)
    for tier, n in counts.items():
        assert f"{tier} {n}" in output
