// painterly studio: the page. Controls come from GET /api/settings (the Settings dataclass);
// a run is POST /api/jobs, followed over server-sent events (GET /api/jobs/{id}/events).
"use strict";

const MAIN_FIELDS = ["size", "steps", "strength", "colour", "style_scale", "style_blend_weights"];
const FINAL = ["done", "failed", "cancelled", "interrupted"];
const LABELS = { strength: "strength", colour: "colour mode", style_blend_weights: "blend weights" };
const NOT_LOSSES = ["step", "seconds", "scale", "size", "optimizer"];
const COLOURS = ["#4c6ef5", "#2f9e44", "#ae3ec9", "#1098ad", "#f08c00", "#868e96"];

// edited: settings the user changed (kept across preset changes); active: the run last started
// from this form ({id, signature, status}), so that the same request is not started twice.
const state = {
  schema: null, content: null, styles: [], jobId: null, source: null, history: [],
  edited: new Set(), active: null, online: true,
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
  })));
  $("#style-drop").classList.toggle("has", state.styles.length > 0);
  renderMasks();
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

function setMask(index, file) {
  if (tooBig(file, "mask")) return;
  state.styles[index].mask = picked(file, file.name || "mask");
  clearError("mask");
  renderPicked();
  formChanged();
}

function picked(blob, name) {
  return { blob, name, url: URL.createObjectURL(blob) };
}

function tooBig(file, field) {
  const limit = state.schema.limits.max_upload_mb;
  if (file.size <= limit * 2 ** 20) return false;
  showError(field, `${file.name} is larger than ${limit} MB`);
  return true;
}

function setContent(file) {
  if (tooBig(file, "content")) return;
  state.content = picked(file, file.name || "content");
  clearError("content");
  renderPicked();
  formChanged();
}

function addStyles(files) {
  for (const file of files) {
    if (tooBig(file, "style")) return;
    if (state.styles.length >= state.schema.limits.max_styles) {
      showError("style", `at most ${state.schema.limits.max_styles} artworks per run`);
      return;
    }
    state.styles.push(picked(file, file.name || "style"));
  }
  clearError("style");
  renderPicked();
  formChanged();
}

function wireDrop(zone, input, onFiles) {
  input.addEventListener("change", () => { onFiles([...input.files]); input.value = ""; });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    onFiles([...e.dataTransfer.files]);
  });
}

function buildExamples(examples) {
  const add = (box, items, use) => box.append(...items.map((item) => el("button", {
    type: "button", class: "example", title: item.name, onclick: async () => {
      const blob = await (await fetch(item.url)).blob();
      use(new File([blob], `${item.name}.jpg`, { type: blob.type }));
    },
  }, el("img", { src: item.url, alt: item.name, loading: "lazy" }))));
  add($("#content-examples"), examples.content, setContent);
  add($("#style-examples"), examples.styles, (file) => addStyles([file]));
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
  for (const button of ["#download", "#rerun", "#delete"]) $(button).hidden = true;
  $("#run-error").textContent = "";
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

function showStatus(job, source) {
  const badge = $("#run-status");
  badge.textContent = job.status;
  badge.className = `badge ${job.status}`;
  $("#run-title").textContent = `${job.inputs.content} × ${job.inputs.styles.join(" + ")}`;
  $("#cancel").hidden = FINAL.includes(job.status);
  $("#rerun").hidden = !["interrupted", "failed", "cancelled"].includes(job.status);
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
  }
}

function showProgress(p) {
  const total = p.total_steps || 0;
  const scale = p.scales > 1 ? ` (scale ${p.scale + 1} of ${p.scales})` : "";
  const size = p.size ? ` · ${p.size[0]}×${p.size[1]}` : "";
  const loss = p.losses && typeof p.losses.total === "number" ? ` · loss ${p.losses.total.toExponential(3)}` : "";
  $("#run-progress").textContent = total && p.step
    ? `Step ${p.step} of ${total}${scale}${size}${loss} · ${clock(p.elapsed)} elapsed · ETA ${clock(p.eta)}`
    : "Starting…";
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
  $("#result-image").hidden = !hasImage;
  if (hasImage) $("#result-image").src = `/api/jobs/${id}/image?v=${job.image_version}`;
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

async function rerun(id) {
  const answer = await post(`/api/jobs/${id}/rerun`);
  if (answer) { follow(answer.id); refreshHistory(); }
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
  let jobs;
  try { jobs = (await getJSON("/api/jobs")).jobs; } catch (error) {
    if (error.status === undefined) setOnline(false);  // the network, not an answer
    return;
  }
  setOnline(true);
  state.history = jobs;
  $("#history-empty").hidden = jobs.length > 0;
  $("#history").replaceChildren(...jobs.map((job) => {
    const image = job.image_version > 0 && job.step > 0
      ? el("img", { src: `/api/jobs/${job.id}/image?v=${job.image_version}`, alt: "" }) : el("span", { class: "noimg" });
    const when = new Date(job.created * 1000).toLocaleString();
    const what = `${job.inputs.content} × ${job.inputs.styles.join(" + ")}`;
    const detail = `${when} · ${job.preset} · ${job.settings.size} px · ${job.step}/${job.total_steps} steps`;
    const actions = el("span", { class: "row-actions" });
    if (["interrupted", "failed", "cancelled"].includes(job.status)) {
      actions.append(el("button", { type: "button", class: "secondary rerun", text: "rerun", onclick: () => rerun(job.id) }));
    }
    if (FINAL.includes(job.status)) {
      actions.append(el("button", { type: "button", class: "secondary delete", text: "delete", onclick: () => remove(job.id) }));
    }
    return el("li", { "data-id": job.id }, el("button", { type: "button", class: "open", onclick: () => follow(job.id) }, image,
      el("span", { class: "what", text: what }), el("span", { class: `badge ${job.status}`, text: job.status }),
      el("small", { text: detail })), actions);
  }));
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
  window.addEventListener("online", refreshHistory);
  chart.draw();
  await refreshHistory();
  document.body.dataset.ready = "true";
}

init().catch((error) => showError(null, `the page could not load its settings (${error.message})`));
