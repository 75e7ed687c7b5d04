// Shared by every page: the API client (with the page's CSRF token), formatting, local
// times, and the "recording" badge fed by the live-sessions event stream.
"use strict";

const T = (() => {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";

  async function api(method, path, body) {
    const options = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    if (method !== "GET") options.headers["X-CSRF-Token"] = csrf;
    const response = await fetch(path, options);
    const kind = response.headers.get("content-type") || "";
    const data = kind.includes("json") ? await response.json() : null;
    if (!response.ok) {
      throw new Error(data && data.error ? data.error : `${response.status} ${response.statusText}`);
    }
    return data;
  }

  function clock(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
    const whole = Math.max(0, Math.floor(seconds));
    const h = Math.floor(whole / 3600), m = Math.floor((whole % 3600) / 60), s = whole % 60;
    const mm = h ? String(m).padStart(2, "0") : String(m);
    return (h ? `${h}:` : "") + `${mm}:${String(s).padStart(2, "0")}`;
  }

  function bytes(n) {
    if (n === null || n === undefined || !isFinite(n)) return "–";
    const units = ["B", "kB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return i ? `${n.toFixed(1)} ${units[i]}` : `${Math.round(n)} B`;
  }

  function span(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
    if (seconds >= 86400 * 2) return `${Math.floor(seconds / 86400)} days`;
    if (seconds >= 3600) return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
    if (seconds >= 60) return `${Math.floor(seconds / 60)} min`;
    return `${Math.round(seconds)} s`;
  }

  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  function localTimes(root) {
    for (const node of (root || document).querySelectorAll("time[datetime]")) {
      const at = new Date(node.getAttribute("datetime"));
      if (isNaN(at)) continue;
      node.title = at.toISOString();
      node.textContent = at.toLocaleString(undefined, {
        year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
      });
    }
  }

  function typing(event) {
    const target = event.target;
    return target instanceof HTMLElement &&
      (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName)) &&
      !(target instanceof HTMLInputElement && ["checkbox", "radio", "range", "button"].includes(target.type));
  }

  function liveBadge() {
    const badge = document.getElementById("live-badge");
    if (!badge || !window.EventSource) return;
    const source = new EventSource("/api/events");
    source.addEventListener("live", (event) => {
      const live = JSON.parse(event.data);
      badge.hidden = live.length === 0;
      badge.querySelector("span").textContent = String(live.length);
      document.dispatchEvent(new CustomEvent("taskerino:live", { detail: live }));
    });
    window.addEventListener("pagehide", () => source.close());
  }

  document.addEventListener("DOMContentLoaded", () => { localTimes(); liveBadge(); });
  return { api, clock, bytes, span, el, localTimes, typing };
})();
