// superpeer's page: reads /api/<role>/status every 5 s and searches by id or by name. Every value from
// the network is written as text (never as HTML), and links are built from checked parts.
"use strict";

const role = document.body.dataset.role;
const $ = (selector) => document.querySelector(selector);
const ID = /^[0-9a-f]{64}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// A plain host:port (a name, an IPv4 address or a bracketed IPv6 one): only such a value
// becomes a link to an instance's page.
const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$/;

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const child of children) node.append(child);
  return node;
}

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  const body = await response.json().catch(() => null);
  return { status: response.status, body };
}

function duration(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 90) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

function ago(ms) {
  if (ms == null) return "not yet";
  return ms < 1000 ? "just now" : `${duration(ms / 1000)} ago`;
}

// "1 peer", "2 peers".
function count(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

// Each cell takes its column's class from the header (`num`: right-aligned); no rows, one
// line that says so (the table's `data-empty`).
function fill(table, rows) {
  const classes = [...table.tHead.rows[0].cells].map((th) => th.className);
  if (!rows.length) {
    table.tBodies[0].replaceChildren(el("tr", {}, el("td", { className: "muted",
      colSpan: classes.length, textContent: table.dataset.empty || "none" })));
    return;
  }
  table.tBodies[0].replaceChildren(...rows.map((cells) => el("tr", {}, ...cells.map((cell, i) =>
    cell instanceof Node ? el("td", { className: classes[i] }, cell)
      : el("td", { className: classes[i], textContent: String(cell) })))));
}

function stats(list, pairs) {
  list.replaceChildren(...pairs.flatMap(([term, value]) =>
    [el("dt", { textContent: term }), el("dd", { textContent: String(value) })]));
}

function link(className, href, text) {
  return el("a", { className, href, textContent: text });
}

// A name as shown: a UUID (the default name of a node, a supernode's name on the group) by
// its first 8 characters, the whole in its title; any other name as it is.
function shortName(name) {
  return UUID.test(name) ? el("code", { textContent: name.slice(0, 8), title: name })
    : el("span", { textContent: name });
}

// An instance's API address, linked to its page when it is a plain host:port.
function pageLink(className, hostPort) {
  return el("code", {}, HOST_PORT.test(hostPort)
    ? link(className, `http://${hostPort}/`, hostPort) : hostPort);
}

// The heading and the title say which instance this is: `who` (its address) and `detail`
// (a text, or an element built by `shortName`).
function identify(who, detail) {
  const shown = typeof detail === "string" ? detail : detail.textContent;
  $("#who").replaceChildren(el("code", { textContent: who }), " ",
    el("span", { className: "muted" }, detail));
  document.title = `${who} (${shown}) · superpeer ${role}`;
}

// The URL of a resource's bytes: through this instance, or straight from a holder.
function contentUrl(id, location) {
  const path = `/api/node/resources/${id}/content`;
  return location ? `http://${location}${path}` : path;
}

function copyButton(text) {
  return el("button", {
    className: "small", type: "button", textContent: "copy", title: "copy the id",
    onclick: async (event) => {
      const button = event.currentTarget;
      try {
        await navigator.clipboard.writeText(text);
      } catch {
        // Plain HTTP on a LAN is not a secure context: copy the old way.
        const area = el("textarea", { value: text });
        document.body.append(area);
        area.select();
        document.execCommand("copy");
        area.remove();
      }
      button.textContent = "copied";
      setTimeout(() => { button.textContent = "copy"; }, 1500);
    },
  });
}

// The searches counted at the last refresh, and when: the rate is over the time between.
let lastSearches = null;

// This supernode's address as the browser reaches it (the port even when it is the default).
const here = location.port ? location.host : `${location.host}:${location.protocol === "https:" ? 443 : 80}`;

function showSupernode(s) {
  identify(here, `group ${s.group}`);
  $("#about").textContent = `up ${duration(s.up_seconds)}` + (s.keyed ? " · cluster key on" : "");
  $("#group").textContent = `${s.group} · ${count(s.peers.length, "peer")} heard lately`;
  stats($("#index"), [["resources", s.index.resources], ["locations", s.index.locations],
    ["nodes", s.index.nodes]]);
  const c = s.searches;
  const total = c.local_hit + c.found_by_group + c.not_found + c.timed_out;
  const now = performance.now();
  if (lastSearches && total < lastSearches.total) lastSearches = null; // restarted meanwhile
  // The first time, the average since start; then over the time since the last refresh.
  const seconds = lastSearches ? (now - lastSearches.at) / 1000 : Math.max(1, s.up_seconds);
  const rate = lastSearches
    ? [`rate, last ${duration(seconds)}`, (total - lastSearches.total) / seconds]
    : ["rate since start", total / seconds];
  if (!lastSearches || seconds >= 1) lastSearches = { total, at: now };
  stats($("#searches"), [["answered locally", c.local_hit], ["found by the group", c.found_by_group],
    ["not found", c.not_found], ["timed out", c.timed_out], [rate[0], `${rate[1].toFixed(1)}/s`]]);
  fill($("#peers"), s.peers.map((p) => [
    p.api ? pageLink("peer", p.api) : el("span", { className: "muted", textContent: "not announced",
      title: "a supernode announces its API with its index summary (INDEX_DIGESTS)" }),
    shortName(p.name), el("code", { textContent: p.address }), ago(p.heard_ms_ago)]));
  fill($("#nodes"), s.nodes.map((n) => [pageLink("node", n.location), shortName(n.name), n.resources,
    ago(n.checked_ms_ago) + (n.misses ? ` (${n.misses} missed)` : "")]));
}

// The supernode a node registers with (a base URL), linked to its page.
function supernodeLink(endpoint) {
  try {
    const url = new URL(endpoint);
    if (url.protocol === "http:" || url.protocol === "https:") {
      return el("code", {}, link("supernode", `${url.origin}/`, url.host));
    }
  } catch {
    // Not a URL: shown as it is.
  }
  return el("code", { textContent: endpoint });
}

let shownFiles = "";

function showNode(s) {
  identify(s.location, shortName(s.name));
  $("#about").replaceChildren("registered with ", supernodeLink(s.supernode),
    ` · up ${duration(s.up_seconds)}`);
  const filter = $("#filter").value.trim().toLowerCase();
  const files = s.files.filter((f) => f.name.toLowerCase().includes(filter))
    .sort((a, b) => a.name.localeCompare(b.name));
  $("#count").textContent = filter ? `(${files.length} of ${s.files.length})` : `(${s.files.length})`;
  $("#files").dataset.empty = filter ? "no name here contains that" : "no file in the folder yet";
  const key = filter + "\n" + files.map((f) => f.id + f.name).join("\n");
  if (key === shownFiles) return; // unchanged: keep the rows (and a button just clicked)
  shownFiles = key;
  fill($("#files"), files.map((f) => [f.name, bytes(f.size),
    el("span", { className: "id", textContent: f.id }),
    el("span", {}, copyButton(f.id), " ", el("a", { href: contentUrl(f.id), textContent: "download" }))]));
}

async function refresh() {
  try {
    const { status, body } = await getJSON(`/api/${role}/status`);
    if (status !== 200) throw new Error(`status ${status}`);
    (role === "supernode" ? showSupernode : showNode)(body.data);
    $("#error").hidden = true;
  } catch (e) {
    $("#error").textContent = `cannot read the status (${e.message})`;
    $("#error").hidden = false;
  }
}

// A name search: every match with a link through this instance (a node) and to each holder.
async function searchNames(text) {
  const url = role === "supernode" ? "/api/supernode/search" : "/api/node/search";
  const { status, body } = await getJSON(`${url}?file_name=${encodeURIComponent(text)}`);
  if (status !== 200) {
    return [el("p", { className: "missing", textContent: body?.description || `HTTP ${status}` })];
  }
  if (!body.data.length) return [el("p", { className: "missing", textContent: `no name contains “${text}”` })];
  const rows = body.data.map((found) => {
    const links = (found.file.locations || [found.file.location])
      .map((location) => link("holder", contentUrl(found.id, location), location));
    if (role === "node") links.unshift(link("via-node", contentUrl(found.id), "here"));
    return el("p", {}, el("span", { className: "found", textContent: found.file.name }), " ",
      el("span", { className: "id muted", textContent: found.id.slice(0, 12) + "…", title: found.id }), " · download: ",
      ...links.flatMap((a, i) => (i ? [", ", a] : [a])));
  });
  return [el("p", { className: "muted", textContent: count(body.data.length, "match", "matches") }), ...rows];
}

async function search(event) {
  event.preventDefault();
  const out = $("#results");
  const text = $("#q").value.trim();
  const id = text.toLowerCase();
  if (!text) return;
  out.replaceChildren(el("p", { className: "muted", textContent: "searching…" }));
  if (!ID.test(id)) {
    out.replaceChildren(...await searchNames(text));
    return;
  }
  const lines = [];
  if (role === "supernode") {
    const { status, body } = await getJSON(`/api/supernode/search/${id}`);
    if (status === 200) {
      const file = body.data.file;
      lines.push(el("p", { className: "found", textContent: `found${file.name ? `: ${file.name}` : ""}` }));
      for (const location of file.locations || [file.location]) {
        lines.push(el("p", {}, link("holder", contentUrl(id, location), `download from ${location}`)));
      }
    } else {
      lines.push(el("p", { className: "missing", textContent: body?.description || `HTTP ${status}` }));
    }
  } else {
    const { status, body } = await getJSON(`/api/node/resources/find?hash_ids=${id}`);
    const entry = status === 200 ? body.data[0] : null;
    if (entry && !entry.info) {
      lines.push(el("p", { className: "found", textContent: `here: ${entry.name}` }),
        el("p", {}, link("via-node", contentUrl(id), "download")));
    } else if (entry) {
      const info = entry.info;
      lines.push(el("p", { className: "found", textContent: `found at ${info.location}${info.name ? `: ${info.name}` : ""}` }),
        el("p", {}, link("via-node", contentUrl(id), "download through this node")));
      for (const location of info.locations || [info.location]) {
        lines.push(el("p", {}, link("holder", contentUrl(id, location), `download from ${location}`)));
      }
    } else {
      lines.push(el("p", { className: "missing",
        textContent: status === 200 ? `resource ${id} not found` : body?.description || `HTTP ${status}` }));
    }
  }
  out.replaceChildren(...lines);
}

$("#search").addEventListener("submit", search);
$("#filter")?.addEventListener("input", refresh);
refresh();
setInterval(refresh, 5000);
