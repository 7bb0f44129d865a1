// superpeer's page: reads /api/<role>/status every 5 s and searches by id or by name. Every value from
// the network is written as text (never as HTML), and links are built from checked parts.
"use strict";

const role = document.body.dataset.role;
const $ = (selector) => document.querySelector(selector);
const ID = /^[0-9a-f]{64}$/;

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

function ago(ms) {
  if (ms == null) return "not yet";
  const s = ms / 1000;
  if (s < 1) return "just now";
  if (s < 90) return `${Math.round(s)} s ago`;
  return `${Math.round(s / 60)} min ago`;
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function fill(table, rows) {
  const body = table.querySelector("tbody");
  body.replaceChildren(...rows.map((cells) => el("tr", {}, ...cells.map((cell) =>
    cell instanceof Node ? el("td", {}, cell) : el("td", { textContent: String(cell) })))));
}

function stats(list, pairs) {
  list.replaceChildren(...pairs.flatMap(([term, value]) =>
    [el("dt", { textContent: term }), el("dd", { textContent: String(value) })]));
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

let lastSearches = null;

function showSupernode(s) {
  $("#about").textContent =
    `up ${Math.round(s.up_seconds / 60)} min · group ${s.group}` + (s.keyed ? " · cluster key on" : "");
  $("#group").textContent = `${s.group} · ${s.peers.length} peer(s) heard lately`;
  stats($("#index"), [["resources", s.index.resources], ["locations", s.index.locations],
    ["nodes", s.index.nodes]]);
  const c = s.searches;
  const total = c.local_hit + c.found_by_group + c.not_found + c.timed_out;
  const rate = lastSearches == null ? "…" : `${((total - lastSearches) / 5).toFixed(1)}/s`;
  lastSearches = total;
  stats($("#searches"), [["answered locally", c.local_hit], ["found by the group", c.found_by_group],
    ["not found", c.not_found], ["timed out", c.timed_out], ["lately", rate]]);
  fill($("#peers"), s.peers.map((p) => [el("code", { textContent: p.name }), p.address, ago(p.heard_ms_ago)]));
  fill($("#nodes"), s.nodes.map((n) => [el("code", { textContent: n.location }), n.name, n.resources,
    ago(n.checked_ms_ago) + (n.misses ? ` (${n.misses} missed)` : "")]));
}

let shownFiles = "";

function showNode(s) {
  $("#about").textContent = `${s.name} at ${s.location} · registered with ${s.supernode}`;
  $("#count").textContent = `(${s.files.length})`;
  const filter = $("#filter").value.trim().toLowerCase();
  const files = s.files.filter((f) => f.name.toLowerCase().includes(filter))
    .sort((a, b) => a.name.localeCompare(b.name));
  const key = filter + "\n" + files.map((f) => f.id + f.name).join("\n");
  if (key === shownFiles) return; // unchanged: keep the rows (and a button just clicked)
  shownFiles = key;
  fill($("#files"), files.map((f) => [f.name, bytes(f.size),
    el("span", { className: "id", textContent: f.id }),
    el("span", {}, copyButton(f.id), " ", el("a", { href: contentUrl(f.id), textContent: "download" }))]));
  for (const row of $("#files tbody").rows) row.cells[1].className = "num";
}

async function refresh() {
  try {
    const { status, body } = await getJSON(`/api/${role}/status`);
    if (status !== 200) throw new Error(`status ${status}`);
    (role === "supernode" ? showSupernode : showNode)(body.data);
    $("#error").textContent = "";
  } catch (e) {
    $("#error").textContent = `cannot read the status (${e.message})`;
  }
}

function link(className, href, text) {
  return el("a", { className, href, textContent: text });
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
      el("span", { className: "id muted", textContent: found.id.slice(0, 12) + "…" }), " · download: ",
      ...links.flatMap((a, i) => (i ? [", ", a] : [a])));
  });
  return [el("p", { className: "muted", textContent: `${body.data.length} match(es)` }), ...rows];
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
