// Line plots on a <canvas> for the lara-robot pages (no libraries: robots' networks are often offline).
"use strict";
const PLOT_COLORS = ["#58a6ff", "#3fb950", "#d29922", "#f778ba", "#a371f7", "#ff7b72", "#79c0ff", "#e3b341"];

function plotFmt(v, d) { return (v === null || v === undefined || !Number.isFinite(v)) ? "-" : Number(v).toFixed(d); }

// Draw `series` ([{values, color, dash, width}], each value y at x[i], null for none) on `canvas`.
// opts: {xmin, xmax, legend: [{label, color, dash}], marks: [{x, color}], empty: "text", xunit: "s"}.
// Sets canvas.dataset.points to the number of finite values drawn; returns the x/y mapping or null.
function plotSeries(canvas, x, series, opts) {
  opts = opts || {};
  const ctx = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  let lo = Infinity, hi = -Infinity, points = 0;
  for (const s of series) {
    for (const v of s.values) {
      if (v === null || v === undefined || !Number.isFinite(v)) continue;
      points++; if (v < lo) lo = v; if (v > hi) hi = v;
    }
  }
  canvas.dataset.points = String(points);
  ctx.font = "10px sans-serif";
  if (!points || !x.length) {
    ctx.fillStyle = "#9aa4b2"; ctx.fillText(opts.empty || "no data", 10, 20); return null;
  }
  if (hi - lo < 1e-6) { lo -= 0.5; hi += 0.5; }
  const x0 = opts.xmin !== undefined ? opts.xmin : x[0];
  const x1 = opts.xmax !== undefined ? opts.xmax : x[x.length - 1];
  const pad = 40, right = opts.legend ? 150 : 8;
  const X = v => pad + (w - pad - right) * (x1 > x0 ? (v - x0) / (x1 - x0) : 0.5);
  const Y = v => 6 + (h - 22) * (1 - (v - lo) / (hi - lo));
  ctx.fillStyle = "#9aa4b2";
  ctx.fillText(hi.toFixed(2), 2, 12); ctx.fillText(lo.toFixed(2), 2, h - 16);
  ctx.fillText(plotFmt(x0, 1) + (opts.xunit || ""), pad, h - 3);
  const endLabel = plotFmt(x1, 1) + (opts.xunit || "");
  ctx.fillText(endLabel, w - right - ctx.measureText(endLabel).width, h - 3);
  for (const m of opts.marks || []) {
    ctx.strokeStyle = m.color || "#ff7b72"; ctx.lineWidth = 1; ctx.setLineDash([2, 3]);
    ctx.beginPath(); ctx.moveTo(X(m.x), 4); ctx.lineTo(X(m.x), h - 16); ctx.stroke();
  }
  for (const s of series) {
    ctx.strokeStyle = s.color; ctx.lineWidth = s.width || 1.4; ctx.setLineDash(s.dash || []);
    ctx.beginPath();
    let pen = false;
    s.values.forEach((v, i) => {
      if (v === null || v === undefined || !Number.isFinite(v)) { pen = false; return; }
      if (pen) ctx.lineTo(X(x[i]), Y(v)); else ctx.moveTo(X(x[i]), Y(v));
      pen = true;
    });
    ctx.stroke();
  }
  ctx.setLineDash([]);
  (opts.legend || []).forEach((l, k) => {
    const y = 10 + 11 * k, x2 = w - right + 6;
    ctx.strokeStyle = l.color; ctx.setLineDash(l.dash || []); ctx.lineWidth = 1.4;
    ctx.beginPath(); ctx.moveTo(x2, y - 3); ctx.lineTo(x2 + 14, y - 3); ctx.stroke(); ctx.setLineDash([]);
    ctx.fillStyle = l.color; ctx.fillText(l.label, x2 + 18, y);
  });
  return {X: X, Y: Y};
}

// One canvas per joint group under `root` (reused across redraws): returns the canvas of `name`.
function groupCanvas(root, name, title, height) {
  let canvas = root.querySelector('canvas[data-group="' + name + '"]');
  if (!canvas) {
    const t = document.createElement("div"); t.className = "group-title"; t.dataset.groupTitle = name;
    canvas = document.createElement("canvas"); canvas.width = 640; canvas.height = height || 110;
    canvas.dataset.group = name;
    root.appendChild(t); root.appendChild(canvas);
  }
  root.querySelector('[data-group-title="' + name + '"]').textContent = title;
  return canvas;
}

// Series of one joint group: per joint one colour; `kinds` [{key, dash, width}] are the line styles.
function groupSeries(group, kinds) {
  const series = [], legend = [];
  group.joints.forEach((joint, j) => {
    const color = PLOT_COLORS[j % PLOT_COLORS.length];
    legend.push({label: joint, color: color});
    for (const k of kinds) {
      if (group[k.key]) series.push({values: group[k.key][j], color: color, dash: k.dash, width: k.width});
    }
  });
  return {series: series, legend: legend};
}
