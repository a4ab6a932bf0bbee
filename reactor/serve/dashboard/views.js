// The three views (host, run, engines), built with the DOM (text is never parsed as
// HTML: file and run names come from the disk). A section is rebuilt only when what it
// shows changed; charts keep their uPlot object and only get new data.
import { Chart, cumulative, lengthBins, qualityBins } from "./charts.js";
import { bases, clock, count, duration, percent, stamp, whenAgo } from "./format.js";

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (key === "style") Object.assign(node.style, value); // CSSOM: allowed by the page's CSP
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const shown = new WeakMap(); // section -> the JSON of what it shows

function fill(section, inputs, build) {
  const key = JSON.stringify(inputs);
  if (shown.get(section) === key) return;
  shown.set(section, key);
  section.replaceChildren(...[build()].flat().filter(Boolean));
}

function tile(label, value, unit, sub, testid) {
  return h("div", { class: "tile", "data-testid": testid },
    h("div", { class: "label" }, label),
    h("div", { class: "value" }, value, unit ? h("small", {}, unit) : null),
    sub ? h("div", { class: "sub" }, sub) : null);
}

// "3.4 Gb" -> ["3.4", "Gb"], for a tile's big number and its unit
function split(text) {
  const [value, unit] = text.split(" ");
  return [value, unit || ""];
}

function bar(done, total, finished) {
  const share = total > 0 ? Math.min(100, (100 * done) / total) : 0;
  return h("div", { class: finished ? "bar done" : "bar", role: "progressbar",
    "aria-valuemin": 0, "aria-valuemax": total, "aria-valuenow": done },
  h("span", { style: { width: `${share.toFixed(1)}%` } }));
}

function phaseBadge(phase) {
  return h("span", { class: `phase ${phase}`, "data-testid": "phase" }, phase);
}

function alertList(alerts) {
  return (alerts || []).map((alert) =>
    h("div", { class: `alert ${alert.level}`, "data-kind": alert.kind }, alert.text));
}

function engineState(engine) {
  if (engine.benched_s > 0) return "benched";
  if (engine.live_jobs > 0) return "working";
  return "idle";
}

// A single run's /status as the host view shows a run.
function asHostRun(status) {
  const arrivals = status.reads.yield.arrivals;
  return {
    run: "", flow_cell: status.run ? status.run.flow_cell : "this run",
    sample: status.run ? status.run.sample : "", phase: status.phase, files: status.files,
    done: status.files.done, total: status.files_total, eta_s: status.throughput.eta_s,
    jobs_live: status.jobs.live_total, reads: status.reads, yield: arrivals.bases,
    slot_s: arrivals.slot_s, end: status.end, backlog: status.backlog,
  };
}

function engineList(status) {
  if (status.mode === "host") return status.engines;
  const speeds = status.reads.engines || {};
  return status.engines.map((engine) => ({
    ...engine, bases: (speeds[engine.engine_id] || {}).bases || 0,
    bases_per_s: (speeds[engine.engine_id] || {}).bases_per_s || 0,
  }));
}

export class Views {
  constructor(root, actions) {
    this.root = root;
    this.actions = actions;
    this.view = null;
    this.run = null;
    this.sections = {};
    this.charts = new Map();
    this.last = { all: null, run: null };
    this.notice = null;
  }

  select(view, run) {
    if (view === this.view && run === this.run) return;
    this.view = view;
    this.run = run;
    for (const chart of this.charts.values()) chart.destroy();
    this.charts.clear();
    this.sections = {};
    this.root.replaceChildren();
    const navRun = document.getElementById("nav-run");
    for (const [id, name] of [["nav-host", "host"], ["nav-run", "run"], ["nav-engines", "engines"]]) {
      const link = document.getElementById(id);
      if (name === view) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    if (view === "run") {
      navRun.hidden = false;
      navRun.textContent = run ? `Run ${run}` : "Run";
      navRun.href = run ? `#/run/${encodeURIComponent(run)}` : "#/run";
    }
    const data = view === "run" && run ? this.last.run : this.last.all;
    if (data) this.show(data, view === "run" && run ? run : null);
  }

  gone(run) {
    this.notice = `Run ${run} is not served any more.`;
  }

  section(name, heading, attrs = {}) {
    if (!this.sections[name]) {
      const body = h("div", attrs);
      const wrap = h("section", { "data-section": name }, heading ? h("h2", {}, heading) : null, body);
      this.root.append(wrap);
      this.sections[name] = body;
    }
    return this.sections[name];
  }

  chart(name, container, kind) {
    let chart = this.charts.get(name);
    if (!chart || chart.container !== container) {
      chart = new Chart(container, kind);
      this.charts.set(name, chart);
    }
    return chart;
  }

  show(status, topic) {
    if (topic) this.last.run = status; else this.last.all = status;
    if (this.view === "run" && this.run && status.mode === "host") return; // its own topic
    if (this.view === "run" && (topic || status.mode !== "host")) this.showRun(status);
    else if (this.view === "engines" && !topic) this.showEngines(status);
    else if (this.view === "host" && !topic) this.showHost(status);
  }

  // ------------------------------------------------------------------ host

  showHost(status) {
    const host = status.mode === "host";
    const runs = host ? status.runs : [asHostRun(status)];
    const engines = engineList(status);
    const states = { working: 0, benched: 0, idle: 0 };
    for (const engine of engines) states[engineState(engine)] += 1;
    const files = status.files;
    const waiting = host ? runs.reduce((n, r) => n + r.backlog.files, 0) : status.backlog.files;
    const totalBases = runs.reduce((n, r) => n + (r.reads ? r.reads.bases : 0), 0);
    const live = runs.filter((r) => r.phase !== "complete").length;
    if (this.notice) {
      fill(this.section("notice", null, { class: "alerts" }), this.notice,
        () => h("div", { class: "alert warning" }, this.notice));
    }
    fill(this.section("alerts", null, { class: "alerts", "data-testid": "alerts" }), status.alerts,
      () => alertList(status.alerts));
    const done = (files.done || 0) + (files.quarantined || 0);
    const seen = Object.values(files).reduce((a, b) => a + b, 0);
    fill(this.section("summary", host ? "Host" : "Run", { class: "tiles" }),
      [live, runs.length, done, seen, totalBases, states, waiting, status.engines_waiting], () => [
        tile("Runs live", String(live), "", `${runs.length} served`, "runs-live"),
        tile("Files done", count(done), "", `of ${count(seen)} seen`, "files-done"),
        tile("Yield", ...split(bases(totalBases)), "every run", "yield"),
        tile("Engines working", String(states.working), "",
          `${states.benched} benched · ${states.idle} idle`, "engines-working"),
        tile("Backlog", count(waiting), "files", `${status.engines_waiting} engines waiting`, "backlog"),
      ]);
    const list = this.section("runs", host ? "Runs" : null, { class: "runs", "data-testid": "runs" });
    const cards = new Map([...list.children].map((card) => [card.dataset.run, card]));
    const names = runs.map((run) => run.run);
    for (const [name, card] of cards) {
      if (!names.includes(name)) { card.remove(); this.charts.delete(`spark:${name}`); }
    }
    runs.forEach((run, index) => {
      let card = cards.get(run.run);
      if (!card) {
        card = this.runCard(run);
        list.append(card);
      }
      if (list.children[index] !== card) list.insertBefore(card, list.children[index]);
      this.fillRunCard(card, run);
    });
    if (status.fleet) this.showFleet(status.fleet);
  }

  runCard(run) {
    const target = run.run ? `#/run/${encodeURIComponent(run.run)}` : "#/run";
    const card = h("article", { class: "panel run", tabindex: 0, "data-run": run.run,
      "data-testid": "run-card", onclick: () => this.actions.go(target),
      onkeydown: (event) => { if (event.key === "Enter") this.actions.go(target); } });
    card.append(h("div", { class: "body" }), h("div", { class: "spark" }));
    return card;
  }

  fillRunCard(card, run) {
    const reads = run.reads || { bases: 0, reads: 0, n50: 0, pass_reads: 0 };
    const quarantined = run.files.quarantined || 0;
    const finished = run.done + quarantined;
    const complete = run.phase === "complete";
    const estimate = run.done > 0 ? (reads.bases * run.total) / run.done : 0;
    const waiting = run.total - finished;
    const body = card.querySelector(".body");
    fill(body, [run.flow_cell, run.sample, run.phase, run.files, run.total, run.eta_s, reads.bases,
      reads.n50, reads.pass_reads, reads.reads, run.jobs_live, run.end], () => [
      h("div", { class: "head" },
        h("div", {}, h("span", { class: "name" }, run.flow_cell), " ",
          h("span", { class: "sample" }, run.sample)),
        phaseBadge(run.phase)),
      h("div", { class: "progress", "data-testid": "files-progress" },
        h("span", { class: "what" }, "files"), bar(finished, run.total, complete),
        h("span", {}, `${count(finished)} / ${count(run.total)}`)),
      h("div", { class: "progress", "data-testid": "bases-progress" },
        h("span", { class: "what" }, "bases"), bar(reads.bases, estimate, complete),
        h("span", { "data-testid": "run-bases" }, complete || !estimate ? bases(reads.bases)
          : `${bases(reads.bases)} of ~${bases(estimate)}`)),
      h("div", { class: "facts" },
        h("span", {}, "ETA ", h("b", {}, waiting > 0 && run.eta_s !== null ? duration(run.eta_s) : "–")),
        h("span", {}, "N50 ", h("b", {}, bases(reads.n50))),
        h("span", {}, "pass ", h("b", {}, percent(reads.pass_reads, reads.reads))),
        h("span", {}, "jobs ", h("b", {}, String(run.jobs_live))),
        quarantined ? h("span", {}, "quarantined ", h("b", {}, String(quarantined))) : null),
    ]);
    const spark = this.chart(`spark:${run.run}`, card.querySelector(".spark"), "spark");
    spark.set(cumulative(run.yield || [], run.slot_s || 5));
  }

  showFleet(fleet) {
    fill(this.section("fleet", `Slurm fleet ${fleet.name || ""}`, { class: "tiles", "data-testid": "fleet" }),
      fleet, () => [
        tile("Pending", String(fleet.pending || 0), "jobs", fleet.last_error || null, "fleet-pending"),
        tile("Running", String(fleet.running || 0), "jobs", `wanted ${fleet.wanted}`, "fleet-running"),
        tile("Draining", String(fleet.draining || 0), "jobs", `${fleet.min_engines}–${fleet.max_engines} engines`,
          "fleet-draining"),
      ]);
  }

  // ------------------------------------------------------------------- run

  showRun(status) {
    const reads = status.reads;
    const run = status.run;
    fill(this.section("run-head", null, { class: "panel" }),
      [run, status.phase, status.end], () => this.runHead(status));
    fill(this.section("alerts", null, { class: "alerts" }), status.alerts, () => alertList(status.alerts));
    const files = status.files;
    const finished = files.done + files.quarantined;
    fill(this.section("tiles", "Reads", { class: "tiles" }),
      [reads.bases, reads.reads, reads.n50, reads.pass_reads, reads.min_qscore, files, status.throughput.eta_s],
      () => [
        tile("Yield", ...split(bases(reads.bases)), `${count(reads.reads)} reads`, "run-yield"),
        tile("N50", ...split(bases(reads.n50)), null, "run-n50"),
        tile(`Pass (Q ≥ ${reads.min_qscore ?? "–"})`, percent(reads.pass_reads, reads.reads), "",
          `${bases(reads.pass_bases)} passed`, "run-pass"),
        tile("Files done", count(finished), "", `of ${count(status.files_total)}`, "run-files"),
        tile("ETA", (files.ready + files.assigned + files.incomplete) > 0 ? duration(status.throughput.eta_s) : "–", "",
          `${(60 * status.throughput.files_per_s).toFixed(1)} files/min`, "run-eta"),
      ]);
    const charts = this.section("charts", "Charts", { class: "charts" });
    if (!charts.children.length) {
      for (const [name, title, note] of [
        ["yield", "Yield over time", "bases merged, cumulative"],
        ["length", "Read length", "reads per length bin (doubling); dashed: N50"],
        ["quality", "Mean Q", "reads per whole mean Q; dashed: the pass threshold"],
      ]) {
        charts.append(h("div", { class: "panel chart" }, h("h3", {}, title), h("p", { class: "note" }, note),
          h("div", { "data-chart": name, "data-testid": `chart-${name}` })));
      }
    }
    const arrivals = reads.yield.arrivals;
    this.chart("yield", charts.querySelector("[data-chart=yield]"), "yield")
      .set(cumulative(arrivals.bases, arrivals.slot_s));
    this.chart("length", charts.querySelector("[data-chart=length]"), "length")
      .set(lengthBins(reads.length_histogram),
        { x: reads.n50 > 0 ? Math.log2(reads.n50) : null, label: `N50 ${bases(reads.n50)}` });
    this.chart("quality", charts.querySelector("[data-chart=quality]"), "quality")
      .set(qualityBins(reads.mean_q),
        { x: reads.min_qscore, label: reads.min_qscore === null ? "" : `Q${reads.min_qscore}` });
    const cols = this.section("cols", null, { class: "cols" });
    if (!cols.children.length) {
      for (const name of ["files", "barcodes"]) cols.append(h("div", { class: "panel", "data-part": name }));
    }
    fill(cols.querySelector("[data-part=files]"), files, () => this.fileStates(status));
    fill(cols.querySelector("[data-part=barcodes]"), reads.barcodes, () => this.barcodes(reads.barcodes));
    fill(this.section("jobs", "Live jobs", { class: "panel table-wrap", "data-testid": "live-jobs" }),
      status.jobs, () => this.liveJobs(status.jobs));
    const quarantine = this.section("quarantine", "Quarantined files", { class: "panel", "data-testid": "quarantine" });
    if (!quarantine.children.length) {
      // the message stays while the list is rebuilt (a requeued file leaves it, or comes back)
      quarantine.append(h("div", { "data-part": "list" }),
        h("p", { class: "message", "data-testid": "requeue-message", role: "status" }));
    }
    const message = quarantine.querySelector("[data-testid=requeue-message]");
    fill(quarantine.querySelector("[data-part=list]"), status.quarantined,
      () => this.quarantine(status.quarantined, message));
  }

  runHead(status) {
    const run = status.run;
    const end = status.end;
    const oc = end.on_complete;
    let ending = "sequencing";
    if (end.closed) ending = `closed by hand: ${end.closed}`;
    else if (end.complete) ending = "complete";
    else if (end.sequencing_finished) ending = "final summary seen; finishing the last files";
    let outcome = "runs once the run is complete";
    if (oc) {
      if (oc.state === "finished") outcome = `exit code ${oc.exit_code} after ${duration(oc.duration_s)}`;
      else if (oc.state === "no_command") outcome = "none configured";
      else if (oc.state === "claimed") outcome = `running since ${stamp(oc.started_at || oc.completed_at)}`;
      else outcome = `${oc.state.replace("_", " ")}${oc.detail ? `: ${oc.detail}` : ""}`;
    }
    return [
      h("div", { class: "run-title" },
        h("span", { class: "big" }, run ? run.flow_cell : "This run"),
        run ? h("span", { class: "muted" }, `${run.sample} · ${run.run}`) : null,
        phaseBadge(status.phase)),
      h("div", { class: "facts" },
        h("span", { "data-testid": "end-state" }, "end of run ", h("b", {}, ending)),
        h("span", { "data-testid": "on-complete" }, "on_complete ", h("b", {}, outcome)),
        oc && oc.completed_at ? h("span", {}, "completed ", h("b", {}, stamp(oc.completed_at))) : null),
    ];
  }

  fileStates(status) {
    const files = status.files;
    const rows = ["done", "quarantined", "assigned", "ready", "incomplete"].map((state) =>
      h("tr", {}, h("td", {}, state), h("td", { class: "num", "data-state": state }, count(files[state])),
        h("td", { class: "wide" }, bar(files[state], status.files_total, state === "done"))));
    return [h("h3", {}, "Files"), h("table", {}, h("tbody", {}, rows))];
  }

  barcodes(barcodes) {
    const names = Object.keys(barcodes);
    if (!names.length) return [h("h3", {}, "Barcodes"), h("p", { class: "muted" }, "no barcodes in this run")];
    const rows = names.map((name) => {
      const b = barcodes[name];
      return h("tr", {}, h("td", {}, name), h("td", { class: "num" }, count(b.reads)),
        h("td", { class: "num" }, bases(b.bases)), h("td", { class: "num" }, bases(b.n50)),
        h("td", { class: "num" }, percent(b.pass_reads, b.reads)));
    });
    return [h("h3", {}, "Barcodes"), h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "barcode"), h("th", { class: "num" }, "reads"),
        h("th", { class: "num" }, "yield"), h("th", { class: "num" }, "N50"), h("th", { class: "num" }, "pass"))),
      h("tbody", {}, rows)))];
  }

  liveJobs(jobs) {
    if (!jobs.live.length) return h("p", { class: "muted" }, "no job out now");
    const rows = jobs.live.map((job) => h("tr", {},
      h("td", { title: job.job_id }, `${job.job_id.slice(0, 10)}…`), h("td", {}, job.engine_id),
      h("td", {}, job.state), h("td", { class: "num" }, String(job.files)),
      h("td", { class: "num" }, duration(job.age_s)),
      h("td", { class: "num" }, job.expires_in_s > 0 ? duration(job.expires_in_s) : "expired")));
    const more = jobs.live_total > jobs.live.length
      ? h("p", { class: "muted" }, `and ${count(jobs.live_total - jobs.live.length)} more`) : null;
    return [h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "job"), h("th", {}, "engine"),
      h("th", {}, "state"), h("th", { class: "num" }, "files"), h("th", { class: "num" }, "lease age"),
      h("th", { class: "num" }, "lease left"))), h("tbody", {}, rows)), more];
  }

  quarantine(quarantined, message) {
    if (!quarantined.total) return h("p", { class: "muted" }, "none");
    const byFolder = new Map();
    for (const file of quarantined.files) {
      const key = file.folder || "";
      if (!byFolder.has(key)) byFolder.set(key, []);
      byFolder.get(key).push(file);
    }
    const rows = [];
    for (const [folder, files] of byFolder) {
      files.forEach((file, i) => rows.push(h("tr", { "data-testid": "quarantined-file" },
        h("td", {}, file.name), h("td", { class: "num" }, String(file.failures)),
        h("td", { class: "muted" }, folder || "–"),
        h("td", {}, i === 0 && folder ? h("button", { type: "button", "data-folder": folder,
          onclick: (event) => this.requeue(event.currentTarget, folder, message) }, "Requeue") : null))));
    }
    const more = quarantined.total > quarantined.files.length
      ? h("p", { class: "muted" }, `and ${count(quarantined.total - quarantined.files.length)} more`) : null;
    return [h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "file"),
      h("th", { class: "num" }, "failures"), h("th", {}, "folder"), h("th", {}, ""))), h("tbody", {}, rows))),
    more];
  }

  async requeue(button, folder, message) {
    button.disabled = true;
    try {
      const answer = await this.actions.post(`/requeue?folder=${encodeURIComponent(folder)}`);
      if (answer) {
        const released = Object.values(answer.released).reduce((n, names) => n + names.length, 0);
        message.textContent = `${released} file${released === 1 ? "" : "s"} back in the queue (${folder})`;
        message.className = "message";
      }
    } catch (error) {
      message.textContent = `requeue failed: ${error.message}`;
      message.className = "message bad";
      button.disabled = false;
    }
  }

  // --------------------------------------------------------------- engines

  showEngines(status) {
    const engines = engineList(status);
    const states = { working: 0, benched: 0, idle: 0 };
    for (const engine of engines) states[engineState(engine)] += 1;
    fill(this.section("engine-tiles", "Engines", { class: "tiles" }), [states, status.engines_total], () => [
      tile("Working", String(states.working), "", null, "engines-working"),
      tile("Benched", String(states.benched), "", null, "engines-benched"),
      tile("Idle", String(states.idle), "", `${count(status.engines_total)} known`, "engines-idle"),
    ]);
    const now = Date.now() / 1000;
    fill(this.section("engine-table", null, { class: "panel table-wrap", "data-testid": "engines" }),
      engines.map((e) => [e.engine_id, Math.round(e.last_seen_s), e.live_jobs, e.files_done, e.bases_per_s,
        e.jobs_failed, e.jobs_expired, Math.round(e.benched_s)]), () => {
        if (!engines.length) return h("p", { class: "muted" }, "no engine has asked for work yet");
        const rows = engines.map((e) => {
          const state = engineState(e);
          return h("tr", { "data-engine": e.engine_id },
            h("td", {}, e.engine_id), h("td", { class: `state-${state}` }, state),
            h("td", { class: "num" }, whenAgo(e.last_seen_s)), h("td", { class: "num" }, String(e.live_jobs)),
            h("td", { class: "num" }, count(e.files_done)), h("td", { class: "num" }, bases(e.bases || 0)),
            h("td", { class: "num" }, e.bases_per_s ? `${bases(e.bases_per_s)}/s` : "–"),
            h("td", { class: "num" }, String(e.jobs_failed)), h("td", { class: "num" }, String(e.jobs_expired)),
            h("td", {}, e.benched_s > 0 ? `until ${clock(now + e.benched_s)}` : "–"));
        });
        return h("table", {}, h("thead", {}, h("tr", {}, ...["engine", "state", "last seen", "jobs", "files",
          "bases", "speed", "failed", "expired", "benched"].map((name, i) =>
          h("th", { class: i >= 2 && i <= 8 ? "num" : null }, name)))), h("tbody", {}, rows));
      });
  }
}
