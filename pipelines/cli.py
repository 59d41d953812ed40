"""The ``citytwin`` command line: init, ingest, build, serve, geotag, photos, sample-city.

Every command turns a CitytwinError into one clear line on stderr and exit code 2.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from geo.errors import CitytwinError

log = logging.getLogger("citytwin")


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CitytwinError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """citytwin: 2D footprints and city models to OGC API Features, vector tiles and 3D Tiles.

    \b
    A project is a folder with a citytwin.yaml catalog. Typical use:
      citytwin init mycity                       # write a commented starter catalog
      citytwin ingest footprints.shp --layer buildings --kind buildings \\
               --crs EPSG:5174 --encoding cp949 --project mycity
      citytwin build --project mycity            # ingest catalog sources, write PMTiles
      citytwin serve --project mycity            # OGC API + viewer on :8000

    The store is a GeoPackage under the project's build folder, or PostGIS when
    CITYTWIN_DATABASE_URL is set.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def init(directory: Path) -> None:
    """Write a commented starter citytwin.yaml into DIRECTORY."""
    from pipelines.project import init_project

    path = init_project(directory)
    click.echo(f"wrote {path}; add layers there or with 'citytwin ingest ... --project {directory}'")


@main.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--layer", "layer", required=True, help="Layer name: lower-case letters, digits, underscores.")
@click.option("--kind", type=click.Choice(["buildings", "pois", "boundaries", "transit", "hazard_zones", "generic"]),
              default=None, help="What the features are; buildings get heights. Default: from the catalog, else generic.")
@click.option("--crs", default=None, help="Source CRS, e.g. EPSG:5174. Overrides the file's own (.prj).")
@click.option("--accept-source-crs", is_flag=True,
              help="Keep a CRS that lacks its datum shift (a Bessel .prj) although it lands hundreds of metres "
                   "off; declaring --crs is better.")
@click.option("--encoding", default=None, help="Text encoding of the source, e.g. cp949. Overrides .cpg.")
@click.option("--minzoom", type=click.IntRange(0, 22), default=None,
              help="First zoom of the layer's vector tiles. Default: the entry's, else fitted to the data.")
@click.option("--maxzoom", type=click.IntRange(0, 22), default=None,
              help="Last zoom of the layer's vector tiles (clients zoom deeper on it). Default: 16.")
@click.option("--workers", type=click.IntRange(1, 256), default=None,
              help="Read, repair and reproject the source's chunks on a local Dask cluster of N worker processes.")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
              help="Read the source's chunks on an existing Dask cluster (workers must see the source file).")
@click.option("--project", default=".", type=click.Path(file_okay=False, path_type=Path), show_default=True,
              help="Project folder holding citytwin.yaml.")
def ingest(path: Path, layer: str, kind: str | None, crs: str | None, accept_source_crs: bool,
           encoding: str | None, minzoom: int | None, maxzoom: int | None, workers: int | None,
           scheduler: str | None, project: Path) -> None:
    """Read PATH (GeoPackage, Shapefile, GeoJSON, FlatGeobuf, or a GTFS .zip), check it, and publish it as LAYER.

    Geometries are repaired, reprojected to WGS84 and given stable ids; buildings get a
    height (from a height field, else floors x storey height). The store is replaced
    atomically: a failure leaves the previously published layer untouched. The options
    given are written into the layer's entry in citytwin.yaml, so 'citytwin build'
    publishes it the same way. Attributes are scrubbed like geotag records: columns named
    or filled like personal identifiers are not published, RRNs, mobile numbers and
    e-mails in text are masked (the entry's privacy: settings apply); the audit goes to
    build/audit/LAYER.ingest.json.

    \b
    A GTFS feed (.zip with stops.txt, routes.txt, trips.txt, stop_times.txt) becomes
    three transit layers named after LAYER: LAYER_stops (points), LAYER_routes (lines)
    and LAYER_departures (departures per stop and hour on the busiest weekday).

    \b
    The source is read in chunks of 50,000 features; with --workers or --scheduler they are
    read, repaired and reprojected on Dask (a chunk whose worker dies is retried) and the
    layer is published once, the same as an in-process ingest.

    \b
    Zoom range of the vector tiles ('citytwin build' writes them): minzoom and maxzoom in
    the layer's entry. When neither the entry nor --minzoom/--maxzoom sets them, ingest
    writes a range fitted to the kind and the data into the entry:
      boundaries, hazard_zones  from the zoom where the whole layer is about one tile
                                across (z9 for Seoul's 25 gu), z12 at the latest
      buildings                 from z13
      pois                      from z10, or earlier if the whole layer fits 4 tiles
      generic                   from z12, or earlier if the whole layer fits 4 tiles
    each pushed deeper while one tile would hold over 10,000 features; maxzoom 16.
    """
    from pipelines.ingest import ingest_into_project

    report = ingest_into_project(project, path, layer, kind=kind, crs=crs, encoding=encoding,
                                 accept_source_crs=accept_source_crs, minzoom=minzoom, maxzoom=maxzoom,
                                 workers=workers, scheduler=scheduler)
    click.echo(report.summary())


@main.command()
@click.option("--project", default=".", type=click.Path(file_okay=False, path_type=Path), show_default=True)
@click.option("--layer", "layers", multiple=True, help="Build only these layers (repeatable).")
@click.option("--skip-ingest", is_flag=True, help="Use what is in the store; do not re-read sources.")
@click.option("--workers", type=click.IntRange(1, 256), default=None,
              help="Run ingest chunks and tile partitions on a local Dask cluster of N worker processes.")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
              help="Run ingest chunks and tile partitions on an existing Dask cluster (workers must see the "
                   "project folder).")
@click.option("--threads", type=click.IntRange(1, 64), default=None,
              help="Vector tile zooms encoded at once in each partition (in this process, or on each Dask "
                   "worker). Default: the cores available to this command, at most 4. Each adds its own "
                   "working memory (about 150 MB for 600,000 footprints); the archive is the same for any count.")
@click.option("--implicit/--no-implicit", default=None,
              help="3D Tiles with implicit tiling (subtree files), or an explicit tree, for the buildings and "
                   "city_model layers built; written into their catalog entries so later builds keep it. "
                   "Default: the entry's choice, else implicit from 50,000 buildings.")
@click.option("--meshopt/--no-meshopt", default=None,
              help="3D Tiles meshes compressed with EXT_meshopt_compression, or not, for the buildings and "
                   "city_model layers built; written into their catalog entries so later builds keep it. "
                   "Default: the entry's choice, else compressed.")
def build(project: Path, layers: tuple[str, ...], skip_ingest: bool, workers: int | None,
          scheduler: str | None, threads: int | None, implicit: bool | None, meshopt: bool | None) -> None:
    """Ingest every catalog layer that has a source, then write PMTiles, TileJSON and 3D Tiles.

    Partitions (windows of an ingest source, blocks of a PMTiles archive, leaves of a 3D Tiles
    tree) are independent; with --workers or --scheduler they run on Dask and a partition whose worker
    dies is retried. The output is the same as an in-process build.
    """
    from pipelines.runner import make_runner

    runner = make_runner(workers, scheduler)  # a Dask cluster starts while the build's modules load
    try:
        from pipelines.build import build_project

        for line in build_project(project, layers=list(layers) or None, ingest=not skip_ingest,
                                  implicit=implicit, meshopt=meshopt, threads=threads, runner=runner):
            click.echo(line)
    finally:
        runner.close()


@main.command()
@click.option("--project", default=".", type=click.Path(file_okay=False, path_type=Path), show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind; 0.0.0.0 for all.")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Server processes; about one per core for production.")
def serve(project: Path, host: str, port: int, workers: int) -> None:
    """Serve the project: OGC API (Features, Tiles), TileJSON, tiles and the viewer."""
    from api.server import run

    run(project, host=host, port=port, workers=workers)


@main.command("export-3dtiles")
@click.argument("sources", nargs=-1, required=True)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder; replaced atomically when the tileset is complete.")
@click.option("--crs", default=None, help="CRS of CityGML/CityJSON files that lack an srsName / referenceSystem.")
@click.option("--lod", type=click.IntRange(1, 2), default=None,
              help="Only this LOD. Default: LOD1 far away refining to LOD2 near, where both exist.")
@click.option("--b3dm", is_flag=True, help="Write 3D Tiles 1.0 b3dm content for older clients (never compressed).")
@click.option("--meshopt/--no-meshopt", default=None,
              help="Compress meshes with EXT_meshopt_compression (CesiumJS, three.js and deck.gl decode it). "
                   "Default: a layer's catalog entry, else compressed.")
@click.option("--implicit/--no-implicit", default=None,
              help="Implicit tiling (subtree files) or an explicit tree. Default: a layer's catalog entry, "
                   "else implicit from 50,000 buildings.")
@click.option("--textures", is_flag=True,
              help="Keep the textures of CityGML (app:ParameterizedTexture) and CityJSON (appearance) surfaces: "
                   "one JPEG atlas per tile. Images are read from the model file's folder.")
@click.option("--project", default=".", type=click.Path(file_okay=False, path_type=Path), show_default=True,
              help="Project holding the store, for layer:NAME sources.")
def export_3dtiles(sources: tuple[str, ...], out: Path, crs: str | None, lod: int | None, b3dm: bool,
                   meshopt: bool | None, implicit: bool | None, textures: bool, project: Path) -> None:
    """Write an OGC 3D Tiles tileset from SOURCES.

    \b
    SOURCE is one of:
      buildings.gml       CityGML 2.0 or 3.0 (LOD0 footprints with measuredHeight, LOD1, LOD2)
      city.json           CityJSON 1.1 or 2.0
      layer:NAME          a buildings layer in the project's store, extruded to LOD1 blocks

    Content is GLB with EXT_mesh_features and EXT_structural_metadata (id, name, height,
    storeys, usage, source), quantized and compressed with EXT_meshopt_compression for mobile
    clients (--no-meshopt leaves the meshes uncompressed).
    """
    from pipelines.export3d import footprints_tileset, models_to_tileset

    layers = [s.split(":", 1)[1] for s in sources if s.startswith("layer:")]
    files = [Path(s) for s in sources if not s.startswith("layer:")]
    if layers and files:
        raise click.UsageError("give either layer:NAME or model files, not both")
    if len(layers) > 1:
        raise click.UsageError("give one layer:NAME per tileset")
    if layers and textures:
        raise click.UsageError("--textures is for CityGML/CityJSON files; footprints have no textures")
    if layers:
        report = footprints_tileset(project, layers[0], out, b3dm_mode=b3dm, compress=meshopt, implicit=implicit)
    else:
        report, messages = models_to_tileset(files, out, crs=crs, lod=lod, b3dm_mode=b3dm,
                                             compress=meshopt is not False, implicit=implicit, textures=textures)
        for m in messages:
            click.echo(m, err=True)  # each example already says what was skipped and why
    click.echo(report.summary())


@main.command()
@click.argument("records", type=click.Path(path_type=Path))
@click.option("--layer", default=None,
              help="Publish the placed records as this pois layer (lower-case letters, digits, underscores).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write every record, placed or not, to this GeoPackage (replaced atomically), with "
                   "OUT.unmatched.csv and OUT.disagreements.csv next to it.")
@click.option("--project", default=".", type=click.Path(file_okay=False, path_type=Path), show_default=True,
              help="Project folder holding citytwin.yaml and the reference layers.")
@click.option("--encoding", default=None, help="Text encoding of a CSV, e.g. cp949 or euc-kr. Default: UTF-8, else CP949.")
@click.option("--address-column", "address_columns", multiple=True,
              help="Column with the address text (repeatable: road and lot address; the best match wins). "
                   "Default: found by name (address, 주소, 도로명주소, 소재지 ...).")
@click.option("--lon-column", default=None, help="Longitude column (default: lon, lng, x, 경도 ...).")
@click.option("--lat-column", default=None, help="Latitude column (default: lat, y, 위도 ...).")
@click.option("--ignore-coordinates", is_flag=True,
              help="Place every record by its address alone, even when it has lon/lat (kept as attributes).")
@click.option("--id-column", default=None, help="Column with a stable record id (default: the row number).")
@click.option("--as-reference", is_flag=True,
              help="Also use this layer as address points for later geocoding (addresses with known positions).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal only).")
def geotag(records: Path, layer: str | None, out: Path | None, project: Path, encoding: str | None,
           address_columns: tuple[str, ...], lon_column: str | None, lat_column: str | None,
           ignore_coordinates: bool, id_column: str | None, as_reference: bool, progress: bool | None) -> None:
    """Geocode administrative RECORDS (CSV, XLSX, JSON); publish them as a POI layer and/or write --out.

    \b
    Addresses such as "서울특별시 중구 세종대로 110", "서울시 중구 태평로1가 31" or
    "서울 종로구 사직로 161 (세종로) 3층" are matched against the project's reference
    layers, tier by tier: address point -> building -> dong -> gu. Each record gets
    geocode_tier (the precision), geocode_score, geocode_match, geocode_source and
    address_flags (range, vague_area, office_address ...: messy rows are flagged, never
    dropped). Records that carry lon/lat keep them, and coord_check says whether the
    point lies in the gu the address names. Names: name_ko/en/ja/zh from the record's
    columns; name_en is the Revised Romanization of name_ko when the record has none.

    \b
    Precision depends on the reference layers in the project; without a tier's layer,
    addresses stop at the tier above, and the report names the missing layers:
      gu boundaries        citytwin ingest gu.json --layer gu --kind boundaries
      dong boundaries      citytwin ingest dong.json --layer dong --kind boundaries
      addressed buildings  citytwin ingest blds.shp --layer buildings --kind buildings
                           (footprints with a 도로명주소/지번주소/address field)
      address points       citytwin geotag addrs.csv --layer addrs --as-reference

    \b
    Personal data never reaches the output: resident registration numbers, mobile
    numbers and e-mails are masked (or hashed/dropped, per the catalog's privacy:
    entry), person-name fields are masked, and an audit is written. Columns named
    like personal identifiers (주민등록번호, 주민번호, 외국인등록번호, 여권번호,
    운전면허번호, rrn, jumin, passport ...) or whose values are mostly RRNs, mobile
    numbers or e-mails are withheld whole; the audit says which and why. Example:
      citytwin ingest gu.json --layer gu --kind boundaries --project city
      citytwin ingest dong.json --layer dong --kind boundaries --project city
      citytwin geotag 민원.csv --address-column 주소 --out 민원.gpkg --project city
      citytwin geotag 민원.csv --layer complaints --encoding cp949 --project city
    """
    from pipelines.geotag import geotag_records

    report = geotag_records(project, records, layer, encoding=encoding, address_columns=list(address_columns) or None,
                            lon_column=lon_column, lat_column=lat_column, id_column=id_column,
                            as_reference=as_reference, out=out, ignore_coordinates=ignore_coordinates,
                            progress=progress)
    click.echo(report.summary())


@main.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--feed", required=True, help="The GTFS feed it belongs to: its name under 'realtime:' in citytwin.yaml.")
@click.option("--type", "kind", required=True, type=click.Choice(["vehicle_positions", "trip_updates", "alerts"]))
@click.option("--project", default=".", type=click.Path(file_okay=False, path_type=Path), show_default=True)
def realtime(path: Path, feed: str, kind: str, project: Path) -> None:
    """Load a GTFS-Realtime feed file (protobuf) into the feed's live layers or departures.

    The same checks as a polled feed: a stale, malformed or foreign feed is refused and
    what is served stays as it was.
    """
    from pipelines.catalog import load_catalog
    from pipelines.gtfs_rt.decode import read_file
    from pipelines.gtfs_rt.load import feed_config, load_feed

    catalog = load_catalog(project)
    data = read_file(path, feed_config(catalog, feed).max_bytes)
    click.echo(load_feed(catalog, feed, kind, data, str(path)).summary())


@main.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--layer", required=True, help="Name of the published pois layer.")
@click.option("--project", default=".", type=click.Path(file_okay=False, path_type=Path), show_default=True)
def photos(directory: Path, layer: str, project: Path) -> None:
    """Publish the positions of the photos and videos under DIRECTORY as a POI layer.

    \b
    JPEG: EXIF GPS position, altitude, camera direction (GPSImgDirection) and time.
    MP4/MOV: the ISO 6709 location atom (©xyz, or QuickTime's location key).
    Each point gets the gu and dong it falls in, from the project's boundary layers.
    Files without a position are listed in the summary and the audit, not dropped silently.
    """
    from pipelines.geotag import geotag_photos

    click.echo(geotag_photos(project, directory, layer).summary())


@main.command("privacy-scan")
@click.argument("target")
@click.option("--detect", "detect", multiple=True, type=click.Choice(["rrn", "mobile", "email"]),
              help="Only these detectors (repeatable). Default: all three.")
def privacy_scan(target: str, detect: tuple[str, ...]) -> None:
    """Scan a published artifact for personal data; exit 3 when any is found.

    \b
    TARGET is one of:
      build/citytwin.gpkg            every value of every layer
      build/tiles/pois.pmtiles       every tile decoded, every feature property
      build/live/incidents.sqlite    every stored item of a live layer
      build/                         every .gpkg, .pmtiles and live/*.sqlite under the folder
      http://127.0.0.1:8000          a running server: every collection's items (paged
                                     GeoJSON) and its vector tiles
    Detectors: resident registration numbers (pattern, date and check digit; any date
    next to a label such as 주민번호), personal mobile numbers, e-mails, on NFKC text
    (full-width digits count); and columns named or filled like personal identifiers.
    Hits are listed with file/layer/feature/field or URL and a
    masked value; the value itself is never printed.
    """
    from pipelines.privacy_scan import EXIT_LEAK, scan

    report = scan(target, detect or ("rrn", "mobile", "email"))
    click.echo(report.summary())
    if report.hits:
        sys.exit(EXIT_LEAK)


@main.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", "name", required=True, help="Raster layer name: lower-case letters, digits, underscores.")
@click.option("--crs", default=None, help="Source CRS when the raster has none, e.g. EPSG:5186.")
@click.option("--accept-source-crs", is_flag=True,
              help="Keep a CRS that lacks its datum shift (a Bessel grid without TOWGS84) although it lands "
                   "hundreds of metres off; declaring --crs is better.")
@click.option("--title", default=None, help="Title shown in the viewer and the API.")
@click.option("--project", default=".", type=click.Path(file_okay=False, path_type=Path), show_default=True,
              help="Project folder holding citytwin.yaml.")
def raster(path: Path, name: str, crs: str | None, accept_source_crs: bool, title: str | None,
           project: Path) -> None:
    """Publish a hazard raster (GeoTIFF or any GDAL raster, any CRS) as a COG layer NAME.

    The COG goes to <build>/cog/NAME.tif, validated, and is served by titiler under
    /cog (tiles, TileJSON, point values, statistics) with ?name=NAME.
    """
    from pipelines.rasters import add_raster

    click.echo(add_raster(project, path, name, crs=crs, title=title, accept_source_crs=accept_source_crs).summary())


@main.command()
@click.argument("points", type=click.Path(path_type=Path))
@click.option("--layer", "layer", required=True, help="Name of the hotspot layer to publish.")
@click.option("--h3-res", type=click.IntRange(0, 15), default=None, help="Count per H3 cell of this resolution (9: ~0.1 km2).")
@click.option("--by-layer", default=None, help="Count per polygon of this layer instead (e.g. dong).")
@click.option("--kind", type=click.Choice(["hazard_zones", "generic"]), default="hazard_zones", show_default=True)
@click.option("--crs", default=None, help="Source CRS of POINTS when the file lacks one.")
@click.option("--accept-source-crs", is_flag=True,
              help="Keep a CRS that lacks its datum shift (a Bessel .prj); declaring --crs is better.")
@click.option("--encoding", default=None, help="Text encoding of POINTS, e.g. cp949.")
@click.option("--project", default=".", type=click.Path(file_okay=False, path_type=Path), show_default=True)
def hotspots(points: Path, layer: str, h3_res: int | None, by_layer: str | None, kind: str, crs: str | None,
             accept_source_crs: bool, encoding: str | None, project: Path) -> None:
    """Count point records (accidents, crime reports) per H3 cell or admin area; publish as LAYER."""
    from pipelines.hotspots import build_hotspots

    click.echo(build_hotspots(project, points, layer, h3_res=h3_res, by_layer=by_layer, crs=crs,
                              accept_source_crs=accept_source_crs, encoding=encoding, kind=kind).summary())


@main.command("sample-city")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", default=20151, show_default=True, type=int)
def sample_city(directory: Path, seed: int) -> None:
    """Write the sample district of central Seoul (sources + catalog) into DIRECTORY."""
    from pipelines.sample_city import generate

    for line in generate(directory, seed=seed):
        click.echo(line)


if __name__ == "__main__":  # pragma: no cover
    main()
