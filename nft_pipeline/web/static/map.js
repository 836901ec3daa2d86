"use strict";
// The collection map: every token of a map drawn on one canvas 2D, panned and zoomed without redrawing
// the points. Points are rendered into an offscreen layer (the viewport plus a margin on each side);
// a frame only copies that layer, shifted and scaled to the current view, and draws the overlay
// (labels, hover, lasso). The layer is rendered again when the view has left it, or once the
// interaction pauses, so 100,000 points pan as fast as 100. Thumbnails come from atlases (sprite
// sheets) once tokens are large enough on screen; below that, points are coloured squares written
// straight into pixels. Captions and names are untrusted: always inserted as text.
(() => {
  const $ = (selector) => document.querySelector(selector);
  const canvas = $("#canvas");
  const context = canvas.getContext("2d");
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5", "#7f7f7f", "#393b79"];
  const NOISE_COLOUR = "#6b7280";
  const BACKGROUND = [16, 18, 23];
  const THUMBNAILS_FROM_PX = 7; // tokens drawn as thumbnails once this large on screen
  const THUMBNAILS_MAX = 30000; // and no more than this many in view
  const GRID = 128; // cells per side of the hover grid
  const IDLE_MS = 140;

  const state = {
    data: null, count: 0, width: 0, height: 0, ratio: 1,
    view: { cx: 0.5, cy: 0.5, zoom: 1 },
    highlight: null, // Uint8Array: 1 = a hit; null = nothing highlighted
    selection: null, // Uint8Array: 1 = lassoed
    scope: null, // a cluster id: searches and highlights stay inside it
    hover: -1, active: -1,
    keyIndex: new Map(), atlases: [], grid: null, layer: null,
    lassoMode: false, drag: null, needsFrame: false, idleTimer: 0, frames: 0,
  };
  const app = (window.mapApp = { state, firstPaintMs: null, thumbnailsPaintMs: null });

  const colours = PALETTE.map(hexRgb);
  const noise = hexRgb(NOISE_COLOUR);
  const packed = (rgb) => (255 << 24) | (rgb[2] << 16) | (rgb[1] << 8) | rgb[0];
  const dimmed = (rgb) => rgb.map((v, i) => Math.round(BACKGROUND[i] + (v - BACKGROUND[i]) * 0.18));
  const PACKED = { bright: colours.map(packed), dim: colours.map((c) => packed(dimmed(c))),
    noise: packed(noise), noiseDim: packed(dimmed(noise)), selected: packed([255, 255, 255]) };

  function hexRgb(hex) { return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)); }
  function colourOf(cluster) { return cluster < 0 ? NOISE_COLOUR : PALETTE[cluster % PALETTE.length]; }
  function setStatus(text, isError = false) { const s = $("#status"); s.textContent = text; s.classList.toggle("error", isError); }
  function keyOf(i) { const d = state.data; return d.collections[d.collection[i]] + "/" + d.token_id[i]; }
  function tokenOf(i) { const d = state.data; return { collection: d.collections[d.collection[i]], token_id: d.token_id[i] }; }

  // ------------------------------------------------------------------ view geometry
  function scale(view = state.view) { return view.zoom * Math.min(state.width, state.height) * 0.92; }
  function toScreen(x, y, view = state.view) {
    const k = scale(view);
    return [(x - view.cx) * k + state.width / 2, (y - view.cy) * k + state.height / 2];
  }
  function toWorld(sx, sy) {
    const k = scale();
    return [(sx - state.width / 2) / k + state.view.cx, (sy - state.height / 2) / k + state.view.cy];
  }
  // Layouts clump tokens, so a token gets half the room it would have on an even grid.
  function pointPx(view = state.view) { return Math.max(2, (0.5 / Math.sqrt(Math.max(state.count, 1))) * scale(view)); }

  // ------------------------------------------------------------------ data
  function buildIndex() {
    const d = state.data, n = state.count;
    const cells = new Int32Array(GRID * GRID + 1);
    const cellOf = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const gx = Math.min(GRID - 1, Math.max(0, Math.floor(d.x[i] * GRID)));
      const gy = Math.min(GRID - 1, Math.max(0, Math.floor(d.y[i] * GRID)));
      cellOf[i] = gy * GRID + gx;
      cells[cellOf[i] + 1]++;
    }
    for (let c = 0; c < GRID * GRID; c++) cells[c + 1] += cells[c];
    const fill = cells.slice(0, GRID * GRID), items = new Int32Array(n);
    for (let i = 0; i < n; i++) items[fill[cellOf[i]]++] = i;
    state.grid = { cells, items };
    state.keyIndex = new Map();
    for (let i = 0; i < n; i++) state.keyIndex.set(keyOf(i), i);
  }

  function nearestPoint(sx, sy) {
    const [wx, wy] = toWorld(sx, sy);
    const radius = Math.max(pointPx() / 2 + 2, 6) / scale();
    const { cells, items } = state.grid, d = state.data;
    let best = -1, bestDistance = radius * radius;
    const x0 = Math.max(0, Math.floor((wx - radius) * GRID)), x1 = Math.min(GRID - 1, Math.floor((wx + radius) * GRID));
    const y0 = Math.max(0, Math.floor((wy - radius) * GRID)), y1 = Math.min(GRID - 1, Math.floor((wy + radius) * GRID));
    for (let gy = y0; gy <= y1; gy++) for (let gx = x0; gx <= x1; gx++) {
      const c = gy * GRID + gx;
      for (let j = cells[c]; j < cells[c + 1]; j++) {
        const i = items[j], dx = d.x[i] - wx, dy = d.y[i] - wy, dist = dx * dx + dy * dy;
        if (dist <= bestDistance) { best = i; bestDistance = dist; }
      }
    }
    return best;
  }

  async function getJson(url) {
    const response = await fetch(url);
    const body = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
    if (!response.ok) throw new Error(body.error || response.statusText);
    return body;
  }

  async function loadMaps() {
    const maps = await getJson("/api/map/maps");
    const select = $("#map");
    select.replaceChildren(...maps.map((m) => {
      const option = document.createElement("option");
      option.value = m.map;
      option.textContent = `${m.map === "__all__" ? "Everything" : m.map} (${m.tokens.toLocaleString()})`;
      return option;
    }));
    return maps;
  }

  async function loadMap(name) {
    setStatus(`loading ${name === "__all__" ? "everything" : name}…`);
    const started = performance.now();
    const data = await getJson(`/api/map/points?map=${encodeURIComponent(name)}`);
    state.data = data; state.count = data.token_id.length;
    state.highlight = null; state.selection = null; state.scope = null; state.hover = -1; state.active = -1;
    state.view = { cx: 0.5, cy: 0.5, zoom: 1 };
    buildIndex();
    state.atlases = data.atlases.map((digest) => {
      const image = new Image();
      image.onload = () => { invalidate(); if (state.atlases.every((a) => a.complete)) requestAnimationFrame(() => { app.thumbnailsPaintMs ??= performance.now(); }); };
      image.src = `/map/atlas/${digest}.png`;
      return image;
    });
    renderClusters();
    $("#selection-panel").hidden = true; $("#token-panel").hidden = true;
    invalidate();
    setStatus(`${state.count.toLocaleString()} tokens · ${data.clusters.length} clusters · layout ${data.layout_version || "–"} · loaded in ${Math.round(performance.now() - started)} ms`);
  }

  // ------------------------------------------------------------------ drawing
  function resize() {
    const rect = canvas.getBoundingClientRect();
    state.ratio = window.devicePixelRatio || 1;
    state.width = Math.max(1, rect.width); state.height = Math.max(1, rect.height);
    canvas.width = Math.round(state.width * state.ratio); canvas.height = Math.round(state.height * state.ratio);
    invalidate();
  }

  function invalidate() { state.layer = null; requestFrame(); }
  function requestFrame() { if (!state.needsFrame) { state.needsFrame = true; requestAnimationFrame(frame); } }
  function settleLater() { clearTimeout(state.idleTimer); state.idleTimer = setTimeout(() => { if (state.layer && !layerIsExact()) invalidate(); }, IDLE_MS); }
  function layerIsExact() { const a = state.layer.view, b = state.view; return a.cx === b.cx && a.cy === b.cy && a.zoom === b.zoom; }

  function renderLayer() {
    const margin = Math.round(Math.max(state.width, state.height) / 2);
    const w = Math.round(state.width + 2 * margin), h = Math.round(state.height + 2 * margin);
    const layer = state.layer?.canvas.width === w && state.layer?.canvas.height === h ? state.layer.canvas : document.createElement("canvas");
    layer.width = w; layer.height = h;
    const g = layer.getContext("2d");
    const view = { ...state.view }, k = scale(view), d = state.data, n = state.count;
    const ox = margin + state.width / 2 - view.cx * k, oy = margin + state.height / 2 - view.cy * k;
    const size = pointPx(view);
    const lit = state.highlight, chosen = state.selection;
    let visible = 0;
    for (let i = 0; i < n; i++) {
      const px = d.x[i] * k + ox, py = d.y[i] * k + oy;
      if (px > -size && py > -size && px < w + size && py < h + size) visible++;
    }
    const thumbnails = size >= THUMBNAILS_FROM_PX && visible <= THUMBNAILS_MAX && state.atlases.length > 0;
    if (thumbnails) {
      g.imageSmoothingEnabled = size < d.thumbnail_px; // pixel art stays crisp when enlarged
      const tile = d.thumbnail_px, columns = d.atlas_columns, half = size / 2;
      for (const pass of lit ? [0, 1] : [1]) {
        g.globalAlpha = pass ? 1 : 0.15;
        for (let i = 0; i < n; i++) {
          if (lit && lit[i] !== pass) continue;
          const px = d.x[i] * k + ox, py = d.y[i] * k + oy;
          if (px < -size || py < -size || px > w + size || py > h + size) continue;
          const atlas = d.atlas[i] >= 0 ? state.atlases[d.atlas[i]] : null;
          if (atlas && atlas.complete && atlas.naturalWidth && d.slot[i] >= 0) {
            const sx = (d.slot[i] % columns) * tile, sy = Math.floor(d.slot[i] / columns) * tile;
            g.drawImage(atlas, sx, sy, tile, tile, px - half, py - half, size, size);
          } else {
            g.fillStyle = colourOf(d.cluster[i]);
            g.fillRect(px - half / 2, py - half / 2, half, half);
          }
          if (chosen && chosen[i]) { g.strokeStyle = "#fff"; g.lineWidth = 2; g.strokeRect(px - half, py - half, size, size); }
        }
      }
      g.globalAlpha = 1;
    } else {
      const image = g.createImageData(w, h), pixels = new Uint32Array(image.data.buffer);
      const dot = Math.max(1, Math.min(4, Math.round(size * 0.6))), half = dot >> 1;
      for (const pass of lit ? [0, 1] : [1]) {
        for (let i = 0; i < n; i++) {
          if (lit && lit[i] !== pass) continue;
          const px = Math.round(d.x[i] * k + ox) - half, py = Math.round(d.y[i] * k + oy) - half;
          if (px < 0 || py < 0 || px + dot > w || py + dot > h) continue;
          const c = d.cluster[i];
          const colour = chosen && chosen[i] ? PACKED.selected
            : c < 0 ? (pass ? PACKED.noise : PACKED.noiseDim) : (pass ? PACKED.bright : PACKED.dim)[c % PALETTE.length];
          for (let yy = 0; yy < dot; yy++) pixels.fill(colour, (py + yy) * w + px, (py + yy) * w + px + dot);
        }
      }
      g.putImageData(image, 0, 0);
    }
    state.layer = { canvas: layer, view, margin, thumbnails };
  }

  function drawLabels() {
    const d = state.data, placed = [];
    context.font = "600 12px system-ui, sans-serif";
    context.textBaseline = "middle";
    for (const cluster of d.clusters.slice(0, 40)) {
      if (state.scope !== null && cluster.cluster !== state.scope) continue;
      const [sx, sy] = toScreen(cluster.x, cluster.y);
      const text = cluster.label, width = context.measureText(text).width + 12;
      const box = [sx - width / 2, sy - 11, width, 22];
      if (box[0] + width < 0 || box[1] + 22 < 0 || box[0] > state.width || box[1] > state.height) continue;
      if (placed.some((p) => box[0] < p[0] + p[2] && p[0] < box[0] + box[2] && box[1] < p[1] + p[3] && p[1] < box[1] + box[3])) continue;
      placed.push(box);
      context.fillStyle = "#101217d9"; context.fillRect(...box);
      context.fillStyle = colourOf(cluster.cluster); context.fillRect(box[0], box[1], 3, 22);
      context.fillStyle = "#e8eaef"; context.fillText(text, box[0] + 7, sy);
    }
  }

  function outline(i, colour) {
    if (i < 0) return;
    const [sx, sy] = toScreen(state.data.x[i], state.data.y[i]), s = Math.max(pointPx(), 10);
    context.strokeStyle = colour; context.lineWidth = 2; context.strokeRect(sx - s / 2 - 2, sy - s / 2 - 2, s + 4, s + 4);
  }

  function frame() {
    state.needsFrame = false;
    state.frames++;
    context.setTransform(state.ratio, 0, 0, state.ratio, 0, 0);
    context.fillStyle = "#101217"; context.fillRect(0, 0, state.width, state.height);
    if (!state.data) return;
    let layer = state.layer;
    const r = layer ? scale() / scale(layer.view) : 1;
    if (layer) { // does the layer still cover the viewport at a usable scale?
      const [x0, y0] = toScreen(...layerWorld(layer, 0, 0)), [x1, y1] = toScreen(...layerWorld(layer, layer.canvas.width, layer.canvas.height));
      if (r < 0.5 || r > 2 || x0 > 0 || y0 > 0 || x1 < state.width || y1 < state.height) layer = null;
    }
    if (!layer) { renderLayer(); layer = state.layer; }
    const [x0, y0] = toScreen(...layerWorld(layer, 0, 0)), k = scale() / scale(layer.view);
    context.imageSmoothingEnabled = false;
    context.drawImage(layer.canvas, x0, y0, layer.canvas.width * k, layer.canvas.height * k);
    drawLabels();
    outline(state.active, "#7cc4ff");
    outline(state.hover, "#ffffff");
    if (state.drag?.lasso) {
      context.beginPath();
      state.drag.path.forEach(([x, y], j) => (j ? context.lineTo(x, y) : context.moveTo(x, y)));
      context.closePath(); context.strokeStyle = "#7cc4ff"; context.lineWidth = 1.5; context.setLineDash([5, 4]); context.stroke();
      context.setLineDash([]); context.fillStyle = "#7cc4ff22"; context.fill();
    }
    if (app.firstPaintMs === null) app.firstPaintMs = performance.now();
    if (!layerIsExact()) settleLater();
  }
  function layerWorld(layer, px, py) {
    const k = scale(layer.view);
    return [(px - layer.margin - state.width / 2) / k + layer.view.cx, (py - layer.margin - state.height / 2) / k + layer.view.cy];
  }

  // ------------------------------------------------------------------ view changes (also the benchmark's hooks)
  app.panBy = (dx, dy) => { const k = scale(); state.view.cx -= dx / k; state.view.cy -= dy / k; requestFrame(); };
  app.zoomAt = (factor, sx = state.width / 2, sy = state.height / 2) => {
    const [wx, wy] = toWorld(sx, sy);
    state.view.zoom = Math.min(400, Math.max(0.3, state.view.zoom * factor));
    const [nx, ny] = toWorld(sx, sy);
    state.view.cx += wx - nx; state.view.cy += wy - ny;
    requestFrame();
  };
  app.focus = (indices) => { // fit the view to these points
    if (!indices.length) return;
    const d = state.data, xs = indices.map((i) => d.x[i]), ys = indices.map((i) => d.y[i]);
    const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    const span = Math.max(x1 - x0, y1 - y0, 4 / Math.sqrt(state.count));
    state.view = { cx: (x0 + x1) / 2, cy: (y0 + y1) / 2, zoom: Math.min(400, 0.8 / span) };
    invalidate();
  };
  app.screenOf = (i) => toScreen(state.data.x[i], state.data.y[i]);
  app.indexOf = (collection, tokenId) => state.keyIndex.get(collection + "/" + tokenId) ?? -1;

  // ------------------------------------------------------------------ tokens: hover, click, similar
  const details = new Map();
  async function tokenDetails(i) {
    const { collection, token_id } = tokenOf(i), key = keyOf(i);
    if (!details.has(key)) {
      details.set(key, getJson(`/api/token/${encodeURIComponent(collection)}/${encodeURIComponent(token_id)}`)
        .catch(() => ({ name: `${collection} #${token_id}`, caption: "" })));
    }
    return details.get(key);
  }
  function imageUrl(i) { const t = tokenOf(i); return `/img/${encodeURIComponent(t.collection)}/${encodeURIComponent(t.token_id)}`; }

  async function showTooltip(i, sx, sy) {
    const tip = $("#tooltip");
    if (i < 0) { tip.hidden = true; return; }
    const t = tokenOf(i);
    tip.querySelector(".name").textContent = `${t.collection} #${t.token_id}`;
    tip.querySelector(".caption").textContent = "";
    tip.querySelector("img").src = imageUrl(i);
    tip.style.left = `${Math.min(sx + 16, state.width - 350)}px`; tip.style.top = `${Math.min(sy + 16, state.height - 90)}px`;
    tip.hidden = false; tip.dataset.index = String(i);
    const info = await tokenDetails(i);
    if (tip.dataset.index !== String(i)) return;
    tip.querySelector(".name").textContent = info.name || `${t.collection} #${t.token_id}`;
    tip.querySelector(".caption").textContent = info.caption || "";
  }

  async function openToken(i) {
    state.active = i; requestFrame();
    const panel = $("#token-panel"), t = tokenOf(i), d = state.data;
    panel.hidden = false;
    $("#token-image").src = imageUrl(i);
    $("#token-name").textContent = `${t.collection} #${t.token_id}`;
    $("#token-caption").textContent = "";
    const cluster = d.clusters.find((c) => c.cluster === d.cluster[i]);
    $("#token-cluster").textContent = cluster ? `cluster: ${cluster.label}` : "in no cluster";
    $("#search-cluster").disabled = !cluster;
    $("#similar-list").replaceChildren();
    const info = await tokenDetails(i);
    if (state.active !== i) return;
    $("#token-name").textContent = info.name || `${t.collection} #${t.token_id}`;
    $("#token-caption").textContent = info.caption || "";
  }

  async function showSimilar() {
    const i = state.active; if (i < 0) return;
    const t = tokenOf(i), params = new URLSearchParams({ collection: t.collection, token_id: t.token_id, k: "24" });
    if (state.data.map !== "__all__") params.set("in_collection", state.data.map);
    try {
      const body = await getJson(`/api/similar?${params}`);
      const found = body.hits.map((h) => app.indexOf(h.collection, h.token_id)).filter((j) => j >= 0);
      highlight([i, ...found], `${found.length} similar tokens highlighted`);
      $("#similar-list").replaceChildren(...body.hits.map((h) => {
        const li = document.createElement("li"), name = document.createElement("span"), score = document.createElement("small");
        name.textContent = h.name || `${h.collection} #${h.token_id}`; score.textContent = h.similarity.toFixed(3);
        li.append(name, score);
        li.addEventListener("click", () => { const j = app.indexOf(h.collection, h.token_id); if (j >= 0) { app.focus([j]); openToken(j); } });
        return li;
      }));
    } catch (error) { setStatus(`similar: ${error.message}`, true); }
  }

  // ------------------------------------------------------------------ highlighting: search, traits, clusters
  function inScope(i) { return state.scope === null || state.data.cluster[i] === state.scope; }
  function highlight(indices, message) {
    const lit = new Uint8Array(state.count);
    let count = 0;
    for (const i of indices) if (i >= 0 && inScope(i) && !lit[i]) { lit[i] = 1; count++; }
    state.highlight = lit;
    setStatus(message.replace("{n}", count.toLocaleString()));
    invalidate();
    return count;
  }

  function traitMatches(filters) {
    const d = state.data;
    const wanted = filters.map((f) => { const [type, ...rest] = f.split("="); return rest.length ? `${type.trim()}: ${rest.join("=").trim()}` : type.trim(); })
      .map((f) => f.toLowerCase());
    const ids = wanted.map((w) => d.trait_names.findIndex((name) => name.toLowerCase() === w || name.toLowerCase().endsWith(": " + w)));
    if (ids.some((id) => id < 0)) return null;
    const out = [];
    for (let i = 0; i < state.count; i++) if (ids.every((id) => d.traits[i]?.includes(id))) out.push(i);
    return out;
  }

  async function runQuery(event) {
    event?.preventDefault();
    const q = $("#q").value.trim(), traits = $("#trait").value.split(",").map((t) => t.trim()).filter(Boolean);
    const params = new URLSearchParams(location.search);
    q ? params.set("q", q) : params.delete("q");
    history.replaceState(null, "", `?${params}`);
    if (!q && !traits.length) { clearHighlight(); return; }
    const where = state.scope === null ? "" : " in this cluster";
    if (!q) {
      const found = traitMatches(traits);
      if (found === null) { setStatus(`no token on this map has the trait ${traits.join(", ")}`, true); return; }
      highlight(found, `{n} tokens with ${traits.join(", ")}${where}`);
      return;
    }
    const search = new URLSearchParams({ q, k: "100" });
    if (state.data.map !== "__all__") search.set("collection", state.data.map);
    traits.forEach((t) => search.append("trait", t));
    setStatus("searching…");
    try {
      const body = await getJson(`/api/search?${search}`);
      const found = body.hits.map((h) => app.indexOf(h.collection, h.token_id));
      highlight(found, `{n} of the ${body.hits.length} best hits for “${q}”${where} highlighted`);
    } catch (error) { setStatus(`search: ${error.message}`, true); }
  }

  function clearHighlight() {
    state.highlight = null; state.scope = null;
    document.querySelectorAll("#clusters li.active").forEach((li) => li.classList.remove("active"));
    setStatus(`${state.count.toLocaleString()} tokens`);
    invalidate();
  }

  function membersOf(cluster) { const out = []; for (let i = 0; i < state.count; i++) if (state.data.cluster[i] === cluster) out.push(i); return out; }

  function enterCluster(cluster, zoom = true) {
    state.scope = null;
    const members = membersOf(cluster.cluster);
    state.scope = cluster.cluster;
    document.querySelectorAll("#clusters li").forEach((li) => li.classList.toggle("active", li.dataset.cluster === String(cluster.cluster)));
    highlight(members, `${cluster.label}: searches now stay inside this cluster (Clear leaves it)`);
    if (zoom) app.focus(members);
  }

  function renderClusters() {
    const d = state.data;
    $("#cluster-count").textContent = `${d.clusters.length}`;
    $("#clusters").replaceChildren(...d.clusters.map((cluster) => {
      const li = document.createElement("li"), swatch = document.createElement("i"), label = document.createElement("span"), size = document.createElement("small");
      li.dataset.cluster = String(cluster.cluster);
      swatch.style.background = colourOf(cluster.cluster);
      label.textContent = cluster.label.replace(/ \(\d+\)$/, "");
      size.textContent = cluster.size.toLocaleString();
      li.append(swatch, label, size);
      li.addEventListener("click", () => enterCluster(cluster));
      return li;
    }));
  }

  // ------------------------------------------------------------------ lasso selection and export
  function insidePolygon(x, y, polygon) {
    let inside = false;
    for (let a = 0, b = polygon.length - 1; a < polygon.length; b = a++) {
      const [xa, ya] = polygon[a], [xb, yb] = polygon[b];
      if ((ya > y) !== (yb > y) && x < ((xb - xa) * (y - ya)) / (yb - ya) + xa) inside = !inside;
    }
    return inside;
  }

  app.selectPolygon = (polygon) => {
    const chosen = new Uint8Array(state.count);
    let count = 0;
    for (let i = 0; i < state.count; i++) {
      const [sx, sy] = toScreen(state.data.x[i], state.data.y[i]);
      if (insidePolygon(sx, sy, polygon)) { chosen[i] = 1; count++; }
    }
    state.selection = count ? chosen : null;
    $("#selection-panel").hidden = !count;
    $("#selection-count").textContent = count.toLocaleString();
    for (const [id, text, type] of [["#export-csv", app.selectionCsv(), "text/csv"], ["#export-json", app.selectionJson(), "application/json"]]) {
      const link = $(id);
      if (link.href.startsWith("blob:")) URL.revokeObjectURL(link.href);
      link.href = count ? URL.createObjectURL(new Blob([text], { type })) : "#";
    }
    invalidate();
    return count;
  };
  function selectedRows() {
    const d = state.data, rows = [];
    if (!state.selection) return rows;
    const labels = new Map(d.clusters.map((c) => [c.cluster, c.label]));
    for (let i = 0; i < state.count; i++) if (state.selection[i]) {
      rows.push({ ...tokenOf(i), x: d.x[i], y: d.y[i], cluster: d.cluster[i], cluster_label: labels.get(d.cluster[i]) ?? null });
    }
    return rows;
  }
  const csvCell = (v) => { const s = v === null ? "" : String(v); return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s; };
  app.selectionCsv = () => {
    const rows = selectedRows(), columns = ["collection", "token_id", "x", "y", "cluster", "cluster_label"];
    return [columns.join(","), ...rows.map((r) => columns.map((c) => csvCell(r[c])).join(","))].join("\n") + "\n";
  };
  app.selectionJson = () => JSON.stringify({ map: state.data.map, layout_version: state.data.layout_version, tokens: selectedRows() }, null, 1);

  // ------------------------------------------------------------------ pointer and wheel
  function localPoint(event) { const r = canvas.getBoundingClientRect(); return [event.clientX - r.left, event.clientY - r.top]; }
  canvas.addEventListener("pointerdown", (event) => {
    if (!state.data) return;
    const [x, y] = localPoint(event);
    canvas.setPointerCapture(event.pointerId);
    state.drag = { x, y, startX: x, startY: y, moved: false, lasso: state.lassoMode || event.shiftKey, path: [[x, y]] };
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!state.data) return;
    const [x, y] = localPoint(event), drag = state.drag;
    if (drag) drag.moved ||= Math.hypot(x - drag.startX, y - drag.startY) > 4; // a click, or a drag
    if (drag?.lasso) { drag.path.push([x, y]); requestFrame(); return; }
    if (drag) { app.panBy(x - drag.x, y - drag.y); drag.x = x; drag.y = y; $("#tooltip").hidden = true; return; }
    const i = nearestPoint(x, y);
    if (i !== state.hover) { state.hover = i; requestFrame(); showTooltip(i, x, y); }
  });
  canvas.addEventListener("pointerup", (event) => {
    const drag = state.drag; state.drag = null;
    if (!drag) return;
    const [x, y] = localPoint(event);
    if (drag.lasso && drag.path.length > 2 && drag.moved) { app.selectPolygon(drag.path); return; }
    if (!drag.moved) { const i = nearestPoint(x, y); if (i >= 0) openToken(i); }
    requestFrame();
  });
  canvas.addEventListener("pointerleave", () => { if (!state.drag) { state.hover = -1; $("#tooltip").hidden = true; requestFrame(); } });
  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    const [x, y] = localPoint(event);
    app.zoomAt(Math.exp(-event.deltaY * 0.0015), x, y);
  }, { passive: false });

  // ------------------------------------------------------------------ controls
  $("#query-form").addEventListener("submit", runQuery);
  $("#clear").addEventListener("click", () => { $("#q").value = ""; $("#trait").value = ""; clearHighlight(); });
  $("#lasso-mode").addEventListener("click", () => {
    state.lassoMode = !state.lassoMode;
    $("#lasso-mode").classList.toggle("active", state.lassoMode); canvas.classList.toggle("lasso", state.lassoMode);
  });
  $("#clear-selection").addEventListener("click", () => app.selectPolygon([]));
  $("#similar").addEventListener("click", showSimilar);
  $("#search-cluster").addEventListener("click", () => {
    const cluster = state.data.clusters.find((c) => c.cluster === state.data.cluster[state.active]);
    if (cluster) { enterCluster(cluster, false); $("#q").focus(); }
  });
  $("#map").addEventListener("change", async () => {
    const params = new URLSearchParams(location.search); params.set("map", $("#map").value); params.delete("token");
    history.replaceState(null, "", `?${params}`);
    await loadMap($("#map").value).catch((error) => setStatus(error.message, true));
  });
  new ResizeObserver(resize).observe(canvas);

  (async () => {
    // ?map=<collection or __all__>&token=<collection>/<token id>&q=<query>: the search page's "show on map".
    const params = new URLSearchParams(location.search);
    try {
      const maps = await loadMaps();
      if (!maps.length) { setStatus("no maps yet: materialize the collection_map asset (or combined_map)", true); return; }
      const [collection, tokenId] = (params.get("token") || "").split(/\/(.*)/s);
      const wanted = params.get("map") || (maps.some((m) => m.map === collection) ? collection : maps[0].map);
      $("#map").value = maps.some((m) => m.map === wanted) ? wanted : maps[0].map;
      await loadMap($("#map").value);
      if (tokenId !== undefined) { const i = app.indexOf(collection, tokenId); if (i >= 0) { app.focus([i]); openToken(i); } }
      if (params.get("q")) { $("#q").value = params.get("q"); await runQuery(); }
      app.ready = true;
    } catch (error) { setStatus(error.message, true); }
  })();
})();
