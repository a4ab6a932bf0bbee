// Charts with uPlot (loaded by the page as the global `uPlot`): one object per chart,
// created once and given new data on every frame (setData), never rebuilt.
import { bases, zoneName } from "./format.js";

function colours() {
  const style = getComputedStyle(document.documentElement);
  const read = (name) => style.getPropertyValue(name).trim();
  return {
    text: read("--muted"), grid: read("--line"), line: read("--chart"),
    fill: read("--chart-fill"), marker: read("--marker"),
  };
}

function axis(c, values, extra = {}) {
  return { stroke: c.text, grid: { stroke: c.grid, width: 1 }, ticks: { stroke: c.grid }, values, ...extra };
}

// A vertical line at x = marker() with a label: N50, the pass threshold.
function markerPlugin(marker) {
  return {
    hooks: {
      draw: [(u) => {
        const at = marker.x;
        if (at === null || at === undefined) return;
        const x = Math.round(u.valToPos(at, "x", true));
        const { top, height } = u.bbox;
        const ctx = u.ctx;
        ctx.save();
        ctx.strokeStyle = marker.colour;
        ctx.fillStyle = marker.colour;
        ctx.lineWidth = 2 * devicePixelRatio;
        ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
        ctx.beginPath();
        ctx.moveTo(x, top);
        ctx.lineTo(x, top + height);
        ctx.stroke();
        ctx.setLineDash([]);
        ctx.font = `${12 * devicePixelRatio}px system-ui, sans-serif`;
        ctx.fillText(marker.label, x + 4 * devicePixelRatio, top + 14 * devicePixelRatio);
        ctx.restore();
      }],
    },
  };
}

export class Chart {
  // kind: "yield" (cumulative bases over time), "length" (log2 bins), "quality" (whole Q),
  // "spark" (a run's yield, no axes)
  constructor(container, kind) {
    this.container = container;
    this.kind = kind;
    this.plot = null;
    this.marker = { x: null, label: "", colour: "" };
    this.resize = new ResizeObserver(() => this.fit());
    this.resize.observe(container);
  }

  size() {
    const width = Math.max(120, this.container.clientWidth || 300);
    return { width, height: this.kind === "spark" ? 44 : 220 };
  }

  fit() {
    if (this.plot) this.plot.setSize(this.size());
  }

  options(c) {
    const bars = uPlot.paths.bars({ size: [0.85, 80] });
    // time axes in the host's zone, as every other time on the page
    const tzDate = (ts) => (zoneName() ? uPlot.tzDate(new Date(ts * 1e3), zoneName()) : new Date(ts * 1e3));
    const base = { ...this.size(), legend: { show: false }, cursor: { show: this.kind !== "spark" }, tzDate };
    if (this.kind === "spark") {
      return { ...base, axes: [{ show: false }, { show: false }], scales: { x: { time: true } },
        series: [{}, { stroke: c.line, fill: c.fill, width: 2 }] };
    }
    if (this.kind === "yield") {
      return { ...base, scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.05 : 1] } },
        axes: [axis(c), axis(c, (u, vals) => vals.map((v) => bases(v)), { size: 70 })],
        series: [{}, { label: "bases", stroke: c.line, fill: c.fill, width: 2 }] };
    }
    this.marker.colour = c.marker;
    const xValues = this.kind === "length"
      ? (u, vals) => vals.map((v) => (Number.isInteger(v) ? bases(2 ** v) : ""))
      : (u, vals) => vals.map((v) => (Number.isInteger(v) ? `Q${v}` : ""));
    const pad = (u, min, max) => [min - 0.6, max + 0.6]; // whole bars at both ends
    const fromZero = (u, min, max) => [0, max > 0 ? max * 1.1 : 1];
    return { ...base, scales: { x: { time: false, range: pad }, y: { range: fromZero } },
      plugins: [markerPlugin(this.marker)],
      axes: [axis(c, xValues), axis(c, (u, vals) => vals.map((v) => v.toLocaleString()), { size: 60 })],
      series: [{}, { label: "reads", stroke: c.line, fill: c.fill, paths: bars, points: { show: false } }] };
  }

  // data: [xs, ys]; marker: {x, label} for the histograms
  set(data, marker) {
    if (marker) Object.assign(this.marker, marker);
    const points = data[0].length;
    this.container.dataset.points = String(points);
    this.container.dataset.total = String(data[1].reduce((a, b) => (this.kind === "yield" || this.kind === "spark") ? Math.max(a, b) : a + b, 0));
    if (points === 0) {
      if (this.plot) { this.plot.destroy(); this.plot = null; }
      if (!this.container.querySelector(".empty")) {
        const empty = document.createElement("div");
        empty.className = "empty";
        empty.textContent = "no reads merged yet";
        this.container.append(empty);
      }
      return;
    }
    this.container.querySelector(".empty")?.remove();
    if (!this.plot) {
      this.plot = new uPlot(this.options(colours()), data, this.container);
    } else {
      this.plot.setData(data);
    }
  }

  destroy() {
    this.resize.disconnect();
    if (this.plot) this.plot.destroy();
  }
}

// [[slot start, bases], …] -> cumulative bases at each slot's end, from 0 at the first
export function cumulative(series, slotS) {
  const xs = [];
  const ys = [];
  let sum = 0;
  for (const [at, n] of series) {
    if (xs.length === 0) { xs.push(at); ys.push(0); }
    sum += n;
    xs.push(at + slotS);
    ys.push(sum);
  }
  return [xs, ys];
}

// length_histogram [[first length, reads], …] (bins doubling) -> [log2 bin, reads]
export function lengthBins(histogram) {
  return [histogram.map(([start]) => (start > 0 ? Math.log2(start) : 0)), histogram.map(([, n]) => n)];
}

// mean_q {"12": reads, …} -> [Q, reads], every whole Q from the lowest to the highest
export function qualityBins(meanQ) {
  const qs = Object.keys(meanQ).map(Number).sort((a, b) => a - b);
  if (qs.length === 0) return [[], []];
  const xs = [];
  const ys = [];
  for (let q = qs[0]; q <= qs[qs.length - 1]; q++) {
    xs.push(q);
    ys.push(meanQ[String(q)] || 0);
  }
  return [xs, ys];
}
