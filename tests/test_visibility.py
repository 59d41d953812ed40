"""geo.visibility, geo.i18n and geo.walking on constructed scenes.

ENU offsets are checked against pyproj's own geodetic -> ECEF (EPSG:4979 -> EPSG:4978) and
a rotation written here; occlusion against hand-computed sight lines and against a dense
brute-force sampling of each line over every block.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from pyproj import Transformer

from geo.i18n import LanguageError, fallback_chain, instruction, normalise_lang, pick_field, turn_kind
from geo.visibility import Blocks, Frustum, enu_offsets, look, occlusion
from geo.walking import StreetGraph

SEOUL = (126.9770, 37.5720, 38.0)
_ECEF = Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True)


def _enu_reference(origin, points: np.ndarray) -> np.ndarray:
    lon0, lat0, h0 = origin
    x0, y0, z0 = _ECEF.transform(lon0, lat0, h0)
    x, y, z = _ECEF.transform(points[:, 0], points[:, 1], points[:, 2])
    d = np.column_stack([x - x0, y - y0, z - z0])
    sl, cl = math.sin(math.radians(lon0)), math.cos(math.radians(lon0))
    sp, cp = math.sin(math.radians(lat0)), math.cos(math.radians(lat0))
    east = d[:, 0] * -sl + d[:, 1] * cl
    north = d[:, 0] * (-sp * cl) + d[:, 1] * (-sp * sl) + d[:, 2] * cp
    up = d[:, 0] * (cp * cl) + d[:, 1] * (cp * sl) + d[:, 2] * sp
    return np.column_stack([east, north, up])


def test_enu_matches_pyproj_ecef_within_a_centimetre():
    rng = np.random.default_rng(1)
    pts = np.column_stack([SEOUL[0] + rng.uniform(-0.03, 0.03, 500), SEOUL[1] + rng.uniform(-0.03, 0.03, 500),
                           rng.uniform(-20, 500, 500)])
    got = enu_offsets(SEOUL, pts)
    want = _enu_reference(SEOUL, pts)
    assert np.abs(got - want).max() < 0.01
    # A point 1 km due north at the same height: north ~1 km, up slightly negative (the Earth curves away).
    north = enu_offsets(SEOUL, np.array([[SEOUL[0], SEOUL[1] + 1000 / 110_996.0, SEOUL[2]]]))[0]
    assert abs(north[0]) < 0.01 and abs(north[1] - 1000) < 1.0 and -0.2 < north[2] < -0.05


def test_bearing_and_elevation():
    where = look(np.array([[100.0, 0, 0], [0, -50, 0], [0, 100, 100], [-30, -30, -30 * math.sqrt(2)]]))
    assert np.allclose(where.bearing_deg, [90, 180, 0, 225])
    assert np.allclose(where.elevation_deg, [0, 0, 45, -45])
    assert np.allclose(where.distance_m, [100, 50, 100 * math.sqrt(2), 60])


def test_frustum_sides_pitch_and_far_plane():
    f = Frustum(heading_deg=90, pitch_deg=0, hfov_deg=60, vfov_deg=60, far_m=500)
    def at(bearing, elev, dist):
        b, e = math.radians(bearing), math.radians(elev)
        return [dist * math.cos(e) * math.sin(b), dist * math.cos(e) * math.cos(b), dist * math.sin(e)]
    pts = np.array([at(90, 0, 100), at(115, 0, 100), at(125, 0, 100), at(270, 0, 100), at(90, 25, 100),
                    at(90, 35, 100), at(90, 0, 499), at(90, 0, 501)])
    assert f.contains(pts).tolist() == [True, True, False, False, True, False, True, False]
    tilted = Frustum(heading_deg=90, pitch_deg=30, hfov_deg=60, vfov_deg=60, far_m=500)
    assert tilted.contains(np.array([at(90, 35, 100), at(90, -5, 100)])).tolist() == [True, False]
    # The drawn corners lie on the frustum's edges: just inside when pulled 1% towards the axis.
    fwd = np.array(at(90, 0, 1))
    corners = f.corners() * 100
    assert f.contains(corners * 0.99 + fwd * 1.0).all()


def _box(x0, y0, x1, y1):
    return shapely.box(x0, y0, x1, y1)


@pytest.fixture()
def scene() -> Blocks:
    court = shapely.Polygon([(200, 0), (260, 0), (260, 60), (200, 60)], [[(210, 10), (250, 10), (250, 50), (210, 50)]])
    footprints = [
        _box(-10, 90, 10, 110),  # 0: tower north of the device, 30 m
        _box(90, 90, 110, 110),  # 1: raised block (a bridge deck) from 10 to 20 m
        court,  # 2: courtyard building 12 m with a 40x40 m yard
        _box(-5, -5, 5, 5),  # 3: the block the device stands in, 50 m
    ]
    return Blocks.build(np.array(footprints, dtype=object), np.array([0, 10, 0, 0.0]),
                        np.array([30, 20, 12, 50.0]))


def test_occlusion_on_a_constructed_scene(scene):
    start = np.array([0, 0, 1.6])
    ends = np.array([
        [0, 200, 0],  # behind the tower: hidden
        [100, -40, 0],  # clear view to the south-east
        [0, 200, 100],  # high enough for the line to pass over the roof
        [0, 100, 30],  # on the tower's own roof: the tower does not hide it
        [200, 200, 1.6],  # line at 1.6 m passes under the raised block (10-20 m)
        [200, 200, 20],  # line rises into the raised block
        [230, 30, 0],  # in the courtyard: the walls hide it
        [-100, 0, 0],  # west: only the device's own block is in the way
    ])
    occ = occlusion(scene, start, ends)
    assert occ.occluded.tolist() == [True, False, False, False, False, True, True, False]
    assert occ.blocker.tolist() == [0, -1, -1, -1, -1, 1, 2, -1]
    # Hand check of case 2 and 5: the line height where it crosses the footprints.
    t_in, t_out = 90 / 200, 110 / 200
    assert 1.6 + t_in * (100 - 1.6) > 30 and 1.6 + t_out * (100 - 1.6) > 30
    t_in = 90 / 200
    assert 1.6 + t_in * (20 - 1.6) < 20 and 1.6 + (110 / 200) * (20 - 1.6) > 10


def test_occlusion_agrees_with_dense_sampling():
    rng = np.random.default_rng(7)
    n = 120
    cx, cy = rng.uniform(-400, 400, n), rng.uniform(-400, 400, n)
    w, h = rng.uniform(6, 40, n), rng.uniform(6, 40, n)
    polys = shapely.box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    base = np.where(rng.random(n) < 0.1, rng.uniform(5, 15, n), 0.0)
    top = base + rng.uniform(3, 80, n)
    blocks = Blocks.build(polys, base, top)
    start = np.array([3.0, -7.0, 25.0])
    m = 400
    ends = np.column_stack([rng.uniform(-450, 450, m), rng.uniform(-450, 450, m), rng.uniform(0, 120, m)])
    got = occlusion(blocks, start, ends).occluded

    t = np.linspace(0, 1, 8001)
    want = np.zeros(m, dtype=bool)
    home = shapely.dwithin(polys, shapely.Point(start[:2]), 0.5)
    for k, e in enumerate(ends):
        px = start[0] + t * (e[0] - start[0])
        py = start[1] + t * (e[1] - start[1])
        ph = start[2] + t * (e[2] - start[2])
        own = shapely.dwithin(polys, shapely.Point(e[:2]), 0.5)
        for b in np.flatnonzero(~own & ~home):
            x0, y0, x1, y1 = polys[b].bounds
            inside = (px >= x0) & (px <= x1) & (py >= y0) & (py <= y1)
            if (inside & (ph < top[b]) & (ph > base[b])).any():
                want[k] = True
                break
    differ = np.flatnonzero(got != want)
    assert want.sum() > 50 and (~want).sum() > 50  # both outcomes are exercised
    assert len(differ) <= 2, f"{len(differ)} sight lines disagree with sampling: {differ[:10]}"


def test_occlusion_with_turned_footprints_names_a_real_blocker():
    """Footprints at angles (their boxes overstate them): the answer still matches dense
    sampling against the polygons themselves, and every named blocker truly hides its target."""
    rng = np.random.default_rng(11)
    n = 150
    cx, cy = rng.uniform(-300, 300, n), rng.uniform(-300, 300, n)
    w, h = rng.uniform(6, 40, n), rng.uniform(6, 40, n)
    polys = np.array([shapely.affinity.rotate(shapely.box(x - a / 2, y - b / 2, x + a / 2, y + b / 2),
                                              rng.uniform(5, 85)) for x, y, a, b in zip(cx, cy, w, h)], dtype=object)
    base = np.where(rng.random(n) < 0.1, rng.uniform(5, 15, n), 0.0)
    top = base + rng.uniform(3, 60, n)
    blocks = Blocks.build(polys, base, top)
    start = np.array([1.0, 2.0, 10.0])
    m = 300
    ends = np.column_stack([rng.uniform(-350, 350, m), rng.uniform(-350, 350, m), rng.uniform(0, 90, m)])
    occ = occlusion(blocks, start, ends)

    t = np.linspace(0, 1, 6001)
    home = shapely.dwithin(polys, shapely.Point(start[:2]), 0.5)

    def first_hidden_t(k: int, b: int) -> float:
        """Where the sampled line first runs inside block b within its heights (inf: never)."""
        e = ends[k]
        px, py = start[0] + t * (e[0] - start[0]), start[1] + t * (e[1] - start[1])
        ph = start[2] + t * (e[2] - start[2])
        inside = shapely.contains_xy(polys[b], px, py) & (ph < top[b]) & (ph > base[b])
        return float(t[np.argmax(inside)]) if inside.any() else np.inf

    want = np.zeros(m, dtype=bool)
    nearest = np.full(m, np.inf)
    for k, e in enumerate(ends):
        own = shapely.dwithin(polys, shapely.Point(e[:2]), 0.5)
        crossed = shapely.intersects(polys, shapely.LineString([start[:2], e[:2]]))
        firsts = [first_hidden_t(k, b) for b in np.flatnonzero(crossed & ~own & ~home)]
        nearest[k] = min(firsts, default=np.inf)
        want[k] = np.isfinite(nearest[k])
    assert want.sum() > 50 and (~want).sum() > 50
    assert (occ.occluded != want).sum() <= 2
    # Every named blocker truly hides its target, and none is entered later than the nearest
    # hiding block (up to two sampling steps).
    named = np.flatnonzero(occ.blocker >= 0)
    got = np.array([first_hidden_t(k, occ.blocker[k]) for k in named])
    assert np.isfinite(got).all()
    assert (got <= nearest[named] + 2 / 6000).all()


def test_language_fallback_and_templates():
    props = {"name_ko": "경복궁", "name_en": "Gyeongbokgung Palace", "name_ja": None}
    assert pick_field(props, "name", "ja") == ("Gyeongbokgung Palace", "en")
    assert pick_field({"name_ko": "조계사", "name_en": ""}, "name", "ja") == ("조계사", "ko")
    assert pick_field({"name_zh": "景福宫"}, "name", "zh") == ("景福宫", "zh")
    assert pick_field({"name": "Plain"}, "name", "ja") == ("Plain", None)
    assert fallback_chain("en") == ("en", "ko") and fallback_chain("fr") == ("fr", "en", "ko")
    assert normalise_lang("ja-JP") == "ja" and normalise_lang("zh_Hans_CN") == "zh" and normalise_lang(None) == "en"
    with pytest.raises(LanguageError):
        normalise_lang("<script>")
    assert [turn_kind(d) for d in (10, -30, 90, -90, 170, 350)] == [None, "slight_left", "right", "left",
                                                                     "sharp_right", None]
    assert instruction("turn", "en", street="Jong-ro", turn="left") == "Turn left onto Jong-ro"
    assert instruction("turn", "ko", street="종로", turn="right") == "오른쪽으로 돌아 종로(으)로 가세요"
    assert instruction("turn", "ja", turn="left") == "左に曲がります"
    assert instruction("depart", "zh", street="世宗大路", bearing_deg=0) == "沿世宗大路向北出发"
    assert instruction("arrive", "fr", place="Jogyesa") == "Arrive at Jogyesa"  # no French templates: English


def test_walking_route_on_an_l_shaped_network():
    lines = np.array([shapely.LineString([(0, 0), (300, 0)]),  # 0: Alpha, east-west
                      shapely.LineString([(100, -100), (100, 400)]),  # 1: Beta, crossing Alpha at (100, 0)
                      shapely.LineString([(100, 300), (-50, 300)])], dtype=object)  # 2: Gamma, west from Beta
    g = StreetGraph(lines, np.array([0, 1, 2]))
    legs = g.route((250, 10), (20, 305))  # snaps to (250, 0) and (20, 300)
    assert [leg.street for leg in legs] == [0, 1, 2]
    assert [round(leg.length_m, 6) for leg in legs] == [150, 300, 80]
    assert round(legs[0].start_bearing) == 270 and round(legs[1].start_bearing) == 0
    assert turn_kind(legs[1].start_bearing - legs[0].end_bearing) == "right"
    assert turn_kind(legs[2].start_bearing - legs[1].end_bearing) == "left"
    # Both ends on one edge: the direct piece, no detour.
    legs = g.route((10, 5), (60, -5))
    assert len(legs) == 1 and abs(legs[0].length_m - 50) < 1e-9
