"""VehiclePositions as live items: a point per vehicle with its trip, route, bearing, speed,
occupancy and, when TripUpdates cover its trip, its delay at the stop it is at or heading to."""
from __future__ import annotations

import math
from datetime import datetime, timezone

import shapely
from google.transit import gtfs_realtime_pb2 as rt

from pipelines.departures import RealtimeSource
from pipelines.gtfs_rt.static import StaticFeed
from pipelines.live import LiveItem
from pipelines.steps.privacy import PropertyScreen

_STATUS = rt.VehiclePosition.VehicleStopStatus
_OCCUPANCY = rt.VehiclePosition.OccupancyStatus
_CONGESTION = rt.VehiclePosition.CongestionLevel


def unknown_ids(static: StaticFeed, v: rt.VehiclePosition) -> str | None:
    """The first id of ``v`` the static feed lacks (an ADDED trip may be new), else None."""
    t = v.trip
    if t.trip_id and t.trip_id not in static.trips and t.schedule_relationship != rt.TripDescriptor.ADDED:
        return f"trip_id {t.trip_id!r}"
    if t.route_id and t.route_id not in static.routes:
        return f"route_id {t.route_id!r}"
    if v.stop_id and v.stop_id not in static.stops:
        return f"stop_id {v.stop_id!r}"
    return None


def vehicle_item(static: StaticFeed, entity_id: str, v: rt.VehiclePosition, point: shapely.Point, header_ts: int,
                 expires: datetime, delays: RealtimeSource | None) -> LiveItem | None:
    """The live item of one vehicle at ``point`` (its position, made in bulk by the caller), or None
    when it has no position on Earth."""
    lon, lat = v.position.longitude, v.position.latitude
    if not v.HasField("position") or not (-180 <= lon <= 180 and -90 <= lat <= 90) or (lon == 0 and lat == 0):
        return None
    trip = static.trips.get(v.trip.trip_id)
    route_id = v.trip.route_id or (trip.route_id if trip else "")
    route = static.routes.get(route_id)
    # without a vehicle time, or with one at or past the expiry (even past the year 9999), the feed's
    stamp = datetime.fromtimestamp(v.timestamp if 0 < v.timestamp < expires.timestamp() else header_ts, timezone.utc)
    props: dict = {
        "vehicle_id": v.vehicle.id or entity_id, "label": v.vehicle.label or None,
        "trip_id": v.trip.trip_id or None, "route_id": route_id or None,
        "route_short_name": route.short_name if route else None, "route_color": route.color if route else None,
        "direction_id": v.trip.direction_id if v.trip.HasField("direction_id") else
        (int(trip.direction_id) if trip and trip.direction_id.isdigit() else None),
        "start_date": v.trip.start_date or None, "stop_id": v.stop_id or None,
        "current_stop_sequence": v.current_stop_sequence if v.HasField("current_stop_sequence") else None,
        "current_status": _STATUS.Name(v.current_status) if v.HasField("current_status") else None,
        "bearing": _finite(v.position.bearing, 1) if v.position.HasField("bearing") else None,
        "speed_mps": _finite(v.position.speed, 2) if v.position.HasField("speed") else None,
        "occupancy_status": _OCCUPANCY.Name(v.occupancy_status) if v.HasField("occupancy_status") else None,
        "occupancy_percentage": v.occupancy_percentage if v.HasField("occupancy_percentage") else None,
        "congestion_level": _CONGESTION.Name(v.congestion_level) if v.HasField("congestion_level") else None,
        "delay_s": _delay(static, v, delays),
    }
    return LiveItem(entity_id, point, props, stamp, expires, PropertyScreen())


def _finite(value: float, digits: int) -> float | None:
    """``value`` rounded; None for NaN and infinities, which JSON answers cannot carry."""
    return round(value, digits) if math.isfinite(value) else None


def _delay(static: StaticFeed, v: rt.VehiclePosition, delays: RealtimeSource | None) -> int | None:
    trip = static.trips.get(v.trip.trip_id)
    if delays is None or trip is None or not v.HasField("current_stop_sequence"):
        return None
    hit = trip.stop_sequence == v.current_stop_sequence
    if not hit.any():
        return None
    stop_id = str(trip.stop_id[hit][0])
    update = delays.stop_update(v.trip.trip_id, v.trip.start_date or None, stop_id, v.current_stop_sequence)
    return update.delay_s if update else None
