// The dashboard's pages. Each renders into `main` from the JSON API; hash routes carry their
// parameters (#/logs?model=gpt-4o&status=5xx), so every view can be linked and reloaded.

import { api, query } from './api.js';
import { budgetBar, sparkline, timeChart } from './charts.js';

export const RANGES = ['1h', '24h', '7d', '30d'];
const PAGE = 50;

// --- helpers ---------------------------------------------------------------------------------

// An HTML element: `attrs` sets attributes (`on*` functions become listeners), children are
// nodes or text.
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      node.addEventListener(key.slice(2), value);
    } else if (value === true) {
      node.setAttribute(key, '');
    } else {
      node.setAttribute(key, value);
    }
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const int = (n) => Number(n || 0).toLocaleString('en-US');
const usd = (micros) => {
  const dollars = Number(micros || 0) / 1e6;
  return `$${dollars >= 1 ? dollars.toFixed(2) : dollars.toFixed(6)}`;
};
const ms = (v) => (v === null || v === undefined ? '–' : `${v < 10 ? v.toFixed(2) : Math.round(v).toLocaleString('en-US')} ms`);
const pct = (r) => `${(Number(r || 0) * 100).toFixed(1)} %`;
const two = (n) => String(n).padStart(2, '0');

// A UTC time: `12:30`, `03-17 12:30` or in full.
function when(date, full = false, span = '24h') {
  const d = date instanceof Date ? date : new Date(date);
  const hm = `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}`;
  const md = `${two(d.getUTCMonth() + 1)}-${two(d.getUTCDate())}`;
  if (full) return `${d.getUTCFullYear()}-${md} ${hm}:${two(d.getUTCSeconds())} UTC`;
  if (span === '30d') return md;
  if (span === '7d') return `${md} ${hm}`;
  return hm;
}

function duration(seconds) {
  if (seconds % 86400 === 0) return `${seconds / 86400} d`;
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  return `${seconds / 60} min`;
}

function rangePicker(page, current, params) {
  return h('div', { class: 'segmented', role: 'group', 'aria-label': 'Range' },
    RANGES.map((range) => {
      const next = new URLSearchParams(params);
      next.set('range', range);
      return h('a', {
        href: `#/${page}?${next}`,
        class: range === current ? 'on' : null,
        'data-range': range,
        'aria-current': range === current ? 'true' : null,
      }, range);
    }));
}

function tile(name, label, value, text) {
  return h('div', { class: 'tile', 'data-stat': name },
    h('span', { class: 'tile-label' }, label),
    h('span', { class: 'tile-value', 'data-value': value }, text));
}

function notice(message, kind = 'error') {
  return h('p', { class: kind, role: kind === 'error' ? 'alert' : null }, message);
}

// Replaces the page's content with `nodes` (absent ones left out).
function fill(main, ...nodes) {
  main.replaceChildren(...nodes.flat().filter((n) => n !== null && n !== undefined && n !== false));
}

const sum = (values) => values.reduce((a, b) => a + (b || 0), 0);

// --- overview --------------------------------------------------------------------------------

export async function overview(main, params) {
  const range = RANGES.includes(params.get('range')) ? params.get('range') : '24h';
  const data = await api(`overview?range=${range}`);
  const t = data.total;
  const times = data.buckets.map((b) => new Date(b.start));
  const col = (name) => data.buckets.map((b) => b[name]);
  const label = (d, full) => when(d, full, range);
  const requests = timeChart({
    title: 'Requests', times, label, format: int, testid: 'chart-requests',
    series: [
      { name: 'requests', values: col('requests'), kind: 'area' },
      { name: 'errors', values: col('errors'), kind: 'line', tone: 'err' },
    ],
  });
  requests.dataset.totalRequests = sum(col('requests'));
  requests.dataset.totalErrors = sum(col('errors'));
  const tokens = timeChart({
    title: 'Tokens', times, label, format: int, testid: 'chart-tokens',
    series: [
      { name: 'input', values: col('input_tokens'), kind: 'area' },
      { name: 'output', values: col('output_tokens'), kind: 'area', tone: 'tone1' },
    ],
  });
  tokens.dataset.totalInput = sum(col('input_tokens'));
  tokens.dataset.totalOutput = sum(col('output_tokens'));
  const cost = timeChart({
    title: 'Cost (USD)', times, label, testid: 'chart-cost',
    format: (v) => `$${v >= 1 ? v.toFixed(2) : v.toPrecision(2)}`,
    series: [{ name: 'cost', values: col('cost_usd'), kind: 'area', tone: 'tone2' }],
  });
  cost.dataset.totalMicros = sum(col('cost_micros'));
  const errorRate = timeChart({
    title: 'Error rate', times, label, testid: 'chart-error-rate',
    format: (v) => `${(v * 100).toFixed(0)} %`,
    series: [{ name: 'error rate', values: data.buckets.map((b) => (b.requests ? b.error_rate : null)), kind: 'line', tone: 'err' }],
  });
  const latency = timeChart({
    title: 'Latency', times, label, format: ms, testid: 'chart-latency',
    series: [
      { name: 'p50', values: col('latency_p50_ms'), kind: 'line' },
      { name: 'p95', values: col('latency_p95_ms'), kind: 'line', tone: 'tone3' },
    ],
  });
  const ttft = timeChart({
    title: 'Time to first token', times, label, format: ms, testid: 'chart-ttft',
    series: [
      { name: 'p50', values: col('ttft_p50_ms'), kind: 'line' },
      { name: 'p95', values: col('ttft_p95_ms'), kind: 'line', tone: 'tone3' },
    ],
  });
  fill(main, 
    h('div', { class: 'toolbar' }, h('h1', {}, 'Overview'), rangePicker('overview', range, params)),
    h('p', { class: 'muted', 'data-testid': 'window', 'data-since': data.since, 'data-until': data.until },
      `${when(data.since, true)} to ${when(data.until, true)}, in buckets of ${duration(data.bucket_seconds)}. `
      + 'Percentiles are read from histograms (within 5 %).'),
    h('div', { class: 'tiles' },
      tile('requests', 'Requests', t.requests, int(t.requests)),
      tile('input_tokens', 'Tokens in', t.input_tokens, int(t.input_tokens)),
      tile('output_tokens', 'Tokens out', t.output_tokens, int(t.output_tokens)),
      tile('cost', 'Cost', t.cost_micros, usd(t.cost_micros)),
      tile('error_rate', 'Error rate', t.error_rate, pct(t.error_rate)),
      tile('latency_p50', 'Latency p50', t.latency_p50_ms, ms(t.latency_p50_ms)),
      tile('latency_p95', 'Latency p95', t.latency_p95_ms, ms(t.latency_p95_ms)),
      tile('ttft_p50', 'TTFT p50', t.ttft_p50_ms, ms(t.ttft_p50_ms)),
      tile('ttft_p95', 'TTFT p95', t.ttft_p95_ms, ms(t.ttft_p95_ms))),
    t.unpriced_requests ? notice(`${int(t.unpriced_requests)} requests used models without a price: their cost is not counted.`, 'muted') : null,
    h('div', { class: 'charts' }, requests, tokens, cost, errorRate, latency, ttft),
  );
}

// --- breakdowns ------------------------------------------------------------------------------

const COLUMNS = [
  ['group', 'Name', (r) => r.group],
  ['requests', 'Requests', (r) => int(r.requests)],
  ['errors', 'Errors', (r) => int(r.errors)],
  ['error_rate', 'Error rate', (r) => pct(r.error_rate)],
  ['input_tokens', 'Tokens in', (r) => int(r.input_tokens)],
  ['output_tokens', 'Tokens out', (r) => int(r.output_tokens)],
  ['cost_micros', 'Cost', (r) => usd(r.cost_micros)],
  ['latency_avg_ms', 'Avg latency', (r) => ms(r.latency_avg_ms)],
];

export async function breakdowns(main, params) {
  const by = ['key', 'model', 'provider'].includes(params.get('by')) ? params.get('by') : 'model';
  const range = RANGES.includes(params.get('range')) ? params.get('range') : '24h';
  const data = await api(`breakdown?by=${by}&range=${range}`);
  let sort = { column: 'requests', descending: true };
  const tbody = h('tbody');
  const headers = COLUMNS.map(([column, title]) => h('th', { scope: 'col', 'data-column': column },
    h('button', { type: 'button', class: 'sort', onclick: () => {
      sort = { column, descending: sort.column === column ? !sort.descending : column !== 'group' };
      draw();
    } }, title)));
  function draw() {
    const rows = [...data.rows].sort((a, b) => {
      const x = a[sort.column];
      const y = b[sort.column];
      const order = typeof x === 'string' ? x.localeCompare(y) : (x ?? -1) - (y ?? -1);
      return sort.descending ? -order : order;
    });
    headers.forEach((th) => {
      th.setAttribute('aria-sort', th.dataset.column === sort.column ? (sort.descending ? 'descending' : 'ascending') : 'none');
    });
    tbody.replaceChildren(...rows.map((row) => h('tr', { 'data-group': row.group },
      COLUMNS.map(([column, , show]) => {
        if (column === 'group' && by === 'key' && row.group !== '(none)') {
          return h('td', {}, h('a', { href: `#/logs${query({ key: row.group })}` }, row.group));
        }
        if (column === 'group' && by === 'model') {
          return h('td', {}, h('a', { href: `#/logs${query({ model: row.group })}` }, row.group));
        }
        return h('td', { class: column === 'group' ? null : 'num' }, show(row));
      }),
      h('td', {}, sparkline(row.series)))));
  }
  draw();
  const tabs = h('div', { class: 'segmented', role: 'group', 'aria-label': 'Group by' },
    ['key', 'model', 'provider'].map((name) => h('a', {
      href: `#/breakdowns?by=${name}&range=${range}`, class: name === by ? 'on' : null, 'data-by': name,
    }, `By ${name}`)));
  fill(main, 
    h('div', { class: 'toolbar' }, h('h1', {}, 'Breakdowns'), tabs, rangePicker('breakdowns', range, params)),
    h('p', { class: 'muted' }, `${when(data.since, true)} to ${when(data.until, true)}; the trend is requests per ${duration(data.bucket_seconds)}.`),
    data.rows.length === 0 ? notice('No requests in this range.', 'muted') : null,
    h('div', { class: 'card scroll' }, h('table', { class: 'grid-table', 'data-testid': 'breakdown' },
      h('thead', {}, h('tr', {}, headers, h('th', { scope: 'col' }, 'Trend'))), tbody)),
  );
}

// --- logs ------------------------------------------------------------------------------------

const STATUSES = ['', '2xx', '4xx', '5xx', '429', '500', '502', '503'];
const SINCE = [['', 'any time'], ['1h', 'last hour'], ['24h', 'last 24 h'], ['7d', 'last 7 days'], ['30d', 'last 30 days']];

export async function logs(main, params) {
  const filters = {
    key: params.get('key') || '',
    model: params.get('model') || '',
    status: params.get('status') || '',
    since: params.get('since') || '',
  };
  const offset = Math.max(0, Number(params.get('offset')) || 0);
  const data = await api(`events${query({ ...filters, limit: PAGE, offset })}`);
  const detail = h('section', { class: 'card detail', id: 'detail', hidden: true, 'aria-live': 'polite' });
  const go = (next) => { window.location.hash = `#/logs${query(next)}`; };
  const form = h('form', { class: 'filters', 'data-testid': 'filters', onsubmit: (event) => {
    event.preventDefault();
    const fields = new FormData(form);
    go({ key: fields.get('key').trim(), model: fields.get('model').trim(), status: fields.get('status'), since: fields.get('since') });
  } },
  h('label', {}, 'Key ', h('input', { name: 'key', value: filters.key, placeholder: 'aigk_…', size: 34 })),
  h('label', {}, 'Model ', h('input', { name: 'model', value: filters.model, placeholder: 'gpt-4o' })),
  h('label', {}, 'Status ', h('select', { name: 'status' }, STATUSES.map((s) => h('option', { value: s, selected: s === filters.status }, s || 'any')))),
  h('label', {}, 'Time ', h('select', { name: 'since' }, SINCE.map(([v, text]) => h('option', { value: v, selected: v === filters.since }, text)))),
  h('button', { type: 'submit' }, 'Filter'),
  h('a', { href: '#/logs', class: 'button secondary' }, 'Clear'));
  const rows = data.events.map((e) => h('tr', {
    class: 'clickable', tabindex: 0, 'data-event': e.id, 'data-status': e.status,
    onclick: () => showEvent(detail, e.id),
    onkeydown: (event) => { if (event.key === 'Enter') showEvent(detail, e.id); },
  },
  h('td', {}, when(e.time, true)),
  h('td', { class: 'mono' }, e.access_key || '–'),
  h('td', {}, `${e.provider}/${e.model}`),
  h('td', { class: e.status >= 400 ? 'num bad' : 'num' }, String(e.status)),
  h('td', { class: 'num' }, int(e.input_tokens)),
  h('td', { class: 'num' }, int(e.output_tokens)),
  h('td', { class: 'num' }, e.cost_micros === null ? 'unpriced' : usd(e.cost_micros)),
  h('td', { class: 'num' }, ms(e.latency_ms)),
  h('td', { class: 'num' }, String(e.attempts))));
  const pager = h('div', { class: 'pager' },
    h('button', { type: 'button', disabled: offset === 0, 'data-testid': 'prev', onclick: () => go({ ...filters, offset: Math.max(0, offset - PAGE) || '' }) }, '← Newer'),
    h('span', { class: 'muted' }, data.events.length ? `${int(offset + 1)}–${int(offset + data.events.length)}` : 'nothing'),
    h('button', { type: 'button', disabled: !data.has_more, 'data-testid': 'next', onclick: () => go({ ...filters, offset: offset + PAGE }) }, 'Older →'));
  fill(main, 
    h('div', { class: 'toolbar' }, h('h1', {}, 'Logs')),
    form,
    h('div', { class: 'card scroll' }, h('table', { class: 'grid-table', 'data-testid': 'logs', 'data-count': data.events.length },
      h('thead', {}, h('tr', {}, ['Time', 'Key', 'Provider/model', 'Status', 'In', 'Out', 'Cost', 'Latency', 'Attempts'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows))),
    data.events.length === 0 ? notice('No requests match these filters.', 'muted') : null,
    pager,
    detail,
  );
}

const OUTCOMES = { success: 'answered', status: 'refused', timeout: 'timed out', unreachable: 'unreachable', no_key: 'no key' };

async function showEvent(panel, id) {
  panel.hidden = false;
  panel.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  try {
    const { event: e } = await api(`events/${id}`);
    const attempts = e.tried || [];
    panel.replaceChildren(
      h('div', { class: 'toolbar' },
        h('h2', {}, `Request ${e.request_id}`),
        h('button', { type: 'button', class: 'secondary', onclick: () => { panel.hidden = true; } }, 'Close')),
      h('dl', { class: 'facts' },
        h('dt', {}, 'Time'), h('dd', {}, when(e.time, true)),
        h('dt', {}, 'Access key'), h('dd', { class: 'mono' }, e.access_key || '–'),
        h('dt', {}, 'Answered by'), h('dd', {}, `${e.provider}/${e.model}`),
        h('dt', {}, 'Returned'), h('dd', { 'data-testid': 'returned' }, `${e.status}${e.error ? ` — ${e.error}` : ''}`),
        h('dt', {}, 'Tokens'), h('dd', {}, `${int(e.input_tokens)} in, ${int(e.output_tokens)} out (${e.usage_source})`),
        h('dt', {}, 'Cost'), h('dd', {}, e.cost_micros === null ? 'unpriced' : usd(e.cost_micros)),
        h('dt', {}, 'Latency'), h('dd', {}, `${ms(e.latency_ms)} (first token ${ms(e.time_to_first_token_ms)})`)),
      h('h3', {}, `Attempts (${attempts.length})`),
      attempts.length === 0
        ? notice('This row has no attempt details (written before the ledger kept them).', 'muted')
        : h('table', { class: 'grid-table', 'data-testid': 'attempts' },
          h('thead', {}, h('tr', {}, ['#', 'Provider', 'Model', 'Key', 'Outcome', 'Status', 'Why', 'First byte', 'Time'].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', {}, attempts.map((a, i) => h('tr', { 'data-outcome': a.outcome },
            h('td', { class: 'num' }, String(i + 1)),
            h('td', {}, a.provider),
            h('td', {}, a.model),
            h('td', { class: 'mono' }, a.api_key || '–'),
            h('td', { class: a.outcome === 'success' ? 'ok' : 'bad' }, OUTCOMES[a.outcome] || a.outcome),
            h('td', { class: 'num' }, a.status ? String(a.status) : '–'),
            h('td', {}, a.error || ''),
            h('td', { class: 'num' }, ms(a.time_to_first_byte_ms)),
            h('td', { class: 'num' }, ms(a.duration_ms)))))),
    );
    panel.scrollIntoView({ block: 'nearest' });
  } catch (err) {
    panel.replaceChildren(notice(err.message));
    if (err.status === 401) throw err;
  }
}

// --- keys ------------------------------------------------------------------------------------

const BUDGETS = { requests: 'Requests', tokens: 'Tokens', daily_spend: 'Spend today', monthly_spend: 'Spend this month' };

function budget(b) {
  const money = b.kind.endsWith('_spend');
  const show = money ? usd : int;
  return h('div', { class: 'budget', 'data-kind': b.kind, 'data-used': b.used, 'data-limit': b.limit },
    h('span', { class: 'budget-label' }, `${BUDGETS[b.kind] || b.kind}: ${show(b.used)} / ${show(b.limit)}`,
      money ? '' : h('span', { class: 'muted' }, ` (${b.window})`)),
    budgetBar(b.used, b.limit));
}

export async function keys(main, params, { created } = {}) {
  const data = await api('keys');
  const status = h('div', { 'aria-live': 'polite' });
  const reload = (extra) => keys(main, params, extra);
  const field = (name, label, placeholder, help) => h('label', {},
    h('span', {}, label), h('input', { name, placeholder, title: help }));
  const form = h('form', { class: 'card form', 'data-testid': 'new-key', onsubmit: async (event) => {
    event.preventDefault();
    const fields = Object.fromEntries(new FormData(form).entries());
    const body = {};
    for (const [name, value] of Object.entries(fields)) {
      if (value.trim() !== '' || name === 'description') body[name] = value.trim();
    }
    try {
      const key = await api('keys', { method: 'POST', body });
      await reload({ created: key });
    } catch (err) {
      status.replaceChildren(notice(err.message));
      if (err.status === 401) throw err;
    }
  } },
  h('h2', {}, 'New key'),
  h('div', { class: 'form-grid' },
    field('description', 'Description', 'ci runner'),
    field('expires_in', 'Expires in', '90d', 'a number and s, m, h, d or w'),
    field('allowed_providers', 'Allowed providers', 'openai, anthropic'),
    field('allowed_models', 'Allowed models', 'gpt-4o*, claude-*'),
    field('request_limit', 'Request limit', '100/min'),
    field('token_limit', 'Token limit', '50000/day'),
    field('daily_spend_limit', 'Daily spend (USD)', '5.00'),
    field('monthly_spend_limit', 'Monthly spend (USD)', '50.00'),
    field('metadata', 'Metadata (JSON object)', '{"team": "search"}')),
  h('button', { type: 'submit' }, 'Create key'));
  const once = created ? h('div', { class: 'card token-once', role: 'status' },
    h('h2', {}, `Key ${created.id} created`),
    h('p', {}, 'Its token is shown this once: copy it now. Keygate keeps only a hash of it.'),
    h('code', { class: 'token', 'data-testid': 'new-token' }, created.token),
    h('button', { type: 'button', class: 'secondary', onclick: async (event) => {
      try {
        await navigator.clipboard.writeText(created.token);
        event.target.textContent = 'Copied';
      } catch {
        event.target.textContent = 'Select the token and copy it';
      }
    } }, 'Copy')) : null;
  const action = async (run) => {
    try {
      await run();
      await reload();
    } catch (err) {
      status.replaceChildren(notice(err.message));
      if (err.status === 401) throw err;
    }
  };
  const rows = data.keys.map((k) => {
    const del = h('button', { type: 'button', class: 'danger', 'data-action': 'delete', onclick: () => {
      if (del.dataset.armed) {
        action(() => api(`keys/${k.id}`, { method: 'DELETE' }));
      } else {
        del.dataset.armed = '1';
        del.textContent = 'Confirm delete';
      }
    } }, 'Delete');
    return h('tr', { 'data-key': k.id, 'data-disabled': String(k.disabled) },
      h('td', {}, h('div', { class: 'mono' }, k.display_name), h('div', { class: 'muted mono small' }, k.id), k.description ? h('div', {}, k.description) : null),
      h('td', {}, k.disabled ? h('span', { class: 'pill off' }, 'disabled') : h('span', { class: 'pill on' }, 'active'),
        k.expires_at ? h('div', { class: 'muted small' }, `expires ${when(k.expires_at, true)}`) : null),
      h('td', {}, k.last_used ? when(k.last_used, true) : h('span', { class: 'muted' }, 'never')),
      h('td', {}, k.usage.budgets.length ? k.usage.budgets.map(budget) : h('span', { class: 'muted' }, 'no limits')),
      h('td', { class: 'num' }, `${int(k.usage.today.requests)} req`, h('br'), usd(k.usage.today.cost_micros)),
      h('td', { class: 'actions' },
        h('button', { type: 'button', class: 'secondary', 'data-action': k.disabled ? 'enable' : 'disable',
          onclick: () => action(() => api(`keys/${k.id}`, { method: 'PATCH', body: { disabled: !k.disabled } })) },
        k.disabled ? 'Enable' : 'Disable'),
        del));
  });
  fill(main, 
    h('div', { class: 'toolbar' }, h('h1', {}, 'Access keys')),
    status,
    once,
    h('div', { class: 'card scroll' }, h('table', { class: 'grid-table', 'data-testid': 'keys' },
      h('thead', {}, h('tr', {}, ['Key', 'State', 'Last used', 'Limits (used / limit)', 'Today', ''].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows))),
    data.keys.length === 0 ? notice('No access keys yet.', 'muted') : null,
    data.ledger ? null : notice('The usage ledger is off: usage shows as 0.', 'muted'),
    form,
  );
}

// --- policy ----------------------------------------------------------------------------------

export async function policy(main) {
  const data = await api('policy');
  fill(main, 
    h('div', { class: 'toolbar' }, h('h1', {}, 'Policy')),
    h('p', {}, h('span', { class: 'mono' }, data.path), h('span', { class: 'muted' }, ` — serving since ${when(data.loaded_at, true)}`)),
    data.last_error
      ? h('div', { class: 'card error-card', 'data-testid': 'last-error' },
        h('h2', {}, `Last reload error (${when(data.last_error.time, true)})`),
        h('pre', {}, data.last_error.message))
      : h('p', { class: 'muted', 'data-testid': 'last-error' }, 'No reload has failed since the gateway started.'),
    h('h2', {}, 'Reloads'),
    h('div', { class: 'card scroll' }, h('table', { class: 'grid-table', 'data-testid': 'reloads' },
      h('thead', {}, h('tr', {}, ['Time', 'Result', 'Message'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, data.reloads.map((r) => h('tr', { 'data-ok': String(r.ok) },
        h('td', {}, when(r.time, true)),
        h('td', { class: r.ok ? 'ok' : 'bad' }, r.ok ? 'ok' : 'error'),
        h('td', {}, h('pre', { class: 'inline' }, r.message))))))),
    h('h2', {}, 'Serving policy'),
    h('pre', { class: 'card code', 'data-testid': 'policy-text' }, data.text),
  );
}
