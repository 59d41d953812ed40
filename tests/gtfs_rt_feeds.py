"""GTFS-Realtime test feeds for the Caltrain schedule, built with the bindings library, and a
tiny HTTP server that serves whatever bytes a test puts at a path (and notes who asked).

Expectations are computed here from the zip's text tables with the csv module, never with
the code under test.
"""
from __future__ import annotations

import csv
import io
import math
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from google.transit import gtfs_realtime_pb2 as rt

from shared_data import SHARED_DATA

CALTRAIN = SHARED_DATA / "gtfs" / "caltrain-2017-07-24.zip"  # tests that read it are marked realdata("gtfs", ...)


def table(name: str) -> list[dict]:
    with zipfile.ZipFile(CALTRAIN) as zf, zf.open(name) as fh:
        return list(csv.DictReader(io.TextIOWrapper(fh, encoding="utf-8-sig")))


def bearing(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(y, x)) % 360


def message(ts: int) -> rt.FeedMessage:
    msg = rt.FeedMessage()
    msg.header.gtfs_realtime_version = "2.0"
    msg.header.incrementality = rt.FeedHeader.FULL_DATASET
    msg.header.timestamp = ts
    return msg


def vehicles_along_shapes(ts: int, n: int, step: int = 0) -> tuple[bytes, dict[str, dict]]:
    """``n`` vehicles on distinct trips, each at a point of its trip's shape (``step`` points further on
    per update), heading to the next point. Returns the feed and what each vehicle should show."""
    routes = {r["route_id"]: r for r in table("routes.txt")}
    shapes: dict[str, list[tuple[float, float]]] = {}
    for p in sorted(table("shapes.txt"), key=lambda p: (p["shape_id"], int(p["shape_pt_sequence"]))):
        shapes.setdefault(p["shape_id"], []).append((float(p["shape_pt_lon"]), float(p["shape_pt_lat"])))
    trips = [t for t in table("trips.txt") if t["shape_id"] in shapes][:n]
    msg, expected = message(ts), {}
    occupancy = list(rt.VehiclePosition.OccupancyStatus.values())
    for i, t in enumerate(trips):
        pts = shapes[t["shape_id"]]
        k = (i * 7 + step * 3) % (len(pts) - 1)
        (lon, lat), (lon2, lat2) = pts[k], pts[k + 1]
        e = msg.entity.add()
        e.id = f"veh-{i}"
        v = e.vehicle
        v.trip.trip_id, v.trip.route_id = t["trip_id"], t["route_id"]
        v.vehicle.id, v.vehicle.label = f"car-{i}", t["trip_short_name"]
        v.position.longitude, v.position.latitude = lon, lat
        v.position.bearing = bearing(lon, lat, lon2, lat2)
        v.position.speed = 12.5
        v.occupancy_status = occupancy[i % len(occupancy)]
        v.timestamp = ts
        expected[e.id] = {"lon": lon, "lat": lat, "bearing": v.position.bearing, "trip_id": t["trip_id"],
                          "route_id": t["route_id"], "route_short_name": routes[t["route_id"]]["route_short_name"],
                          "route_color": "#" + routes[t["route_id"]]["route_color"], "label": t["trip_short_name"],
                          "occupancy_status": rt.VehiclePosition.OccupancyStatus.Name(occupancy[i % len(occupancy)])}
    return msg.SerializeToString(), expected


class FeedServer:
    """Serves ``feeds[path]`` bytes over HTTP on a free port; ``agents`` records each request's User-Agent."""

    def __init__(self) -> None:
        self.feeds: dict[str, bytes | Path] = {}
        self.agents: list[tuple[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                outer.agents.append((self.path, self.headers.get("User-Agent", "")))
                body = outer.feeds.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                if isinstance(body, Path):  # a large feed streamed from disk, its size not declared
                    self.end_headers()
                    with open(body, "rb") as fh:
                        while chunk := fh.read(1 << 20):
                            try:
                                self.wfile.write(chunk)
                            except (BrokenPipeError, ConnectionResetError):
                                return
                    return
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the poller stops reading at its bound
                    pass

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
