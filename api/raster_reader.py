"""The rio-tiler reader behind /cog: no image it returns is larger than the side limits.

Where the output size follows from the data (a bbox or a feature at native resolution, or one
side given and the other from the aspect ratio) it is worked out here, with the dataset open,
the same way rio-tiler will: a request that names an over-limit size is a RasterLimitError
(a 400), one that names no size is read scaled down to the limit. Bands and points are checked
against the layer, so a missing band or an impossible coordinate is a 400, not a 500.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rasterio import windows
from rasterio._err import CPLE_BaseError  # GDAL/PROJ errors (not re-exported by rasterio.errors)
from rasterio.crs import CRS
from rasterio.warp import calculate_default_transform, transform, transform_bounds
from rio_tiler.constants import WGS84_CRS
from rio_tiler.errors import PointOutsideBounds
from rio_tiler.expression import parse_expression
from rio_tiler.io import Reader
from rio_tiler.models import ImageData, PointData
from rio_tiler.utils import get_vrt_transform

from api.raster_limits import MAX_BANDS, MAX_FEATURE_SIDE, MAX_IMAGE_SIDE, MAX_PIXELS, RasterLimitError


def _scaled(native: tuple[float, float], max_size: int) -> tuple[int, int]:
    """(height, width) rio-tiler reads for ``max_size``: the longer side at most max_size, same aspect."""
    h, w = round(native[0]), round(native[1])
    if max(h, w) < max_size:
        return max(h, 1), max(w, 1)
    return (max_size, math.ceil(max_size * w / h)) if h > w else (math.ceil(max_size * h / w), max_size)


def fit_size(native: tuple[float, float], max_size: int | None, height: int | None, width: int | None,
             limit: int) -> tuple[int | None, int | None, int | None]:
    """(max_size, height, width) to read with, so that the output is at most ``limit`` px a side
    and MAX_PIXELS in all (memory grows with both).

    ``native`` is the (height, width) the read would have at full resolution; a missing side
    follows its aspect ratio, as in rio-tiler.
    """
    nat_h, nat_w = max(native[0], 1e-9), max(native[1], 1e-9)
    if not (max_size or height or width):
        # Nothing asked: full resolution, or the largest image within the limits with its aspect.
        max_size = min(limit, math.floor(math.sqrt(MAX_PIXELS * max(nat_h, nat_w) / min(nat_h, nat_w))))
        while math.prod(_scaled(native, max_size)) > MAX_PIXELS:
            max_size -= 1
        if max_size > max(nat_h, nat_w):
            return None, None, None
    if height and width:
        out = (height, width)
    elif height:
        out = (height, math.ceil(height * nat_w / nat_h))
    elif width:
        out = (math.ceil(width * nat_h / nat_w), width)
    else:
        out = _scaled(native, max_size)
    if max(out) > limit or out[0] * out[1] > MAX_PIXELS:
        raise RasterLimitError(f"the image would be {out[1]:,} x {out[0]:,} px; at most {limit} px a side and "
                               f"{MAX_PIXELS:,} px in all are allowed: ask for a smaller width, height or max_size "
                               "(or a smaller area)")
    return max_size, height, width


class LimitedReader(Reader):
    """rio-tiler's COG reader with output sizes, bands and coordinates checked first."""

    @property
    def layer(self) -> str:
        return Path(str(self.input)).stem  # cog_path() names the file after the layer

    def _check_bands(self, indexes: Any, expression: str | None) -> None:
        """Every band asked for exists, and a read of all bands holds at most MAX_BANDS."""
        count = self.dataset.count
        if expression:
            wanted = list(parse_expression(expression))
        elif indexes:
            wanted = list(indexes) if isinstance(indexes, (list, tuple)) else [indexes]
        else:
            if count > MAX_BANDS:
                raise RasterLimitError(f"raster layer '{self.layer}' has {count} bands; choose at most {MAX_BANDS} "
                                       "with bidx=")
            return
        missing = [b for b in wanted if not 1 <= b <= count]
        if missing:
            raise RasterLimitError(f"raster layer '{self.layer}' has no band {missing[0]}: it has {count} "
                                   f"band(s), b1..b{count}")

    def _part_shape(self, bbox: tuple[float, ...], dst_crs: CRS, bounds_crs: CRS | None) -> tuple[float, float]:
        """(height, width) of ``bbox`` read at full resolution in ``dst_crs``, as rio-tiler computes it."""
        try:
            bounds = transform_bounds(bounds_crs, dst_crs, *bbox, densify_pts=21) \
                if bounds_crs and bounds_crs != dst_crs else bbox
            if dst_crs != self.dataset.crs:
                _, w, h = get_vrt_transform(self.dataset, bounds, dst_crs=dst_crs)
                return h, w
            win = windows.from_bounds(*bounds, transform=self.dataset.transform)
        except CPLE_BaseError as exc:
            raise RasterLimitError(f"the bbox cannot be placed on raster layer '{self.layer}': {exc}") from None
        return win.height, win.width

    def part(self, bbox: tuple[float, ...], dst_crs: CRS | None = None, bounds_crs: CRS = WGS84_CRS,
             indexes: Any = None, expression: str | None = None, max_size: int | None = None,
             height: int | None = None, width: int | None = None, buffer: float | None = None,
             limit: int = MAX_IMAGE_SIDE, **kwargs: Any) -> ImageData:
        self._check_bands(indexes, expression)
        native = (height, width) if height and width else self._part_shape(bbox, dst_crs or bounds_crs, bounds_crs)
        max_size, height, width = fit_size(native, max_size, height, width, limit)
        return super().part(bbox, dst_crs=dst_crs, bounds_crs=bounds_crs, indexes=indexes, expression=expression,
                            max_size=max_size, height=height, width=width, buffer=buffer, **kwargs)

    def feature(self, shape: dict, *args: Any, **kwargs: Any) -> ImageData:
        # Feature crops feed POST /statistics, whose coverage grid is cover_scale² times larger.
        return super().feature(shape, *args, limit=MAX_FEATURE_SIDE, **kwargs)

    def read(self, indexes: Any = None, expression: str | None = None, **kwargs: Any) -> ImageData:
        self._check_bands(indexes, expression)
        dst_crs = kwargs.get("dst_crs")
        ds = self.dataset
        if dst_crs and dst_crs != ds.crs:
            _, w, h = calculate_default_transform(ds.crs, dst_crs, ds.width, ds.height, *ds.bounds)
        else:
            h, w = ds.height, ds.width
        sizes = fit_size((h, w), kwargs.get("max_size"), kwargs.get("height"), kwargs.get("width"), MAX_IMAGE_SIDE)
        kwargs.update(zip(("max_size", "height", "width"), sizes))
        return super().read(indexes=indexes, expression=expression, **kwargs)

    def point(self, lon: float, lat: float, coord_crs: CRS = WGS84_CRS, indexes: Any = None,
              expression: str | None = None, **kwargs: Any) -> PointData:
        self._check_bands(indexes, expression)
        if coord_crs != self.dataset.crs:
            try:
                xs, ys = transform(coord_crs, self.dataset.crs, [lon], [lat])
                placed = math.isfinite(xs[0]) and math.isfinite(ys[0])
            except CPLE_BaseError:
                placed = False
            if not placed:
                raise RasterLimitError(f"the point ({lon:g}, {lat:g}) has no place in the CRS of raster layer "
                                       f"'{self.layer}'; check the coordinates and coord_crs")
        try:
            return super().point(lon, lat, coord_crs=coord_crs, indexes=indexes, expression=expression, **kwargs)
        except PointOutsideBounds:
            raise PointOutsideBounds(f"the point ({lon:g}, {lat:g}) is outside raster layer '{self.layer}'") from None
