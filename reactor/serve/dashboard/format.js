// Numbers for people: units on every figure, times in the host's zone (the sequencer's
// clock, whatever the browser's zone), or the browser's when the host does not say.

let zone; // the host's IANA zone name, from /status's time_zone

export function setZone(name) {
  if (name === zone) return;
  try {
    new Intl.DateTimeFormat([], { timeZone: name || undefined });
    zone = name || undefined;
  } catch {
    zone = undefined; // a name this browser does not know: its own zone
  }
}

export function zoneName() {
  return zone;
}

export function bases(count) {
  // 812 b, 14.3 kb, 1.2 Mb, 3.4 Gb (as `reactor status` writes them)
  const n = Number(count) || 0;
  for (const [unit, size] of [["Gb", 1e9], ["Mb", 1e6], ["kb", 1e3]]) {
    if (n >= size) return `${(n / size).toFixed(1)} ${unit}`;
  }
  return `${Math.round(n)} b`;
}

export function count(n) {
  return (Number(n) || 0).toLocaleString();
}

export function percent(part, whole) {
  return whole > 0 ? `${Math.round((100 * part) / whole)} %` : "–";
}

export function duration(seconds) {
  // 3 s, 4 min 10 s, 18 min, 2 h 05 min, 3 d 4 h
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const total = Math.max(0, Math.round(seconds));
  if (total < 60) return `${total} s`;
  let minutes = Math.floor(total / 60);
  const secs = total % 60;
  if (minutes < 10) return secs ? `${minutes} min ${secs} s` : `${minutes} min`;
  if (minutes < 60) return `${minutes} min`;
  let hours = Math.floor(minutes / 60);
  minutes %= 60;
  if (hours < 24) return `${hours} h ${String(minutes).padStart(2, "0")} min`;
  const days = Math.floor(hours / 24);
  hours %= 24;
  return `${days} d ${hours} h`;
}

export function clock(epochSeconds, seconds = false) {
  // wall-clock time in the host's zone
  const parts = { hour: "2-digit", minute: "2-digit", timeZone: zone };
  if (seconds) parts.second = "2-digit";
  return new Date(epochSeconds * 1000).toLocaleTimeString([], parts);
}

export function whenAgo(seconds) {
  return seconds === null || seconds === undefined ? "never" : `${duration(seconds)} ago`;
}

export function stamp(iso) {
  return iso ? new Date(iso).toLocaleString([], { timeZone: zone }) : "–";
}
