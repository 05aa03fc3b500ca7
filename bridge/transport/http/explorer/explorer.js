// The explorer page: lists the served methods from /v1/describe and calls one through
// the shorthand route POST /v1/{topic}/{method}. No framework, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
let current = null;

function element(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function typeText(schema) {
  if (!schema || Object.keys(schema).length === 0) return "any";
  if (Array.isArray(schema.type)) return schema.type.join(" | ");
  if (schema.type === "array" && schema.items) return "array[" + typeText(schema.items) + "]";
  if (schema.enum) return schema.enum.map((item) => JSON.stringify(item)).join(" | ");
  if (schema.anyOf) return schema.anyOf.map(typeText).join(" | ");
  return schema.type || "any";
}

function methodId(target, endpoint, method) {
  return [target.topic, endpoint ? endpoint.namespace || "" : "*", method.name].join("/");
}

function listMethods(description) {
  const nav = $("methods");
  nav.textContent = "";
  if (!description.targets.length) nav.append(element("p", {id: "empty"}, "Nothing is served."));
  for (const target of description.targets) {
    const title = target.routed ? "routed topic " + target.topic + " (any method)"
                                : "topic " + target.topic;
    nav.append(element("h3", {}, title));
    if (target.routed) {
      const routed = {name: "", doc: "Forwarded to another wire: name any method.",
                      parameters: [], extra_arguments: true};
      nav.append(methodButton(target, null, routed, "any method…"));
      continue;
    }
    for (const endpoint of target.endpoints) {
      const ns = endpoint.namespace === null ? "null namespace" : "namespace " + endpoint.namespace;
      nav.append(element("h4", {}, ns + ", version " + endpoint.version));
      const list = element("ul");
      for (const method of endpoint.methods) {
        const item = element("li");
        item.append(methodButton(target, endpoint, method, method.name));
        list.append(item);
      }
      nav.append(list);
    }
  }
}

function methodButton(target, endpoint, method, label) {
  const button = element("button", {type: "button", class: "method",
                                    "data-method": methodId(target, endpoint, method)}, label);
  button.addEventListener("click", () => {
    document.querySelectorAll("button.method.selected")
      .forEach((node) => node.classList.remove("selected"));
    button.classList.add("selected");
    select(target, endpoint, method);
  });
  return button;
}

function select(target, endpoint, method) {
  current = {target, endpoint, method};
  $("panel").hidden = false;
  $("method-title").textContent = method.name || "(any method)";
  const where = ["topic " + target.topic];
  if (target.server) where.push("server " + target.server);
  if (endpoint) {
    where.push(endpoint.namespace === null ? "null namespace" : "namespace " + endpoint.namespace);
    where.push("version " + endpoint.version);
  }
  $("method-where").textContent = where.join(", ");
  $("method-doc").textContent = method.doc || "";
  $("method-doc").hidden = !method.doc;
  const fields = $("fields");
  fields.textContent = "";
  if (!endpoint) {
    fields.append(field("method", "method name", "", false, "__method"));
    fields.append(field("arguments", "a JSON object", "{}", false, "__args", true));
  }
  for (const param of method.parameters) {
    const hint = typeText(param.schema) + ("default" in param
      ? " = " + JSON.stringify(param.default) : "");
    fields.append(field(param.name, hint, "", param.required, param.name));
  }
  if (endpoint && method.extra_arguments) {
    fields.append(field("more arguments", "a JSON object", "", false, "__args", true));
  }
  clearOutcome();
}

function field(name, hint, value, required, key, multiline) {
  const label = element("label", {class: "field"}, name + " ");
  if (required) label.append(element("span", {class: "required"}, "*"));
  label.append(element("span", {class: "hint"}, " (" + hint + ")"));
  const input = element(multiline ? "textarea" : "input", {name: key, "data-arg": key});
  input.value = value;
  if (!multiline) input.placeholder = "JSON, e.g. " + (hint.startsWith("string") ? '"text"' : "1");
  label.append(input);
  return label;
}

function clearOutcome() {
  $("status").textContent = "";
  $("result").hidden = true;
  $("error").hidden = true;
}

function acceptsString(schema) {
  if (!schema || Object.keys(schema).length === 0) return true;
  const types = Array.isArray(schema.type) ? schema.type : [schema.type];
  if (types.includes("string")) return true;
  if (schema.enum && schema.enum.some((item) => typeof item === "string")) return true;
  return Boolean(schema.anyOf && schema.anyOf.some(acceptsString));
}

function parseArgument(text, schema) {
  try {
    return JSON.parse(text);
  } catch (error) {
    // Text that is not JSON, for a parameter that takes strings, is that string.
    if (acceptsString(schema)) return text;
    throw new Error("not JSON: " + text);
  }
}

function buildCall() {
  const {target, endpoint, method} = current;
  let name = method.name;
  let args = {};
  for (const input of document.querySelectorAll("[data-arg]")) {
    const key = input.dataset.arg;
    const text = input.value.trim();
    if (key === "__method") { name = text; continue; }
    if (!text) continue;
    if (key === "__args") { Object.assign(args, parseArgument(text, {type: "object"})); continue; }
    const param = method.parameters.find((item) => item.name === key);
    args[key] = parseArgument(text, param && param.schema);
  }
  const query = new URLSearchParams();
  if (endpoint) {
    if (endpoint.namespace !== null) query.set("namespace", endpoint.namespace);
    query.set("version", endpoint.version);
  }
  if (target.server) query.set("server", target.server);
  const path = "/v1/" + encodeURIComponent(target.topic) + "/" + encodeURIComponent(name);
  return {url: path + (query.toString() ? "?" + query : ""), args};
}

async function call(event) {
  event.preventDefault();
  clearOutcome();
  let request;
  try {
    request = buildCall();
  } catch (error) {
    showError("BadInput", error.message, "");
    return;
  }
  const headers = {"content-type": "application/json"};
  const timeout = $("timeout").value.trim();
  if (timeout && Number(timeout) > 0) headers["x-bridge-timeout"] = timeout;
  $("status").textContent = "calling…";
  let response, text;
  try {
    response = await fetch(request.url, {method: "POST", headers, body: JSON.stringify(request.args)});
    text = await response.text();
  } catch (error) {
    showError("NetworkError", String(error), "");
    return;
  }
  $("status").textContent = "HTTP " + response.status;
  let body = null;
  try { body = JSON.parse(text); } catch (error) { body = null; }
  if (response.ok) {
    $("result").hidden = false;
    // Replies holding NaN or infinities are not standard JSON: shown as sent.
    $("result").textContent = body ? JSON.stringify(body.result, null, 2)
                                    : text.replace(/^\{"result":/, "").replace(/\}$/, "");
    return;
  }
  const failure = body && body.details && body.details.find(
    (item) => item["@type"] === "type.googleapis.com/bridge.v1.Failure");
  const className = (failure && (failure.className || failure.reason)) || "Error";
  const message = failure ? failure.message || "" : (body ? body.message : text);
  showError(className, message, body ? JSON.stringify(body, null, 2) : text);
}

function showError(className, message, details) {
  $("error").hidden = false;
  $("error-class").textContent = className + ":";
  $("error-message").textContent = message;
  $("error-details").textContent = details;
}

async function load() {
  try {
    const response = await fetch("/v1/describe");
    listMethods(await response.json());
  } catch (error) {
    $("methods").textContent = "Could not load /v1/describe: " + error;
  }
}

$("call-form").addEventListener("submit", call);
load();
