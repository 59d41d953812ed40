// citytwin viewer: one MapLibre map over the project's own vector tiles.
// Everything it loads comes from this server: the style (/styles/<id>), each layer's
// TileJSON and tiles, and MapLibre itself (vendor/, from npm). No base map, no glyphs.
import { Map, NavigationControl, Popup, ScaleControl } from "./vendor/maplibre-gl/dist/maplibre-gl.mjs";

const DEFAULT_STYLE = "base";
const STYLE_ID = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const GROUP_KEY = "citytwin:group";
const POPUP_KEY = "citytwin:popup";
const BUILDINGS_LAYER = "buildings-3d";

// Read by the browser tests (and handy in the console).
const state = { loaded: false, buildingsRendered: 0, missingSources: [], errors: [] };
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

// Style source URLs are server-relative, which MapLibre cannot use as is: tile URLs are
// fetched in a worker whose base URL is the vendor folder. So fetch each TileJSON here
// and inline it with absolute tile URLs. A layer this server does not publish is dropped
// (with its style layers) and listed in the panel, instead of failing the whole map.
async function resolveSources(style) {
  const entries = await Promise.all(
    Object.entries(style.sources).map(async ([name, source]) => {
      if (source.type !== "vector" || !source.url) return [name, source];
      try {
        const tj = await fetchJSON(absolute(source.url));
        const inlined = { type: "vector", tiles: tj.tiles.map(absolute) };
        for (const key of ["minzoom", "maxzoom", "bounds", "attribution", "scheme"]) {
          if (tj[key] !== undefined) inlined[key] = tj[key];
        }
        return [name, inlined];
      } catch (err) {
        if (err.status === 404) return [name, null];
        throw err;
      }
    }),
  );
  const sources = {};
  for (const [name, source] of entries) {
    if (source) sources[name] = source;
    else state.missingSources.push(name);
  }
  const layers = style.layers.filter((layer) => !layer.source || sources[layer.source]);
  return { style: { ...style, sources, layers }, dropped: style.layers.filter((l) => !layers.includes(l)) };
}

function buildLayerPanel(map, style, dropped) {
  const groups = new globalThis.Map(); // name -> layer ids (the maplibre Map shadows the global)
  for (const layer of [...style.layers, ...dropped]) {
    const group = layer.metadata?.[GROUP_KEY];
    if (!group) continue;
    if (!groups.has(group)) groups.set(group, []);
    if (!dropped.includes(layer)) groups.get(group).push(layer.id);
  }
  const list = document.getElementById("layer-list");
  list.replaceChildren();
  for (const [group, ids] of groups) {
    const item = document.createElement("li");
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.dataset.group = group;
    box.checked = ids.length > 0;
    box.disabled = ids.length === 0;
    box.addEventListener("change", () => {
      for (const id of ids) map.setLayoutProperty(id, "visibility", box.checked ? "visible" : "none");
    });
    label.append(box, ` ${group}`);
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

// The legend is read from the style's own colour ramp, so the two cannot disagree.
function buildLegend(style) {
  const spec = style.metadata?.["citytwin:legend"];
  const layer = spec && style.layers.find((l) => l.id === spec.layer);
  const paint = layer?.paint ?? {};
  const ramp = paint["fill-extrusion-color"] ?? paint["fill-color"] ?? paint["circle-color"];
  if (!Array.isArray(ramp) || !["interpolate", "step"].includes(ramp[0])) return;
  // interpolate: [op, kind, input, v0, c0, v1, c1, ...]; step: [op, input, c0, v1, c1, ...]
  const stops = ramp[0] === "interpolate" ? [] : [[null, ramp[2]]];
  for (let i = 3; i + 1 < ramp.length; i += 2) {
    stops.push([ramp[i], ramp[i + 1]]);
  }
  const legend = document.getElementById("legend");
  const title = document.createElement("h2");
  title.textContent = spec.title || spec.layer;
  const list = document.createElement("ul");
  stops.forEach(([value, colour], i) => {
    const row = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = colour;
    const next = stops[i + 1]?.[0];
    const text = value === null ? `< ${next}` : next === undefined ? `≥ ${value}` : `${value} – ${next}`;
    row.append(swatch, text);
    list.append(row);
  });
  legend.replaceChildren(title, list);
  legend.hidden = false;
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

async function start() {
  const styleId = styleIdFromQuery();
  const { style, dropped } = await resolveSources(await fetchJSON(absolute(`/styles/${styleId}`)));
  const map = new Map({
    container: "map",
    style,
    center: style.center ?? [126.978, 37.5665],
    zoom: style.zoom ?? 15,
    pitch: style.pitch ?? 45,
    bearing: style.bearing ?? 0,
    attributionControl: { compact: true },
  });
  window.citytwinViewer.map = map;
  map.addControl(new NavigationControl({ visualizePitch: true }), "top-right");
  map.addControl(new ScaleControl(), "bottom-right");
  map.on("error", (ev) => reportError(ev.error?.message || String(ev.error)));

  // "idle": every visible tile is loaded and drawn, so the building count is what is on
  // screen. Listen before "load": the first idle can fire in the same frame as "load".
  const firstIdle = new Promise((resolve) => map.once("idle", resolve));
  await new Promise((resolve) => map.once("load", resolve));
  buildLayerPanel(map, style, dropped);
  buildLegend(style);
  enablePopups(map, style);

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
