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

// An FTS snippet marks each match as [word]: shown as <mark>.
function marked(snippet) {
  const node = T.el("span", { class: "text" });
  let last = 0;
  for (const match of snippet.matchAll(/\[([^\[\]]*)\]/g)) {
    node.append(snippet.slice(last, match.index), T.el("mark", { text: match[1] }));
    last = match.index + match[0].length;
  }
  node.append(snippet.slice(last));
  return node;
}

const HIT_KINDS = { ocr: "ocr", transcript: "said", activity: "app", note: "note", comment: "comment", session: "name" };

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
  const video = document.getElementById("player");
  const frame = document.getElementById("frame");
  const live = data.status === "active" || data.status === "paused";
  const slidePlay = document.getElementById("slide-play");
  const slideSeek = document.getElementById("slide-seek");
  const slideTime = document.getElementById("slide-time");

  // What the page shows of the session; replaced when an enrichment stage commits.
  let attachments, shots, chapters, activity, transcript, ocr;
  function adopt(fresh) {
    data = fresh;
    attachments = data.attachments || {};
    shots = data.screenshots || [];
    chapters = (data.video && data.video.chapters) || [];
    activity = data.activity || [];
    transcript = data.transcript || [];
    ocr = data.ocr || [];
  }
  adopt(data);

  const offsets = [
    ...shots.map((s) => s.media_offset),
    ...(data.context_items || []).map((n) => n.media_offset),
    ...transcript.map((l) => l.end_offset),
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
  let hits = []; // the search's hits, by time
  let active = -1; // the chosen hit

  function mark(kind, start, end, label, extra, text) {
    const node = T.el("button", {
      type: "button",
      class: `mark item kind-${kind}` + (end !== null ? " band" : ""),
      "data-media-offset": start,
      "data-end": end === null ? null : end,
      title: `${T.clock(start)} · ${label}`,
      "aria-label": `${kind} at ${T.clock(start)}: ${label}`,
      ...(extra || {}),
    }, text ? T.el("span", { class: "band-label", text }) : null);
    return node;
  }

  function row(kind, title, marks) {
    const track = T.el("div", { class: "track", "data-kind": kind });
    for (const m of marks) track.append(m);
    rows.append(T.el("div", { class: `row row-${kind}` }, T.el("span", { class: "label", text: title }), track));
    return track;
  }

  // One pass over the session's data; called again when enrichment brings more.
  function drawTimeline() {
    rows.replaceChildren();
    if (chapters.length) {
      row("chapters", "chapters", chapters.map((c) => mark("chapter", c.start_offset, c.end_offset, c.title, { "data-id": c.id }, c.title)));
    }
    if (activity.length) {
      row("activity", "apps", activity.map((a, i) => mark(
        "activity", a.media_offset,
        i + 1 < activity.length ? activity[i + 1].media_offset : duration(),
        `${a.app} — ${a.title}`, null, a.title || a.app)));
    }
    if (hits.length) {
      row("hits", "hits", hits.map((hit, index) => mark("hit", hit.at, null, `${HIT_KINDS[hit.kind] || hit.kind}: ${hit.plain}`,
        { class: `mark item hit kind-hit${index === active ? " chosen" : ""}`, "data-index": index })));
    }
    row("shots", "shots", shots.map((s) => mark(
      "shot", s.media_offset, null, s.user_comment || "screenshot",
      { "data-id": s.id, class: `mark item kind-shot${s.flagged ? " flagged" : ""}` })));
    if (transcript.length) {
      row("speech", "speech", transcript.map((l) => mark("line", l.start_offset, l.end_offset, l.text)));
    }
    if (ocr.length) {
      row("text", "text", ocr.map((o) => mark("ocr", o.media_offset, null, o.text.slice(0, 80), { "data-id": o.id })));
    }
    row("notes", "notes", (data.context_items || []).map((n) => mark("note", n.media_offset, null, n.content)));
    place();
  }
  const track = (kind) => rows.querySelector(`.track[data-kind="${kind}"]`);

  function drawChapters() {
    document.getElementById("chapters-panel").hidden = !chapters.length;
    document.getElementById("chapters").replaceChildren(...chapters.map((c) => {
      const thumb = c.thumbnail_attachment_id && attachments[c.thumbnail_attachment_id];
      return T.el("li", {
        class: "item chapter", "data-media-offset": c.start_offset, "data-end": c.end_offset, "data-id": c.id, tabindex: 0,
      },
      thumb ? T.el("img", { class: "thumb", src: thumb.url, alt: "", loading: "lazy", width: 96, height: 54 }) : null,
      T.el("span", { class: "t", text: T.clock(c.start_offset) }), " ",
      T.el("span", { class: "text", text: c.title, title: c.summary || "" }));
    }));
  }

  function drawTranscript() {
    document.getElementById("transcript-strip").hidden = !transcript.length;
    document.getElementById("transcript").replaceChildren(...transcript.map((l) => T.el("li", {
      class: "item line", "data-media-offset": l.start_offset, "data-end": l.end_offset, tabindex: 0,
    }, T.el("span", { class: "t", text: T.clock(l.start_offset) }), " ", T.el("span", { class: "text", text: l.text }))));
  }

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
  if (video) video.addEventListener("loadedmetadata", () => { place(); tick(); });

  function timeAt(clientX) {
    const first = rows.querySelector(".track");
    const box = first.getBoundingClientRect();
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

  function chapterAt(t) {
    return chapters.find((c) => c.start_offset <= t + 0.05 && t < c.end_offset) || null;
  }

  rows.addEventListener("mousemove", (event) => {
    if (!event.target.closest(".track")) { hover.hidden = true; return; }
    const { t, x } = timeAt(event.clientX);
    const shot = shotAt(t);
    const chapter = chapterAt(t);
    const image = hover.querySelector("img");
    // The moment's screenshot, else its chapter's picture.
    const picture = shot ? attachments[shot.attachment_id]
      : chapter && chapter.thumbnail_attachment_id ? attachments[chapter.thumbnail_attachment_id] : null;
    if (picture) {
      if (image.getAttribute("src") !== picture.url) image.src = picture.url;
      image.hidden = false;
    } else {
      image.hidden = true;
    }
    hover.querySelector("span").textContent = T.clock(t) + (chapter ? ` · ${chapter.title}` : "");
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
    const first = rows.querySelector(".track");
    const ratio = Math.min(1, t / (duration() || 1));
    if (first) playhead.style.left = `${first.offsetLeft + ratio * first.clientWidth}px`;
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
    if (boxed !== null && Math.abs(t - boxed.at) > 2) clearBoxes();
  }
  player.addEventListener("timeupdate", tick);
  player.addEventListener("seeked", tick);
  player.addEventListener("play", () => { if (boxed && boxed.shot && !frame) clearBoxes(); });

  function render() {
    drawTimeline();
    drawChapters();
    drawTranscript();
    collect();
    tick();
  }

  document.addEventListener("click", (event) => {
    const item = event.target.closest(".item[data-media-offset]");
    if (!item || event.target.closest(".no-seek")) return;
    if (item.classList.contains("hit")) { choose(parseInt(item.dataset.index, 10)); return; }
    seek(parseFloat(item.dataset.mediaOffset));
  });
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    const item = event.target.closest && event.target.closest("li.item[data-media-offset]");
    if (!item || event.target !== item) return;
    if (item.classList.contains("hit")) choose(parseInt(item.dataset.index, 10));
    else seek(parseFloat(item.dataset.mediaOffset));
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
      (data.context_items = data.context_items || []).push(note);
      track("notes").append(mark("note", note.media_offset, null, note.content));
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
      const shot = shots.find((one) => one.id === item.dataset.id);
      if (shot) shot.flagged = wanted;
      const marker = track("shots").querySelector(`[data-id="${item.dataset.id}"]`);
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

  // --- search in this session (the full-text index, /api/search) -------------------------------
  const find = document.getElementById("find");
  const hitList = document.getElementById("hits");
  const boxes = document.getElementById("boxes");
  const still = document.getElementById("still");
  const stillImage = document.getElementById("still-img");
  let searches = 0; // a search answered after a newer one started is dropped

  // As typed, the last word also matches as the start of a word ("invo" finds "invoice");
  // anything with the index's own syntax (quotes, *, AND/OR/NOT, ...) is sent as it is.
  function queries(text) {
    const plain = text.trim();
    const words = plain.split(/\s+/);
    const keyword = ["AND", "OR", "NOT", "NEAR"].includes(words[words.length - 1]);
    if (/^[\p{L}\p{N}\s]+$/u.test(plain) && !keyword && !/\s$/.test(text)) return [`${plain}*`, plain];
    return [plain];
  }

  async function search() {
    const text = find.value;
    const asked = ++searches;
    let answer = null;
    let problem = null;
    if (text.trim()) {
      for (const q of queries(text)) {
        try {
          answer = await T.api("GET", `/api/search?${new URLSearchParams({ q, session: sid, limit: "500" })}`);
          break;
        } catch (failure) {
          problem = failure.message;
        }
      }
      // OCR rows committed since the page loaded: fetch them, their pictures are needed.
      const known = new Set(ocr.map((o) => o.id));
      if (answer && answer.hits.some((h) => h.kind === "ocr" && !known.has(h.item_id))) await reload(false);
    }
    if (asked !== searches) return;
    const byId = new Map(ocr.map((o) => [o.id, o]));
    hits = (answer ? answer.hits : []).map((h) => ({
      kind: h.kind,
      at: h.media_offset,
      snippet: h.snippet,
      plain: h.snippet.replace(/[\[\]]/g, ""),
      words: h.words || [],
      shot: h.kind === "ocr" && byId.has(h.item_id) ? byId.get(h.item_id).screenshot_id : null,
    }));
    hits.sort((a, b) => a.at - b.at || a.kind.localeCompare(b.kind));
    active = -1;
    clearBoxes();
    hitList.replaceChildren(...hits.map((hit, index) => T.el("li", {
      class: "item hit", "data-media-offset": hit.at, "data-index": index, "data-kind": hit.kind, tabindex: 0,
      "data-picture": hit.kind === "ocr" ? (hit.shot ? "screenshot" : "video") : null,
    }, T.el("span", { class: "t", text: T.clock(hit.at) }), " ",
    T.el("span", { class: `kind kind-${hit.kind}`, text: HIT_KINDS[hit.kind] || hit.kind }), " ", marked(hit.snippet))));
    if (text.trim() && !hits.length) {
      hitList.append(T.el("li", { class: problem ? "form-error" : "muted", text: problem || "No match in this session." }));
    }
    drawTimeline();
    collect();
    tick();
  }
  let typingTimer = null;
  find.addEventListener("input", () => { clearTimeout(typingTimer); typingTimer = setTimeout(search, 150); });
  find.addEventListener("keydown", (event) => {
    if (event.key === "Enter") { event.preventDefault(); if (hits.length) choose(0); }
  });

  function choose(index) {
    if (!hits.length || !isFinite(index)) return;
    active = (index + hits.length) % hits.length;
    const hit = hits[active];
    for (const node of document.querySelectorAll(".hit.chosen")) node.classList.remove("chosen");
    for (const node of document.querySelectorAll(`.hit[data-index="${active}"]`)) node.classList.add("chosen");
    const node = hitList.querySelector(`[data-index="${active}"]`);
    if (node) keepVisible(hitList, node);
    if (!player.paused) player.pause();
    seek(hit.at);
    showBoxes(hit);
  }

  // --- the matched words, boxed on the picture they were read from ------------------------------
  // A video key frame's words are in the video's pixels: boxed over the player. A
  // screenshot's words are in that screenshot's pixels, and a screenshot may show more than
  // the video (every display, another size): the hit is shown on the screenshot itself, laid
  // over the player until the video plays again or "Back to the video".
  let boxed = null; // the hit whose words are boxed
  function clearBoxes() {
    boxes.replaceChildren();
    still.hidden = true;
    boxed = null;
  }

  function showBoxes(hit) {
    clearBoxes();
    if (hit.kind !== "ocr" || !hit.words.length) return;
    let picture, width, height;
    if (hit.shot) {
      const shot = shots.find((s) => s.id === hit.shot);
      if (!shot) return;
      ({ width, height } = attachments[shot.attachment_id]);
      if (frame) {
        picture = frame; // the slideshow shows this screenshot at this moment
      } else {
        const url = attachments[shot.attachment_id].url;
        if (stillImage.getAttribute("src") !== url) stillImage.src = url;
        document.getElementById("still-caption").textContent = `Screenshot at ${T.clock(shot.media_offset)}, where the words were read`;
        still.hidden = false;
        picture = stillImage;
      }
    } else if (video && data.video && data.video.width) {
      picture = video;
      ({ width, height } = data.video);
    } else {
      return;
    }
    boxed = hit;
    boxes.dataset.picture = hit.shot ? "screenshot" : "video";
    const draw = () => {
      if (boxed !== hit) return;
      boxes.replaceChildren();
      const area = boxes.getBoundingClientRect();
      const box = picture.getBoundingClientRect();
      // object-fit: contain — the picture is scaled to fit and centred in its box.
      const scale = Math.min(box.width / width, box.height / height);
      const left = box.left - area.left + (box.width - width * scale) / 2;
      const top = box.top - area.top + (box.height - height * scale) / 2;
      for (const w of hit.words) {
        const node = T.el("span", { class: "box", "data-word": w.text });
        node.style.left = `${left + w.x * scale}px`;
        node.style.top = `${top + w.y * scale}px`;
        node.style.width = `${w.w * scale}px`;
        node.style.height = `${w.h * scale}px`;
        boxes.append(node);
      }
    };
    if (picture instanceof HTMLImageElement && !picture.complete) picture.addEventListener("load", draw, { once: true });
    else draw();
  }
  document.getElementById("still-close").addEventListener("click", clearBoxes);
  window.addEventListener("resize", () => { if (boxed) showBoxes(boxed); });

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
      k: () => (hits.length ? choose(active < 0 ? -1 : active - 1) : stepItem(-1)),
      n: () => { player.pause(); noteInput.focus(); },
      f: () => { const shot = currentShot(); if (shot) flag(shot); },
      Escape: () => clearBoxes(),
      "?": () => showHelp(true),
    }[event.key];
    if (!handled) return;
    if (event.key === " " && event.target instanceof HTMLButtonElement && event.target !== video) return;
    event.preventDefault();
    handled();
  });

  // --- enrichment: progress as it runs, results as each stage commits --------------------------
  const enrichment = document.getElementById("enrichment");
  const enrichButton = document.getElementById("enrich");
  const enrichError = document.getElementById("enrich-error");
  let stages = data.enrichment || {};
  let revision = 0;
  const unsettled = (all) => Object.values(all).some((st) => st.status === "pending" || st.status === "running");

  function showStages() {
    const entries = Object.entries(stages);
    enrichment.hidden = !entries.length;
    enrichment.replaceChildren(...entries.map(([stage, st]) => T.el("span", {
      class: `badge stage-${st.status}`, "data-stage": stage, title: st.error || "", text: `${stage}: ${st.status}`,
    })));
    root.dataset.enrichment = unsettled(stages) ? "running" : "settled";
  }

  let reloading = null;
  let reloadAgain = false;
  // Fetch the session again and redraw what enrichment adds (timeline, chapters,
  // transcript); the hits of a search under way are asked again when `research`.
  async function reload(research = true) {
    if (reloading) { reloadAgain = true; return reloading; }
    reloading = (async () => {
      do {
        reloadAgain = false;
        adopt(await T.api("GET", `/api/sessions/${sid}`));
        render();
      } while (reloadAgain);
      revision += 1;
      root.dataset.revision = String(revision);
    })();
    try {
      await reloading;
    } catch (failure) {
      enrichError.textContent = `Could not load the new results: ${failure.message}`;
    } finally {
      reloading = null;
    }
    if (research && find.value.trim()) await search();
  }

  let stream = null;
  function stopFollowing() {
    if (stream) { stream.close(); stream = null; }
  }
  function follow() {
    if (stream || !window.EventSource) return;
    const status = document.getElementById("session-status");
    const shownDuration = document.getElementById("session-duration");
    stream = new EventSource(`/api/sessions/${sid}/events`);
    stream.addEventListener("state", (event) => {
      const state = JSON.parse(event.data);
      status.textContent = state.status;
      status.className = `badge status-${state.status}`;
      if (live) shownDuration.textContent = T.clock(state.elapsed);
      const before = stages;
      stages = state.enrichment || {};
      showStages();
      const committed = Object.entries(stages).some(([stage, st]) => st.status === "done" && (!before[stage] || before[stage].status !== "done"));
      if (committed) reload();
      if (!live && !unsettled(stages)) stopFollowing();
    });
    // The recording has ended: its video is whole now, and enrichment starts.
    stream.addEventListener("end", () => {
      if (!live) return;
      stopFollowing();
      setTimeout(() => window.location.reload(), 300);
    });
  }
  window.addEventListener("pagehide", stopFollowing);

  enrichButton.addEventListener("click", async () => {
    enrichButton.disabled = true;
    enrichError.textContent = "";
    try {
      await T.api("POST", `/api/sessions/${sid}/enrich`, {});
      for (const stage of Object.keys(stages)) stages[stage] = { status: "pending", error: null };
      showStages();
      follow();
    } catch (failure) {
      enrichError.textContent = failure.message;
    } finally {
      enrichButton.disabled = false;
    }
  });

  // --- first drawing, deep link ----------------------------------------------------------------
  render();
  showStages();
  const wanted = parseFloat(new URLSearchParams(window.location.search).get("t"));
  if (isFinite(wanted)) {
    if (video && video.readyState < 1) video.addEventListener("loadedmetadata", () => seek(wanted), { once: true });
    else seek(wanted);
  }
  if (live || unsettled(stages)) follow();
  root.dataset.ready = "true";
});
