// painterly studio: the page. Controls come from GET /api/settings (the Settings dataclass);
// a run is POST /api/jobs, followed over server-sent events (GET /api/jobs/{id}/events).
"use strict";

const MAIN_FIELDS = ["size", "steps", "strength", "colour", "style_scale", "style_blend_weights"];
const FINAL = ["done", "failed", "cancelled", "interrupted"];
const LABELS = { strength: "strength", colour: "colour mode", style_blend_weights: "blend weights" };
const NOT_LOSSES = ["step", "seconds", "scale", "size", "optimizer"];
const COLOURS = ["#4c6ef5", "#2f9e44", "#ae3ec9", "#1098ad", "#f08c00", "#868e96"];
const TITLE = "painterly studio";
const PAGE_SIZE = { wide: 12, narrow: 8 };  // runs per page of the gallery
const NARROW = window.matchMedia("(max-width: 600px)");
const NUDGE = 0.15;  // how far "more / less artwork" moves the strength
const NOTICE_AFTER_MS = 1500;  // the loading notice shows when the first step has not come by then
const ACCEPTED = "PNG, JPEG, WebP, GIF, BMP, TIFF";

// edited: settings the user changed (kept across preset changes); active: the run last started
// from this form ({id, signature, status}), so that the same request is not started twice.
const state = {
  schema: null, content: null, styles: [], jobId: null, source: null, history: [],
  edited: new Set(), active: null, online: true,
  page: 0, total: 0, filter: "", selected: new Set(), planTimer: null, planAsked: 0, noticeTimer: null,
  shown: null,  // the run shown in the run card, as last received
};
const $ = (selector) => document.querySelector(selector);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

async function getJSON(url) {
  const response = await fetch(url);
  if (!response.ok) throw Object.assign(new Error(response.statusText), { status: response.status });
  return response.json();
}

function duration(seconds) {
  return seconds < 1 ? "under a second" : `about ${clock(seconds)}`;
}

function clock(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

// -- settings controls, built from the dataclass's fields --------------------------------------

function presetValues() {
  return state.schema.presets[$("#setting-preset").value];
}

function controlFor(field) {
  const id = `setting-${field.name}`;
  if (field.choices) {
    return el("select", { id }, ...field.choices.map((c) => el("option", { value: c, text: c })));
  }
  if (field.type === "int" || field.type === "float") {
    const input = el("input", { id, type: "number", step: field.type === "int" ? "1" : "any" });
    const limits = state.schema.limits;
    if (field.name === "size") Object.assign(input, { min: limits.min_size, max: limits.max_size });
    if (field.name === "steps") Object.assign(input, { min: 1, max: limits.max_steps });
    return input;
  }
  const input = el("input", { id, type: "text" });
  if (field.type.startsWith("list")) input.placeholder = "comma-separated; empty: none";
  return input;
}

function strengthControl(field) {
  // 0 (the photo) .. 1 (the artwork), as --strength. A preset without a strength (the tutorial's raw
  // weights) shows "off" until the slider is moved; the page keeps no default of its own.
  const range = el("input", { id: "setting-strength", type: "range", min: "0", max: "1", step: "0.05" });
  const shown = el("output", { id: "strength-value" });
  const update = () => {
    const off = presetValues().strength < 0 && !state.edited.has("strength");
    shown.textContent = off ? "off (the raw weights)" : Number(range.value).toFixed(2);
  };
  range.addEventListener("input", () => { state.edited.add("strength"); update(); });
  range.update = update;
  return el("span", { class: "strength" }, range, shown);
}

function settingRow(name, control, help) {
  const label = el("label", { for: `setting-${name}`, text: LABELS[name] || name.replaceAll("_", " ") });
  return el("div", { class: "setting" }, label, control, el("small", { text: help }),
    el("p", { class: "error", "data-error-for": name, role: "alert" }));
}

function buildSettings(schema) {
  const main = $("#main-settings");
  const other = $("#other-settings");
  const presetSelect = el("select", { id: "setting-preset" },
    ...Object.keys(schema.presets).map((name) => el("option", { value: name, text: name })));
  presetSelect.value = schema.default_preset;
  main.append(settingRow("preset", presetSelect, "starting values for every setting below"));
  const groups = {};
  for (const field of schema.fields) {
    const control = field.name === "strength" ? strengthControl(field) : controlFor(field);
    const row = settingRow(field.name, control, field.help);
    if (MAIN_FIELDS.includes(field.name)) { main.append(row); continue; }
    if (!groups[field.group]) {
      groups[field.group] = el("fieldset", {}, el("legend", { text: field.group }));
      other.append(groups[field.group]);
    }
    groups[field.group].append(row);
  }
  presetSelect.addEventListener("change", () => { applyPreset(); formChanged(); });
  for (const field of schema.fields) {
    const control = document.getElementById(`setting-${field.name}`);
    const edited = () => { state.edited.add(field.name); clearError(field.name); formChanged(); };
    control.addEventListener("input", edited);
    control.addEventListener("change", edited);
  }
  applyPreset();
}

function applyPreset() {
  // A preset sets every setting the user has not changed; their own edits stay, and the page says so.
  const values = presetValues();
  for (const field of state.schema.fields) {
    if (state.edited.has(field.name)) continue;
    const control = document.getElementById(`setting-${field.name}`);
    if (field.name === "strength") {
      control.value = String(values.strength >= 0 ? values.strength : 0.5);
      control.update();
      continue;
    }
    const value = values[field.name];
    control.value = Array.isArray(value) ? value.join(", ") : String(value);
  }
  const strength = document.getElementById("setting-strength");
  if (strength) strength.update();
  const kept = $("#kept-edits");
  const names = [...state.edited];
  kept.hidden = names.length === 0;
  kept.replaceChildren(`Kept your changes to ${names.join(", ")}.`, el("button", {
    type: "button", class: "secondary", id: "reset-edits", text: "use the preset's values",
    onclick: () => { state.edited.clear(); applyPreset(); formChanged(); },
  }));
}

class FieldError extends Error {
  constructor(field, message) { super(message); this.field = field; }
}

function readControl(field, control) {
  const text = control.value.trim();
  if (field.type === "int" || field.type === "float") {
    if (control.validity && control.validity.badInput) throw new FieldError(field.name, `${field.name} takes a number`);
    return text === "" ? undefined : Number(text);
  }
  if (field.type.startsWith("list")) {
    const items = text.split(/[\s,]+/).filter(Boolean);
    if (field.type !== "list[float]") return items;
    if (items.some((item) => !isFinite(Number(item)))) {
      throw new FieldError(field.name, `${field.name} takes numbers separated by commas, e.g. 0.7, 0.3`);
    }
    return items.map(Number);
  }
  return text;
}

function collectSettings() {
  // Only what differs from the preset is sent; the server applies it over the preset. Hidden rows
  // (blend weights with a single artwork) are not sent.
  const base = presetValues();
  const out = { preset: $("#setting-preset").value };
  for (const field of state.schema.fields) {
    const control = document.getElementById(`setting-${field.name}`);
    if (control.closest(".setting").hidden) continue;
    let value;
    if (field.name === "strength") {
      if (base.strength < 0 && !state.edited.has("strength")) continue;
      value = Number(control.value);
    } else {
      value = readControl(field, control);
    }
    if (value !== undefined && JSON.stringify(value) !== JSON.stringify(base[field.name])) out[field.name] = value;
  }
  return out;
}

// -- the Start button: not twice for the same request -------------------------------------------

function signature() {
  // What a request would send: the settings and the files (by name and size).
  let settings;
  try { settings = collectSettings(); } catch { return null; }
  const file = (f) => f && [f.name, f.blob.size];
  return JSON.stringify([settings, file(state.content), state.styles.map((s) => [file(s), file(s.mask)])]);
}

function formChanged() {
  const button = $("#start");
  const active = state.active;
  const same = active && !FINAL.includes(active.status) && signature() === active.signature;
  button.disabled = !!same || button.dataset.sending === "true";
  $("#start-note").textContent = same ? "This run is already going; change something to start another." : "";
  schedulePlan();
}

// -- what the run will take, before Start (POST /api/plan: the server's own checks) ------------

function schedulePlan() {
  clearTimeout(state.planTimer);
  state.planTimer = setTimeout(showPlan, 250);
}

async function showPlan() {
  const box = $("#plan-preview");
  const size = state.content && state.content.size;
  if (!size) {
    box.className = "plan-preview";
    box.textContent = state.content ? "" : "Pick a photo and an artwork to see what the run will take.";
    return;
  }
  let settings;
  try { settings = collectSettings(); } catch (error) { return; }  // the field's own error says it
  const asked = ++state.planAsked;
  let answer;
  try {
    const response = await fetch("/api/plan", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ settings: JSON.stringify(settings), width: size[0], height: size[1],
        styles: Math.max(1, state.styles.length) }),
    });
    answer = await response.json();
    if (!response.ok) answer = { refused: answer };
  } catch { return; }
  if (asked !== state.planAsked) return;  // a later change asked again
  box.className = answer.refused ? "plan-preview refused" : "plan-preview";
  box.dataset.steps = answer.plan ? String(answer.plan.total_steps) : "";
  box.textContent = answer.refused
    ? `This server would refuse this run: ${answer.refused.detail}`
    : `${planText(answer.plan)}${answer.seconds === null ? "" : ` · ${duration(answer.seconds)}`}`;
}

// -- picking images ------------------------------------------------------------------------

function thumb(image, onRemove) {
  const item = el("span", { class: "thumb" }, el("img", { src: image.url, alt: image.name, title: image.name }));
  if (onRemove) item.append(el("button", { type: "button", class: "remove", title: "remove", text: "×", onclick: onRemove }));
  return item;
}

function renderPicked() {
  const content = $("#content-picked");
  content.replaceChildren(...(state.content ? [thumb(state.content), el("span", { text: state.content.name })] : []));
  $("#content-drop").classList.toggle("has", !!state.content);
  const styles = $("#style-picked");
  styles.replaceChildren(...state.styles.map((s, i) => thumb(s, (e) => {
    e.preventDefault();
    state.styles.splice(i, 1);
    renderPicked();
    formChanged();
  })));
  $("#style-drop").classList.toggle("has", state.styles.length > 0);
  renderMasks();
  markExamples();
  const blend = document.getElementById("setting-style_blend_weights");
  if (blend) {  // blending needs several artworks
    blend.closest(".setting").hidden = state.styles.length < 2;
    blend.placeholder = `one per artwork, e.g. ${state.styles.map(() => 1).join(", ")}`;
  }
}

function renderMasks() {
  $("#mask-details").hidden = state.styles.length === 0;
  $("#mask-list").replaceChildren(...state.styles.map((style, i) => {
    const input = el("input", { type: "file", accept: "image/*", class: "mask-file", "data-index": String(i) });
    input.addEventListener("change", () => { if (input.files[0]) setMask(i, input.files[0]); input.value = ""; });
    const chosen = style.mask
      ? thumb(style.mask, () => { style.mask = null; renderPicked(); })
      : el("span", { class: "none", text: "no mask" });
    return el("li", {}, el("img", { class: "of", src: style.url, alt: style.name, title: style.name }), chosen,
      el("label", { class: "mask-pick", title: `mask for ${style.name}` }, input,
        el("span", { text: style.mask ? "change" : "choose mask" })));
  }));
}

async function setMask(index, file) {
  const mask = await readImage(file, "mask", "mask");
  if (!mask) return;
  state.styles[index].mask = mask;
  clearError("mask");
  renderPicked();
  formChanged();
}

function picked(blob, name, extra = {}) {
  return { blob, name, url: URL.createObjectURL(blob), ...extra };
}

async function imageSize(blob) {
  try {
    const bitmap = await createImageBitmap(blob);
    const size = [bitmap.width, bitmap.height];
    bitmap.close();
    return size;
  } catch { return null; }
}

async function readImage(file, field, what, extra = {}) {
  // Refused here, before Start, when it is too large or not an image; TIFF, which browsers do not
  // show, goes to the server as it is (it reads TIFF).
  if (tooBig(file, field)) return null;
  const size = await imageSize(file);
  const tiff = file.type === "image/tiff" || /\.tiff?$/i.test(file.name || "");
  if (!size && !tiff) {
    showError(field, `${file.name || what} is not an image the studio reads (accepted: ${ACCEPTED})`);
    return null;
  }
  return picked(file, file.name || what, { size, ...extra });
}

function tooBig(file, field) {
  const limit = state.schema.limits.max_upload_mb;
  if (file.size <= limit * 2 ** 20) return false;
  showError(field, `${file.name} is larger than ${limit} MB`);
  return true;
}

async function setContent(file, extra = {}) {
  const content = await readImage(file, "content", "content", extra);
  if (!content) return;
  state.content = content;
  $("#from-run").hidden = true;  // no longer the run's photo
  clearError("content");
  renderPicked();
  formChanged();
}

async function addStyles(files, extra = {}) {
  for (const file of files) {
    if (state.styles.length >= state.schema.limits.max_styles) {
      showError("style", `at most ${state.schema.limits.max_styles} artworks per run`);
      return;
    }
    const style = await readImage(file, "style", "style", extra);
    if (!style) return;
    state.styles.push(style);
  }
  clearError("style");
  renderPicked();
  formChanged();
}

function wireDrop(zone, input, onFiles) {
  input.addEventListener("change", () => { onFiles([...input.files]); input.value = ""; });
  input.addEventListener("focus", () => zone.classList.add("focused"));
  input.addEventListener("blur", () => zone.classList.remove("focused"));
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    onFiles([...e.dataTransfer.files]);
  });
}

function buildExamples(examples) {
  // Labelled buttons; aria-pressed says which are in the form (an artwork's second click takes it out).
  const add = (box, items, use) => box.append(...items.map((item) => el("button", {
    type: "button", class: "example", "data-example": item.name, "aria-pressed": "false",
    title: item.name, onclick: async () => {
      const blob = await (await fetch(item.url)).blob();
      use(new File([blob], `${item.name}.jpg`, { type: blob.type }), item.name);
    },
  }, el("img", { src: item.url, alt: "", loading: "lazy" }), el("span", { text: item.name.replaceAll("_", " ") }))));
  add($("#content-examples"), examples.content, (file, name) => setContent(file, { example: name }));
  add($("#style-examples"), examples.styles, (file, name) => {
    const at = state.styles.findIndex((style) => style.example === name);
    if (at < 0) return addStyles([file], { example: name });
    state.styles.splice(at, 1);
    renderPicked();
    formChanged();
  });
}

function markExamples() {
  const content = state.content && state.content.example;
  const styles = new Set(state.styles.map((style) => style.example));
  document.querySelectorAll("#content-examples .example").forEach((button) => {
    button.setAttribute("aria-pressed", String(button.dataset.example === content));
  });
  document.querySelectorAll("#style-examples .example").forEach((button) => {
    button.setAttribute("aria-pressed", String(styles.has(button.dataset.example)));
  });
}

// -- errors next to their fields ---------------------------------------------------------------

function clearError(field) {
  const box = document.querySelector(`[data-error-for="${CSS.escape(field)}"]`);
  if (box) box.textContent = "";
  const control = document.getElementById(`setting-${field}`);
  if (control) control.removeAttribute("aria-invalid");
  if (["settings", "preset"].includes(field) || box) clearError.general();
}
clearError.general = () => { const box = $('[data-error-for="_general"]'); if (box) box.textContent = ""; };

function clearErrors() {
  document.querySelectorAll("[data-error-for]").forEach((box) => { box.textContent = ""; });
  document.querySelectorAll("[aria-invalid]").forEach((c) => c.removeAttribute("aria-invalid"));
}

function showError(field, message) {
  const box = document.querySelector(`[data-error-for="${CSS.escape(field || "_general")}"]`)
    || document.querySelector('[data-error-for="_general"]');
  box.textContent = message;
  const details = box.closest("details");
  if (details) details.open = true;
  const control = document.getElementById(`setting-${field}`);
  if (control) control.setAttribute("aria-invalid", "true");
  box.scrollIntoView({ block: "center", behavior: "smooth" });
}

// -- starting and following a run -----------------------------------------------------------

async function start(event) {
  event.preventDefault();
  clearErrors();
  if (!state.content) return showError("content", "pick or drop a photo first");
  if (!state.styles.length) return showError("style", "pick or drop at least one artwork");
  const masked = state.styles.filter((style) => style.mask).length;
  if (masked && masked < state.styles.length) {
    return showError("mask", `give a mask for every artwork, or none (${masked} of ${state.styles.length} have one)`);
  }
  let settings;
  try { settings = collectSettings(); } catch (error) {
    if (error instanceof FieldError) return showError(error.field, error.message);
    throw error;
  }
  const form = new FormData();
  form.append("content", state.content.blob, state.content.name);
  for (const style of state.styles) form.append("style", style.blob, style.name);
  if (masked) for (const style of state.styles) form.append("mask", style.mask.blob, style.mask.name);
  form.append("settings", JSON.stringify(settings));
  askToNotify();
  const button = $("#start");
  const sent = signature();
  button.dataset.sending = "true";
  button.disabled = true;
  try {
    const response = await fetch("/api/jobs", { method: "POST", body: form });
    const answer = await response.json().catch(() => ({ detail: response.statusText }));
    if (!response.ok) return showError(answer.field, answer.detail);
    state.active = { id: answer.id, signature: sent, status: answer.status };
    follow(answer.id);
    refreshHistory();
  } catch (error) {
    showError(null, `the server cannot be reached (${error.message})`);
  } finally {
    button.dataset.sending = "false";
    formChanged();
  }
}

function setOnline(online) {
  if (state.online === online) return;
  state.online = online;
  $("#connection").hidden = online;
  if (online) refreshHistory();
}

function follow(id) {
  if (state.source) state.source.close();
  state.jobId = id;
  chart.points = [];
  $("#run").hidden = false;
  $("#result").hidden = true;
  $("#live-figure").hidden = false;
  $("#settings-details").hidden = true;
  $("#preview").removeAttribute("src");
  for (const button of RUN_BUTTONS) $(button).hidden = true;
  $("#run-error").textContent = "";
  $("#result-hint").hidden = true;
  $("#run-notice").hidden = true;
  clearTimeout(state.noticeTimer);
  state.shown = null;
  $("#cancel").disabled = false;
  const source = new EventSource(`/api/jobs/${id}/events`);
  state.source = source;
  const mine = (handler) => (e) => { if (state.jobId === id) handler(JSON.parse(e.data)); };
  source.addEventListener("open", () => setOnline(true));
  source.addEventListener("status", mine((job) => { setOnline(true); showStatus(job, source); }));
  source.addEventListener("progress", mine(showProgress));
  source.addEventListener("image", mine((d) => { $("#preview").src = `/api/jobs/${id}/image?v=${d.version}`; }));
  source.addEventListener("error", async () => {
    // The browser reconnects by itself (the stream asks for a retry every 2 s); say so meanwhile.
    if (source.readyState === EventSource.CLOSED || state.jobId !== id) return;
    try { await getJSON(`/api/jobs/${id}`); } catch (error) {
      if (error.status === 404) { source.close(); showGone(id); } else setOnline(false);
    }
  });
  $("#run").scrollIntoView({ behavior: "smooth", block: "start" });
}

const RUN_BUTTONS = ["#download", "#zoom", "#less", "#more", "#open-form", "#rerun", "#delete"];

function showStatus(job, source) {
  // The status this page last knew: from its stream, or, for a run it just started, from the answer
  // to Start (a run of a few steps can be over before the stream's first event).
  const started = state.active && state.active.id === job.id ? state.active.status : null;
  const was = state.shown && state.shown.id === job.id ? state.shown.status : started;
  state.shown = job;
  const badge = $("#run-status");
  badge.textContent = job.status;
  badge.className = `badge ${job.status}`;
  $("#run-title").textContent = `${job.inputs.content} × ${job.inputs.styles.join(" + ")}`;
  $("#cancel").hidden = FINAL.includes(job.status);
  $("#rerun").hidden = !FINAL.includes(job.status);
  $("#open-form").hidden = !FINAL.includes(job.status);
  $("#delete").hidden = !FINAL.includes(job.status);
  $("#run-plan").textContent = planText(job.plan);
  if (state.active && state.active.id === job.id) { state.active.status = job.status; formChanged(); }
  chart.points = job.history.slice();
  chart.draw();
  if (job.status === "queued") {
    const ahead = job.position - 1;
    $("#run-progress").textContent = ahead ? `Waiting: ${ahead} run${ahead > 1 ? "s" : ""} ahead.` : "Waiting: next in line.";
  } else if (FINAL.includes(job.status)) {
    const verb = { done: "Done", failed: "Failed", cancelled: "Cancelled", interrupted: "Interrupted" }[job.status];
    $("#run-progress").textContent = `${verb} after ${job.step} of ${job.total_steps || job.settings.steps} steps`
      + ` · ${clock(job.elapsed)}`;
  } else {
    showProgress(job);
  }
  if (FINAL.includes(job.status)) {
    source.close();
    showResult(job);
    refreshHistory();
    document.title = `${job.status} · ${TITLE}`;
    if (was && !FINAL.includes(was)) notifyEnd(job);
  } else if (job.status === "queued") {
    document.title = `waiting · ${TITLE}`;
  }
  showNotice(job);
}

function showNotice(job) {
  // The first step can take a while (the network loads once per server start): say so if it does.
  clearTimeout(state.noticeTimer);
  const waiting = job.status === "running" && !job.step;
  if (!waiting) { $("#run-notice").hidden = true; return; }
  state.noticeTimer = setTimeout(() => {
    if (state.shown && state.shown.id === job.id && state.shown.status === "running" && !state.shown.step) {
      $("#run-notice").hidden = false;
    }
  }, NOTICE_AFTER_MS);
}

function askToNotify() {
  // Asked on Start (a click), never on load: a notification says when a run in a background tab ends.
  if ("Notification" in window && Notification.permission === "default") {
    Notification.requestPermission().catch(() => {});
  }
}

function notifyEnd(job) {
  const what = `${job.inputs.content} × ${job.inputs.styles.join(" + ")}`;
  document.body.dataset.notified = job.status;  // what the page would have said (for tests)
  if (!("Notification" in window) || Notification.permission !== "granted" || !document.hidden) return;
  try { new Notification(`painterly: run ${job.status}`, { body: what, tag: job.id }); } catch { /* not here */ }
}

function showProgress(p) {
  const total = p.total_steps || 0;
  const scale = p.scales > 1 ? ` (scale ${p.scale + 1} of ${p.scales})` : "";
  const size = p.size ? ` · ${p.size[0]}×${p.size[1]}` : "";
  const loss = p.losses && typeof p.losses.total === "number" ? ` · loss ${p.losses.total.toExponential(3)}` : "";
  $("#run-progress").textContent = total && p.step
    ? `Step ${p.step} of ${total}${scale}${size}${loss} · ${clock(p.elapsed)} elapsed · `
      + `${p.eta === null || p.eta === undefined ? "ETA after the next step" : `ETA ${clock(p.eta)}`}`
    : "Starting…";
  if (p.step) {
    $("#run-notice").hidden = true;
    if (state.shown) Object.assign(state.shown, { step: p.step });
    const left = p.eta === null || p.eta === undefined ? "" : ` · ${clock(p.eta)} left`;
    document.title = `${Math.floor((100 * p.step) / Math.max(total, 1))}%${left} · ${TITLE}`;
  }
  $("#run-bar").style.width = `${total ? (100 * p.step) / total : 0}%`;
  if (p.losses && !p.history) { chart.points.push(p.losses); chart.draw(); }
}

function showResult(job) {
  $("#live-figure").hidden = true;
  $("#result").hidden = false;
  const id = job.id;
  $("#result-content").src = `/api/jobs/${id}/content`;
  const masks = job.inputs.masks || [];
  $("#result-styles").replaceChildren(...job.inputs.styles.map((name, i) => el("figure", {},
    el("img", { src: `/api/jobs/${id}/styles/${i}`, alt: name }),
    ...(masks[i] ? [el("img", { class: "mask", src: `/api/jobs/${id}/masks/${i}`, alt: `mask for ${name}` })] : []),
    el("figcaption", { text: masks[i] ? `${name} · mask ${masks[i]}` : name }))));
  const hasImage = job.image_version > 0 && job.step > 0;
  $("#before-after").hidden = !hasImage;
  $(".ba-split").hidden = !hasImage;
  if (hasImage) {
    $("#result-image").src = `/api/jobs/${id}/image?v=${job.image_version}`;
    $("#ba-photo").src = `/api/jobs/${id}/content`;
  }
  $("#zoom").hidden = !hasImage;
  showNudges(job);
  showHint(job);
  const r = job.result;
  $("#result-caption").textContent = job.status === "done" && r
    ? `result · ${r.width}×${r.height} · ${r.seconds.toFixed(1)} s · best loss ${r.best_loss?.toExponential(3)} at step ${r.best_step}`
    : job.status === "cancelled" ? `cancelled at step ${job.step}` : job.status;
  $("#download").hidden = !hasImage;
  $("#download").href = `/api/jobs/${id}/image?download=1`;
  $("#run-error").textContent = job.error || "";
  $("#run-bar").style.width = job.status === "done" ? "100%" : $("#run-bar").style.width;
  renderSettingsTable(job);
}

function renderSettingsTable(job) {
  const base = state.schema.presets[job.preset] || {};
  const shown = (value) => (Array.isArray(value) ? value.join(", ") : String(value)) || "–";
  const items = Object.entries(job.settings).flatMap(([name, value]) => {
    const changed = JSON.stringify(value) !== JSON.stringify(base[name]) ? "changed" : "";
    return [el("dt", { class: changed, text: name }), el("dd", { class: changed, text: shown(value) })];
  });
  $("#run-settings").replaceChildren(...items);
  const s = job.settings;
  $("#settings-summary").textContent = `Settings: preset ${job.preset}, ${s.size} px, ${s.steps} steps, `
    + `${s.strength >= 0 ? `strength ${s.strength}` : `style weight ${s.style_weight}`}, colour ${s.colour}${(job.inputs.masks || []).length ? ", masked" : ""}`
    + " (changes from the preset in bold)";
  $("#settings-details").hidden = false;
}

function planText(plan) {
  // Steps are per scale: the plan says what they add up to.
  if (!plan || !plan.scales) return "";
  const scales = plan.scales.map((s) => `${Math.max(...s.size)} px × ${s.steps}`).join(", ");
  const memory = (plan.peak_bytes / 2 ** 30).toFixed(1);
  return plan.scales.length > 1
    ? `Plan: ${plan.total_steps} steps over ${plan.scales.length} scales (${scales}) · about ${memory} GiB`
    : `Plan: ${plan.total_steps} steps at ${Math.max(...plan.scales[0].size)} px · about ${memory} GiB`;
}

function showGone(id) {
  $("#run-status").textContent = "deleted";
  $("#run-progress").textContent = "This run is no longer on the server.";
  refreshHistory();
}

async function post(url, options = {}) {
  try {
    const response = await fetch(url, { method: "POST", ...options });
    const answer = response.status === 204 ? {} : await response.json().catch(() => ({}));
    if (!response.ok) showError(null, answer.detail || response.statusText);
    return response.ok ? answer : null;
  } catch (error) {
    setOnline(false);
    return null;
  }
}

async function cancel() {
  $("#cancel").disabled = true;
  await post(`/api/jobs/${state.jobId}/cancel`);
}

async function rerun(id, changes = null) {
  // changes: settings to change in the new run, e.g. {strength: 0.65} (checked by the server).
  const options = changes ? {
    headers: { "Content-Type": "application/json" }, body: JSON.stringify({ settings: JSON.stringify(changes) }),
  } : {};
  askToNotify();
  const answer = await post(`/api/jobs/${id}/rerun`, options);
  if (answer) { follow(answer.id); refreshHistory(); }
}

// -- iterating on a result ---------------------------------------------------------------------

function showNudges(job) {
  // "More / less artwork": the same run at another strength, in one click.
  const strength = job.settings.strength;
  const can = job.status === "done" && strength >= 0;
  $("#less").hidden = !can || strength <= 0;
  $("#more").hidden = !can || strength >= 1;
  const step = (sign) => Math.round(Math.min(1, Math.max(0, strength + sign * NUDGE)) * 100) / 100;
  $("#less").dataset.strength = String(step(-1));
  $("#more").dataset.strength = String(step(1));
  $("#less").title = `run it again at strength ${step(-1)} (now ${strength})`;
  $("#more").title = `run it again at strength ${step(1)} (now ${strength})`;
}

function showHint(job) {
  // A result that is nearly the photo (too few steps for the size) says so, with a way on.
  const box = $("#result-hint");
  const r = job.result;
  box.hidden = !(job.status === "done" && r && r.barely_changed);
  if (box.hidden) return;
  const steps = Math.min(state.schema.limits.max_steps, Math.max(100, job.settings.steps * 10));
  box.replaceChildren(`The picture barely changed (${(100 * r.change).toPrecision(2)}% on average): `
    + `${job.settings.steps} step${job.settings.steps === 1 ? " is" : "s are"} too few. `, el("button", {
    type: "button", class: "secondary", id: "more-steps", text: `Run again with ${steps} steps`,
    onclick: () => rerun(job.id, { steps }),
  }));
}

async function fetchImage(url, name, extra = {}) {
  const response = await fetch(url);
  if (!response.ok) throw Object.assign(new Error(`${name} is gone`), { status: response.status });
  const blob = await response.blob();
  return picked(new File([blob], name, { type: blob.type }), name, { size: await imageSize(blob), ...extra });
}

async function openInForm(id) {
  // The run's images and settings back in the form, to change and start again.
  let job;
  let content;
  try {
    job = await getJSON(`/api/jobs/${id}`);
    const base = `/api/jobs/${id}`;
    content = await fetchImage(`${base}/content`, job.inputs.content);
    const styles = await Promise.all(job.inputs.styles.map((name, i) => fetchImage(`${base}/styles/${i}`, name)));
    const masks = job.inputs.masks || [];
    for (const [i, name] of masks.entries()) styles[i].mask = await fetchImage(`${base}/masks/${i}`, name);
    Object.assign(state, { content, styles });
  } catch (error) {
    showError(null, error.status === 404 ? "this run is no longer on the server" : `could not open the run (${error.message})`);
    return;
  }
  setControls(job);
  clearErrors();
  renderPicked();
  const note = $("#from-run");
  note.hidden = false;
  note.replaceChildren(`Opened from the run ${job.inputs.content} × ${job.inputs.styles.join(" + ")} `
    + `(${new Date(job.created * 1000).toLocaleString()}): change anything, then Start. The photo is the run's copy `
    + `(${content.size ? content.size.join("×") : "?"} px).`);
  formChanged();
  $("#run-form").scrollIntoView({ behavior: "smooth", block: "start" });
  $("#setting-preset").focus({ preventScroll: true });
}

function setControls(job) {
  // The preset of the run, then every setting where the run differs from it, marked as an edit.
  const presetSelect = $("#setting-preset");
  presetSelect.value = job.preset in state.schema.presets ? job.preset : state.schema.default_preset;
  const base = presetValues();
  state.edited = new Set();
  for (const field of state.schema.fields) {
    const value = job.settings[field.name];
    if (value === undefined || JSON.stringify(value) === JSON.stringify(base[field.name])) continue;
    if (field.name === "strength" && value < 0) continue;
    state.edited.add(field.name);
  }
  applyPreset();  // the preset's values where the run kept them
  for (const name of state.edited) {
    const control = document.getElementById(`setting-${name}`);
    const value = job.settings[name];
    control.value = Array.isArray(value) ? value.join(", ") : String(value);
    if (control.update) control.update();
  }
  applyPreset();  // says which settings are the run's own
}

// -- looking closely: full size, and two runs side by side -------------------------------------

function openViewer(src, title) {
  $("#viewer-image").src = src;
  $("#viewer-title").textContent = title;
  zoomViewer("fit");
  $("#viewer").showModal();
}

function zoomViewer(zoom) {
  const image = $("#viewer-image");
  const box = $("#viewer-box");
  box.dataset.zoom = zoom;
  if (zoom === "fit") {
    image.style.width = "";
    image.classList.remove("zoomed");
    return;
  }
  image.style.width = `${image.naturalWidth * Number(zoom)}px`;
  image.classList.add("zoomed");
}

function runLabel(job) {
  return `${job.inputs.content} × ${job.inputs.styles.join(" + ")}`;
}

function compareRuns(jobs) {
  // What differs between the two runs' settings is listed under each.
  const [a, b] = jobs;
  const differs = Object.keys(a.settings).filter((k) => JSON.stringify(a.settings[k]) !== JSON.stringify(b.settings[k]));
  const shown = (v) => (Array.isArray(v) ? v.join(", ") : String(v));
  $("#side-by-side").replaceChildren(...jobs.map((job) => {
    const hasImage = job.image_version > 0 && job.step > 0;
    const src = hasImage ? `/api/jobs/${job.id}/image?v=${job.image_version}` : `/api/jobs/${job.id}/content`;
    return el("figure", { "data-id": job.id },
      el("button", { type: "button", class: "plain", title: "full size", onclick: () => openViewer(src, runLabel(job)) },
        el("img", { src, alt: `result of ${runLabel(job)}` })),
      el("figcaption", {}, el("strong", { text: `${runLabel(job)} · ${job.status}` }), el("ul", {},
        ...(differs.length ? differs : ["preset"]).map((k) => el("li", { text: `${k}: ${shown(k === "preset" && !differs.length ? job.preset : job.settings[k])}` })))));
  }));
  $("#compare-dialog").showModal();
}

// -- the gallery of runs (kept on the server) ----------------------------------------------------

function selectionChanged() {
  const n = state.selected.size;
  $("#selected-count").textContent = n ? `${n} selected` : "Tick runs to compare two or delete several.";
  $("#compare-selected").disabled = n !== 2;
  $("#delete-selected").disabled = n === 0;
  $("#clear-selection").hidden = n === 0;
}

async function compareSelected() {
  try {
    compareRuns(await Promise.all([...state.selected].map((id) => getJSON(`/api/jobs/${id}`))));
  } catch (error) {
    showError(null, "one of these runs is no longer on the server");
    refreshHistory();
  }
}

async function deleteSelected() {
  const ids = [...state.selected];
  if (!window.confirm(`Delete ${ids.length} run${ids.length > 1 ? "s" : ""} and their images from the studio?`)) return;
  for (const id of ids) {
    try {
      const response = await fetch(`/api/jobs/${id}`, { method: "DELETE" });
      if (response.ok || response.status === 404) state.selected.delete(id);
    } catch { setOnline(false); break; }
    if (state.jobId === id) { if (state.source) state.source.close(); state.jobId = null; $("#run").hidden = true; }
  }
  selectionChanged();
  refreshHistory();
}

function galleryTile(job) {
  const hasImage = job.image_version > 0 && job.step > 0;
  const src = hasImage ? `/api/jobs/${job.id}/image?v=${job.image_version}` : `/api/jobs/${job.id}/content`;
  const what = runLabel(job);
  const when = new Date(job.created * 1000).toLocaleString();
  const strength = job.settings.strength >= 0 ? ` · strength ${job.settings.strength}` : "";
  const detail = `${when} · ${job.settings.size} px · ${job.step}/${job.total_steps} steps${strength}`;
  const tick = el("input", { type: "checkbox", class: "select", "aria-label": `select ${what}` });
  tick.checked = state.selected.has(job.id);
  tick.disabled = !FINAL.includes(job.status);
  tick.addEventListener("change", () => {
    if (tick.checked) state.selected.add(job.id); else state.selected.delete(job.id);
    tick.closest("li").classList.toggle("selected", tick.checked);
    selectionChanged();
  });
  const actions = el("span", { class: "row-actions" });
  if (FINAL.includes(job.status)) {
    actions.append(
      el("button", { type: "button", class: "secondary edit", text: "edit", title: "open in the form", onclick: () => openInForm(job.id) }),
      el("button", { type: "button", class: "secondary rerun", text: "rerun", onclick: () => rerun(job.id) }),
      el("button", { type: "button", class: "secondary delete", text: "delete", onclick: () => remove(job.id) }));
  }
  return el("li", { "data-id": job.id, class: `tile${tick.checked ? " selected" : ""}` },
    el("button", { type: "button", class: "open", title: what, onclick: () => follow(job.id) },
      el("span", { class: `pic${hasImage ? "" : " photo-only"}` }, el("img", { src, alt: "" }),
        ...(hasImage ? [] : [el("span", { class: "no-result", text: "no result: the photo" })])),
      el("span", { class: "what", text: what }), el("span", { class: `badge ${job.status}`, text: job.status }),
      el("small", { text: detail })),
    el("label", { class: "tick" }, tick), actions);
}

async function remove(id) {
  // Deleting is its own action (never a side effect of cancel): it asks first.
  if (!window.confirm("Delete this run and its images from the studio?")) return;
  if (await post(`/api/jobs/${id}`, { method: "DELETE" }) === null) return;
  if (state.jobId === id) { if (state.source) state.source.close(); state.jobId = null; $("#run").hidden = true; }
  refreshHistory();
}

// -- the loss curve ----------------------------------------------------------------------------

const chart = {
  points: [],
  pending: false,
  series: [["total", "#e4572e"]],  // the terms are added as they appear in the points
  draw() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.paint(); });
  },
  paint() {
    const canvas = $("#loss-chart");
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 480;
    const h = canvas.clientHeight || 260;
    canvas.width = w * ratio;
    canvas.height = h * ratio;
    canvas.dataset.points = String(this.points.length);
    const g = canvas.getContext("2d");
    g.scale(ratio, ratio);
    g.clearRect(0, 0, w, h);
    const seen = new Set(this.points.flatMap((p) => Object.keys(p)));
    const terms = [...seen].filter((k) => k !== "total" && !NOT_LOSSES.includes(k)).sort();
    this.series = [["total", "#e4572e"], ...terms.map((k, i) => [k, COLOURS[i % COLOURS.length]])];
    canvas.dataset.terms = this.series.map(([k]) => k).join(",");
    const values = this.points.flatMap((p) => this.series.map(([k]) => p[k])).filter((v) => v > 0);
    g.fillStyle = "#6b7280";
    g.font = "12px system-ui, sans-serif";
    if (!values.length) { g.fillText("the loss curve appears here", 16, h / 2); return; }
    const lo = Math.log10(Math.min(...values));
    const hi = Math.max(Math.log10(Math.max(...values)), lo + 1e-6);
    const pad = { l: 58, r: 12, t: 12, b: 26 };
    const n = Math.max(this.points.length - 1, 1);
    const x = (i) => pad.l + ((w - pad.l - pad.r) * i) / n;
    const y = (v) => pad.t + (h - pad.t - pad.b) * (1 - (Math.log10(v) - lo) / (hi - lo));
    g.strokeStyle = "#e5e7eb";
    g.strokeRect(pad.l, pad.t, w - pad.l - pad.r, h - pad.t - pad.b);
    g.fillText((10 ** hi).toExponential(1), 4, pad.t + 10);
    g.fillText((10 ** lo).toExponential(1), 4, h - pad.b);
    g.fillText(`step ${this.points.length}`, w - pad.r - 60, h - 8);
    this.series.forEach(([key, colour], s) => {
      g.strokeStyle = colour;
      g.lineWidth = key === "total" ? 2 : 1.25;
      g.beginPath();
      this.points.forEach((p, i) => { if (p[key] > 0) g[i ? "lineTo" : "moveTo"](x(i), y(p[key])); });
      g.stroke();
      g.fillStyle = colour;
      g.fillText(key, pad.l + 8 + s * 64, h - 8);
    });
  },
};

// -- the studio's runs (kept on the server) -----------------------------------------------------

async function refreshHistory() {
  let answer;
  const size = NARROW.matches ? PAGE_SIZE.narrow : PAGE_SIZE.wide;
  const query = `limit=${size}&offset=${state.page * size}${state.filter ? `&status=${state.filter}` : ""}`;
  try { answer = await getJSON(`/api/jobs?${query}`); } catch (error) {
    if (error.status === undefined) setOnline(false);  // the network, not an answer
    return;
  }
  setOnline(true);
  const pages = Math.max(1, Math.ceil(answer.total / size));
  if (state.page >= pages && state.page > 0) { state.page = pages - 1; return refreshHistory(); }
  const jobs = answer.jobs;
  state.history = jobs;
  state.total = answer.total;
  $("#history-empty").hidden = jobs.length > 0;
  $("#history-empty").textContent = state.filter ? "No runs in this state." : "None yet.";
  $("#history-count").textContent = `${answer.total} run${answer.total === 1 ? "" : "s"}`;
  $("#page-info").textContent = `page ${state.page + 1} of ${pages}`;
  $("#page-newer").disabled = state.page === 0;
  $("#page-older").disabled = state.page + 1 >= pages;
  $(".pager").hidden = pages < 2;
  $("#history").replaceChildren(...jobs.map(galleryTile));
}

// Polls now and then: the list while runs are going (or the server was lost), else a light ping,
// so that a lost server is noticed even when no run is followed.
setInterval(async () => {
  if (!state.online || state.history.some((job) => !FINAL.includes(job.status))) return refreshHistory();
  try { await getJSON("/api/jobs?limit=1"); } catch (error) { if (error.status === undefined) setOnline(false); }
}, 3000);

// -- start ---------------------------------------------------------------------------------------

async function init() {
  const [schema, examples] = await Promise.all([getJSON("/api/settings"), getJSON("/api/examples")]);
  state.schema = schema;
  buildSettings(schema);
  buildExamples(examples);
  renderPicked();
  wireDrop($("#content-drop"), $("#content-file"), (files) => files[0] && setContent(files[0]));
  wireDrop($("#style-drop"), $("#style-file"), addStyles);
  $("#run-form").addEventListener("submit", start);
  $("#cancel").addEventListener("click", cancel);
  $("#rerun").addEventListener("click", () => rerun(state.jobId));
  $("#delete").addEventListener("click", () => remove(state.jobId));
  $("#open-form").addEventListener("click", () => openInForm(state.jobId));
  for (const nudge of ["#less", "#more"]) {
    $(nudge).addEventListener("click", () => rerun(state.jobId, { strength: Number($(nudge).dataset.strength) }));
  }
  const openResult = () => state.shown && openViewer($("#result-image").src, runLabel(state.shown));
  $("#zoom").addEventListener("click", openResult);
  $("#result-image").addEventListener("click", openResult);
  $("#ba-split").addEventListener("input", (e) => $("#before-after").style.setProperty("--split", `${e.target.value}%`));
  document.querySelectorAll("[data-zoom]").forEach((b) => b.addEventListener("click", () => zoomViewer(b.dataset.zoom)));
  $("#viewer-image").addEventListener("click", () => zoomViewer($("#viewer-box").dataset.zoom === "fit" ? "1" : "fit"));
  $("#viewer-close").addEventListener("click", () => $("#viewer").close());
  $("#compare-close").addEventListener("click", () => $("#compare-dialog").close());
  $("#filter").addEventListener("change", (e) => { state.filter = e.target.value; state.page = 0; refreshHistory(); });
  $("#page-newer").addEventListener("click", () => { state.page = Math.max(0, state.page - 1); refreshHistory(); });
  $("#page-older").addEventListener("click", () => { state.page += 1; refreshHistory(); });
  $("#compare-selected").addEventListener("click", compareSelected);
  $("#delete-selected").addEventListener("click", deleteSelected);
  $("#clear-selection").addEventListener("click", () => {
    state.selected.clear();
    document.querySelectorAll("#history .select").forEach((t) => { t.checked = false; t.closest("li").classList.remove("selected"); });
    selectionChanged();
  });
  window.addEventListener("online", refreshHistory);
  chart.draw();
  await refreshHistory();
  selectionChanged();
  document.body.dataset.ready = "true";
}

init().catch((error) => showError(null, `the page could not load its settings (${error.message})`));
