// The record page: a source picker (up to four, numbered in composition order), the
// options of `taskerino record`, and the live panel fed by the session's event stream.
"use strict";

const MAX_SOURCES = 4;

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("record-form");
  const grid = document.getElementById("sources");
  const sourcesError = document.getElementById("sources-error");
  const count = document.getElementById("source-count");
  const compositor = document.getElementById("compositor");
  const preview = document.getElementById("layout-preview");
  const videoOptions = document.getElementById("video-options");
  const startError = document.getElementById("start-error");
  const startButton = document.getElementById("start");
  let chosen = [];

  // --- sources ------------------------------------------------------------------------------
  function card(source, detail) {
    const node = T.el("button", {
      type: "button", class: "card", "data-source": source.id, "aria-pressed": "false",
      title: source.id,
    },
    T.el("span", { class: "order", "aria-hidden": "true" }),
    T.el("img", { src: source.thumbnail_url, alt: "", loading: "lazy", width: 240, height: 135 }),
    T.el("span", { class: "title", text: source.title || source.name }),
    T.el("span", { class: "sub", text: detail }));
    node.addEventListener("click", () => pick(source.id));
    return node;
  }

  function group(title, nodes) {
    if (!nodes.length) return null;
    return T.el("section", { class: "card-group" }, T.el("h3", { text: title }), T.el("div", { class: "card-row" }, ...nodes));
  }

  async function loadSources() {
    let found;
    try {
      found = await T.api("GET", "/api/sources");
    } catch (error) {
      grid.replaceChildren(T.el("p", { class: "form-error", text: error.message }));
      return;
    }
    const groups = [
      group("Displays", found.displays.map((d) => card(d, `${d.width}×${d.height}${d.primary ? " · primary" : ""}`))),
      group("Windows", found.windows.map((w) => card(w, `${w.app} · ${w.width}×${w.height}`))),
    ].filter(Boolean);
    const tests = T.el("details", { class: "card-group tests" },
      T.el("summary", { text: "Test patterns (synthetic pictures, for trying things out)" }),
      T.el("div", { class: "card-row" }, ...found.tests.map((t) => card(t, t.id))));
    if (found.error) groups.push(T.el("p", { class: "hint", text: `No screen to capture: ${found.error}` }));
    if (!found.displays.length && !found.windows.length) tests.open = true;
    grid.replaceChildren(...groups, tests);
    grid.removeAttribute("aria-busy");
    const mic = document.getElementById("mic");
    for (const device of found.audio || []) {
      const label = `${device.name}${device.kind === "monitor" ? " (what is played)" : ""}${device.default ? " · default" : ""}`;
      mic.append(T.el("option", { value: device.id, text: label }));
    }
    update();
  }

  function pick(id) {
    const at = chosen.indexOf(id);
    if (at >= 0) {
      chosen.splice(at, 1);
    } else if (chosen.length >= MAX_SOURCES) {
      sourcesError.textContent = `At most ${MAX_SOURCES} sources can be recorded together: unselect one first.`;
      return;
    } else {
      chosen.push(id);
    }
    sourcesError.textContent = "";
    update();
  }

  function update() {
    for (const node of grid.querySelectorAll(".card")) {
      const at = chosen.indexOf(node.dataset.source);
      const full = at < 0 && chosen.length >= MAX_SOURCES;
      node.setAttribute("aria-pressed", String(at >= 0));
      node.querySelector(".order").textContent = at >= 0 ? String(at + 1) : "";
      node.classList.toggle("full", full);
      node.setAttribute("aria-disabled", String(full));
      node.title = full ? `At most ${MAX_SOURCES} sources: unselect one first` : node.dataset.source;
    }
    count.textContent = `${chosen.length} of ${MAX_SOURCES}`;
    videoOptions.disabled = chosen.length === 0;
    for (const option of compositor.options) {
      if (option.value === "passthrough") option.disabled = chosen.length > 1;
    }
    if (compositor.value === "passthrough" && chosen.length > 1) compositor.value = "";
    drawPreview();
  }

  function drawPreview() {
    const n = Math.max(1, chosen.length);
    const kind = compositor.value || (n === 1 ? "passthrough" : "grid");
    const columns = kind === "grid" ? Math.ceil(Math.sqrt(n)) : kind === "side-by-side" ? n : 1;
    preview.className = `layout-preview cols-${columns}`;
    preview.replaceChildren(...Array.from({ length: n }, (_, i) => T.el("span", { text: String(i + 1) })));
    preview.title = `${kind}: ${n} source${n === 1 ? "" : "s"}`;
  }
  compositor.addEventListener("change", drawPreview);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = form.elements;
    const body = {
      name: f.name.value,
      tags: f.tags.value.split(",").map((t) => t.trim()).filter(Boolean),
      screenshots: f.screenshots.checked,
      screenshot_interval: Number(f.screenshot_interval.value),
      system_audio: f.system_audio.checked,
      balance: Number(f.balance.value),
    };
    if (f.mic.value) { body.audio = true; body.mic = f.mic.value; }
    if (chosen.length) {
      body.video = true;
      body.sources = [...chosen];
      body.fps = Number(f.fps.value);
      body.size = f.size.value;
      if (compositor.value) body.compositor = compositor.value;
    }
    startButton.disabled = true;
    startError.textContent = "";
    try {
      const session = await T.api("POST", "/api/sessions", body);
      watch(session.id, session.name);
    } catch (error) {
      startError.textContent = error.message;
    } finally {
      startButton.disabled = false;
    }
  });

  // --- the live panel -----------------------------------------------------------------------------
  const liveList = document.getElementById("live-list");
  const panel = document.getElementById("stats");
  const $ = (id) => document.getElementById(id);
  let watching = null;
  let stream = null;
  let ended = false;

  function showLive(live) {
    if (!live.length) {
      liveList.replaceChildren(T.el("li", { class: "muted", text: "Nothing is recording." }));
    } else {
      liveList.replaceChildren(...live.map((s) => T.el("li", {},
        T.el("button", {
          type: "button", class: "live-item", "aria-pressed": String(s.id === watching),
          "data-session": s.id, onclick: () => watch(s.id, s.name),
        }, T.el("span", { class: `badge status-${s.status}`, text: s.status }), ` ${s.name}`))));
    }
    if (!watching && live.length) watch(live[0].id, live[0].name);
  }
  document.addEventListener("taskerino:live", (event) => showLive(event.detail));

  function setConn(text, kind) {
    const conn = $("st-conn");
    conn.textContent = text;
    conn.className = `conn conn-${kind}`;
    panel.classList.toggle("stale", kind !== "live");
  }

  function watch(id, name) {
    if (stream) stream.close();
    watching = id;
    ended = false;
    history.replaceState(null, "", `/record?session=${encodeURIComponent(id)}`);
    for (const button of liveList.querySelectorAll(".live-item")) {
      button.setAttribute("aria-pressed", String(button.dataset.session === id));
    }
    panel.hidden = false;
    panel.dataset.session = id;
    $("st-name").textContent = name || id;
    $("st-name").href = `/sessions/${id}`;
    for (const node of panel.querySelectorAll("dd > span, dd:not(:has(*))")) node.textContent = "–";
    setConn("connecting…", "wait");
    stream = new EventSource(`/api/sessions/${id}/events`);
    stream.onopen = () => setConn("live", "live");
    stream.onerror = () => { if (!ended) setConn("reconnecting…", "wait"); };
    stream.addEventListener("state", (event) => showState(JSON.parse(event.data)));
    stream.addEventListener("stats", (event) => showStats(JSON.parse(event.data)));
    stream.addEventListener("end", (event) => {
      ended = true;
      stream.close();
      showState(JSON.parse(event.data));
      setConn("stopped", "stopped");
    });
  }

  function showState(state) {
    const badge = $("st-state");
    badge.textContent = state.status;
    badge.className = `badge status-${state.status}`;
    if (state.elapsed !== null && state.elapsed !== undefined) $("st-elapsed").textContent = T.clock(state.elapsed);
    const isLive = state.status === "active" || state.status === "paused";
    $("pause").disabled = state.status !== "active";
    $("resume").disabled = state.status !== "paused";
    $("end").disabled = !isLive;
    panel.dataset.status = state.status;
  }

  function showStats(s) {
    $("st-elapsed").textContent = T.clock(s.elapsed);
    $("st-fps").textContent = s.fps.toFixed(1);
    $("st-target").textContent = s.target_fps ? s.target_fps.toFixed(0) : "–";
    $("st-dropped").textContent = String(s.frames_dropped);
    const rate = $("st-drop-rate");
    rate.textContent = `${(s.drop_rate * 100).toFixed(1)} %`;
    rate.className = `health health-${s.health}`;
    rate.title = { healthy: "below 1 %", warning: "1 % to 5 %", critical: "5 % or more" }[s.health] || "";
    $("st-captured").textContent = String(s.frames_captured);
    $("st-processed").textContent = String(s.frames_processed);
    $("st-bitrate").textContent = `${s.bitrate_kbps.toFixed(0)} kbit/s`;
    $("st-lag").textContent = `${s.encode_lag_ms.toFixed(0)} ms`;
    const level = s.audio && s.audio.audio_level_dbfs;
    $("st-level").value = typeof level === "number" && isFinite(level) ? Math.max(-60, level) : -60;
    $("st-level-db").textContent = typeof level === "number" && isFinite(level) ? `${level.toFixed(0)} dBFS` : "no audio";
    $("st-disk").textContent = T.bytes(s.disk_free);
    $("st-left").textContent = s.seconds_left === null ? "–" : T.span(s.seconds_left);
    $("st-bytes").textContent = T.bytes(s.bytes_written);
    // Media in a bucket: what waits for its upload (retried while the bucket is away);
    // shown once there is any.
    const pending = s.uploads_pending ?? 0, retried = s.uploads_failed ?? 0;
    $("st-uploads-box").hidden = !(pending || retried);
    $("st-uploads").textContent = String(pending);
    $("st-upload-failures").textContent = String(retried);
    panel.dataset.updated = s.updated_at;
  }

  async function steer(action) {
    if (!watching) return;
    const button = $(action);
    button.disabled = true;
    $("control-error").textContent = "";
    try {
      const session = await T.api("POST", `/api/sessions/${watching}/${action}`);
      showState({ status: session.status, elapsed: session.total_duration, enrichment: {} });
    } catch (error) {
      $("control-error").textContent = error.message;
      button.disabled = false;
    }
  }
  for (const action of ["pause", "resume", "end"]) $(action).addEventListener("click", () => steer(action));

  const selected = form.dataset.selected;
  if (selected) watch(selected, "");
  loadSources();
  update();
});
