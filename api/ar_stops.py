"""Transit stops in an /ar/view frustum, each with its next departures.

Stops are placed like POIs (ECEF from lon/lat and the ground model's height beneath them,
ENU from the device, the same frustum and line-of-sight test) but answered in their own
``stops`` list, so the POI items keep their meaning.
"""
from __future__ import annotations

import numpy as np

from api.ar_index import ArIndex, Ground
from api.departure_boards import BoardQuery, Boards
from api.transit_routes import degrees_around
from geo.ecef import ecef_to_enu, enu_rotation, to_ecef
from geo.visibility import Frustum, look, occlusion
from pipelines.transit import split_layer_name


def stops_in_view(index: ArIndex, ground: Ground, frustum: Frustum, eye: tuple[float, float, float],
                  limit: int, board: Boards, bq: BoardQuery) -> list[dict]:
    """Stops inside ``frustum`` from ``eye`` (lon, lat, ellipsoidal height), nearest first, at most ``limit``."""
    stops = index.stops
    if not len(stops):
        return []
    lon, lat, alt = eye
    # A lon/lat box around the far sphere (the metric frame is centred on the POIs and buildings,
    # which a transit-only project lacks); the exact test is in ENU.
    dlon, dlat = degrees_around(lat, frustum.far_m)
    all_lon, all_lat = stops["lon"].to_numpy(float), stops["lat"].to_numpy(float)
    cand = np.flatnonzero((np.abs(all_lon - lon) <= dlon) & (np.abs(all_lat - lat) <= dlat))
    if not len(cand):
        return []
    slon, slat = all_lon[cand], all_lat[cand]
    ecef = to_ecef(np.column_stack([slon, slat, ground.stop_h[cand]]))
    enu = ecef_to_enu(ecef, to_ecef(np.array([[lon, lat, alt]]))[0], enu_rotation(lon, lat))
    inside = frustum.contains(enu)
    cand, enu = cand[inside], enu[inside]
    where = look(enu)
    ids = stops["id"].to_numpy(dtype=object)
    order = np.lexsort((ids[cand].astype(str), where.distance_m))[:limit]
    cand, enu = cand[order], enu[order]
    where = look(enu)
    x, y = index.frame.xy(np.array([lon]), np.array([lat]))
    ends = np.column_stack([stops["x"].to_numpy(float)[cand], stops["y"].to_numpy(float)[cand],
                            ground.stop_h[cand]])
    hidden = occlusion(ground.blocks, np.array([float(x[0]), float(y[0]), alt]), ends).occluded.tolist()
    out = []
    for k, j in enumerate(cand.tolist()):
        layer = str(stops["layer"].iat[j])
        feed = split_layer_name(layer) or layer
        name = stops["name"].iat[j]
        out.append({
            "type": "transit_stop", "feed": feed, "layer": layer, "id": str(ids[j]),
            "name": name if isinstance(name, str) else None,
            "lon": round(float(stops["lon"].iat[j]), 7), "lat": round(float(stops["lat"].iat[j]), 7),
            "height": round(float(ground.stop_h[j]), 3), "distance_m": round(float(where.distance_m[k]), 2),
            "bearing_deg": round(float(where.bearing_deg[k]), 3),
            "elevation_deg": round(float(where.elevation_deg[k]), 3),
            "enu": (np.round(enu[k], 3) + 0.0).tolist(), "occluded": hidden[k],
            "departures": board.departures(feed, str(ids[j]), bq),
        })
    return out
