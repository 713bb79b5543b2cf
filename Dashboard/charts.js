// Small SVG charts written for the dashboard (no chart library is packaged in Debian as an ES
// module): a time series line chart and a horizontal bar chart.

import { escapeHTML } from "./api.js";

const COLORS = ["#0b63ce", "#c2410c", "#1a7f37", "#7e22ce"];

/** `series`: [{name, points: [[epochMs, value]]}]; `format` renders a value for the axis. */
export function lineChart(series, { format = (v) => v.toFixed(1), height = 180, title = "" } = {}) {
  const width = 640;
  const pad = { left: 56, right: 10, top: 18, bottom: 22 };
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) {
    return `<figure class="chart"><figcaption>${escapeHTML(title)}</figcaption><p class="hint">No samples yet (the meter samples every second while atolld runs).</p></figure>`;
  }
  const t0 = Math.min(...all.map((p) => p[0]));
  const t1 = Math.max(...all.map((p) => p[0]), t0 + 1);
  const vmax = Math.max(...all.map((p) => p[1]), 1e-9);
  const x = (t) => pad.left + ((t - t0) / (t1 - t0)) * (width - pad.left - pad.right);
  const y = (v) => height - pad.bottom - (v / vmax) * (height - pad.top - pad.bottom);
  const lines = series.map((s, i) => {
    const d = s.points.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
    return `<polyline class="line" stroke="${COLORS[i % COLORS.length]}" points="${d}"><title>${escapeHTML(s.name)}</title></polyline>`;
  }).join("");
  const legend = series.map((s, i) => {
    const last = s.points.length ? s.points[s.points.length - 1][1] : 0;
    return `<text x="${pad.left + i * 200}" y="12" fill="${COLORS[i % COLORS.length]}">${escapeHTML(s.name)}: ${escapeHTML(format(last))}</text>`;
  }).join("");
  const time = (t) => new Date(t).toLocaleTimeString();
  return `<figure class="chart"><figcaption>${escapeHTML(title)}</figcaption>
<svg viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeHTML(title)}">
<line class="axis" x1="${pad.left}" y1="${height - pad.bottom}" x2="${width - pad.right}" y2="${height - pad.bottom}"/>
<line class="axis" x1="${pad.left}" y1="${pad.top}" x2="${pad.left}" y2="${height - pad.bottom}"/>
<text x="4" y="${pad.top + 8}">${escapeHTML(format(vmax))}</text><text x="4" y="${height - pad.bottom}">0</text>
<text x="${pad.left}" y="${height - 6}">${escapeHTML(time(t0))}</text>
<text x="${width - pad.right}" y="${height - 6}" text-anchor="end">${escapeHTML(time(t1))}</text>
${legend}${lines}</svg></figure>`;
}

/** `items`: [{label, value}] drawn as horizontal bars, longest first. */
export function barChart(items, { format = (v) => v.toFixed(2), title = "" } = {}) {
  const sorted = [...items].sort((a, b) => b.value - a.value).slice(0, 20);
  const max = Math.max(...sorted.map((i) => i.value), 1e-9);
  const row = 22;
  const width = 640;
  const height = Math.max(row * sorted.length + 8, 40);
  const bars = sorted.map((item, i) => {
    const w = (item.value / max) * (width - 260);
    return `<text x="4" y="${i * row + 15}">${escapeHTML(item.label.slice(0, 28))}</text>
<rect class="bar" x="190" y="${i * row + 4}" width="${Math.max(w, 1).toFixed(1)}" height="${row - 8}"><title>${escapeHTML(item.label)}: ${escapeHTML(format(item.value))}</title></rect>
<text x="${196 + w}" y="${i * row + 15}">${escapeHTML(format(item.value))}</text>`;
  }).join("");
  return `<figure class="chart bars"><figcaption>${escapeHTML(title)}</figcaption>
<svg viewBox="0 0 ${width} ${height}" style="height:${height}px" role="img" aria-label="${escapeHTML(title)}">${bars}</svg></figure>`;
}
