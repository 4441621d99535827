// The studio's HTTP API, listed from its own /openapi.json (no scripts from elsewhere).
"use strict";

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

function describeParameters(operation) {
  const names = (operation.parameters || []).map((p) => `${p.name} (${p.in}${p.required ? ", required" : ""})`);
  const body = operation.requestBody && operation.requestBody.content;
  if (body) {
    for (const [type, media] of Object.entries(body)) {
      const ref = media.schema && media.schema.$ref;
      names.push(`body: ${type}${ref ? ` (${ref.split("/").pop()})` : ""}`);
    }
  }
  return names.join(" · ");
}

async function main() {
  const spec = await (await fetch("/openapi.json")).json();
  const box = document.getElementById("endpoints");
  const list = el("dl", undefined, "api-list");
  for (const [path, operations] of Object.entries(spec.paths)) {
    for (const [method, operation] of Object.entries(operations)) {
      const term = el("dt");
      term.append(el("code", method.toUpperCase(), `method ${method}`), " ", el("code", path));
      const detail = el("dd");
      detail.append(el("p", operation.summary || ""));
      const parameters = describeParameters(operation);
      if (parameters) detail.append(el("small", parameters));
      const codes = Object.keys(operation.responses || {}).join(", ");
      if (codes) detail.append(el("small", ` · answers ${codes}`));
      list.append(term, detail);
    }
  }
  const errors = el("p", 'Refusals answer {"detail": "one sentence", "field": "the form field or setting"} '
    + "with a 4xx status.", "note");
  box.replaceChildren(el("h2", `${spec.info.title} ${spec.info.version}`), errors, list);
  document.body.dataset.ready = "true";
}

main().catch((error) => {
  document.getElementById("endpoints").textContent = `The API description could not be loaded (${error.message}).`;
});
