"""``citytwin build``: ingest every catalog layer with a source, then write its tiles.

Raster layers (kind ``raster``) are translated into COGs instead.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from geo.crs import DatumShiftError
from geo.errors import CatalogError, CRSError
from pipelines.catalog import CATALOG_FILE, Catalog, edit_catalog, load_catalog
from pipelines.costs import CostLog, write_cost_log
from pipelines.ingest import given_zooms, ingest_layer, write_fitted_zooms
from pipelines.project import project_store
from pipelines.runner import Runner, make_runner
from pipelines.store import Store
from pipelines.transit import catalog_feed, ingest_transit

TILES_DIR = "tiles"
TILES3D_DIR = "3dtiles"


def build_project(project: Path, layers: list[str] | None = None, ingest: bool = True,
                  progress: bool = True, workers: int | None = None, scheduler: str | None = None,
                  implicit: bool | None = None, meshopt: bool | None = None,
                  threads: int | None = None, runner: Runner | None = None) -> Iterator[str]:
    """Build every (or the given) catalog layer. With ``workers`` > 1 or a ``scheduler`` address,
    partitions (ingest chunks, PMTiles blocks, 3D Tiles leaves) run on Dask. ``threads``: zooms of a
    PMTiles partition encoded at once (None: this machine's cores, at most 4).
    ``implicit`` (3D Tiles with implicit tiling or not) is written into the entries of the
    3D layers built, so later builds keep it; so is ``meshopt`` (EXT_meshopt_compression or not).
    ``runner``: one the caller made (and closes) in place of ``workers`` and ``scheduler``."""
    for key, value in (("implicit", implicit), ("meshopt", meshopt)):
        if value is not None:
            yield from _store_3d_choice(project, layers, key, value)
    own = runner is None
    runner = runner or make_runner(workers, scheduler)
    try:
        yield from _build(project, layers, ingest, progress, runner, threads)
    finally:
        if own:
            runner.close()


THREE_D_ONLY = ("city_model", "landmark_models")  # 3D Tiles straight from their files, no store layer
IMPLICIT_KINDS = ("buildings", "city_model")  # the kinds whose tilesets may use implicit tiling


def _store_3d_choice(project: Path, layers: list[str] | None, key: str, value: bool) -> list[str]:
    """A --KEY/--no-KEY choice of the command line written into the entries of the 3D layers built."""
    catalog = load_catalog(project)
    names = [n for n in layers or catalog.layers if catalog.layer(n).kind in IMPLICIT_KINDS]
    if not names:
        raise CatalogError(f"--{'' if value else 'no-'}{key}: no layer of kind {' or '.join(IMPLICIT_KINDS)} "
                           f"to build in {catalog.root / CATALOG_FILE}; name one with --layer")
    with edit_catalog(project) as edit:
        return [f"layer '{name}': {change}" for name in names for change in edit.set_layer(name, {key: value})]


def _build_3d_only(catalog, name: str, progress: bool, runner) -> str:
    """CityGML/CityJSON files, or placed landmark GLBs, to the layer's 3D Tiles folder."""
    cfg = catalog.layers[name]
    out = catalog.build_path / TILES3D_DIR / name
    if cfg.kind == "city_model":
        from pipelines.export3d import models_to_tileset

        report, messages = models_to_tileset(catalog.source_paths(name), out, crs=cfg.crs, lod=cfg.lod,
                                             progress=progress, runner=runner, implicit=cfg.implicit,
                                             compress=cfg.meshopt, textures=cfg.textures)
        return "\n".join([report.summary(), *(f"  {m}" for m in messages)])
    from tiles.threed.landmarks import PlacedModel, write_landmark_tileset

    models = [PlacedModel(m.id, (catalog.root / m.uri).resolve(), m.lon, m.lat, m.height, m.heading, m.scale)
              for m in cfg.models or []]
    count = write_landmark_tileset(models, out)
    return f"3D Tiles {out}: {count} landmark models placed"


def _catalog_refusal(catalog: Catalog, name: str, exc: DatumShiftError) -> CRSError:
    """A CRS without datum shift, refused in the words of the catalog: the way out is a key there."""
    return CRSError(exc.shift.refusal(f"layer '{name}' in {catalog.root / CATALOG_FILE}: {exc.source}",
                                      declare="crs: {code}", accept="accept_source_crs: true"))


def _ingest_from_catalog(catalog: Catalog, store: Store, name: str, progress: bool, runner) -> str:
    try:
        report = ingest_layer(catalog, store, name, progress=progress, runner=runner)
    except DatumShiftError as exc:
        raise _catalog_refusal(catalog, name, exc) from None
    cfg = catalog.layers[name]
    given = given_zooms(cfg, {})
    if len(given) < 2:  # an entry without its zoom range gets one fitted to the data, as ingest writes it
        with edit_catalog(catalog.root) as edit:
            added = write_fitted_zooms(edit, name, given, report)
        catalog.layers[name] = cfg.model_copy(update=added)
    return report.summary()


def _build(project: Path, layers: list[str] | None, ingest: bool, progress: bool, runner,
           threads: int | None = None) -> Iterator[str]:
    catalog = load_catalog(project)
    names = layers or list(catalog.layers)
    for name in names:
        catalog.layer(name)  # unknown names fail before any work
    store = project_store(catalog)
    catalog.build_path.mkdir(parents=True, exist_ok=True)
    feeds_done: set[str] = set()
    for name in names:
        if ingest and catalog.layers[name].kind == "raster":  # rasters become COGs, not store layers
            from pipelines.rasters import build_raster_layer

            try:
                yield build_raster_layer(catalog, name).summary()
            except DatumShiftError as exc:
                raise _catalog_refusal(catalog, name, exc) from None
        elif catalog.layers[name].kind == "live":  # served from <build>/live by the app, never ingested
            yield f"layer '{name}': live layer, fed by POST /live/{name}/items or its watched file"
        elif catalog.layers[name].kind in THREE_D_ONLY:
            yield _build_3d_only(catalog, name, progress, runner)
        elif ingest and catalog.layers[name].source:
            feed = catalog_feed(catalog, name)  # a GTFS zip publishes its three transit layers at once
            if feed is None:
                yield _ingest_from_catalog(catalog, store, name, progress, runner)
            elif feed[0] not in feeds_done:
                feeds_done.add(feed[0])
                yield ingest_transit(store, feed[0], feed[1], catalog.layers[name].encoding).summary()
    from tiles.pmtiles_build import build_pmtiles

    for name in names:
        cfg = catalog.layers[name]
        if cfg.kind in ("raster", "live", *THREE_D_ONLY):
            continue
        if name not in store.layers():
            yield f"layer '{name}': not in the store yet; skipped tiles (give it a source or ingest it)"
            continue
        out = catalog.build_path / TILES_DIR / f"{name}.pmtiles"
        report = build_pmtiles(store, name, out, cfg.minzoom, cfg.maxzoom, cfg.fields, progress=progress,
                               runner=runner, threads=threads)
        write_cost_log(catalog.build_path, CostLog("pmtiles", name, report.features, runner.workers(), report.seconds,
                                                   report.driver_seconds, report.write_seconds,
                                                   report.partition_costs, report.threads))
        yield report.summary()
        if cfg.kind == "buildings":
            from pipelines.export3d import dem_path, footprints_to_tileset

            yield footprints_to_tileset(store.read(name), catalog.build_path / TILES3D_DIR / name, source=name,
                                        fields=cfg.fields, progress=progress, runner=runner,
                                        base_field=cfg.base_field, dem=dem_path(catalog, cfg.dem),
                                        implicit=cfg.implicit, compress=cfg.meshopt).summary()
