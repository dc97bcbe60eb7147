// The page's History view: a search of the agent's history sink (GET
// v1/history and v1/history/timeline, relative to the page), a timeline of
// the records per minute by id drawn as SVG here, and the records, paged
// newest first. See doc.go of package web.
(function () {
  "use strict";

  const PAGE = 100; // records per page
  const MAX_SERIES = 8; // ids with a colour of their own; the rest is "other"
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
  const OTHER_COLOR = "#9aa0a6";
  const $ = (id) => document.getElementById(id);
  // The SVG namespace, taken from the chart's element (the HTML parser put
  // it there), so that the page names no URL.
  const SVG = $("h-svg").namespaceURI;
  const obj = (v) => (v !== null && typeof v === "object" && !Array.isArray(v) ? v : {});

  // H is the view's state, for tests and the console.
  const H = {
    shown: false,
    loading: 0, // requests in flight
    params: null, // URLSearchParams of the current search, without paging
    pages: [], // before= keys of the pages shown so far ("" for the newest)
    next: "", // before= key of the next older page, "" when none
    records: [], // of the current page, newest first
    timeline: null,
    error: "",
    searches: 0, // searches completed
  };
  window.agentHistory = H;

  // ---------- view switching ----------

  function showView() {
    const hist = location.hash === "#history";
    $("live").hidden = hist;
    $("history").hidden = !hist;
    $("tab-live").classList.toggle("active", !hist);
    $("tab-history").classList.toggle("active", hist);
    if (hist && !H.shown) {
      H.shown = true;
      setRange(3600);
      search();
    }
  }
  window.addEventListener("hashchange", showView);
  $("tab-live").addEventListener("click", () => {
    history.replaceState(null, "", location.pathname + location.search);
    showView();
  });
  $("tab-history").addEventListener("click", () => {
    location.hash = "#history";
  });

  // ---------- the form ----------

  // local formats a Date for a datetime-local input.
  function local(d) {
    const p = (n) => String(n).padStart(2, "0");
    return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + "T" + p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
  }

  function setRange(seconds) {
    const now = new Date();
    $("h-until").value = local(new Date(now.getTime() + 1000));
    $("h-since").value = local(new Date(now.getTime() - seconds * 1000));
  }

  for (const b of document.querySelectorAll(".h-quick button")) {
    b.addEventListener("click", () => {
      setRange(Number(b.dataset.range));
      search();
    });
  }

  $("h-form").addEventListener("submit", (e) => {
    e.preventDefault();
    search();
  });

  // words splits a list typed with spaces or commas.
  const words = (s) => s.split(/[\s,]+/).filter(Boolean);

  // formParams reads the form into the parameters of GET v1/history. A
  // datetime-local value is the browser's local time: it is sent in UTC so
  // the agent reads the moment the user meant.
  function formParams() {
    const p = new URLSearchParams();
    for (const [id, name] of [["h-since", "since"], ["h-until", "until"]]) {
      const v = $(id).value;
      if (!v) continue;
      const d = new Date(v);
      if (isNaN(d)) throw new Error(name + ": not a time");
      p.set(name, d.toISOString());
    }
    for (const n of words($("h-node").value)) p.append("node", n);
    for (const ev of words($("h-event").value)) p.append("event", ev);
    if ($("h-kind").value) p.set("kind", $("h-kind").value);
    const f = $("h-filter").value.trim();
    if (f) p.set("filter", f);
    return p;
  }

  // ---------- requests ----------

  async function get(path, params) {
    const u = new URL(path, location.href);
    u.search = params.toString();
    u.hash = "";
    const r = await fetch(u.toString(), { headers: window.agentAuth ? window.agentAuth.headers() : {}, cache: "no-store" });
    if (!r.ok) {
      let msg = "HTTP " + r.status;
      try {
        msg = (await r.json()).error || msg;
      } catch (e) {
        /* not JSON */
      }
      if (r.status === 404 && /no \[sink#NAME\]|no such history sink/.test(msg)) {
        msg = "this agent has no history sink: add a [sink#NAME] section to its node.conf";
      }
      throw new Error(msg);
    }
    return r;
  }

  function search() {
    let p;
    try {
      p = formParams();
    } catch (e) {
      setError(e.message);
      return;
    }
    H.params = p;
    H.pages = [""];
    setError("");
    loadTimeline(p);
    loadPage("");
  }

  function setError(msg) {
    H.error = msg;
    $("h-error").textContent = msg;
  }

  function loadTimeline(p) {
    const q = new URLSearchParams(p);
    const since = q.get("since") ? Date.parse(q.get("since")) : Date.now() - 3600e3;
    const until = q.get("until") ? Date.parse(q.get("until")) : Date.now();
    q.set("step", stepFor(until - since) + "s");
    H.loading++;
    get("v1/history/timeline", q)
      .then((r) => r.json())
      .then((t) => {
        if (H.params !== p) return; // a newer search is on its way
        H.timeline = t;
        drawTimeline(t);
      })
      .catch((e) => {
        if (H.params === p) setError(e.message);
      })
      .finally(() => {
        H.loading--;
        if (H.params === p) H.searches++;
      });
  }

  // stepFor picks the bucket: a minute up to 6 hours, coarser beyond so the
  // chart keeps at most a few hundred bars.
  function stepFor(ms) {
    const steps = [60, 300, 900, 3600, 4 * 3600, 86400];
    for (const s of steps) if (ms / (s * 1000) <= 400) return s;
    return 7 * 86400;
  }

  function loadPage(before) {
    const p = H.params;
    const q = new URLSearchParams(p);
    q.set("limit", String(PAGE));
    if (before) q.set("before", before);
    H.loading++;
    get("v1/history", q)
      .then(async (r) => {
        const next = r.headers.get("X-History-Before") || "";
        const text = await r.text();
        if (H.params !== p) return;
        const recs = [];
        let err = "";
        for (const line of text.split("\n")) {
          if (line === "") continue;
          const rec = JSON.parse(line);
          if (rec.error !== undefined && rec.seq === undefined) err = rec.error;
          else recs.push(rec);
        }
        if (err) setError(err);
        recs.reverse(); // newest first, as the live log
        H.records = recs;
        H.next = recs.length === PAGE ? next : "";
        renderRecords();
      })
      .catch((e) => {
        if (H.params === p) setError(e.message);
      })
      .finally(() => {
        H.loading--;
      });
  }

  $("h-older").addEventListener("click", () => {
    if (!H.next) return;
    H.pages.push(H.next);
    loadPage(H.next);
  });

  $("h-newer").addEventListener("click", () => {
    if (H.pages.length < 2) return;
    H.pages.pop();
    loadPage(H.pages[H.pages.length - 1]);
  });

  // ---------- records ----------

  const rowRec = new WeakMap();

  function fmtTime(t) {
    const m = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d(\.\d{1,3})?)/.exec(t || "");
    return m ? m[1] + " " + m[2] : String(t || "");
  }

  function renderRecords() {
    const tbody = $("h-log").tBodies[0];
    const frag = document.createDocumentFragment();
    for (const rec of H.records) {
      const d = obj(rec.data);
      const rest = {};
      for (const k of Object.keys(d)) if (k !== "id" && k !== "reason") rest[k] = d[k];
      let summary = rec.kind === "patch" ? JSON.stringify(rec.data) : Object.keys(rest).length ? JSON.stringify(rest) : "";
      if (summary.length > 300) summary = summary.slice(0, 300) + "…";
      const tr = document.createElement("tr");
      tr.className = "kind-" + rec.kind;
      tr.dataset.seq = rec.seq;
      if (d.id !== undefined) tr.dataset.id = d.id;
      const cells = [rec.seq, fmtTime(rec.time), rec.nodename || "", rec.kind, d.id === undefined ? "" : d.id, d.reason === undefined ? "" : d.reason, summary];
      for (let i = 0; i < cells.length; i++) {
        const td = document.createElement("td");
        if (i === 0) td.className = "num";
        td.textContent = String(cells[i]);
        tr.appendChild(td);
      }
      rowRec.set(tr, rec);
      frag.appendChild(tr);
    }
    tbody.textContent = "";
    tbody.appendChild(frag);
    const page = H.pages.length;
    $("h-count").textContent = H.records.length ? H.records.length + " shown" : "none";
    $("h-page").textContent = "page " + page;
    $("h-older").disabled = !H.next;
    $("h-newer").disabled = page < 2;
  }

  $("h-log").tBodies[0].addEventListener("click", (e) => {
    const tr = e.target.closest("tr");
    const rec = tr && rowRec.get(tr);
    if (!rec) return;
    for (const r of tr.parentNode.querySelectorAll("tr.selected")) r.classList.remove("selected");
    tr.classList.add("selected");
    $("h-detail-title").textContent = rec.kind + " " + rec.seq + " (epoch " + rec.epoch + ")";
    $("h-detail-json").textContent = JSON.stringify(rec, null, 2);
    $("h-detail").hidden = false;
  });

  $("h-detail-close").addEventListener("click", () => {
    $("h-detail").hidden = true;
  });

  // ---------- the timeline ----------

  function el(name, attrs, text) {
    const e = document.createElementNS(SVG, name);
    for (const k of Object.keys(attrs)) e.setAttribute(k, String(attrs[k]));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // niceMax rounds a count up to 1, 2 or 5 times a power of ten.
  function niceMax(n) {
    if (n <= 5) return Math.max(n, 1);
    const p = Math.pow(10, Math.floor(Math.log10(n)));
    for (const m of [1, 2, 5, 10]) if (m * p >= n) return m * p;
    return 10 * p;
  }

  function stepName(s) {
    if (s % 86400 === 0) return s === 86400 ? "day" : s / 86400 + " days";
    if (s % 3600 === 0) return s === 3600 ? "hour" : s / 3600 + " hours";
    if (s % 60 === 0) return s === 60 ? "minute" : s / 60 + " minutes";
    return s + " s";
  }

  function fmtTick(ms, span) {
    const d = new Date(ms);
    const p = (n) => String(n).padStart(2, "0");
    const hm = p(d.getHours()) + ":" + p(d.getMinutes());
    return span > 86400e3 ? p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " + hm : hm;
  }

  // drawTimeline draws stacked bars: one per bucket, one segment per id,
  // ids ordered by their total (the biggest at the bottom, in the first
  // colours), the others folded into "other".
  function drawTimeline(t) {
    const step = t.step * 1000;
    const since = Date.parse(t.since);
    const until = Date.parse(t.until);
    const first = Math.floor(since / step) * step;
    const n = Math.max(1, Math.ceil((until - first) / step));
    const totals = new Map();
    for (const b of t.buckets) totals.set(b.id, (totals.get(b.id) || 0) + b.n);
    const ids = Array.from(totals.keys()).sort((a, b) => totals.get(b) - totals.get(a) || (a < b ? -1 : 1));
    const series = ids.slice(0, MAX_SERIES);
    if (ids.length > MAX_SERIES) series.push("other");
    const color = new Map(series.map((id, i) => [id, id === "other" ? OTHER_COLOR : COLORS[i]]));
    const cols = Array.from({ length: n }, () => new Map());
    let total = 0;
    for (const b of t.buckets) {
      const i = Math.floor((Date.parse(b.t) - first) / step);
      if (i < 0 || i >= n) continue;
      const id = color.has(b.id) ? b.id : "other";
      cols[i].set(id, (cols[i].get(id) || 0) + b.n);
      total += b.n;
    }
    const top = niceMax(Math.max(0, ...cols.map((c) => Array.from(c.values()).reduce((a, v) => a + v, 0))));

    const W = 1200, Hh = 220, L = 44, R = 10, T = 10, B = 26;
    const pw = W - L - R, ph = Hh - T - B;
    const bw = pw / n;
    const svg = el("svg", { id: "h-svg", viewBox: "0 0 " + W + " " + Hh, role: "img", "aria-label": "records per " + stepName(t.step) + " by id" });
    for (const f of [0, 0.5, 1]) {
      const y = T + ph - f * ph;
      svg.appendChild(el("line", { class: f === 0 ? "axis" : "grid", x1: L, x2: W - R, y1: y, y2: y }));
      svg.appendChild(el("text", { x: L - 6, y: y + 4, "text-anchor": "end" }, String(Math.round(f * top))));
    }
    const ticks = Math.min(n, 8);
    for (let k = 0; k <= ticks; k++) {
      const i = Math.round((k * n) / ticks);
      const x = L + i * bw;
      svg.appendChild(el("line", { class: "axis", x1: x, x2: x, y1: T + ph, y2: T + ph + 4 }));
      const anchor = k === 0 ? "start" : k === ticks ? "end" : "middle";
      svg.appendChild(el("text", { x, y: Hh - 8, "text-anchor": anchor }, fmtTick(first + i * step, until - since)));
    }
    cols.forEach((c, i) => {
      let y = T + ph;
      for (const id of series) {
        const v = c.get(id);
        if (!v) continue;
        const h = (v / top) * ph;
        y -= h;
        const r = el("rect", { class: "bar", x: L + i * bw + (bw > 3 ? 0.5 : 0), y, width: Math.max(bw - (bw > 3 ? 1 : 0), 0.5), height: h, fill: color.get(id), "data-t": first + i * step, "data-id": id });
        r.appendChild(el("title", {}, fmtTick(first + i * step, 2 * 86400e3) + " " + id + ": " + v));
        svg.appendChild(r);
      }
    });
    if (total === 0) {
      svg.appendChild(el("text", { class: "empty", x: L + pw / 2, y: T + ph / 2, "text-anchor": "middle" }, "no records in this range"));
    }
    const chart = $("h-chart");
    chart.textContent = "";
    chart.appendChild(svg);
    $("h-step").textContent = stepName(t.step);
    $("h-total").textContent = total + " records" + (t.truncated ? " (the filter was applied to the first records only)" : "");

    const legend = $("h-legend");
    legend.textContent = "";
    for (const id of series) {
      const item = document.createElement("span");
      const sw = el("svg", { class: "swatch", viewBox: "0 0 10 10", width: 12, height: 12 });
      sw.appendChild(el("rect", { width: 10, height: 10, rx: 2, fill: color.get(id) }));
      item.appendChild(sw);
      item.appendChild(document.createTextNode(" " + id + " " + (id === "other" ? "" : totals.get(id))));
      item.dataset.id = id;
      legend.appendChild(item);
    }
  }

  // A click on a bar narrows the search to its bucket (and id).
  $("h-chart").addEventListener("click", (e) => {
    const r = e.target.closest("rect.bar");
    if (!r || !H.timeline) return;
    const t = Number(r.dataset.t);
    $("h-since").value = local(new Date(t));
    $("h-until").value = local(new Date(t + H.timeline.step * 1000));
    if (r.dataset.id !== "other" && r.dataset.id !== "patch") $("h-event").value = r.dataset.id;
    search();
  });

  showView();
})();
