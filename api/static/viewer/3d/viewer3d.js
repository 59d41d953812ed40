// citytwin 3D viewer: CesiumJS over the project's own 3D Tiles, offline.
// Everything comes from this server: Cesium (../vendor/, from npm), the list of 3D layers
// (/collections, GeoVolumes links), the tileset and the colour ramp (/styles/base). No Cesium
// ion, no imagery, no terrain service: a plain ellipsoid in one colour.
/* global Cesium */

const CITY_HALL = { lon: 126.978, lat: 37.5665 };
const VIEW = { altitude: 800, headingDeg: 0, pitchDeg: -35 };
const GEOVOLUMES_REL = "http://www.opengis.net/def/rel/ogc/1.0/3d-geovolumes";
const MODEL_KINDS = ["landmark_models", "city_model"]; // drawn with their own materials, not by height
const LAYER_ID = /^[a-z][a-z0-9_]{0,62}$/;
const STYLE_ID = "base";
const RAMP_LAYER = "buildings-3d";
// Used when the style has no height ramp: the same stops as styles/base.json.
const FALLBACK_RAMP = [[0, "#ffffcc"], [10, "#c7e9b4"], [20, "#7fcdbb"], [40, "#41b6c4"], [80, "#2c7fb8"],
  [150, "#253494"]];
const HIGHLIGHT = "#ff5a36";

// Read by the browser tests (and handy in the console).
const state = { loaded: false, tilesLoaded: 0, error: null, layer: null, selected: null, overlays: {} };
window.__viewer3dState = state;
window.citytwinViewer3d = { viewer: null, tileset: null, state };

const statusEl = document.getElementById("status");

function setStatus(text, isError = false) {
  statusEl.textContent = text;
  statusEl.classList.toggle("error", isError);
}

function reportError(message) {
  state.error = state.error ?? message;
  console.error(`citytwin 3D viewer: ${message}`);
  setStatus(message, true);
}

// Server paths are resolved against this page (/viewer/3d/), so a prefixed deployment works.
const serverUrl = (path) => new URL(`../../${path}`, window.location.href).href;

async function fetchJSON(url) {
  const resp = await fetch(url, { headers: { Accept: "application/json" } });
  if (!resp.ok) throw new Error(`${resp.status} ${resp.statusText} for ${url}`);
  return resp.json();
}

// The collections with 3D Tiles: the one to colour by height (named by ?layer=, else
// 'buildings', else the first that has features) and the model layers (placed landmark
// models, city models: the kind on their GeoVolumes link) drawn beside it with their own materials.
async function chooseLayers() {
  const asked = new URLSearchParams(window.location.search).get("layer");
  if (asked !== null && !LAYER_ID.test(asked)) {
    throw new Error(`layer ${JSON.stringify(asked)} is not a valid layer name`);
  }
  const doc = await fetchJSON(serverUrl("collections?f=json"));
  const with3d = doc.collections.filter((c) => (c.links || []).some((l) => l.rel === GEOVOLUMES_REL));
  const ids = with3d.map((c) => c.id);
  const kindOf = (c) => c.links.find((l) => l.rel === GEOVOLUMES_REL)["citytwin:kind"];
  const modelsOnly = with3d.filter((c) => MODEL_KINDS.includes(kindOf(c))).map((c) => c.id);
  let main;
  if (asked !== null) {
    if (!ids.includes(asked)) {
      throw new Error(`layer '${asked}' has no 3D Tiles (layers with 3D Tiles: ${ids.join(", ") || "none"})`);
    }
    main = asked;
  } else if (ids.includes("buildings")) {
    main = "buildings";
  } else {
    main = ids.find((id) => !modelsOnly.includes(id)) ?? ids[0];
  }
  if (main === undefined) {
    throw new Error("no layer has 3D Tiles yet: run 'citytwin build' for a project with a buildings layer");
  }
  return { main, overlays: modelsOnly.filter((id) => id !== main && LAYER_ID.test(id)) };
}

// Colour stops [height, css colour] from the 2D style's extrusion ramp, so both viewers agree.
async function heightRamp() {
  try {
    const style = await fetchJSON(serverUrl(`styles/${STYLE_ID}`));
    const ramp = style.layers.find((l) => l.id === RAMP_LAYER)?.paint?.["fill-extrusion-color"];
    if (Array.isArray(ramp) && ramp[0] === "interpolate") {
      const stops = [];
      for (let i = 3; i + 1 < ramp.length; i += 2) stops.push([Number(ramp[i]), String(ramp[i + 1])]);
      if (stops.length && stops.every(([v, c]) => Number.isFinite(v) && /^#[0-9a-f]{3,8}$/i.test(c))) return stops;
    }
  } catch (err) {
    console.warn(`citytwin 3D viewer: no colour ramp from /styles/${STYLE_ID} (${err.message}); using the default`);
  }
  return FALLBACK_RAMP;
}

// One colour per band [stop_i, stop_i+1): the bands the 2D legend shows. Number() turns a
// missing height into NaN, which matches no band and falls through to grey.
function heightStyle(stops) {
  const conditions = [...stops].reverse().map(([value, colour]) => [
    `Number(\${height}) >= ${value}`, `color('${colour}')`,
  ]);
  conditions.push(["true", "color('#bbbbbb')"]);
  return new Cesium.Cesium3DTileStyle({ color: { conditions } });
}

function buildLegend(stops) {
  const legend = document.getElementById("legend");
  const title = document.createElement("h2");
  title.textContent = "Height (m)";
  const list = document.createElement("ul");
  stops.forEach(([value, colour], i) => {
    const row = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = colour;
    const next = stops[i + 1]?.[0];
    row.append(swatch, next === undefined ? `≥ ${value}` : `${value} – ${next}`);
    list.append(row);
  });
  legend.replaceChildren(title, list);
  legend.hidden = false;
}

// Software WebGL (SwiftShader, llvmpipe: VMs, CI, headless browsers) renders every
// multisample on the CPU; there, skip MSAA so the city draws in seconds, not minutes.
function softwareRenderer() {
  try {
    const gl = document.createElement("canvas").getContext("webgl2") || document.createElement("canvas").getContext("webgl");
    const info = gl && gl.getExtension("WEBGL_debug_renderer_info");
    const name = info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : "";
    gl?.getExtension("WEBGL_lose_context")?.loseContext();
    return /swiftshader|llvmpipe|softpipe|software/i.test(String(name));
  } catch {
    return false;
  }
}

function createViewer() {
  Cesium.Ion.defaultAccessToken = ""; // never ask Cesium ion for anything
  const software = softwareRenderer();
  state.softwareRendering = software;
  const viewer = new Cesium.Viewer("globe", {
    baseLayer: false,
    baseLayerPicker: false,
    geocoder: false,
    homeButton: false,
    sceneModePicker: false,
    navigationHelpButton: false,
    animation: false,
    timeline: false,
    fullscreenButton: false,
    infoBox: false, // its sandboxed iframe logs errors; the panel shows the properties instead
    selectionIndicator: false,
    terrainProvider: new Cesium.EllipsoidTerrainProvider(),
    skyBox: false,
    skyAtmosphere: false,
    requestRenderMode: true, // draw only when something changed: cheap on software WebGL
    msaaSamples: software ? 1 : 4,
  });
  const scene = viewer.scene;
  scene.globe.baseColor = Cesium.Color.fromCssColorString("#e4e2dc");
  scene.globe.showGroundAtmosphere = false;
  // A bare ellipsoid in one colour needs no fine globe tiles: far fewer to build and draw.
  scene.globe.maximumScreenSpaceError = 16;
  scene.backgroundColor = Cesium.Color.fromCssColorString("#c9d8e6");
  scene.fog.enabled = false;
  if (scene.sun) scene.sun.show = false;
  if (scene.moon) scene.moon.show = false;
  // Noon in Seoul, frozen: the buildings are lit the same way whenever the page is opened.
  viewer.clock.currentTime = Cesium.JulianDate.fromIso8601("2024-06-21T03:00:00Z");
  viewer.clock.shouldAnimate = false;
  viewer.scene.renderError.addEventListener((_scene, err) => reportError(`render error: ${err?.message || err}`));
  return viewer;
}

// Stand south of City Hall, 800 m up, looking north and 35 degrees down at it.
function viewCityHall(viewer) {
  const pitch = Cesium.Math.toRadians(VIEW.pitchDeg);
  const back = VIEW.altitude / Math.tan(-pitch); // horizontal metres to the looked-at point
  const metresPerDegreeLat = 111_132.92 - 559.82 * Math.cos(2 * Cesium.Math.toRadians(CITY_HALL.lat));
  viewer.camera.setView({
    destination: Cesium.Cartesian3.fromDegrees(CITY_HALL.lon, CITY_HALL.lat - back / metresPerDegreeLat,
      VIEW.altitude),
    orientation: { heading: Cesium.Math.toRadians(VIEW.headingDeg), pitch, roll: 0 },
  });
}

function showFeature(feature) {
  const section = document.getElementById("feature");
  if (!feature) {
    section.hidden = true;
    state.selected = null;
    return;
  }
  const props = {};
  for (const id of feature.getPropertyIds()) {
    const value = feature.getProperty(id);
    if (value !== undefined && value !== null && value !== "") props[id] = value;
  }
  const table = document.getElementById("feature-table");
  table.replaceChildren();
  for (const [key, value] of Object.entries(props)) {
    const row = table.insertRow();
    row.insertCell().textContent = key;
    row.insertCell().textContent = typeof value === "number" && !Number.isInteger(value)
      ? value.toFixed(1) : String(value);
  }
  section.hidden = false;
  state.selected = props;
}

function enablePicking(viewer) {
  let selected = null;
  let previousColour = null;
  const handler = new Cesium.ScreenSpaceEventHandler(viewer.scene.canvas);
  handler.setInputAction((click) => {
    if (selected) {
      try { selected.color = previousColour; } catch { /* its tile was unloaded */ }
      selected = null;
    }
    const picked = viewer.scene.pick(click.position);
    if (picked instanceof Cesium.Cesium3DTileFeature) {
      selected = picked;
      previousColour = Cesium.Color.clone(picked.color);
      picked.color = Cesium.Color.fromCssColorString(HIGHLIGHT);
      showFeature(picked);
    } else {
      showFeature(null);
    }
    viewer.scene.requestRender();
  }, Cesium.ScreenSpaceEventType.LEFT_CLICK);
}

async function start() {
  const viewer = createViewer();
  window.citytwinViewer3d.viewer = viewer;
  viewCityHall(viewer);
  enablePicking(viewer);

  const [{ main: layer, overlays }, stops] = await Promise.all([chooseLayers(), heightRamp()]);
  state.layer = layer;
  document.getElementById("layer-name").textContent = [layer, ...overlays].join(" + ");
  buildLegend(stops);

  const tileset = await Cesium.Cesium3DTileset.fromUrl(serverUrl(`collections/${layer}/3dtiles/tileset.json`));
  window.citytwinViewer3d.tileset = tileset;
  tileset.style = heightStyle(stops);
  tileset.tileLoad.addEventListener(() => { state.tilesLoaded += 1; });
  tileset.tileFailed.addEventListener((err) => reportError(`tile ${err.url}: ${err.message}`));
  const loaded = () => {
    if (state.tilesLoaded > 0 && !state.loaded) {
      state.loaded = true;
      if (!state.error) setStatus(`${layer}: ${state.tilesLoaded} tile(s) loaded · click a building`);
    }
  };
  tileset.initialTilesLoaded.addEventListener(loaded);
  tileset.allTilesLoaded.addEventListener(loaded);
  viewer.scene.primitives.add(tileset);
  await Promise.all(overlays.map((id) => addOverlay(viewer, id)));
  viewer.scene.requestRender();
}

// A 3D-only layer (e.g. placed landmark models) drawn as its tiles say, not recoloured.
async function addOverlay(viewer, id) {
  state.overlays[id] = 0;
  try {
    const models = await Cesium.Cesium3DTileset.fromUrl(serverUrl(`collections/${id}/3dtiles/tileset.json`));
    models.tileLoad.addEventListener(() => { state.overlays[id] += 1; viewer.scene.requestRender(); });
    models.tileFailed.addEventListener((err) => reportError(`${id} tile ${err.url}: ${err.message}`));
    viewer.scene.primitives.add(models);
  } catch (err) {
    reportError(`layer ${id}: ${err.message || err}`);
  }
}

start().catch((err) => reportError(err.message || String(err)));
