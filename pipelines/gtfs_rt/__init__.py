"""GTFS-Realtime: VehiclePositions and Alerts into live layers, TripUpdates into the
estimates the next departures read (see load.py for the checks a feed passes)."""
from pipelines.gtfs_rt.decode import FEED_TYPES, FeedRefused
from pipelines.gtfs_rt.trip_updates import realtime_source

__all__ = ["FEED_TYPES", "FeedRefused", "realtime_source"]
