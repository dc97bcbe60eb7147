// The agent's live page: one websocket on GET /v1/events?snapshot=1&batch=1,
// a copy of the cluster data kept by applying patch records to the full
// record, and the event log. See doc.go of package web for the contract.
(function () {
  "use strict";

  const RETAIN = 2000; // records kept for the log (filtering looks at these)
  const SHOWN = 500; // rows in the log table
  const MAX_BACKOFF = 5000;
  const LOG_INTERVAL = 100; // ms between log table redraws under load
  const TOKEN_KEY = "agent.token";

  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const hasOwn = (o, k) => o !== null && typeof o === "object" && Object.prototype.hasOwnProperty.call(o, k);
  const obj = (v) => (v !== null && typeof v === "object" && !Array.isArray(v) ? v : {});

  // S is the page's state. Everything runs on the page's one thread.
  const S = {
    doc: null, // cluster data, exact at seq when ready
    seq: 0,
    epoch: "",
    ready: false,
    ws: null,
    opened: false, // the current socket opened
    connected: false,
    everConnected: false,
    attempts: 0,
    retryTimer: 0,
    needToken: false,
    log: [], // records for the log, oldest first, at most 2*RETAIN
    pending: [], // records not yet shown
    rebuild: true, // the log table must be rebuilt from S.log
    filter: null,
    showPatches: false,
    paused: false,
    dirtyDoc: true,
    frame: 0,
    received: 0, // patch and event records received
    rate: 0,
    rateCount: 0,
    rateStart: performance.now(),
    lastDocHTML: "",
    banner: "",
    lastResync: -Infinity,
    inbox: [], // received frames not yet applied: {ws, lines, i}
    lastLog: -Infinity, // when the log table was last redrawn
    logTimer: 0,
    drainQueued: false,
    backlog: "", // the journal backlog fetch: "", "loading", "done" or an error
  };
  window.agentUI = S; // for tests and the console

  // ---------- token ----------

  function getToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || localStorage.getItem(TOKEN_KEY) || "";
    } catch (e) {
      return "";
    }
  }

  function setToken(tok, remember) {
    try {
      sessionStorage.setItem(TOKEN_KEY, tok);
      if (remember) localStorage.setItem(TOKEN_KEY, tok);
      else localStorage.removeItem(TOKEN_KEY);
    } catch (e) {
      /* storage disabled: the token lives until the page reloads */
    }
  }

  // authHeaders are the headers of the page's plain requests (history.js
  // uses them too).
  function authHeaders() {
    const tok = getToken();
    return tok ? { Authorization: "Bearer " + tok } : {};
  }
  window.agentAuth = { headers: authHeaders };

  function forgetToken() {
    try {
      sessionStorage.removeItem(TOKEN_KEY);
      localStorage.removeItem(TOKEN_KEY);
    } catch (e) {
      /* nothing stored */
    }
  }

  // takeURLToken moves a token given as ?token= (a link printed by the
  // agent) into sessionStorage and out of the address bar and history.
  function takeURLToken() {
    const u = new URL(location.href);
    const tok = u.searchParams.get("token");
    if (!tok) return;
    setToken(tok, false);
    u.searchParams.delete("token");
    history.replaceState(null, "", u.pathname + u.search + u.hash);
  }

  // A browser websocket cannot send Authorization; the token goes as the
  // subprotocol: as is when it is a valid RFC 7230 token, else "b64." and
  // its base64url encoding (web.BearerToken reads both).
  function tokenProtocol(tok) {
    if (/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(tok) && !tok.startsWith("b64.")) return tok;
    const bytes = new TextEncoder().encode(tok);
    let bin = "";
    for (const b of bytes) bin += String.fromCharCode(b);
    return "b64." + btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  // ---------- connection ----------

  function eventsURL(ws) {
    const u = new URL("v1/events", location.href);
    if (ws) u.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    const q = new URLSearchParams({ snapshot: "1", batch: "1" });
    if (S.ready && S.epoch) {
      q.set("since", String(S.seq));
      q.set("epoch", S.epoch);
    }
    u.search = q.toString();
    u.hash = "";
    return u.toString();
  }

  function connect() {
    clearTimeout(S.retryTimer);
    S.retryTimer = 0;
    if (S.ws || S.needToken) return;
    const tok = getToken();
    let ws;
    try {
      ws = tok ? new WebSocket(eventsURL(true), [tokenProtocol(tok)]) : new WebSocket(eventsURL(true));
    } catch (e) {
      disconnected("cannot open websocket: " + e.message);
      return;
    }
    S.ws = ws;
    S.opened = false;
    ws.onopen = () => {
      if (S.ws !== ws) return;
      S.opened = true;
      S.connected = true;
      S.everConnected = true;
      S.attempts = 0;
      setBanner("");
      schedule();
    };
    ws.onmessage = (ev) => {
      if (S.ws !== ws) return;
      if (typeof ev.data !== "string") return;
      S.inbox.push({ ws, lines: ev.data.split("\n"), i: 0 });
      if (!S.drainQueued) drain();
    };
    ws.onclose = (ev) => {
      if (S.ws !== ws) return;
      S.ws = null;
      S.connected = false;
      let why = "connection closed";
      if (ev.code === 1008 && ev.reason) why = "dropped by the agent: " + ev.reason;
      else if (ev.reason) why = "closed by the agent: " + ev.reason + " (" + ev.code + ")";
      else if (!S.opened) why = "cannot connect";
      if (!S.opened) probe(why);
      else disconnected(why);
    };
  }

  // probe asks why a websocket could not open: a browser does not say, so
  // a plain GET of the same URL shows the HTTP status (401 for a token).
  function probe(why) {
    const tok = getToken();
    const headers = tok ? { Authorization: "Bearer " + tok } : {};
    fetch(eventsURL(false), { headers, cache: "no-store" })
      .then(async (r) => {
        if (r.status === 401 || r.status === 403) {
          askToken(tok ? "the token was refused" : "");
          return;
        }
        let msg = "";
        if (r.status !== 426) {
          try {
            msg = (await r.json()).error || "";
          } catch (e) {
            msg = "HTTP " + r.status;
          }
        }
        disconnected(why + (msg ? ": " + msg : ""));
      })
      .catch(() => disconnected(why + ": agent unreachable"));
  }

  function disconnected(why) {
    S.attempts++;
    const delay = Math.min(MAX_BACKOFF, 250 * 2 ** Math.min(S.attempts - 1, 5)) * (0.8 + 0.4 * Math.random());
    setBanner("Disconnected — " + why + ". Reconnecting in " + (delay / 1000).toFixed(1) + " s…");
    clearTimeout(S.retryTimer);
    S.retryTimer = setTimeout(connect, delay);
    schedule();
  }

  // resync drops the socket and reconnects at once: resuming after the
  // last record applied when the document is still good, else afresh.
  function resync(why) {
    note("resynchronising: " + why);
    const ws = S.ws;
    S.ws = null;
    if (ws) ws.close(4000, "resync");
    S.connected = false;
    const now = performance.now();
    const again = now - S.lastResync < 2000;
    S.lastResync = now;
    if (again) disconnected("resynchronising again"); // back off a loop
    else connect();
  }

  function askToken(err) {
    S.needToken = true;
    $("token-form").hidden = false;
    $("token-error").textContent = err;
    $("token-input").focus();
    setBanner("Disconnected — this agent needs a token.");
  }

  // ---------- records ----------

  // A batch frame can hold a couple of thousand records. They are applied
  // in slices of DRAIN_BUDGET ms, yielding to the browser in between, so a
  // burst never freezes the page for long; records stay in order because
  // everything received goes through the inbox.
  const DRAIN_BUDGET = 8;
  const drainChannel = new MessageChannel();
  drainChannel.port1.onmessage = () => {
    S.drainQueued = false;
    drain();
  };

  function drain() {
    const t0 = performance.now();
    while (S.inbox.length) {
      const m = S.inbox[0];
      if (m.ws !== S.ws) {
        S.inbox.shift(); // from a socket given up: its records are moot
        continue;
      }
      while (m.i < m.lines.length) {
        const line = m.lines[m.i++];
        if (line === "") continue;
        let rec;
        try {
          rec = JSON.parse(line);
        } catch (e) {
          note("unreadable record: " + e.message);
          continue;
        }
        if (!handle(rec)) {
          // Resynchronising: what is left of the old socket is moot.
          S.inbox = S.inbox.filter((x) => x.ws === S.ws && x !== m);
          schedule();
          return;
        }
        if (performance.now() - t0 > DRAIN_BUDGET) {
          if (m.i >= m.lines.length) S.inbox.shift();
          S.drainQueued = true;
          drainChannel.port2.postMessage(0);
          schedule();
          return;
        }
      }
      S.inbox.shift();
    }
    schedule();
  }

  // handle applies one record; false means the stream was abandoned.
  function handle(rec) {
    switch (rec.kind) {
      case "full":
        S.doc = rec.data;
        S.seq = rec.seq;
        S.epoch = rec.epoch;
        S.ready = true;
        S.dirtyDoc = true;
        if (S.backlog === "") loadBacklog(rec.seq, rec.epoch);
        return true;
      case "reset":
        S.ready = false;
        S.seq = rec.seq;
        S.epoch = rec.epoch;
        keep(rec);
        return true;
      case "progress":
        // Records up to it were passed over. Seqs may jump (after an
        // unclean stop of the agent); only a reset says records were lost.
        if (S.ready && rec.epoch === S.epoch && rec.seq > S.seq) S.seq = rec.seq;
        return true;
      case "patch":
      case "event":
        break;
      default:
        return true; // a kind from a newer agent
    }
    if (!S.ready) return true; // a full record is on its way
    if (rec.epoch !== S.epoch || rec.seq <= S.seq) {
      resync("record " + rec.seq + " of " + rec.epoch + " after " + S.seq + " of " + S.epoch);
      return false;
    }
    if (rec.kind === "patch") {
      try {
        S.doc = AgentPatch.apply(S.doc, rec.data);
      } catch (e) {
        S.ready = false;
        S.doc = null;
        resync("patch " + rec.seq + " does not apply: " + e.message);
        return false;
      }
      S.dirtyDoc = true;
    }
    S.seq = rec.seq;
    S.received++;
    S.rateCount++;
    keep(rec);
    return true;
  }

  function keep(rec) {
    S.log.push(rec);
    if (S.log.length > 2 * RETAIN) S.log.splice(0, S.log.length - RETAIN);
    if (shown(rec)) S.pending.push(rec);
    if (S.pending.length > SHOWN) {
      S.pending = [];
      S.rebuild = true;
    }
  }

  // loadBacklog starts the log with the newest records of the journal up
  // to the first snapshot's seq, so that the page does not open on an
  // empty log. Records that came live meanwhile follow them.
  function loadBacklog(seq, epoch) {
    S.backlog = "loading";
    const u = new URL("v1/journal", location.href);
    u.search = new URLSearchParams({ limit: String(RETAIN), until: String(seq), epoch }).toString();
    u.hash = "";
    fetch(u.toString(), { headers: authHeaders(), cache: "no-store" })
      .then(async (r) => {
        if (!r.ok) throw new Error("HTTP " + r.status);
        const old = [];
        for (const line of (await r.text()).split("\n")) {
          if (line === "") continue;
          const rec = JSON.parse(line);
          if (rec.epoch === epoch && rec.seq <= seq) old.push(rec);
        }
        S.log = old.concat(S.log.filter((x) => !(x.epoch === epoch && x.seq <= seq && x.kind !== "note" && x.kind !== "reset")));
        if (S.log.length > 2 * RETAIN) S.log.splice(0, S.log.length - RETAIN);
        S.backlog = "done";
        S.rebuild = true;
        schedule();
      })
      .catch((e) => {
        S.backlog = "the journal's newest records could not be read: " + e.message;
      });
  }

  function note(msg) {
    keep({ kind: "note", seq: S.seq, epoch: S.epoch, time: new Date().toISOString(), nodename: "", data: { reason: msg } });
    schedule();
  }

  function shown(rec) {
    if (rec.kind === "patch" && !S.showPatches) return false;
    if (!S.filter || rec.kind === "note" || rec.kind === "reset") return true;
    try {
      return S.filter(rec);
    } catch (e) {
      return false;
    }
  }

  // ---------- rendering ----------

  function schedule() {
    if (!S.frame) S.frame = requestAnimationFrame(render);
  }

  function setBanner(msg) {
    S.banner = msg;
    schedule();
  }

  function render() {
    S.frame = 0;
    const now = performance.now();
    if (now - S.rateStart >= 1000) {
      S.rate = Math.round((S.rateCount * 1000) / (now - S.rateStart));
      S.rateCount = 0;
      S.rateStart = now;
    }
    const banner = $("banner");
    banner.hidden = S.banner === "";
    if (banner.textContent !== S.banner) banner.textContent = S.banner;
    const conn = $("conn");
    conn.textContent = S.connected ? "live" : "disconnected";
    conn.className = "conn " + (S.connected ? "up" : "down");
    $("position").textContent = S.epoch ? "seq " + S.seq + " · epoch " + S.epoch : "";
    $("rate").textContent = S.rate + " rec/s";
    $("forget-token").hidden = getToken() === "";
    $("live").classList.toggle("stale", !(S.connected && S.ready));
    if (S.dirtyDoc) {
      S.dirtyDoc = false;
      renderDoc();
    }
    if (!S.paused && (S.rebuild || S.pending.length)) {
      // The log table is the costly part to lay out: under a burst it is
      // redrawn at most every LOG_INTERVAL ms (the rest of the page still
      // every frame); a quiet stream shows each record at once.
      const wait = S.lastLog + LOG_INTERVAL - now;
      if (wait <= 0) {
        S.lastLog = now;
        renderLog();
      } else if (!S.logTimer) {
        S.logTimer = setTimeout(() => {
          S.logTimer = 0;
          schedule();
        }, wait);
      }
    }
  }

  function fmtTime(t) {
    if (!t) return "";
    const m = /T(\d\d:\d\d:\d\d(\.\d{1,3})?)/.exec(t);
    return m ? m[1] : String(t);
  }

  function fmtFrozen(v) {
    if (!v) return "no";
    const d = new Date(v * 1000);
    return isNaN(d) ? String(v) : "since " + d.toISOString().replace(".000Z", "Z");
  }

  function renderDoc() {
    const doc = obj(S.doc);
    const cluster = obj(doc.cluster);
    const members = obj(cluster.nodes);
    const mon = obj(doc.monitor);
    const mnodes = obj(mon.nodes);
    const msvcs = obj(mon.services);
    const names = Array.from(new Set([...Object.keys(members), ...Object.keys(mnodes)])).sort();
    $("cluster-name").textContent = cluster.name ? "cluster " + cluster.name : "agent";

    let nodes = "";
    for (const n of names) {
      const m = obj(members[n]);
      const d = obj(mnodes[n]);
      const st = obj(d.stats);
      const labels = Object.keys(obj(d.labels)).sort().map((k) => '<span class="label">' + esc(k) + "=" + esc(d.labels[k]) + "</span>").join("");
      const frozen = !!d.frozen;
      nodes +=
        '<tr data-node="' + esc(n) + '" data-state="' + esc(m.state || "") + '" data-frozen="' + (frozen ? 1 : 0) + '">' +
        "<td>" + esc(n) + "</td>" +
        '<td class="state-' + esc(m.state || "unknown") + '">' + esc(m.state || "?") + "</td>" +
        "<td>" + esc(m.addr || "") + "</td>" +
        "<td>" + esc(d.status || "") + "</td>" +
        '<td class="' + (frozen ? "frozen-yes" : "") + '">' + esc(fmtFrozen(d.frozen)) + "</td>" +
        '<td class="num">' + esc(d.gen === undefined ? "" : d.gen) + "</td>" +
        "<td>" + labels + "</td>" +
        '<td class="num">' + esc(st.load_15m === undefined ? "" : st.load_15m) + "</td>" +
        '<td class="num">' + esc(st.mem_avail_pct === undefined ? "" : st.mem_avail_pct + "%") + "</td></tr>";
    }

    const svcSet = new Set(Object.keys(msvcs));
    for (const n of names) for (const s of Object.keys(obj(obj(mnodes[n]).services))) svcSet.add(s);
    const svcs = Array.from(svcSet).sort();
    let head = "<tr><th>service</th><th>overall</th>" + names.map((n) => "<th>" + esc(n) + "</th>").join("") + "</tr>";
    let body = "";
    for (const s of svcs) {
      const agg = obj(msvcs[s]);
      const overall = agg.overall || agg.avail || "";
      const aggFrozen = agg.frozen && agg.frozen !== "thawed";
      body += '<tr data-service="' + esc(s) + '"><th>' + esc(s) + "</th>" +
        '<td class="cell ' + availClass(overall, aggFrozen) + '">' + esc(overall || "?") +
        '<span class="sub">' + esc([agg.placement, agg.frozen].filter(Boolean).join(" · ")) + "</span></td>";
      for (const n of names) {
        const inst = obj(obj(mnodes[n]).services)[s];
        if (!inst) {
          body += '<td class="absent" data-node="' + esc(n) + '">–</td>';
          continue;
        }
        const im = obj(inst.monitor);
        if (!present(members[n])) {
          // A dead or departed node's instance is history: its last
          // report is not shown as current (monitor.services.NAME.up
          // leaves it out too).
          // A node that left with the instance running holds it: the
          // others do not place it elsewhere (monitor.left_running).
          const held = names.some((p) => present(members[p]) &&
            obj(obj(obj(obj(obj(mnodes[p]).services)[s]).monitor).left_running)[n] !== undefined);
          body += '<td class="cell stale" data-node="' + esc(n) + '" data-avail="unknown" data-stale="1"' +
            (held ? ' data-left-running="1"' : "") + ' title="' +
            esc(n) + " is " + esc(obj(members[n]).state || "not a member") + ": its last report is not current" +
            (held ? "; it left with the service running, so it is not placed elsewhere until " + esc(n) +
              " is back, forgotten (agent node forget " + esc(n) + ") or the service is ordered again" : "") +
            '">unknown' +
            '<span class="sub">stale · last ' + esc(inst.avail || "?") +
            (im.status && im.status !== "idle" ? " · " + esc(im.status) : "") + (held ? " · left running" : "") + "</span></td>";
          continue;
        }
        const leader = im.placement === "leader";
        body += '<td class="cell ' + availClass(inst.avail, !!inst.frozen) + '" data-node="' + esc(n) + '" data-avail="' + esc(inst.avail || "") + '"' + (leader ? ' data-leader="1"' : "") + ">" +
          (leader ? '<span class="leader-mark" title="leader">&#9733;</span> ' : "") + esc(inst.avail || "?") +
          (inst.frozen ? " · frozen" : "") +
          '<span class="sub">' + esc(im.status || "") + (im.global_expect ? " · " + esc(im.global_expect) : "") + "</span></td>";
      }
      body += "</tr>";
    }
    const html = nodes + "\u0000" + head + "\u0000" + body;
    if (html === S.lastDocHTML) return;
    S.lastDocHTML = html;
    $("nodes").tBodies[0].innerHTML = nodes;
    $("matrix").tHead.innerHTML = svcs.length ? head : "";
    $("matrix").tBodies[0].innerHTML = svcs.length ? body : '<tr><td class="muted">no service</td></tr>';
  }

  // present reports whether a node's data describes what runs now: its
  // membership state is alive or suspect.
  function present(m) {
    const st = obj(m).state;
    return st === "alive" || st === "suspect";
  }

  function availClass(avail, frozen) {
    if (frozen) return "frozen";
    switch (avail) {
      case "up":
        return "up";
      case "down":
        return "down";
      case "warn":
        return "warn";
    }
    return "unknown";
  }

  // rowRec maps a log row to its record, for the detail view.
  const rowRec = new WeakMap();

  function logRow(rec) {
    const tr = document.createElement("tr");
    const d = obj(rec.data);
    const rest = {};
    for (const k of Object.keys(d)) if (k !== "id" && k !== "reason") rest[k] = d[k];
    let summary = rec.kind === "patch" ? JSON.stringify(rec.data) : Object.keys(rest).length ? JSON.stringify(rest) : "";
    if (summary.length > 300) summary = summary.slice(0, 300) + "…";
    tr.className = "kind-" + rec.kind;
    tr.dataset.seq = rec.seq;
    if (d.id !== undefined) tr.dataset.id = d.id;
    // Cells made with the DOM, not innerHTML: no HTML parsing per row,
    // which showed in bursts of thousands of rows.
    const cells = [rec.seq, fmtTime(rec.time), rec.nodename || "", rec.kind, d.id === undefined ? "" : d.id, d.reason === undefined ? "" : d.reason, summary];
    for (let i = 0; i < cells.length; i++) {
      const td = document.createElement("td");
      if (i === 0) td.className = "num";
      else if (i === cells.length - 1) td.className = "data";
      td.textContent = String(cells[i]);
      tr.appendChild(td);
    }
    rowRec.set(tr, rec);
    return tr;
  }

  function renderLog() {
    const tbody = $("log").tBodies[0];
    if (S.rebuild) {
      S.rebuild = false;
      S.pending = [];
      const frag = document.createDocumentFragment();
      let n = 0;
      for (let i = S.log.length - 1; i >= 0 && n < SHOWN; i--) {
        if (!shown(S.log[i])) continue;
        frag.appendChild(logRow(S.log[i]));
        n++;
      }
      tbody.textContent = "";
      tbody.appendChild(frag);
    } else if (S.pending.length) {
      const frag = document.createDocumentFragment();
      for (let i = S.pending.length - 1; i >= 0; i--) frag.appendChild(logRow(S.pending[i]));
      S.pending = [];
      tbody.insertBefore(frag, tbody.firstChild);
      // Counted once: rows.length is recomputed after each removal, which
      // made trimming hundreds of rows quadratic.
      for (let extra = tbody.childElementCount - SHOWN; extra > 0; extra--) tbody.lastElementChild.remove();
    }
    $("log-count").textContent = tbody.childElementCount + " shown";
  }

  // ---------- controls ----------

  let filterTimer = 0;
  $("filter").addEventListener("input", () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(applyFilter, 150);
  });

  function applyFilter() {
    const text = $("filter").value.trim();
    let f = null;
    let err = "";
    if (text !== "") {
      try {
        f = AgentFilter.parse(text);
      } catch (e) {
        err = e.message;
      }
    }
    $("filter-error").textContent = err;
    if (err) return; // keep the previous filter until this one parses
    S.filter = f;
    S.rebuild = true;
    schedule();
  }

  $("show-patches").addEventListener("change", (e) => {
    S.showPatches = e.target.checked;
    S.rebuild = true;
    schedule();
  });

  $("pause").addEventListener("change", (e) => {
    S.paused = e.target.checked;
    if (!S.paused) S.rebuild = true;
    schedule();
  });

  $("log").tBodies[0].addEventListener("click", (e) => {
    const tr = e.target.closest("tr");
    const rec = tr && rowRec.get(tr);
    if (!rec) return;
    for (const r of tr.parentNode.querySelectorAll("tr.selected")) r.classList.remove("selected");
    tr.classList.add("selected");
    $("detail-title").textContent = rec.kind + " " + rec.seq;
    $("detail-json").textContent = JSON.stringify(rec, null, 2);
    $("detail").hidden = false;
  });

  $("detail-close").addEventListener("click", () => {
    $("detail").hidden = true;
  });

  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const tok = $("token-input").value.trim();
    if (!tok) return;
    setToken(tok, $("token-remember").checked);
    $("token-input").value = "";
    $("token-form").hidden = true;
    S.needToken = false;
    S.attempts = 0;
    connect();
  });

  $("forget-token").addEventListener("click", () => {
    forgetToken();
    if (S.ws) S.ws.close(1000, "token forgotten");
    schedule();
  });

  document.addEventListener("visibilitychange", () => {
    // Background tabs get no animation frames: render once on return.
    if (!document.hidden) schedule();
  });

  // The rate and the banner's figures move without records too.
  setInterval(schedule, 1000);
  takeURLToken();
  connect();
  schedule();
})();
