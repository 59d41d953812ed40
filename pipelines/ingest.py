"""Ingest: read a source, check and repair it, reproject to WGS84, publish atomically."""
from __future__ import annotations

import json
import logging
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import geopandas as gpd
import numpy as np
import pandas as pd
from tqdm import tqdm

from geo.crs import WGS84, check_lonlat_bounds, crs_label, parse_crs
from pydantic import ValidationError

from geo.errors import CatalogError, SourceError
from geo.geometry import clamped_note
from geo.names import check_layer_name
from pipelines.catalog import Catalog, CatalogEdit, LayerConfig, edit_catalog
from pipelines.costs import CostLog, PartitionCost, write_cost_log
from pipelines.ingest_chunks import Chunk, ChunkResult, prepare_chunk
from pipelines.last_ingest import changes_since_last, read_settings, remember
from pipelines.project import project_store, relative_to_project
from pipelines.readers.gtfs import is_gtfs_zip
from pipelines.readers.vector import VectorFile, finish_attributes, open_vector
from pipelines.runner import InProcessRunner, Runner, make_runner
from pipelines.steps.normalise import HeightCounts, building_heights, select_fields, stable_ids
from pipelines.steps.privacy import PrivacyAudit, assert_clean, check_id_column, policy_of, scrub
from pipelines.store import Store
from pipelines.store.base import ID_COLUMN
from pipelines.zooms import centres, default_zooms, missing_zooms

if TYPE_CHECKING:
    from pipelines.transit import TransitReport

log = logging.getLogger(__name__)
POLYGON_KINDS = {"buildings", "boundaries", "hazard_zones"}
AUDIT_DIR = "audit"


@dataclass
class IngestReport:
    layer: str
    kind: str
    sources: list[str]
    source_crs: str
    read: int = 0
    published: int = 0
    repaired: int = 0
    dropped: int = 0
    clamped: int = 0
    heights: HeightCounts | None = None
    warnings: list[str] = field(default_factory=list)
    fitted_zooms: tuple[int, int, str] | None = None  # minzoom, maxzoom, why: what fits the data
    tiles: str = ""  # the zoom range the tiles will have, and where it came from
    catalog_changes: str = ""
    privacy: PrivacyAudit | None = None
    audit_path: str | None = None
    partitions: list[PartitionCost] = field(default_factory=list)  # one per chunk read
    workers: int = 1
    map_seconds: float = 0.0  # wall time of the chunks' map
    driver_seconds: float = 0.0  # all the rest: opening, joining, whole-layer steps, publishing
    seconds: float = 0.0

    def summary(self) -> str:
        lines = [
            f"layer '{self.layer}' ({self.kind}): published {self.published} of {self.read} features "
            f"from {', '.join(self.sources)} [{self.source_crs} -> EPSG:4326] in {self.seconds:.1f}s",
            f"  geometry: {self.repaired} repaired, {self.dropped} dropped"
            + (" (no geometry, or degenerate: fewer than 3 distinct points or zero area)" if self.dropped else ""),
        ]
        if self.clamped:
            lines.append(f"  {clamped_note(self.clamped, 'feature', 'features')}")
        if self.heights is not None:
            h = self.heights
            lines.append(
                f"  heights: {h.from_attribute} from a height field, {h.from_floors} from floors x storey height, "
                f"{h.missing} with neither"
            )
        if self.privacy is not None:
            audit = f"; audit: {self.audit_path}" if self.audit_path else ""
            lines.append(f"  {self.privacy.summary()}{audit}")
        if self.tiles:
            lines.append(f"  tiles: {self.tiles}")
        if len(self.partitions) > 1:
            where = f"on {self.workers} Dask workers" if self.workers > 1 else "in process"
            lines.append(f"  read in {len(self.partitions)} chunks {where}; driver {self.driver_seconds:.1f} s "
                         f"of {self.seconds:.1f} s ({100 * self.driver_seconds / max(self.seconds, 1e-9):.0f}%)")
        if self.catalog_changes:
            lines.append(f"  catalog: {self.catalog_changes}")
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def prepare_layer(paths: list[Path], layer: str, cfg: LayerConfig, storey_height: float,
                  progress: bool = True, runner: Runner | None = None) -> tuple[gpd.GeoDataFrame, IngestReport]:
    """Read, check and normalise the sources of one layer; nothing is written.

    Each source is read in windows (pipelines.ingest_chunks), repaired and reprojected on
    ``runner`` (in process by default); the steps that need the whole layer run here."""
    check_layer_name(layer)
    frames, warnings, crs_names = [], [], []
    report = IngestReport(layer=layer, kind=cfg.kind, sources=[str(p) for p in paths], source_crs="")
    polygonal = cfg.kind in POLYGON_KINDS
    with ExitStack() as opened:
        sources = [opened.enter_context(open_vector(path, crs=cfg.crs, encoding=cfg.encoding,
                                                    accept_source_crs=cfg.accept_source_crs)) for path in paths]
        chunks = [Chunk(src, start, size, polygonal) for src in sources for start, size in src.windows()]
        t_map = time.perf_counter()
        results = _run_chunks(chunks, layer, runner or InProcessRunner(), progress)
        report.map_seconds = time.perf_counter() - t_map
    report.partitions = [r.cost for r in results]
    for src in sources:
        warnings += src.warnings
        crs_names.append(crs_label(src.crs))
        gdf = _joined_source(src, [r for c, r in zip(chunks, results) if c.source is src], cfg, report, warnings)
        frames.append(gdf)

    gdf = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=WGS84)
    if gdf[ID_COLUMN].duplicated().any():
        dup = gdf.loc[gdf[ID_COLUMN].duplicated(), ID_COLUMN].iloc[0]
        raise SourceError(f"layer '{layer}': id {dup!r} occurs more than once across its sources; ids must be unique")
    keep: tuple[str, ...] = ()
    if cfg.kind == "buildings":
        gdf, report.heights = building_heights(
            gdf, height_field=cfg.height_field, floors_field=cfg.floors_field,
            storey_height=cfg.storey_height or storey_height, source=", ".join(report.sources),
        )
        keep = ("height", "floors", "height_source")
    gdf = select_fields(gdf, cfg.fields, keep, ", ".join(report.sources))
    if cfg.id_field:
        check_id_column(cfg.id_field, gdf[ID_COLUMN].tolist(), f"layer '{layer}'",
                        "name another id_field or none (ids are then made from the features)")
    gdf, report.privacy = scrub_layer(gdf, cfg, layer, keep)
    warnings += report.privacy.warnings
    report.published = len(gdf)
    report.fitted_zooms = default_zooms(cfg.kind, *centres(gdf.geometry.to_numpy()), tuple(gdf.total_bounds))
    report.source_crs = ", ".join(sorted(set(crs_names)))
    report.warnings = warnings
    return gdf, report


def _run_chunks(chunks: list[Chunk], layer: str, runner: Runner, progress: bool) -> list[ChunkResult]:
    bar = tqdm(total=len(chunks), desc=f"ingest {layer}", unit="chunk", disable=not progress or len(chunks) < 2)
    try:
        return runner.map(prepare_chunk, chunks, progress=lambda done, _: bar.update(done - bar.n))
    finally:
        bar.close()


def _joined_source(src: VectorFile, results: list[ChunkResult], cfg: LayerConfig, report: IngestReport,
                   warnings: list[str]) -> gpd.GeoDataFrame:
    """One source's chunks in file order, checked as one file: the messages name its features by
    their index in the file, whichever chunk held them."""
    source = str(src.path)
    frame = results[0].frame if len(results) == 1 else gpd.GeoDataFrame(
        pd.concat([r.frame for r in results]), crs=WGS84)
    gdf = finish_attributes(src, frame)
    report.read += len(gdf)
    not_polygons = sum(r.not_polygons for r in results)
    if not_polygons:
        first, gtype = next(r.first_not_polygon for r in results if r.first_not_polygon)
        raise SourceError(
            f"{source}: {not_polygons} feature(s) are not polygons (first: feature {first}, a {gtype}); "
            f"a {cfg.kind} layer needs polygon footprints. Remove them, or ingest with --kind generic."
        )
    dropped_at = np.concatenate([r.dropped_at for r in results])
    report.repaired += sum(r.repaired for r in results)
    report.dropped += len(dropped_at)
    if len(dropped_at):
        more = f" and {len(dropped_at) - 1} more" if len(dropped_at) > 1 else ""
        warnings.append(f"{source}: dropped feature {int(dropped_at[0])}{more} (counting from 0); "
                        "fix or remove it in the source to publish it")
    usable = gdf.geometry.notna().to_numpy()
    gdf = gdf[usable]
    if gdf.empty:
        raise SourceError(f"{source}: no usable geometry left after repair ({len(dropped_at)} dropped)")

    if ID_COLUMN in gdf.columns and cfg.id_field != ID_COLUMN:
        gdf = gdf.rename(columns={ID_COLUMN: "source_id"})
    ids = stable_ids(gdf, cfg.id_field, source, wkb=np.concatenate([r.source_wkb for r in results])[usable])
    report.clamped += sum(r.clamped for r in results)
    check_lonlat_bounds(tuple(gdf.total_bounds), source=source, crs=src.crs)
    gdf.insert(0, ID_COLUMN, ids.to_numpy())
    return gdf


def scrub_layer(gdf: gpd.GeoDataFrame, cfg: LayerConfig, layer: str, keep: tuple[str, ...]
                ) -> tuple[gpd.GeoDataFrame, PrivacyAudit]:
    """The layer's privacy policy on its attributes (``keep`` are ours), then the last gate."""
    attrs = gdf.drop(columns=[gdf.geometry.name, ID_COLUMN])
    clean, audit = scrub(attrs, policy_of(cfg.privacy), layer, ids=gdf[ID_COLUMN],
                         keep=tuple(c for c in keep if c in attrs.columns))
    assert_clean(clean, layer)
    clean = clean[[c for c in attrs.columns if c in clean.columns]]  # the source's field order
    out = pd.concat([gdf[[ID_COLUMN]], clean, gdf[[gdf.geometry.name]]], axis=1)
    return gpd.GeoDataFrame(out, geometry=gdf.geometry.name, crs=gdf.crs), audit


def write_audit(build: Path, report: IngestReport) -> None:
    """What privacy did to the layer (fields, detectors, record ids; never values), next to geotag's."""
    assert report.privacy is not None
    out = build / AUDIT_DIR
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{report.layer}.ingest.json"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(report.privacy.as_dict(), ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, path)
    report.audit_path = str(path)


def ingest_layer(catalog: Catalog, store: Store, layer: str, paths: list[Path] | None = None,
                 progress: bool = True, runner: Runner | None = None) -> IngestReport:
    """Prepare the layer (its chunks on ``runner``), publish it once, and log what each part cost."""
    t0 = time.perf_counter()
    cfg = catalog.layer(layer)
    paths = paths or catalog.source_paths(layer)
    if not paths:
        raise SourceError(f"layer '{layer}' has no source in {catalog.root / 'citytwin.yaml'}; add 'source:'")
    runner = runner or InProcessRunner()
    gdf, report = prepare_layer(paths, layer, cfg, catalog.storey_height, progress=progress, runner=runner)
    settings = read_settings(cfg, paths, report.source_crs)
    changed = changes_since_last(catalog.build_path, layer, settings)
    if changed:
        report.warnings.append(f"layer '{layer}' is published differently from its last ingest: {'; '.join(changed)}")
    t_write = time.perf_counter()
    store.publish(layer, gdf)
    write_s = time.perf_counter() - t_write
    write_audit(catalog.build_path, report)
    remember(catalog.build_path, layer, settings)
    report.seconds = time.perf_counter() - t0
    report.workers = runner.workers()
    report.driver_seconds = report.seconds - report.map_seconds
    write_cost_log(catalog.build_path, CostLog("ingest", layer, report.published, report.workers, report.seconds,
                                               report.driver_seconds, write_s, report.partitions))
    return report


def write_fitted_zooms(edit: CatalogEdit, layer: str, given: dict[str, int], report: IngestReport) -> dict[str, int]:
    """Write the zoom keys that neither the entry nor the command gave, fitted to the data just
    read, so the range shows in citytwin.yaml and can be edited there; the report says which."""
    assert report.fitted_zooms is not None
    lo, hi, why = report.fitted_zooms
    added = missing_zooms(given, (lo, hi))
    if added:
        edit.set_layer(layer, added)
    zooms = {**given, **added}
    report.tiles = f"z{zooms['minzoom']}-{zooms['maxzoom']}"
    if added:
        fitted = f", fitted to this {report.kind} layer ({why})" if "minzoom" in added else ""
        report.tiles += (f"; {' and '.join(f'{k}: {v}' for k, v in added.items())} written to "
                         f"{edit.path}{fitted}; edit there to change")
    else:
        report.tiles += f" (minzoom/maxzoom of '{layer}' in {edit.path})"
    return added


def given_zooms(base: LayerConfig | None, values: dict[str, object]) -> dict[str, int]:
    """The zoom keys set by the command line or already in the layer's entry."""
    keys = ("minzoom", "maxzoom")
    entry = {k: getattr(base, k) for k in keys if base is not None and k in base.model_fields_set}
    return {**entry, **{k: int(values[k]) for k in keys if values.get(k) is not None}}


def ingest_into_project(project: Path, path: Path, layer: str, *, kind: str | None = None,
                        crs: str | None = None, encoding: str | None = None,
                        accept_source_crs: bool = False, minzoom: int | None = None,
                        maxzoom: int | None = None, workers: int | None = None,
                        scheduler: str | None = None) -> IngestReport | TransitReport:
    """``citytwin ingest``: the options given become the layer's catalog entry, then it is published.
    With ``workers`` > 1 or a ``scheduler`` address the source's chunks are read on Dask.

    The entry is written (structurally, comments kept) only when the ingest succeeds, and the
    layer is published exactly as that entry reads, so the next ``citytwin build`` repeats it.
    """
    check_layer_name(layer)
    if Path(path).suffix.lower() == ".zip" and (kind == "transit" or is_gtfs_zip(Path(path))):
        # A GTFS feed: LAYER is the prefix of its three layers (see pipelines.transit).
        from pipelines.transit import ingest_transit_into_project

        return ingest_transit_into_project(project, Path(path), layer, kind=kind, crs=crs, encoding=encoding)
    if crs is not None:
        parse_crs(crs, what="--crs")
    with edit_catalog(project) as edit:
        base = edit.catalog.layers.get(layer)
        values = _given_options(edit.catalog, layer, Path(path), kind=kind, crs=crs, encoding=encoding,
                                accept_source_crs=accept_source_crs)
        values.update({k: v for k, v in (("minzoom", minzoom), ("maxzoom", maxzoom)) if v is not None})
        merged = {**(base or LayerConfig()).model_dump(), **values, "source": [str(path)]}
        try:  # the options' own errors, named as options
            LayerConfig.model_validate({k: v for k, v in merged.items() if v is not None})
        except ValidationError as exc:
            err = exc.errors()[0]
            option = f"--{err['loc'][0]}" if err["loc"] else "options"  # a check across keys (minzoom vs maxzoom)
            raise CatalogError(f"{option}: {err['msg'].removeprefix('Value error, ')}") from None
        changes = edit.set_layer(layer, values)
        catalog = edit.check()  # exactly what the next build will read
        runner = make_runner(workers, scheduler)
        try:
            report = ingest_layer(catalog, project_store(catalog), layer, paths=[Path(path)],  # named as given
                                  runner=runner)
        finally:
            runner.close()
        write_fitted_zooms(edit, layer, given_zooms(base, values), report)
    if changes:
        report.catalog_changes = f"updated '{layer}' in {catalog.root / 'citytwin.yaml'}: {'; '.join(changes)}"
    return report


def _given_options(catalog: Catalog, layer: str, path: Path, *, kind: str | None, crs: str | None,
                   encoding: str | None, accept_source_crs: bool) -> dict[str, object]:
    """The catalog keys the command line sets; None removes a key that no longer applies."""
    base = catalog.layers.get(layer)
    values: dict[str, object] = {}
    if kind is not None:
        values["kind"] = kind
    if base is None or catalog.source_paths(layer) != [path.resolve()]:
        values["source"] = relative_to_project(path, catalog.root)
    if crs is not None:
        values["crs"] = crs
    if encoding is not None:
        values["encoding"] = encoding
    if accept_source_crs:
        values["accept_source_crs"] = True
        if crs is None:
            values["crs"] = None  # accepting the file's own CRS: a declared one would override it
    elif crs is not None and base is not None and base.accept_source_crs:
        values["accept_source_crs"] = None  # the acceptance was for the file's own CRS, no longer used
    return values
