// pod5-reactor dashboard: reads the service's status stream and shows it (docs/dashboard.md).
//
// The data needs the bearer token when one is configured; browsers cannot put headers on
// EventSource or WebSocket, so the stream is read with fetch() and a readable stream:
// newline-delimited JSON, one /status body per line. The token is asked for once, kept in
// sessionStorage (this tab only), sent in the Authorization header, never in a URL.
import { clock, setZone, zoneName } from "./format.js";
import { Views } from "./views.js";

const TOKEN_KEY = "pod5-reactor-token";
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 8000;

const conn = document.getElementById("conn");
const tokenBox = document.getElementById("token-box");
const tokenForm = document.getElementById("token-form");
const tokenInput = document.getElementById("token-input");
const tokenWhy = document.getElementById("token-why");
const viewRoot = document.getElementById("view");
const zoneNote = document.getElementById("zone-note");

let token = sessionStorage.getItem(TOKEN_KEY);
let controller = null; // the stream being read
let topic = undefined; // what it reads: null (the whole service) or a run's name
let mode = null; // "host" or "run", from the first frame
let retryMs = RETRY_FIRST_MS;
let retryTimer = null;

function authHeaders() {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function setConn(text, state) {
  conn.textContent = text;
  conn.className = `conn ${state}`;
}

function askForToken(refused) {
  stopStream();
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  tokenWhy.textContent = refused
    ? "The token was refused (401): enter it again."
    : "This service needs its access token to show its data.";
  tokenWhy.className = refused ? "message bad" : "";
  tokenBox.hidden = false;
  viewRoot.hidden = true;
  setConn(refused ? "token refused" : "token needed", "down");
  tokenInput.focus();
}

tokenForm.addEventListener("submit", (event) => {
  event.preventDefault();
  token = tokenInput.value.trim();
  tokenInput.value = "";
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  tokenBox.hidden = true;
  viewRoot.hidden = false;
  topic = undefined;
  route();
});

// Actions (requeue) are POSTs with the token; no cookies, so no cross-site request can
// make them. Answers the JSON body, or null after asking for the token again.
async function post(path) {
  const response = await fetch(path, { method: "POST", headers: authHeaders(), cache: "no-store" });
  if (response.status === 401) {
    askForToken(Boolean(token));
    return null;
  }
  const body = await response.json();
  if (!response.ok) throw new Error(body.detail || `${response.status}`);
  return body;
}

const views = new Views(viewRoot, { post, go: (hash) => { location.hash = hash; } });

function stopStream() {
  if (retryTimer) { clearTimeout(retryTimer); retryTimer = null; }
  if (controller) { controller.abort(); controller = null; }
}

async function readStream(wanted) {
  const mine = new AbortController();
  controller = mine;
  const url = wanted ? `/status/stream?run=${encodeURIComponent(wanted)}` : "/status/stream";
  let response;
  try {
    response = await fetch(url, { headers: authHeaders(), signal: mine.signal, cache: "no-store" });
  } catch (error) {
    if (!mine.signal.aborted) later(wanted);
    return;
  }
  if (response.status === 401) {
    askForToken(Boolean(token));
    return;
  }
  if (response.status === 404 && wanted) {
    views.gone(wanted);
    location.hash = "#/";
    return;
  }
  if (!response.ok || !response.body) {
    setConn(`service answered ${response.status}`, "down");
    later(wanted);
    return;
  }
  retryMs = RETRY_FIRST_MS;
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 1);
        if (line) frame(JSON.parse(line), wanted);
      }
    }
  } catch (error) {
    if (mine.signal.aborted) return;
  }
  if (!mine.signal.aborted) later(wanted);
}

function later(wanted) {
  setConn("reconnecting…", "down");
  retryTimer = setTimeout(() => { retryTimer = null; readStream(wanted); }, retryMs);
  retryMs = Math.min(2 * retryMs, RETRY_MAX_MS);
}

function frame(body, wanted) {
  if (body.error) {
    views.gone(wanted);
    location.hash = "#/";
    return;
  }
  const seen = body.mode === "host" ? "host" : "run";
  if (wanted === null && mode !== seen) {
    mode = seen;
    route(); // the same stream serves every view of a single run
  }
  setZone(body.time_zone);
  conn.dataset.zone = zoneName() || "";
  zoneNote.textContent = zoneName() ? `the host's time zone (${zoneName()})` : "this browser's time zone";
  setConn(`live · ${clock(Date.now() / 1000, true)}`, "live");
  views.show(body, wanted);
}

// #/ host view, #/run/NAME a run, #/engines the engines. A host's run has its own topic;
// a single run's views all read the one stream.
function route() {
  const hash = location.hash || "#/";
  let view = "host";
  let run = null;
  if (hash.startsWith("#/run/")) {
    view = "run";
    run = decodeURIComponent(hash.slice(6));
  } else if (hash.startsWith("#/run")) {
    view = "run";
  } else if (hash === "#/engines") {
    view = "engines";
  }
  views.select(view, run);
  const wanted = mode === "host" && view === "run" && run ? run : null;
  if (tokenBox.hidden && (wanted !== topic || !controller)) {
    stopStream();
    topic = wanted;
    readStream(wanted);
  }
}

window.addEventListener("hashchange", route);
route();
