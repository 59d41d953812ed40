// citytwin AR preview: the 3D Tiles, a simulated AR camera (its view frustum drawn as lines)
// and the POIs /ar/view returns for that pose, green when visible, red when a building hides
// them. Everything comes from this server (Cesium from npm under ../vendor/); no Cesium ion.
// The pose comes from the URL (?lon=&lat=&alt=&heading=&pitch=&fov=&radius=&lang=); by
// default: Gwanghwamun Square, eye height, looking north at Gyeongbokgung.
/* global Cesium */

const DEFAULT_POSE = { lon: 126.9768, lat: 37.5722, alt: 1.6, heading: 0, pitch: 3, fov: 60, radius: 1200, lang: "en" };
const VISIBLE = "#2e9d32";
const OCCLUDED = "#d7372f";
const FRUSTUM = "#1f5fbf";

// Read by the browser test (and handy in the console).
const state = {
  loaded: false, items: [], occluded: [], visible: [], error: null, tilesLoaded: 0, tileset: null, models: {},
};
window.__arState = state;

const statusEl = document.getElementById("status");
function setStatus(text, isError = false) {
  statusEl.textContent = text;
  statusEl.classList.toggle("error", isError);
}
function reportError(message) {
  state.error = state.error ?? message;
  console.error(`citytwin AR preview: ${message}`);
  setStatus(message, true);
}

const serverUrl = (path) => new URL(`../../${path}`, window.location.href).href;

function readPose() {
  const q = new URLSearchParams(window.location.search);
  const pose = { ...DEFAULT_POSE };
  for (const key of ["lon", "lat", "alt", "heading", "pitch", "fov", "radius"]) {
    if (q.has(key)) {
      const v = Number(q.get(key));
      if (!Number.isFinite(v)) throw new Error(`${key}=${q.get(key)} is not a number`);
      pose[key] = v;
    }
  }
  if (q.has("lang")) pose.lang = q.get("lang");
  return pose;
}

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
  Cesium.Ion.defaultAccessToken = "";
  const software = softwareRenderer();
  const viewer = new Cesium.Viewer("globe", {
    baseLayer: false, baseLayerPicker: false, geocoder: false, homeButton: false, sceneModePicker: false,
    navigationHelpButton: false, animation: false, timeline: false, fullscreenButton: false,
    infoBox: false, selectionIndicator: false,
    terrainProvider: new Cesium.EllipsoidTerrainProvider(), // the tiles stand on the ellipsoid (terrain=none)
    skyBox: false, skyAtmosphere: false, requestRenderMode: true, msaaSamples: software ? 1 : 4,
  });
  const scene = viewer.scene;
  scene.globe.baseColor = Cesium.Color.fromCssColorString("#e4e2dc");
  scene.globe.showGroundAtmosphere = false;
  scene.globe.depthTestAgainstTerrain = true;
  scene.backgroundColor = Cesium.Color.fromCssColorString("#c9d8e6");
  scene.fog.enabled = false;
  if (scene.sun) scene.sun.show = false;
  if (scene.moon) scene.moon.show = false;
  viewer.clock.currentTime = Cesium.JulianDate.fromIso8601("2024-06-21T03:00:00Z");
  viewer.clock.shouldAnimate = false;
  scene.renderError.addEventListener((_s, err) => reportError(`render error: ${err?.message || err}`));
  return viewer;
}

// ENU (metres from the device) to a Cesium position, with the device's own ENU frame.
function enuToWorld(frame, e, n, u) {
  return Cesium.Matrix4.multiplyByPoint(frame, new Cesium.Cartesian3(e, n, u), new Cesium.Cartesian3());
}

// The camera's right, up and forward axes in ENU: the same convention as geo/visibility.Frustum.
function cameraAxes(headingDeg, pitchDeg) {
  const h = Cesium.Math.toRadians(headingDeg);
  const p = Cesium.Math.toRadians(pitchDeg);
  const forward = [Math.sin(h) * Math.cos(p), Math.cos(h) * Math.cos(p), Math.sin(p)];
  const right = [Math.cos(h), -Math.sin(h), 0];
  const up = [right[1] * forward[2] - right[2] * forward[1], right[2] * forward[0] - right[0] * forward[2],
    right[0] * forward[1] - right[1] * forward[0]];
  return { right, up, forward };
}

function drawFrustum(viewer, frame, pose, vfov) {
  const { right, up, forward } = cameraAxes(pose.heading, pose.pitch);
  const th = Math.tan(Cesium.Math.toRadians(pose.fov) / 2);
  const tv = Math.tan(Cesium.Math.toRadians(vfov) / 2);
  const reach = Math.min(pose.radius, 600); // drawn length of the edges: enough to read the shape
  const corners = [[-1, 1], [1, 1], [1, -1], [-1, -1]].map(([sx, sy]) => {
    const d = [0, 1, 2].map((i) => forward[i] + sx * th * right[i] + sy * tv * up[i]);
    const len = Math.hypot(...d);
    return enuToWorld(frame, ...d.map((v) => (v / len) * reach));
  });
  const apex = enuToWorld(frame, 0, 0, 0);
  const material = Cesium.Color.fromCssColorString(FRUSTUM);
  const line = (positions, width = 2) => viewer.entities.add({
    polyline: { positions, width, material, arcType: Cesium.ArcType.NONE },
  });
  for (const c of corners) line([apex, c]);
  line([...corners, corners[0]], 3);
  viewer.entities.add({
    position: apex,
    point: { pixelSize: 10, color: material, outlineColor: Cesium.Color.WHITE, outlineWidth: 2 },
    label: { text: "device", font: "12px sans-serif", pixelOffset: new Cesium.Cartesian2(0, -16),
      fillColor: Cesium.Color.WHITE, outlineColor: Cesium.Color.BLACK, outlineWidth: 2,
      style: Cesium.LabelStyle.FILL_AND_OUTLINE },
  });
}

function drawItems(viewer, frame, items) {
  const apex = enuToWorld(frame, 0, 0, 0);
  for (const it of items) {
    const colour = Cesium.Color.fromCssColorString(it.occluded ? OCCLUDED : VISIBLE);
    const position = enuToWorld(frame, ...it.enu); // the ENU offset the API computed
    viewer.entities.add({
      id: `poi:${it.layer}:${it.id}`,
      position,
      point: { pixelSize: 9, color: colour, outlineColor: Cesium.Color.WHITE, outlineWidth: 1,
        disableDepthTestDistance: Number.POSITIVE_INFINITY },
      label: {
        text: `${it.name} · ${Math.round(it.distance_m)} m`, font: "13px sans-serif", fillColor: colour,
        outlineColor: Cesium.Color.WHITE, outlineWidth: 3, style: Cesium.LabelStyle.FILL_AND_OUTLINE,
        pixelOffset: new Cesium.Cartesian2(0, -14), disableDepthTestDistance: Number.POSITIVE_INFINITY,
      },
    });
    viewer.entities.add({
      polyline: { positions: [apex, position], width: 1, arcType: Cesium.ArcType.NONE,
        material: new Cesium.PolylineDashMaterialProperty({ color: colour.withAlpha(0.8) }) },
    });
  }
}

function listItems(items) {
  const list = document.getElementById("items");
  list.replaceChildren(...items.map((it) => {
    const li = document.createElement("li");
    li.className = it.occluded ? "occluded" : "visible";
    li.textContent = `${it.name} — ${Math.round(it.distance_m)} m, ${Math.round(it.bearing_deg) % 360}°` +
      (it.occluded ? " (hidden)" : "");
    return li;
  }));
}

// Look at the device from behind and above, so the frustum and the labels are in view.
function placeCamera(viewer, frame, pose) {
  const h = Cesium.Math.toRadians(pose.heading);
  const back = 420;
  const eye = enuToWorld(frame, -Math.sin(h) * back, -Math.cos(h) * back, 330);
  viewer.camera.setView({
    destination: eye,
    orientation: { heading: h, pitch: Cesium.Math.toRadians(-32), roll: 0 },
  });
}

async function start() {
  const pose = readPose();
  const viewer = createViewer();
  window.citytwinAr = { viewer, state };
  const params = new URLSearchParams({
    lon: pose.lon, lat: pose.lat, alt: pose.alt, heading: pose.heading, pitch: pose.pitch, fov: pose.fov,
    radius: pose.radius, lang: pose.lang, terrain: "none", limit: 100,
  });
  const resp = await fetch(serverUrl(`ar/view?${params}`), { headers: { Accept: "application/json" } });
  const doc = await resp.json();
  if (!resp.ok) throw new Error(`/ar/view: ${doc.description || resp.status}`);

  const origin = Cesium.Cartesian3.fromDegrees(doc.pose.lon, doc.pose.lat, doc.pose.alt);
  const frame = Cesium.Transforms.eastNorthUpToFixedFrame(origin);
  placeCamera(viewer, frame, doc.pose);
  drawFrustum(viewer, frame, doc.pose, doc.pose.vfov);
  drawItems(viewer, frame, doc.items);
  listItems(doc.items);
  document.getElementById("pose").textContent =
    `${doc.pose.lat.toFixed(5)}, ${doc.pose.lon.toFixed(5)} · heading ${doc.pose.heading}° · pitch ` +
    `${doc.pose.pitch}° · fov ${doc.pose.fov}° · ${doc.pose.radius} m · heights: ${doc.height_reference}`;
  state.items = doc.items;
  state.occluded = doc.items.filter((it) => it.occluded).map((it) => it.id);
  state.visible = doc.items.filter((it) => !it.occluded).map((it) => it.id);
  state.tileset = doc.tileset;

  const done = () => {
    if (state.loaded) return;
    state.loaded = true;
    if (!state.error) {
      setStatus(`${doc.items.length} POI(s) in view: ${state.visible.length} visible, ` +
        `${state.occluded.length} hidden · ${state.tilesLoaded} tile(s)`);
    }
    viewer.scene.requestRender();
  };
  if (doc.tileset) {
    const tileset = await Cesium.Cesium3DTileset.fromUrl(doc.tileset);
    tileset.tileLoad.addEventListener(() => { state.tilesLoaded += 1; });
    tileset.tileFailed.addEventListener((err) => reportError(`tile ${err.url}: ${err.message}`));
    tileset.style = new Cesium.Cesium3DTileStyle({ color: "color('#d9d4c7', 0.92)" });
    tileset.initialTilesLoaded.addEventListener(done);
    tileset.allTilesLoaded.addEventListener(done);
    viewer.scene.primitives.add(tileset);
  } else {
    setStatus("no 3D Tiles for the buildings yet (citytwin build writes them)");
    done();
  }
  // Placed landmark models and city models: drawn as their tiles say (they do not occlude here).
  for (const extra of (doc.tilesets || []).filter((t) => t.href !== doc.tileset)) {
    state.models[extra.layer] = 0;
    const models = await Cesium.Cesium3DTileset.fromUrl(extra.href);
    models.tileLoad.addEventListener(() => { state.models[extra.layer] += 1; viewer.scene.requestRender(); });
    models.tileFailed.addEventListener((err) => reportError(`${extra.layer} tile ${err.url}: ${err.message}`));
    viewer.scene.primitives.add(models);
  }
  viewer.scene.requestRender();
}

start().catch((err) => reportError(err.message || String(err)));
