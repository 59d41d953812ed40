// citytwin viewer: one MapLibre map over the project's own vector tiles.
// Everything it loads comes from this server: the style (/styles/<id>), the list of
// published layers (/viewer/layers.json, from the catalog), each layer's TileJSON and
// tiles, and MapLibre itself (vendor/, from npm). No base map; labels are drawn with the
// browser's own fonts (no glyphs URL).
// Overlay styles (?overlays=hazard,transit,tourism by default) are merged in, each group
// with its own toggle; what the server does not publish is listed, not fetched. Every
// published vector layer no style draws is drawn by its kind, with its catalog title.
// The map opens on the data's extent; the view is kept in the URL hash.
import { Map, NavigationControl, Popup, ScaleControl } from "./vendor/maplibre-gl/dist/maplibre-gl.mjs";

const DEFAULT_STYLE = "base";
const STYLE_ID = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const GROUP_KEY = "citytwin:group";
const POPUP_KEY = "citytwin:popup";
const BUILDINGS_LAYER = "buildings-3d";
const DEFAULT_OVERLAYS = ["hazard", "transit", "tourism"];
const LAYERS_URL = "/viewer/layers.json";
const FIT_PADDING = 40; // px around the data when the map opens on it
const FIT_MAX_ZOOM = 17; // a single point would otherwise open at the deepest zoom
// Generated layers of all kinds stack areas under lines under points under labels.
const TYPE_RANK = { fill: 0, "fill-extrusion": 1, line: 2, circle: 3, symbol: 4 };
// Tile templates of our titiler mount (/cog/tiles/<tms>/{z}/{x}/{y}[@nx][.ext]?name=...).
const COG_TILES = /^(.*\/cog)\/tiles\/([^/]+)\/\{z\}\/\{x\}\/\{y\}[^?]*(\?.*)?$/;
const COLLECTION_TILEJSON = /\/collections\/([^/]+)\/tiles\/[^/]+\/tilejson\.json$/;

// Read by the browser tests (and handy in the console).
// overlays: id -> {title, groups: [[group, published]], missing: [source]}; tilesLoaded: source -> tiles;
// catalogLayers: the layers drawn by kind, [{id, group, colour, layers: [style layer ids]}];
// dataBbox: the extent the map opens on.
const state = {
  loaded: false, buildingsRendered: 0, missingSources: [], errors: [], overlays: {}, tilesLoaded: {},
  catalogLayers: [], dataBbox: null,
};
window.__viewerState = state;

const statusEl = document.getElementById("status");

function setStatus(text, isError = false) {
  statusEl.textContent = text;
  statusEl.classList.toggle("error", isError);
}

function reportError(message) {
  state.errors.push(message);
  console.error(`citytwin viewer: ${message}`);
  setStatus(message, true);
}

// URL resolves relative to the page but percent-encodes the {z}/{x}/{y} of tile
// templates, which MapLibre then cannot fill in: put the braces back.
function absolute(url) {
  return new URL(url, window.location.href).href.replace(/%7B/gi, "{").replace(/%7D/gi, "}");
}

async function fetchJSON(url) {
  const resp = await fetch(url, { headers: { Accept: "application/json" } });
  if (!resp.ok) {
    const err = new Error(`${resp.status} ${resp.statusText} for ${url}`);
    err.status = resp.status;
    throw err;
  }
  return resp.json();
}

function styleIdFromQuery() {
  const id = new URLSearchParams(window.location.search).get("style") || DEFAULT_STYLE;
  if (!STYLE_ID.test(id)) {
    throw new Error(`style id ${JSON.stringify(id)} is not valid: use lower-case letters, digits, - and _`);
  }
  return id;
}

function overlayIdsFromQuery() {
  const raw = new URLSearchParams(window.location.search).get("overlays");
  const ids = raw === null ? DEFAULT_OVERLAYS : raw.split(",").filter(Boolean);
  for (const id of ids) {
    if (!STYLE_ID.test(id)) throw new Error(`overlay id ${JSON.stringify(id)} is not valid`);
  }
  return ids;
}

// What the server publishes, asked once: an unpublished layer is then skipped without a
// request that would fail (and log a 404 in the console).
async function publishedLayers() {
  const [catalog, rasters] = await Promise.all([fetchJSON(absolute(LAYERS_URL)), fetchJSON(absolute("/cog/layers"))]);
  return {
    catalog, vector: new Set(catalog.layers.map((l) => l.id)), raster: new Set(rasters.layers.map((l) => l.name)),
  };
}

// Which published layer a style source stands for, when it is one of ours.
function publishedRef(source) {
  if (source.url) {
    const m = new URL(absolute(source.url)).pathname.match(COLLECTION_TILEJSON);
    return m ? { kind: "vector", id: decodeURIComponent(m[1]) } : null;
  }
  const m = source.type === "raster" && source.tiles?.length ? absolute(source.tiles[0]).match(COG_TILES) : null;
  if (!m) return null;
  return { kind: "raster", id: new URLSearchParams(m[3] ?? "").get("name"), tilejson: `${m[1]}/${m[2]}/tilejson.json${m[3] ?? ""}` };
}

// Style source URLs are server-relative, which MapLibre cannot use as is: tile URLs are
// fetched in a worker whose base URL is the vendor folder. So fetch each TileJSON here
// and inline it with absolute tile URLs; raster tile templates are made absolute and get
// their raster's bounds (titiler answers 404 outside them). null: not published.
async function resolveSource(source, published) {
  const ref = publishedRef(source);
  if (ref && !published[ref.kind].has(ref.id)) return null;
  try {
    if (source.url) {
      const tj = await fetchJSON(absolute(source.url));
      const inlined = { type: source.type, tiles: tj.tiles.map(absolute) };
      for (const key of ["minzoom", "maxzoom", "bounds", "attribution", "scheme"]) {
        if (tj[key] !== undefined) inlined[key] = tj[key];
      }
      if (source.tileSize !== undefined) inlined.tileSize = source.tileSize;
      return inlined;
    }
    if (source.tiles) {
      const inlined = { ...source, tiles: source.tiles.map(absolute) };
      if (ref?.tilejson) {
        const tj = await fetchJSON(ref.tilejson);
        if (tj.bounds) inlined.bounds = tj.bounds;
      }
      return inlined;
    }
  } catch (err) {
    if (err.status === 404) return null;
    throw err;
  }
  return source;
}

async function resolveSources(style, published) {
  const entries = await Promise.all(
    Object.entries(style.sources).map(async ([name, source]) => [name, await resolveSource(source, published)]),
  );
  const sources = {};
  const missing = [];
  for (const [name, source] of entries) {
    if (source) sources[name] = source;
    else missing.push(name);
  }
  return { sources, missing };
}

// The vector layers (collection ids) that the named sources of a style stand for.
function styledLayers(styleSources, names) {
  return names.map((name) => publishedRef(styleSources[name]))
    .filter((ref) => ref?.kind === "vector").map((ref) => ref.id);
}

// styled: the collection ids some style already has toggles for (drawn, or listed as not
// published), so no layer gets a second toggle.
async function resolveBase(style, published, styled) {
  const { sources, missing } = await resolveSources(style, published);
  state.missingSources.push(...missing);
  styledLayers(style.sources, Object.keys(style.sources)).forEach((id) => styled.add(id));
  const layers = style.layers.filter((layer) => !layer.source || sources[layer.source]);
  return { style: { ...style, sources, layers }, dropped: style.layers.filter((l) => !layers.includes(l)) };
}

// An overlay style's sources and layers; its background is the base's job, and a layer an
// earlier style already lists is left to that style (the tourism style's landmarks were a
// second "Landmarks" toggle beside the base's). Vector layers are shown at first, rasters
// hidden: they cover what is under them.
async function resolveOverlay(id, published, merged, styled) {
  let style;
  try {
    style = await fetchJSON(absolute(`/styles/${id}`));
  } catch (err) {
    if (err.status === 404) return { id, title: id, sources: {}, layers: [], dropped: [], missing: [`style ${id}`] };
    throw err;
  }
  const repeated = new Set(Object.keys(style.sources)
    .filter((name) => styledLayers(style.sources, [name]).some((l) => styled.has(l))));
  const fresh = Object.fromEntries(Object.entries(style.sources)
    .filter(([name]) => !merged.sources[name] && !repeated.has(name)));
  const { sources, missing } = await resolveSources({ sources: fresh }, published);
  styledLayers(style.sources, Object.keys(fresh)).forEach((l) => styled.add(l));
  const known = { ...merged.sources, ...sources };
  const ids = new Set(merged.layers.map((l) => l.id));
  const layers = [];
  const dropped = [];
  for (const layer of style.layers) {
    if (layer.type === "background" || ids.has(layer.id) || repeated.has(layer.source)) continue;
    if (layer.source && !known[layer.source]) dropped.push(layer);
    else if (known[layer.source]?.type !== "raster") layers.push(layer);
    else layers.push({ ...layer, layout: { ...(layer.layout ?? {}), visibility: "none" } });
  }
  const title = style.name?.replace(/^citytwin\s+/, "") || id;
  return { id, title: title[0].toUpperCase() + title.slice(1), sources, layers, dropped, missing };
}

// Every published vector layer no style draws, with the server's style layers for its kind,
// under its catalog title (a title some style group already uses gets the layer id added).
async function resolveCatalogLayers(published, styled, merged) {
  const entries = published.catalog.layers.filter((entry) => !styled.has(entry.id));
  const resolved = await Promise.all(entries.map((e) => (e.tilejson
    ? resolveSource({ type: "vector", url: e.tilejson }, published)
    : { type: "vector", tiles: [absolute(e.tiles)], minzoom: e.minzoom, maxzoom: e.maxzoom })));
  const taken = new Set(merged.layers.map((l) => l.metadata?.[GROUP_KEY]).filter(Boolean));
  const ids = new Set(merged.layers.map((l) => l.id));
  const sources = {};
  const layers = [];
  entries.forEach((entry, i) => {
    if (!resolved[i]) {
      state.missingSources.push(entry.id);
      return;
    }
    if (merged.sources[entry.id] || entry.style.some((l) => ids.has(l.id))) {
      console.warn(`citytwin viewer: layer ${entry.id} not drawn by kind: a style uses its source or layer ids`);
      return;
    }
    const group = taken.has(entry.title) ? `${entry.title} (${entry.id})` : entry.title;
    taken.add(group);
    sources[entry.id] = resolved[i];
    layers.push(...entry.style.map((l) => ({ ...l, metadata: { ...l.metadata, [GROUP_KEY]: group } })));
    state.catalogLayers.push({ id: entry.id, group, colour: entry.colour, layers: entry.style.map((l) => l.id) });
  });
  // listed in catalog order, drawn areas under lines under points under labels
  const drawn = [...layers].sort((a, b) => TYPE_RANK[a.type] - TYPE_RANK[b.type]);
  return { id: "catalog", sources, layers: drawn, listed: layers, dropped: [], under: ["fill", "line"] };
}

// A GTFS-Realtime layer's tiles are served no-cache (no max-age for MapLibre to expire them by),
// so vehicles would stay where the page first saw them: ask again at the feed's interval (the
// server answers 304 for a tile the feed did not change).
function refreshFeedLayers(map, entries) {
  for (const entry of entries) {
    if (entry.refresh_s && map.getSource(entry.id)) {
      setInterval(() => map.refreshTiles(entry.id), entry.refresh_s * 1000);
    }
  }
}

// Overlay rasters and fills go under the 3D buildings (and so do the lines of layers drawn
// by kind, like the base style's boundaries); other lines and points on top of everything.
function mergeOverlays(style, overlays) {
  const sources = { ...style.sources };
  const under = [];
  const over = [];
  for (const overlay of overlays) {
    Object.assign(sources, overlay.sources);
    const below = overlay.under ?? ["raster", "fill", "hillshade"];
    for (const layer of overlay.layers) (below.includes(layer.type) ? under : over).push(layer);
  }
  const cut = style.layers.findIndex((l) => l.type === "fill-extrusion");
  const at = cut < 0 ? style.layers.length : cut;
  return { ...style, sources, layers: [...style.layers.slice(0, at), ...under, ...style.layers.slice(at), ...over] };
}

function groupsOf(layers, dropped) {
  const groups = new globalThis.Map(); // name -> layer ids (the maplibre Map shadows the global)
  for (const layer of [...layers, ...dropped]) {
    const group = layer.metadata?.[GROUP_KEY];
    if (!group) continue;
    if (!groups.has(group)) groups.set(group, []);
    if (!dropped.includes(layer)) groups.get(group).push(layer.id);
  }
  return groups;
}

// One checkbox per group, ticked when its layers are shown; colours: group -> legend swatch.
function buildToggles(map, list, groups, overlay = null, colours = new globalThis.Map()) {
  list.replaceChildren();
  for (const [group, ids] of groups) {
    const item = document.createElement("li");
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.dataset.group = group;
    if (overlay) box.dataset.overlay = overlay;
    box.checked = ids.some((id) => map.getLayoutProperty(id, "visibility") !== "none");
    box.disabled = ids.length === 0;
    box.addEventListener("change", () => {
      for (const id of ids) map.setLayoutProperty(id, "visibility", box.checked ? "visible" : "none");
    });
    label.append(box, " ");
    if (colours.has(group)) label.append(swatch(colours.get(group)), " ");
    label.append(group);
    if (ids.length === 0) {
      const note = document.createElement("span");
      note.className = "note";
      note.textContent = " (not published)";
      label.append(note);
    }
    item.append(label);
    list.append(item);
  }
}

function swatch(colour) {
  const el = document.createElement("span");
  el.className = "swatch";
  el.style.background = colour;
  return el;
}

function buildLayerPanel(map, style, dropped, catalogLayers) {
  const colours = new globalThis.Map(state.catalogLayers.map((l) => [l.group, l.colour]));
  const groups = groupsOf([...style.layers, ...dropped, ...catalogLayers.listed], dropped);
  buildToggles(map, document.getElementById("layer-list"), groups, null, colours);
}

function buildOverlayPanel(map, overlays) {
  const panel = document.getElementById("overlay-list");
  panel.replaceChildren();
  for (const overlay of overlays) {
    const groups = groupsOf(overlay.layers, overlay.dropped);
    state.overlays[overlay.id] = {
      title: overlay.title, missing: overlay.missing, groups: [...groups].map(([g, ids]) => [g, ids.length > 0]),
    };
    if (!groups.size) continue;
    const heading = document.createElement("h3");
    heading.textContent = overlay.title;
    const list = document.createElement("ul");
    list.dataset.overlay = overlay.id;
    buildToggles(map, list, groups, overlay.id);
    panel.append(heading, list);
  }
  document.getElementById("overlays").hidden = !panel.childElementCount;
}

// The legend: the base style's colour ramp, then the catalog title and colour of each layer
// drawn by its kind.
function buildLegend(style) {
  const blocks = [...rampLegend(style), ...catalogLegend()];
  const legend = document.getElementById("legend");
  legend.replaceChildren(...blocks);
  legend.hidden = !blocks.length;
}

function legendBlock(title, className, rows) {
  const heading = document.createElement("h2");
  heading.textContent = title;
  const list = document.createElement("ul");
  list.className = className;
  for (const [colour, text] of rows) {
    const row = document.createElement("li");
    row.append(swatch(colour), text);
    list.append(row);
  }
  return [heading, list];
}

// Read from the style's own colour ramp, so the two cannot disagree.
function rampLegend(style) {
  const spec = style.metadata?.["citytwin:legend"];
  const layer = spec && style.layers.find((l) => l.id === spec.layer);
  const paint = layer?.paint ?? {};
  const ramp = paint["fill-extrusion-color"] ?? paint["fill-color"] ?? paint["circle-color"];
  if (!Array.isArray(ramp) || !["interpolate", "step"].includes(ramp[0])) return [];
  // interpolate: [op, kind, input, v0, c0, v1, c1, ...]; step: [op, input, c0, v1, c1, ...]
  const stops = ramp[0] === "interpolate" ? [] : [[null, ramp[2]]];
  for (let i = 3; i + 1 < ramp.length; i += 2) {
    stops.push([ramp[i], ramp[i + 1]]);
  }
  const rows = stops.map(([value, colour], i) => {
    const next = stops[i + 1]?.[0];
    return [colour, value === null ? `< ${next}` : next === undefined ? `≥ ${value}` : `${value} – ${next}`];
  });
  return legendBlock(spec.title || spec.layer, "ramp", rows);
}

function catalogLegend() {
  if (!state.catalogLayers.length) return [];
  return legendBlock("Layer colours", "catalog-layers", state.catalogLayers.map((l) => [l.colour, l.group]));
}

function popupContent(layerId, properties) {
  const wrap = document.createElement("div");
  const heading = document.createElement("strong");
  heading.textContent = properties.name || properties.name_en || properties.name_ko || layerId;
  const table = document.createElement("table");
  for (const [key, value] of Object.entries(properties)) {
    const row = table.insertRow();
    row.insertCell().textContent = key;
    row.insertCell().textContent = typeof value === "number" && !Number.isInteger(value) ? value.toFixed(1) : String(value);
  }
  wrap.append(heading, table);
  return wrap;
}

function enablePopups(map, style) {
  const popup = new Popup({ maxWidth: "320px" });
  for (const layer of style.layers.filter((l) => l.metadata?.[POPUP_KEY])) {
    map.on("click", layer.id, (ev) => {
      const feature = ev.features?.[0];
      if (!feature) return;
      popup.setLngLat(ev.lngLat).setDOMContent(popupContent(layer.id, feature.properties)).addTo(map);
    });
    map.on("mouseenter", layer.id, () => { map.getCanvas().style.cursor = "pointer"; });
    map.on("mouseleave", layer.id, () => { map.getCanvas().style.cursor = ""; });
  }
}

function countBuildings(map) {
  if (!map.getLayer(BUILDINGS_LAYER)) return 0;
  return map.queryRenderedFeatures({ layers: [BUILDINGS_LAYER] }).length;
}

// Whether MapLibre took the view from the URL hash (#zoom/lat/lng[/bearing/pitch]), by its own
// rules (numbers within the map's ranges), so the map opens on the data exactly when it did not.
// `hash`: as the page was opened; the map rewrites it with its own view at once.
function viewFromHash(map, hash) {
  const parts = hash.replace(/^#/, "").split("&")[0].split("/");
  if (parts.length < 3 || parts.some((p) => Number.isNaN(+p))) return false;
  const [zoom, lat, , bearing = 0, pitch = 0] = parts.map(Number);
  return Math.abs(lat) <= 90 && zoom >= map.getMinZoom() && zoom <= map.getMaxZoom()
    && Math.abs(bearing) <= 180 && pitch >= map.getMinPitch() && pitch <= map.getMaxPitch();
}

// The whole extent of the data, but never above the lowest zoom any layer has tiles at
// (a country-wide extent would otherwise open on an empty map).
function openOnData(map, bbox, minzoom) {
  const camera = map.cameraForBounds(bbox, { padding: FIT_PADDING, bearing: map.getBearing() });
  const centre = camera?.center ?? [(bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2];
  const zoom = Math.min(Math.max(camera?.zoom ?? 0, minzoom ?? 0), FIT_MAX_ZOOM);
  map.jumpTo({ center: centre, zoom });
}

async function start() {
  const styleId = styleIdFromQuery();
  const overlayIds = overlayIdsFromQuery().filter((id) => id !== styleId);
  const [published, baseStyle] = await Promise.all([publishedLayers(), fetchJSON(absolute(`/styles/${styleId}`))]);
  const styled = new Set();
  const { style, dropped } = await resolveBase(baseStyle, published, styled);
  const overlays = [];
  for (const id of overlayIds) {
    const merged = mergeOverlays(style, overlays);
    overlays.push(await resolveOverlay(id, published, merged, styled));
  }
  const catalogLayers = await resolveCatalogLayers(published, styled, mergeOverlays(style, overlays));
  const full = mergeOverlays(style, [catalogLayers, ...overlays]);
  const { bbox, minzoom } = published.catalog;
  state.dataBbox = bbox;
  const openedWith = window.location.hash;
  const map = new Map({
    container: "map",
    style: full,
    center: bbox ? [(bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2] : style.center ?? [0, 0],
    zoom: bbox ? minzoom ?? 0 : style.zoom ?? 2,
    pitch: style.pitch ?? 45,
    bearing: style.bearing ?? 0,
    hash: true,
    attributionControl: { compact: true },
  });
  if (bbox && !viewFromHash(map, openedWith)) openOnData(map, bbox, minzoom);
  window.citytwinViewer.map = map;
  map.addControl(new NavigationControl({ visualizePitch: true }), "top-right");
  map.addControl(new ScaleControl(), "bottom-right");
  map.on("error", (ev) => reportError(ev.error?.message || String(ev.error)));
  map.on("sourcedata", (ev) => {
    if (ev.tile && ev.sourceId) state.tilesLoaded[ev.sourceId] = (state.tilesLoaded[ev.sourceId] ?? 0) + 1;
  });

  // "idle": every visible tile is loaded and drawn, so the building count is what is on
  // screen. Listen before "load": the first idle can fire in the same frame as "load".
  const firstIdle = new Promise((resolve) => map.once("idle", resolve));
  await new Promise((resolve) => map.once("load", resolve));
  refreshFeedLayers(map, published.catalog.layers);
  buildLayerPanel(map, style, dropped, catalogLayers);
  buildOverlayPanel(map, overlays);
  buildLegend(style);
  enablePopups(map, full);

  await firstIdle;
  const missing = state.missingSources.length ? ` · not published: ${state.missingSources.join(", ")}` : "";
  const onIdle = () => {
    state.buildingsRendered = countBuildings(map);
    if (!state.errors.length) setStatus(`${state.buildingsRendered} buildings in view${missing}`);
  };
  onIdle();
  map.on("idle", onIdle);
  state.loaded = true;
  return state;
}

window.citytwinViewer = { map: null, ready: null, state };
window.citytwinViewer.ready = start().catch((err) => {
  reportError(err.message);
  throw err;
});
window.citytwinViewer.ready.catch(() => {}); // already reported; not an unhandled rejection
