// Charts drawn as SVG: time-series line and area charts, sparklines and budget bars. No
// library: a few shapes, computed here.

const SVG = 'http://www.w3.org/2000/svg';

export function el(name, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) node.append(child);
  return node;
}

// A "nice" top for an axis holding `max`: 1, 2 or 5 times a power of ten.
function niceMax(max) {
  if (!(max > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(max));
  for (const step of [1, 2, 5, 10]) {
    if (step * power >= max) return step * power;
  }
  return 10 * power;
}

// A line/area chart of `series` ([{name, values, kind: 'area'|'line', tone}]) over `times`
// (Date objects, one per bucket). `format` writes y values. `labels` writes x ticks.
export function timeChart({ title, times, series, format, label, testid }) {
  const width = 640;
  const height = 200;
  const pad = { left: 64, right: 12, top: 12, bottom: 26 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const all = series.flatMap((s) => s.values.filter((v) => v !== null && v !== undefined));
  const top = niceMax(Math.max(0, ...all));
  const n = times.length;
  const x = (i) => pad.left + (n <= 1 ? plotW / 2 : (i * plotW) / (n - 1));
  const y = (v) => pad.top + plotH - (v / top) * plotH;
  const svg = el('svg', {
    viewBox: `0 0 ${width} ${height}`,
    class: 'chart',
    role: 'img',
    'aria-label': title,
  });
  if (testid) svg.setAttribute('data-testid', testid);
  // Grid and y labels.
  for (let i = 0; i <= 4; i += 1) {
    const value = (top * i) / 4;
    const gy = y(value);
    svg.append(el('line', { x1: pad.left, x2: width - pad.right, y1: gy, y2: gy, class: 'grid' }));
    const text = el('text', { x: pad.left - 6, y: gy + 4, class: 'axis', 'text-anchor': 'end' });
    text.textContent = format(value);
    svg.append(text);
  }
  // X labels: about five.
  const every = Math.max(1, Math.ceil(n / 5));
  for (let i = 0; i < n; i += every) {
    const text = el('text', { x: x(i), y: height - 6, class: 'axis', 'text-anchor': 'middle' });
    text.textContent = label(times[i]);
    svg.append(text);
  }
  series.forEach((s, index) => {
    const tone = s.tone || `tone${index}`;
    const points = [];
    s.values.forEach((v, i) => {
      if (v !== null && v !== undefined) points.push([x(i), y(v)]);
    });
    if (points.length === 0) return;
    const line = points.map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`).join(' ');
    if (s.kind === 'area') {
      const base = y(0).toFixed(1);
      const first = points[0][0].toFixed(1);
      const last = points[points.length - 1][0].toFixed(1);
      svg.append(el('polygon', { points: `${first},${base} ${line} ${last},${base}`, class: `area ${tone}` }));
    }
    svg.append(el('polyline', { points: line, class: `line ${tone}` }));
    // A value with no neighbour draws no line: a dot shows it.
    s.values.forEach((v, i) => {
      const alone = (j) => j < 0 || j >= n || s.values[j] === null || s.values[j] === undefined;
      if (v !== null && v !== undefined && alone(i - 1) && alone(i + 1)) {
        svg.append(el('circle', { cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 3, class: `dot ${tone}` }));
      }
    });
  });
  // One hover target per bucket with the values as a native tooltip.
  const slot = n > 1 ? plotW / (n - 1) : plotW;
  times.forEach((time, i) => {
    const rect = el('rect', {
      x: Math.max(pad.left, x(i) - slot / 2),
      y: pad.top,
      width: Math.max(1, Math.min(slot, width - pad.right - x(i) + slot / 2)),
      height: plotH,
      class: 'hover',
    });
    const tip = el('title');
    tip.textContent = [label(time, true)]
      .concat(series.map((s) => `${s.name}: ${s.values[i] === null ? '–' : format(s.values[i])}`))
      .join('\n');
    rect.append(tip);
    svg.append(rect);
  });
  const figure = document.createElement('figure');
  figure.className = 'card chart-card';
  const caption = document.createElement('figcaption');
  caption.textContent = title;
  const legend = document.createElement('span');
  legend.className = 'legend';
  series.forEach((s, index) => {
    const key = document.createElement('span');
    key.className = `key ${s.tone || `tone${index}`}`;
    key.textContent = s.name;
    legend.append(key);
  });
  caption.append(legend);
  figure.append(caption, svg);
  return figure;
}

// A small line of `values` (no axes).
export function sparkline(values) {
  const width = 120;
  const height = 28;
  const top = Math.max(1, ...values);
  const n = values.length;
  const points = values
    .map((v, i) => {
      const px = n <= 1 ? width / 2 : (i * (width - 2)) / (n - 1) + 1;
      const py = height - 2 - (v / top) * (height - 4);
      return `${px.toFixed(1)},${py.toFixed(1)}`;
    })
    .join(' ');
  const svg = el('svg', { viewBox: `0 0 ${width} ${height}`, class: 'spark', role: 'img' });
  svg.setAttribute('aria-label', `${values.reduce((a, b) => a + b, 0)} requests`);
  svg.append(el('polyline', { points, class: 'line tone0' }));
  return svg;
}

// A budget bar: `used` of `limit`, red from 90 %.
export function budgetBar(used, limit) {
  const width = 160;
  const height = 10;
  const share = limit > 0 ? Math.min(1, used / limit) : 0;
  const svg = el('svg', { viewBox: `0 0 ${width} ${height}`, class: 'bar', role: 'img' });
  svg.setAttribute('aria-label', `${Math.round(share * 100)} % used`);
  svg.append(el('rect', { x: 0, y: 0, width, height, rx: 3, class: 'bar-bg' }));
  svg.append(el('rect', {
    x: 0,
    y: 0,
    width: (share * width).toFixed(1),
    height,
    rx: 3,
    class: share >= 0.9 ? 'bar-fill hot' : 'bar-fill',
  }));
  return svg;
}
