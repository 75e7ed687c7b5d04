// The session page: one clock (the <video>, or a slideshow of the screenshots when there is
// no video or audio), one timeline, and lists whose items all carry data-media-offset.
"use strict";

// A player for sessions without video or audio: it plays the screenshots on the timeline.
class Slideshow extends EventTarget {
  constructor(duration) {
    super();
    this.duration = duration;
    this.paused = true;
    this._time = 0;
    this._timer = null;
  }
  get currentTime() { return this._time; }
  set currentTime(value) {
    this._time = Math.max(0, Math.min(this.duration || 0, value));
    this.dispatchEvent(new Event("seeked"));
    this.dispatchEvent(new Event("timeupdate"));
  }
  play() {
    if (!this.paused) return Promise.resolve();
    if (this._time >= this.duration) this._time = 0;
    this.paused = false;
    let last = performance.now();
    this._timer = setInterval(() => {
      const now = performance.now();
      this._time = Math.min(this.duration, this._time + (now - last) / 1000);
      last = now;
      this.dispatchEvent(new Event("timeupdate"));
      if (this._time >= this.duration) this.pause();
    }, 100);
    this.dispatchEvent(new Event("play"));
    return Promise.resolve();
  }
  pause() {
    if (this.paused) return;
    this.paused = true;
    clearInterval(this._timer);
    this.dispatchEvent(new Event("pause"));
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  const root = document.getElementById("session");
  if (!root) return;
  const sid = root.dataset.session;
  let data;
  try {
    data = await T.api("GET", `/api/sessions/${sid}`);
  } catch (error) {
    root.append(T.el("p", { class: "form-error", role: "alert", text: String(error.message) }));
    return;
  }
  const attachments = data.attachments || {};
  const shots = data.screenshots || [];
  const video = document.getElementById("player");
  const frame = document.getElementById("frame");
  const live = data.status === "active" || data.status === "paused";
  const slidePlay = document.getElementById("slide-play");
  const slideSeek = document.getElementById("slide-seek");
  const slideTime = document.getElementById("slide-time");
  let boxesFor = null; // the moment whose OCR words are boxed on the frame

  const offsets = [
    ...shots.map((s) => s.media_offset),
    ...(data.context_items || []).map((n) => n.media_offset),
    ...(data.transcript || []).map((l) => l.end_offset),
  ];
  let span = data.total_duration || (data.video && data.video.duration) || 0;
  if (!span) span = Math.max(1, ...offsets.map((o) => o + 1));

  const player = video || new Slideshow(span);
  const duration = () => {
    if (data.total_duration) return data.total_duration;
    if (video && isFinite(video.duration) && video.duration > 0) return video.duration;
    return span;
  };

  // --- the timeline -------------------------------------------------------------------
  const rows = document.getElementById("rows");
  const playhead = document.getElementById("playhead");
  const hover = document.getElementById("hover");

  function mark(kind, start, end, label, extra) {
    const node = T.el("button", {
      type: "button",
      class: `mark item kind-${kind}` + (end !== null ? " band" : ""),
      "data-media-offset": start,
      "data-end": end === null ? null : end,
      title: `${T.clock(start)} · ${label}`,
      "aria-label": `${kind} at ${T.clock(start)}: ${label}`,
      ...(extra || {}),
    });
    return node;
  }

  function row(kind, title, marks) {
    const track = T.el("div", { class: "track", "data-kind": kind });
    for (const m of marks) track.append(m);
    const node = T.el("div", { class: `row row-${kind}` }, T.el("span", { class: "label", text: title }), track);
    rows.append(node);
    return track;
  }

  const chapters = (data.video && data.video.chapters) || [];
  if (chapters.length) {
    row("chapters", "chapters", chapters.map((c) => mark("chapter", c.start_offset, c.end_offset, c.title)));
  }
  const activity = data.activity || [];
  if (activity.length) {
    row("activity", "apps", activity.map((a, i) => mark(
      "activity", a.media_offset,
      i + 1 < activity.length ? activity[i + 1].media_offset : duration(),
      `${a.app} — ${a.title}`)));
  }
  const shotTrack = row("shots", "shots", shots.map((s) => mark(
    "shot", s.media_offset, null, s.user_comment || "screenshot",
    { "data-id": s.id, class: `mark item kind-shot${s.flagged ? " flagged" : ""}` })));
  const transcript = data.transcript || [];
  if (transcript.length) {
    row("speech", "speech", transcript.map((l) => mark("line", l.start_offset, l.end_offset, l.text)));
  }
  const ocr = data.ocr || [];
  if (ocr.length) {
    row("text", "text", ocr.map((o) => mark("ocr", o.media_offset, null, o.text.slice(0, 80))));
  }
  const noteTrack = row("notes", "notes", (data.context_items || []).map((n) => mark("note", n.media_offset, null, n.content)));

  function place() {
    const total = duration() || 1;
    for (const node of rows.querySelectorAll(".mark")) {
      const start = parseFloat(node.dataset.mediaOffset);
      node.style.left = `${Math.min(100, (start / total) * 100)}%`;
      if (node.dataset.end !== undefined) {
        const width = (parseFloat(node.dataset.end) - start) / total * 100;
        node.style.width = `${Math.max(0.3, width)}%`;
      }
    }
  }
  place();
  if (video) video.addEventListener("loadedmetadata", () => { place(); tick(); });

  function timeAt(clientX) {
    const track = rows.querySelector(".track");
    const box = track.getBoundingClientRect();
    const ratio = Math.max(0, Math.min(1, (clientX - box.left) / box.width));
    return { t: ratio * duration(), x: clientX - rows.getBoundingClientRect().left };
  }

  function shotAt(t) {
    let found = null;
    for (const s of shots) {
      if (s.media_offset <= t + 0.05) found = s; else break;
    }
    return found || shots[0] || null;
  }

  rows.addEventListener("mousemove", (event) => {
    if (!event.target.closest(".track")) { hover.hidden = true; return; }
    const { t, x } = timeAt(event.clientX);
    const shot = shotAt(t);
    const image = hover.querySelector("img");
    if (shot) {
      const url = attachments[shot.attachment_id].url;
      if (image.getAttribute("src") !== url) image.src = url;
      image.hidden = false;
    } else {
      image.hidden = true;
    }
    hover.querySelector("span").textContent = T.clock(t);
    hover.hidden = false;
    const width = hover.offsetWidth || 160;
    hover.style.left = `${Math.max(0, Math.min(rows.clientWidth - width, x - width / 2))}px`;
  });
  rows.addEventListener("mouseleave", () => { hover.hidden = true; });
  rows.addEventListener("click", (event) => {
    if (event.target.closest(".item") || !event.target.closest(".track")) return;
    seek(timeAt(event.clientX).t);
  });

  // --- seeking and the item under the playhead -------------------------------------------
  function seek(t) {
    const target = Math.max(0, Math.min(duration(), t));
    player.currentTime = target;
    tick();
  }

  let groups = [];
  function collect() {
    for (const node of document.querySelectorAll(".item.current")) {
      node.classList.remove("current");
      node.removeAttribute("aria-current");
    }
    groups = [];
    for (const container of document.querySelectorAll("#rows .track, #notes, #shots, #transcript, #chapters, #hits")) {
      const items = [...container.querySelectorAll(":scope > .item")].map((node) => ({
        node,
        start: parseFloat(node.dataset.mediaOffset),
        end: node.dataset.end !== undefined ? parseFloat(node.dataset.end) : null,
      }));
      items.sort((a, b) => a.start - b.start);
      groups.push({ container, items, current: null });
    }
  }
  collect();

  function currentOf(items, t) {
    let found = null;
    for (const item of items) {
      if (item.start <= t + 0.05) found = item;
      else break;
    }
    if (found && found.end !== null && t > found.end + 0.05) return null;
    return found;
  }

  function keepVisible(container, node) {
    if (container.classList.contains("track")) return;
    const horizontal = container.scrollWidth > container.clientWidth + 1;
    const vertical = container.scrollHeight > container.clientHeight + 1;
    if (horizontal) {
      const left = node.offsetLeft - container.offsetLeft;
      if (left < container.scrollLeft || left + node.offsetWidth > container.scrollLeft + container.clientWidth) {
        container.scrollLeft = left - container.clientWidth / 2 + node.offsetWidth / 2;
      }
    }
    if (vertical) {
      const top = node.offsetTop - container.offsetTop;
      if (top < container.scrollTop || top + node.offsetHeight > container.scrollTop + container.clientHeight) {
        container.scrollTop = top - container.clientHeight / 2;
      }
    }
  }

  const noteInput = document.getElementById("note-text");
  function tick() {
    const t = player.currentTime;
    const track = rows.querySelector(".track");
    const ratio = Math.min(1, t / (duration() || 1));
    if (track) playhead.style.left = `${track.offsetLeft + ratio * track.clientWidth}px`;
    for (const group of groups) {
      const found = currentOf(group.items, t);
      const node = found ? found.node : null;
      if (node === group.current) continue;
      if (group.current) { group.current.classList.remove("current"); group.current.removeAttribute("aria-current"); }
      if (node) {
        node.classList.add("current");
        node.setAttribute("aria-current", "true");
        if (!player.paused) keepVisible(group.container, node);
      }
      group.current = node;
    }
    if (frame && shots.length) {
      const shot = shotAt(t);
      const url = shot ? attachments[shot.attachment_id].url : null;
      if (url && frame.getAttribute("src") !== url) frame.src = url;
    }
    if (noteInput) noteInput.placeholder = `Add a note at ${T.clock(t)}…`;
    if (slideTime) slideTime.textContent = `${T.clock(t)} / ${T.clock(duration())}`;
    if (slideSeek && document.activeElement !== slideSeek) slideSeek.value = String(t);
    if (boxesFor !== null && Math.abs(t - boxesFor) > 2) clearBoxes();
  }
  player.addEventListener("timeupdate", tick);
  player.addEventListener("seeked", tick);

  document.addEventListener("click", (event) => {
    const item = event.target.closest(".item[data-media-offset]");
    if (!item || event.target.closest(".no-seek")) return;
    if (item.classList.contains("hit")) { choose(parseInt(item.dataset.index, 10)); return; }
    seek(parseFloat(item.dataset.mediaOffset));
  });
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    const item = event.target.closest && event.target.closest("li.item[data-media-offset]");
    if (item && event.target === item) seek(parseFloat(item.dataset.mediaOffset));
  });

  // --- the slideshow's own controls -------------------------------------------------------
  if (!video && slidePlay) {
    slidePlay.addEventListener("click", () => toggle());
    slideSeek.max = String(duration());
    slideSeek.addEventListener("input", () => seek(parseFloat(slideSeek.value)));
    player.addEventListener("play", () => { slidePlay.textContent = "❚❚"; slidePlay.setAttribute("aria-label", "Pause"); });
    player.addEventListener("pause", () => { slidePlay.textContent = "▶"; slidePlay.setAttribute("aria-label", "Play"); });
  }
  function toggle() {
    if (player.paused) player.play().catch(() => {}); else player.pause();
  }

  // --- notes --------------------------------------------------------------------------------
  const noteForm = document.getElementById("note-form");
  const notes = document.getElementById("notes");
  noteForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = noteForm.querySelector(".form-error");
    const content = noteInput.value.trim();
    if (!content) { error.textContent = "Write something first."; return; }
    const at = Math.round(Math.min(player.currentTime, duration()) * 1000) / 1000;
    const body = live ? { content } : { content, media_offset: at };
    try {
      const note = await T.api("POST", `/api/sessions/${sid}/notes`, body);
      error.textContent = "";
      noteInput.value = "";
      const item = T.el("li", { class: "item note", "data-media-offset": note.media_offset, "data-id": note.id, tabindex: 0 },
        T.el("span", { class: "t", text: T.clock(note.media_offset) }), " ",
        T.el("span", { class: `kind kind-${note.type}`, text: note.type }), " ",
        T.el("span", { class: "text", text: note.content }));
      const after = [...notes.children].find((n) => parseFloat(n.dataset.mediaOffset) > note.media_offset);
      notes.insertBefore(item, after || null);
      noteTrack.append(mark("note", note.media_offset, null, note.content));
      (data.context_items = data.context_items || []).push(note);
      place();
      collect();
      tick();
    } catch (failure) {
      error.textContent = failure.message;
    }
  });

  // --- screenshots: flag and comment --------------------------------------------------------
  async function flag(item) {
    const button = item.querySelector(".flag");
    const wanted = button.getAttribute("aria-pressed") !== "true";
    try {
      await T.api("PATCH", `/api/screenshots/${item.dataset.id}`, { flagged: wanted });
      button.setAttribute("aria-pressed", String(wanted));
      item.classList.toggle("flagged", wanted);
      const marker = shotTrack.querySelector(`[data-id="${item.dataset.id}"]`);
      if (marker) marker.classList.toggle("flagged", wanted);
    } catch (failure) {
      item.querySelector(".comment input").setCustomValidity(failure.message);
    }
  }
  for (const item of document.querySelectorAll("#shots .shot")) {
    item.querySelector(".flag").addEventListener("click", () => flag(item));
    const form = item.querySelector(".comment");
    const input = form.querySelector("input");
    let saved = input.value;
    const save = async () => {
      if (input.value === saved) return;
      try {
        await T.api("PATCH", `/api/screenshots/${item.dataset.id}`, { comment: input.value });
        saved = input.value;
        const shot = shots.find((one) => one.id === item.dataset.id);
        if (shot) shot.user_comment = saved;
        input.setCustomValidity("");
        input.classList.add("saved");
        setTimeout(() => input.classList.remove("saved"), 1200);
      } catch (failure) {
        input.setCustomValidity(failure.message);
        input.reportValidity();
      }
    };
    form.addEventListener("submit", (event) => { event.preventDefault(); save(); });
    input.addEventListener("change", save);
  }

  // --- name, description, tags --------------------------------------------------------------
  const editToggle = document.getElementById("edit-toggle");
  const editForm = document.getElementById("edit-form");
  const showEdit = (open) => {
    editForm.hidden = !open;
    editToggle.setAttribute("aria-expanded", String(open));
    if (open) editForm.elements.name.focus();
  };
  editToggle.addEventListener("click", () => showEdit(editForm.hidden));
  document.getElementById("edit-cancel").addEventListener("click", () => showEdit(false));
  editForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const tags = editForm.elements.tags.value.split(",").map((t) => t.trim()).filter(Boolean);
    try {
      const updated = await T.api("PATCH", `/api/sessions/${sid}`, {
        name: editForm.elements.name.value,
        description: editForm.elements.description.value,
        tags,
      });
      document.getElementById("session-name").textContent = updated.name;
      document.getElementById("session-description").textContent = updated.description;
      const tagLine = document.getElementById("session-tags");
      tagLine.replaceChildren(...updated.tags.map((t) => T.el("a", { class: "tag", href: `/?tag=${encodeURIComponent(t)}`, text: t })));
      document.title = `${updated.name} · Taskerino`;
      showEdit(false);
    } catch (failure) {
      editForm.querySelector(".form-error").textContent = failure.message;
    }
  });

  // --- search in this session -----------------------------------------------------------------
  const find = document.getElementById("find");
  const hitList = document.getElementById("hits");
  const boxes = document.getElementById("boxes");
  let hits = [];
  let active = -1;

  // Built at each search: notes added and comments saved on the page are found too.
  const corpus = () => [
    ...(data.context_items || []).map((n) => ({ kind: n.type, at: n.media_offset, text: n.content })),
    ...shots.filter((s) => s.user_comment).map((s) => ({ kind: "comment", at: s.media_offset, text: s.user_comment })),
    ...transcript.map((l) => ({ kind: "said", at: l.start_offset, text: l.text })),
    ...ocr.map((o) => ({ kind: "ocr", at: o.media_offset, text: o.text, words: o.words || [], shot: o.screenshot_id })),
    ...activity.map((a) => ({ kind: "app", at: a.media_offset, text: `${a.app} — ${a.title}` })),
    ...chapters.map((c) => ({ kind: "chapter", at: c.start_offset, text: `${c.title} ${c.summary || ""}`.trim() })),
  ];

  function snippet(text, terms) {
    const lower = text.toLowerCase();
    const first = Math.min(...terms.map((t) => lower.indexOf(t)).filter((i) => i >= 0));
    const start = Math.max(0, first - 40);
    const part = (start ? "…" : "") + text.slice(start, start + 140);
    const node = T.el("span", { class: "text" });
    const pattern = new RegExp(`(${terms.map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|")})`, "gi");
    let last = 0;
    for (const match of part.matchAll(pattern)) {
      node.append(part.slice(last, match.index), T.el("mark", { text: match[0] }));
      last = match.index + match[0].length;
    }
    node.append(part.slice(last));
    return node;
  }

  function search() {
    const terms = find.value.toLowerCase().split(/\s+/).filter(Boolean);
    hits = terms.length ? corpus().filter((entry) => terms.every((t) => entry.text.toLowerCase().includes(t))) : [];
    hits.sort((a, b) => a.at - b.at);
    hits.forEach((hit) => { hit.terms = terms; });
    active = -1;
    hitList.replaceChildren(...hits.map((hit, index) => T.el("li", {
      class: "item hit", "data-media-offset": hit.at, "data-index": index, tabindex: 0,
    }, T.el("span", { class: "t", text: T.clock(hit.at) }), " ",
    T.el("span", { class: `kind kind-${hit.kind}`, text: hit.kind }), " ", snippet(hit.text, terms))));
    if (terms.length && !hits.length) hitList.append(T.el("li", { class: "muted", text: "No match in this session." }));
    collect();
    tick();
  }
  let typingTimer = null;
  find.addEventListener("input", () => { clearTimeout(typingTimer); typingTimer = setTimeout(search, 120); });
  find.addEventListener("keydown", (event) => {
    if (event.key === "Enter") { event.preventDefault(); if (hits.length) choose(0); }
  });

  function choose(index) {
    if (!hits.length) return;
    active = (index + hits.length) % hits.length;
    const hit = hits[active];
    for (const node of hitList.querySelectorAll(".chosen")) node.classList.remove("chosen");
    const node = hitList.querySelector(`[data-index="${active}"]`);
    if (node) { node.classList.add("chosen"); keepVisible(hitList, node); }
    seek(hit.at);
    showBoxes(hit);
  }

  function clearBoxes() { boxes.replaceChildren(); boxesFor = null; }
  function showBoxes(hit) {
    clearBoxes();
    if (!hit.words || !hit.words.length) return;
    const matched = hit.words.filter((w) => hit.terms.some((t) => w.text.toLowerCase().includes(t)));
    if (!matched.length) return;
    // The picture the words were read from: the screenshot, else the video frame.
    let width, height;
    const source = hit.shot ? shots.find((s) => s.id === hit.shot) : null;
    if (source) ({ width, height } = attachments[source.attachment_id]);
    else if (video) ({ videoWidth: width, videoHeight: height } = video);
    const shown = video || frame;
    if (!width || !height || !shown) return;
    const box = shown.getBoundingClientRect();
    const scale = Math.min(box.width / width, box.height / height);
    const left = (box.width - width * scale) / 2, top = (box.height - height * scale) / 2;
    for (const w of matched) {
      const mark = T.el("span", { class: "box" });
      mark.style.left = `${left + w.x * scale}px`;
      mark.style.top = `${top + w.y * scale}px`;
      mark.style.width = `${w.w * scale}px`;
      mark.style.height = `${w.h * scale}px`;
      boxes.append(mark);
    }
    boxesFor = hit.at;
  }

  // --- keyboard ---------------------------------------------------------------------------------
  const help = document.getElementById("help");
  const helpToggle = document.getElementById("help-toggle");
  let helpReturn = null;
  function showHelp(open) {
    help.hidden = !open;
    if (open) { helpReturn = document.activeElement; document.getElementById("help-close").focus(); }
    else if (helpReturn) helpReturn.focus();
  }
  helpToggle.addEventListener("click", () => showHelp(true));
  document.getElementById("help-close").addEventListener("click", () => showHelp(false));
  help.addEventListener("click", (event) => { if (event.target === help) showHelp(false); });

  function currentShot() {
    const group = groups.find((g) => g.container.id === "shots");
    return group && group.current ? group.current : null;
  }

  function stepItem(direction) {
    const t = player.currentTime;
    const all = [...rows.querySelectorAll(".mark")].map((n) => parseFloat(n.dataset.mediaOffset)).sort((a, b) => a - b);
    const next = direction > 0 ? all.find((o) => o > t + 0.05) : [...all].reverse().find((o) => o < t - 0.05);
    if (next !== undefined) seek(next);
  }

  document.addEventListener("keydown", (event) => {
    if (!help.hidden) {
      if (event.key === "Escape" || event.key === "?") { event.preventDefault(); showHelp(false); }
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (T.typing(event)) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    const handled = {
      " ": () => toggle(),
      ArrowLeft: () => seek(player.currentTime - (event.shiftKey ? 1 : 5)),
      ArrowRight: () => seek(player.currentTime + (event.shiftKey ? 1 : 5)),
      "/": () => { find.focus(); find.select(); },
      j: () => (hits.length ? choose(active + 1) : stepItem(1)),
      k: () => (hits.length ? choose(active - 1) : stepItem(-1)),
      n: () => { player.pause(); noteInput.focus(); },
      f: () => { const shot = currentShot(); if (shot) flag(shot); },
      "?": () => showHelp(true),
    }[event.key];
    if (!handled) return;
    if (event.key === " " && event.target instanceof HTMLButtonElement && event.target !== video) return;
    event.preventDefault();
    handled();
  });

  // --- deep link and live sessions -------------------------------------------------------------
  const wanted = parseFloat(new URLSearchParams(window.location.search).get("t"));
  if (isFinite(wanted)) {
    if (video && video.readyState < 1) video.addEventListener("loadedmetadata", () => seek(wanted), { once: true });
    else seek(wanted);
  } else {
    tick();
  }

  if (live && window.EventSource) {
    const status = document.getElementById("session-status");
    const shownDuration = document.getElementById("session-duration");
    const enrichment = document.getElementById("enrichment");
    const events = new EventSource(`/api/sessions/${sid}/events`);
    events.addEventListener("state", (event) => {
      const state = JSON.parse(event.data);
      status.textContent = state.status;
      status.className = `badge status-${state.status}`;
      shownDuration.textContent = T.clock(state.elapsed);
      const stages = Object.entries(state.enrichment || {});
      enrichment.hidden = !stages.length;
      enrichment.replaceChildren(...stages.map(([stage, st]) => T.el("span", { class: `badge stage-${st.status}`, title: st.error || "", text: `${stage}: ${st.status}` })));
    });
    events.addEventListener("end", () => { events.close(); setTimeout(() => window.location.reload(), 300); });
    window.addEventListener("pagehide", () => events.close());
  }
  root.dataset.ready = "true";
});
