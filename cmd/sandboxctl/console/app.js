// The console's page. It talks only to sandboxctl's local endpoints
// (/api/...), with the per-run token; sandboxctl signs every request to the
// consortium. Everything shown is put in the page as text (textContent),
// never as HTML, so nothing a node or another user wrote can run here.
'use strict';

const token = (() => {
  const m = location.hash.match(/token=([0-9a-f]{64})/);
  if (m) {
    sessionStorage.setItem('console-token', m[1]);
    history.replaceState(null, '', location.pathname);
  }
  return sessionStorage.getItem('console-token') || '';
})();

async function api(method, path, body) {
  const opts = { method, headers: { 'X-Console-Token': token } };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  const text = await r.text();
  let data = text;
  try { data = JSON.parse(text); } catch (e) { /* not JSON */ }
  if (!r.ok) throw new Error((data && data.error) || (r.status + ' ' + r.statusText));
  return data;
}

// el builds an element; children are nodes or strings (as text).
function el(tag, attrs, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') n.className = v;
    else if (k.startsWith('on')) n.addEventListener(k.slice(2), v);
    else n.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    n.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return n;
}

const SVG = 'http://www.w3.org/2000/svg';
function sv(tag, attrs, ...children) {
  const n = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, v);
  for (const c of children) n.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return n;
}

function setStatus(msg, kind) {
  const s = document.getElementById('status');
  s.textContent = msg || '';
  s.className = 'status ' + (kind || '');
}

function fmtTime(s) {
  if (!s) return '';
  const d = new Date(s);
  return isNaN(d) ? s : d.toISOString().replace('T', ' ').slice(0, 19) + ' UTC';
}
function fmtEps(x) { return (Math.round(x * 1000) / 1000).toString(); }
function short(addr) { return addr ? addr.slice(0, 10) + '…' : ''; }
function who(name, org, addr) {
  const label = name ? (org ? name + ' (' + org + ')' : name) : (org || '');
  return el('span', { title: addr }, label ? label + ' ' : '', el('code', { class: 'muted' }, short(addr)));
}
// datasetsOf names the datasets a job reads (a join's, joined by ⋈).
function datasetsOf(j) { return (j.datasets && j.datasets.length ? j.datasets : [j.dataset]).join(' ⋈ '); }
function pill(status) { return el('span', { class: 'pill ' + status }, status); }

function table(headers, rows, caption) {
  return el('div', { class: 'scroll' }, el('table', {},
    caption ? el('caption', { class: 'muted' }, caption) : null,
    el('thead', {}, el('tr', {}, headers.map(h => el('th', { scope: 'col', class: h.num ? 'num' : null }, h.label || h)))),
    el('tbody', {}, rows.length ? rows.map(r => el('tr', {}, r.map((c, i) => el('td', { class: headers[i].num ? 'num' : null }, c))))
      : el('tr', {}, el('td', { colspan: headers.length, class: 'muted' }, 'none')))));
}

// barChart draws horizontal bars with a labelled axis. With max per item
// (a budget), each bar is a share of its own maximum, so one large spender
// does not flatten the others; the axis is then 0-100 %.
function barChart(title, items, opts) {
  opts = opts || {};
  const narrow = window.innerWidth < 640; // a phone: fewer units, so the text stays legible
  const W = narrow ? 400 : 720, left = narrow ? 120 : 230, right = narrow ? 80 : 90, rowH = 26, top = 24, bottom = 34;
  const H = top + bottom + Math.max(items.length, 1) * rowH;
  const pct = items.some(i => i.max);
  let scaleMax = pct ? 1 : Math.max(1, ...items.map(i => i.value));
  // A readable axis: 4 ticks at round values.
  const step = pct ? 0.25 : Math.max(1, niceStep(scaleMax / 4));
  if (!pct) scaleMax = Math.ceil(scaleMax / step) * step;
  const x = v => left + (W - left - right) * Math.min(v, scaleMax) / scaleMax;
  const svg = sv('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title });
  svg.append(sv('title', {}, title));
  for (let t = 0; t <= scaleMax + 1e-9; t += step) {
    svg.append(sv('line', { class: 'gridline', x1: x(t), x2: x(t), y1: top - 4, y2: H - bottom }));
    svg.append(sv('text', { x: x(t), y: H - bottom + 16, 'text-anchor': 'middle' }, pct ? Math.round(t * 100) + '%' : fmtEps(t)));
  }
  svg.append(sv('line', { class: 'axis', x1: left, x2: left, y1: top - 4, y2: H - bottom }));
  svg.append(sv('line', { class: 'axis', x1: left, x2: W - right, y1: H - bottom, y2: H - bottom }));
  svg.append(sv('text', { x: (left + W - right) / 2, y: H - 4, 'text-anchor': 'middle', fill: '#57606a' }, opts.axis || (pct ? 'share of budget used' : 'count')));
  items.forEach((it, i) => {
    const y = top + i * rowH;
    const v = it.max ? it.value / it.max : it.value;
    const color = it.max ? (v >= 1 ? '#a40e26' : v >= 0.8 ? '#bf8700' : '#0b5cad') : (it.color || '#0b5cad');
    svg.append(sv('text', { x: left - 8, y: y + 15, 'text-anchor': 'end' }, it.label.length > (narrow ? 18 : 34) ? it.label.slice(0, narrow ? 17 : 33) + '…' : it.label));
    svg.append(sv('rect', { x: left, y: y + 3, width: Math.max(x(v) - left, v > 0 ? 2 : 0), height: rowH - 8, fill: color, rx: 2 }));
    svg.append(sv('text', { x: x(v) + 6, y: y + 15 }, it.note || String(it.value)));
  });
  if (!items.length) svg.append(sv('text', { x: left + 10, y: top + 15, fill: '#57606a' }, 'nothing yet'));
  return svg;
}
function niceStep(raw) {
  const p = Math.pow(10, Math.floor(Math.log10(raw || 1)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

const STATUS_COLORS = { pending: '#bf8700', authorised: '#2da44e', running: '#2da44e', completed: '#116329', rejected: '#a40e26', failed: '#cf222e' };
function statusChart(jobs, title) {
  const counts = {};
  for (const j of jobs) counts[j.status] = (counts[j.status] || 0) + 1;
  const order = ['pending', 'authorised', 'running', 'completed', 'failed', 'rejected'];
  const items = order.filter(s => counts[s]).map(s => ({ label: s, value: counts[s], color: STATUS_COLORS[s] }));
  return barChart(title, items, { axis: 'jobs' });
}

let me = null;
let current = null;
let timer = null;
const shown = {}; // section -> last rendered JSON, to keep forms intact

// replace renders a section only when its data changed.
function replace(id, data, render) {
  const key = JSON.stringify(data);
  if (shown[id] === key) return;
  shown[id] = key;
  const box = document.getElementById(id);
  if (box) box.replaceChildren(...[].concat(render(data)));
}

async function start() {
  if (!token) {
    setStatus('This page needs the URL that "sandboxctl console" printed (it carries a one-time token).', 'bad');
    return;
  }
  try {
    me = await api('GET', '/api/me');
  } catch (e) {
    setStatus(e.message, 'bad');
    return;
  }
  const a = me.account;
  document.getElementById('who').replaceChildren(a.name || 'account', a.org ? ' · ' + a.org : '', ' · ', el('code', {}, a.address), ' · ', me.server);
  const views = (a.roles || []).filter(r => VIEWS[r]);
  const nav = document.getElementById('roles');
  for (const r of views) {
    nav.append(el('button', { type: 'button', 'data-role': r, onclick: () => show(r) }, VIEWS[r].title));
  }
  if (!views.length) {
    setStatus('This account has no role the console has a view for (roles: ' + (a.roles || []).join(', ') + ').', 'bad');
    return;
  }
  show(views[0]);
}

function show(role) {
  current = role;
  for (const b of document.querySelectorAll('#roles button')) b.setAttribute('aria-current', b.dataset.role === role ? 'page' : 'false');
  for (const k of Object.keys(shown)) delete shown[k];
  setStatus('');
  const view = document.getElementById('view');
  view.replaceChildren(VIEWS[role].layout());
  clearInterval(timer);
  const tick = () => VIEWS[role].refresh().catch(e => setStatus(e.message, 'bad'));
  tick();
  timer = setInterval(() => { if (current === role) tick(); }, 2000);
}

function card(title, id, ...extra) {
  return el('section', { class: 'card', 'aria-labelledby': id + '-h' }, el('h2', { id: id + '-h' }, title), ...extra, id ? el('div', { id }) : null);
}

// ---- agency ----

async function agencyData() {
  const [ds, pol, jobs, budgets] = await Promise.all([api('GET', '/api/datasets'), api('GET', '/api/policies'), api('GET', '/api/jobs'), api('GET', '/api/budgets')]);
  const a = me.account;
  const mine = ds.datasets.filter(d => d.owner === a.address || (a.org && d.org === a.org));
  const names = new Set(mine.map(d => d.name));
  const touches = j => (j.datasets && j.datasets.length ? j.datasets : [j.dataset]).some(d => names.has(d));
  return { mine, policies: pol.policies.filter(p => names.has(p.dataset)), jobs: jobs.jobs.filter(touches), budgets: budgets.budgets || [] };
}

// holderOf is whose budget a job draws on: the requester's organisation,
// or the account itself when it has none (policies/budget.go).
function holderOf(j) { return j.requester_org ? 'org:' + j.requester_org : 'account:' + j.requester; }

// budgetLines are the budgets, as the consortium's state keeps them, that
// a job would draw on: its requester's on each population its datasets
// belong to.
function budgetLines(j, budgets) {
  const ds = j.datasets && j.datasets.length ? j.datasets : [j.dataset];
  return budgets.filter(b => b.holder === holderOf(j) && b.datasets.some(d => ds.includes(d)));
}

const VIEWS = {
  agency: {
    title: 'Agency',
    layout: () => el('div', {},
      card('Jobs waiting for your approval', 'pending'),
      el('div', { class: 'grid' }, card('Your datasets', 'datasets'), card('Jobs on your datasets', 'agency-chart')),
      card('Your policies', 'policies'),
      card('Who used each dataset', 'usage')),
    refresh: async () => {
      const d = await agencyData();
      const pols = Object.fromEntries(d.policies.map(p => [p.id, p]));
      replace('pending', d.jobs.filter(j => j.status === 'pending').map(j => ({ j, p: pols[j.policy], lines: budgetLines(j, d.budgets) })), rows =>
        rows.length ? rows.map(({ j, p, lines }) => pendingJob(j, p, lines)) : el('p', { class: 'muted' }, 'No job is waiting for your approval.'));
      replace('datasets', d.mine, mine => table(['dataset', { label: 'rows', num: true }, 'columns (class)', 'sha256'],
        mine.map(x => [x.name, x.rows, x.schema.columns.map(c => c.name + ' (' + c.class + ')').join(', '), el('code', { title: x.sha256 }, x.sha256.slice(0, 16) + '…')])));
      replace('agency-chart', d.jobs.map(j => j.status), () => statusChart(d.jobs, 'jobs on your datasets by status'));
      replace('policies', d.policies, ps => policyTable(ps));
      replace('usage', d.jobs.filter(j => j.status !== 'pending'), used => d.mine.map(x => el('div', {},
        el('h3', {}, x.name),
        table(['job', 'when', 'requester', 'purpose', 'mode', 'status', { label: 'ε', num: true }, 'approved by'],
          used.filter(j => (j.datasets && j.datasets.length ? j.datasets : [j.dataset]).includes(x.name)).map(j => [j.job, fmtTime(j.submitted), who(j.requester_name, j.requester_org, j.requester), j.purpose, j.mode, pill(j.status),
            fmtEps(j.epsilon), (j.approver_names || []).join(', ')])))));
    },
  },
  auditor: {
    title: 'Auditor',
    layout: () => el('div', {},
      card('Verification of the whole ledger', 'verify', verifyControls()),
      el('div', { class: 'grid' }, card('Prove an entry', 'proof', proofControls()), card('Latest signed checkpoint', 'checkpoint')),
      card('Data flows of join jobs', 'flows', el('p', { class: 'muted' }, 'Which columns of which dataset moved from which node to the node that runs each join, with the digest of what moved (job.flow entries on the ledger; the verification checks them against each job\'s plan). Tab moves through the shipments.')),
      card('Checkpoints verified in this session', 'history', el('p', { class: 'muted' }, 'The ledger keeps no history of signed checkpoints (a node signs its latest when asked), so this lists the checkpoints this console verified since it started. sandboxctl keeps the last one it verified against trusted keys (--state) and checks, next time, that the ledger only grew from it. The report below shows the Merkle root after every block.')),
      el('section', { class: 'card', 'aria-labelledby': 'report-h' }, el('h2', { id: 'report-h' }, 'Audit report'),
        el('p', { class: 'muted', id: 'report-note' }, 'Run a verification: its report (accounts, datasets, policies, budgets, timeline, refusals, data flows of joins, the log\'s history block by block) appears here.'),
        el('div', { id: 'report' }))),
    refresh: async () => {
      const [v, cp, jobs] = await Promise.all([api('GET', '/api/verify'), api('GET', '/api/checkpoint'), api('GET', '/api/jobs')]);
      replace('checkpoint', cp, c => [el('p', {}, 'size ' + c.size + ', root ', el('code', {}, c.root)), el('pre', { class: 'mono query' }, c.note)]);
      const joins = jobs.jobs.filter(j => (j.datasets || []).length > 1);
      replace('flows', [joins, window.innerWidth < 640], () => joins.length ? joins.map(flowView) : el('p', { class: 'muted' }, 'No join job on the ledger yet.'));
      renderVerify(v);
    },
  },
  enterprise: {
    title: 'Enterprise',
    layout: () => el('div', {},
      card('Submit a job', 'submit-msg', submitForm()),
      card('Your jobs', 'jobs'),
      el('section', { class: 'card', 'aria-labelledby': 'result-h' }, el('h2', { id: 'result-h', tabindex: '-1' }, 'Result'), el('div', { id: 'result' }, el('p', { class: 'muted' }, 'Choose "Show result" on a completed job.'))),
      el('div', { class: 'grid' }, card('Budget used', 'budget'), card('Your jobs by status', 'ent-chart')),
      card('Catalogue', 'catalogue')),
    refresh: async () => {
      const [ds, pol, jobs, budgets] = await Promise.all([api('GET', '/api/datasets'), api('GET', '/api/policies'), api('GET', '/api/jobs'), api('GET', '/api/budgets')]);
      const mine = jobs.jobs.filter(j => j.requester === me.account.address);
      replace('jobs', mine, js => table(['job', 'submitted', 'dataset', 'purpose', 'mode', 'status', { label: 'ε', num: true }, 'reason', ''],
        js.slice().reverse().map(j => [j.job, fmtTime(j.submitted), datasetsOf(j), j.purpose, j.mode, pill(j.status), fmtEps(j.epsilon), j.reason || '',
          j.status === 'completed' ? el('button', { type: 'button', class: 'secondary', onclick: () => showResult(j.job, j.mode), 'aria-label': 'Show result of ' + j.job }, 'Show result') : ''])));
      const active = pol.policies.filter(p => !p.revoked);
      // The budgets as the consortium's state keeps them: one per
      // population of data subjects (datasets of the same people share
      // it), drawn on by every account of the organisation.
      const own = (budgets.budgets || []).filter(b => b.holder === budgets.holder);
      replace('budget', own, lines => [barChart('epsilon used of each budget', lines.map(b => (
        { label: b.datasets.join(', '), value: b.spent, max: b.budget, note: fmtEps(b.spent) + ' of ' + fmtEps(b.budget) + ' ε' })), { axis: 'share of the budget used (ε), per population of data subjects' }),
        el('p', { class: 'muted' }, 'Budgets of ' + budgets.holder + ' (every account of the organisation draws on them), one per population of data subjects: datasets of the same people share one.')]);
      replace('ent-chart', mine.map(j => j.status), () => statusChart(mine, 'your jobs by status'));
      replace('catalogue', [ds, active], () => ds.datasets.map(x => el('div', {},
        el('h3', {}, x.name, ' ', el('span', { class: 'muted' }, '· ' + (x.org || short(x.owner)) + ' · ' + x.rows + ' rows')),
        el('p', {}, x.schema.columns.map(c => c.name + ' (' + c.class + ')').join(', ')),
        policyTable(active.filter(p => p.dataset === x.name)))));
      const purposes = document.getElementById('purposes');
      if (purposes) replace('purposes', active.map(p => p.purpose), ps => [...new Set(ps)].map(p => el('option', { value: p })));
    },
  },
};
VIEWS.admin = { title: 'Admin', layout: () => el('div', {}, card('Jobs', 'jobs'), card('Policies', 'policies')),
  refresh: async () => {
    const [pol, jobs] = await Promise.all([api('GET', '/api/policies'), api('GET', '/api/jobs')]);
    replace('jobs', jobs.jobs, js => table(['job', 'dataset', 'requester', 'status'], js.map(j => [j.job, j.dataset, who(j.requester_name, j.requester_org, j.requester), pill(j.status)])));
    replace('policies', pol.policies, policyTable);
  } };

function policyTable(ps) {
  return table(['policy', 'dataset', 'purpose', 'modes', 'grantees', 'aggregates', { label: 'ε per query / budget', num: true }, 'approval', 'expires', 'state'],
    ps.map(p => [p.id, p.dataset, p.purpose, p.modes.join(', '), p.grantees.join(', '),
      Object.entries(p.aggregates || {}).map(([c, f]) => c + ': ' + f.join(' ')).join('; '),
      fmtEps(p.dp.epsilon_per_query) + ' / ' + fmtEps(p.dp.epsilon_budget),
      p.approval.mode === 'manual' ? 'manual, ' + p.approval.approvers + ' approver(s)' : p.approval.mode,
      (p.expires || '').slice(0, 10), p.revoked ? 'revoked' : 'active']));
}

// budgetText says what a pending job takes and what its requester has
// left, from the budgets the consortium's state keeps (GET /v1/budgets).
function budgetText(j, p, lines) {
  const takes = 'this job takes ' + fmtEps(j.epsilon) + ' ε';
  if (!lines.length) {
    return takes + (p ? '; ' + holderOf(j) + ' has ' + fmtEps(p.dp.epsilon_budget) + ' of ' + fmtEps(p.dp.epsilon_budget) + ' ε left (nothing spent yet on these data subjects; the policy\'s budget)' : '');
  }
  return takes + '; ' + lines.map(b => holderOf(j) + ' has ' + fmtEps(Math.max(0, b.budget - b.spent)) + ' of ' + fmtEps(b.budget) + ' ε left on the people of ' + b.datasets.join(', ')).join('; ');
}

function pendingJob(j, p, lines) {
  const reasonId = 'reason-' + j.job;
  const box = el('article', { class: 'job', 'aria-label': 'job ' + j.job },
    el('h3', {}, j.job, ' on ', datasetsOf(j), ' ', pill(j.status)),
    el('dl', {},
      el('dt', {}, 'query'), el('dd', {}, el('code', { class: 'query' }, j.query)),
      el('dt', {}, 'purpose'), el('dd', {}, j.purpose || '(none given)'),
      el('dt', {}, 'requester'), el('dd', {}, who(j.requester_name, j.requester_org, j.requester)),
      el('dt', {}, 'mode'), el('dd', {}, j.mode),
      el('dt', {}, 'policy'), el('dd', {}, p ? p.id + ' — ' + p.purpose + ' (' + (p.approval.mode === 'manual' ? p.approval.approvers + ' approval(s) needed' : p.approval.mode) + ')' : (j.policy || 'none')),
      el('dt', {}, 'approvals'), el('dd', {}, (j.approvals || []).length + ' of ' + (j.approvals_needed || '?') + ((j.approver_names || []).length ? ' — ' + j.approver_names.join(', ') : '')),
      el('dt', {}, 'budget'), el('dd', { class: 'budget-left' }, budgetText(j, p, lines)),
      el('dt', {}, 'submitted'), el('dd', {}, fmtTime(j.submitted))));
  const reason = el('input', { type: 'text', class: 'wide', id: reasonId, placeholder: 'why (recorded on the ledger)', 'aria-required': 'true' });
  const approve = el('button', { type: 'button', class: 'primary', onclick: () => decide(j.job, 'approve', null, box) }, 'Approve ' + j.job);
  const reject = el('button', { type: 'button', class: 'danger', onclick: () => {
    if (!reason.value.trim()) { setStatus('A rejection needs a reason: it is recorded on the ledger.', 'bad'); reason.focus(); return; }
    decide(j.job, 'reject', reason.value, box);
  } }, 'Reject');
  box.append(el('div', { class: 'actions' }, approve, el('div', { style: 'flex:1 1 220px' }, el('label', { for: reasonId }, 'Reason for rejecting'), reason), reject));
  return box;
}

async function decide(id, what, reason, box) {
  for (const b of box.querySelectorAll('button')) b.disabled = true;
  try {
    const j = await api('POST', '/api/jobs/' + id + '/' + what, what === 'reject' ? { reason } : undefined);
    setStatus((what === 'approve' ? 'Approved ' : 'Rejected ') + id + ': the job is now ' + j.status + '.', 'ok');
    for (const k of Object.keys(shown)) delete shown[k];
    await VIEWS[current].refresh();
  } catch (e) {
    setStatus(e.message, 'bad');
    for (const b of box.querySelectorAll('button')) b.disabled = false;
  }
}

// ---- auditor ----

function verifyControls() {
  const file = el('input', { type: 'text', id: 'export-file', placeholder: '/path/to/ledger.zst (made by sandboxctl ledger export)' });
  return el('div', {},
    el('p', { class: 'muted' }, 'Verification runs in sandboxctl on this machine: every entry\'s signature, the block chain, the Merkle roots against the signed checkpoint, a replay of every rule, budgets and delivered result hashes.'),
    el('div', { class: 'actions' },
      el('button', { type: 'button', class: 'primary', id: 'verify-node', onclick: () => runVerify('') }, 'Verify the ledger now')),
    el('label', { for: 'export-file' }, 'Or verify an exported ledger file on this machine'),
    el('div', { class: 'actions' }, file, el('button', { type: 'button', class: 'secondary', id: 'verify-file', onclick: () => runVerify(file.value) }, 'Verify the file')),
    el('div', { class: 'progress', id: 'verify-progress', hidden: true },
      el('label', { for: 'verify-bar', style: 'margin:0' }, 'Progress'), el('progress', { id: 'verify-bar', max: 1, value: 0 }), el('span', { id: 'verify-count' })),
    el('div', { id: 'verify-result', 'aria-live': 'polite' }));
}

async function runVerify(file) {
  try {
    delete shown['verify-result'];
    await api('POST', '/api/verify', file ? { file } : {});
    setStatus('Verification started.', '');
    renderVerify(await api('GET', '/api/verify'));
  } catch (e) {
    setStatus(e.message, 'bad');
  }
}

let lastReport = '';
let fastPoll = null;
function renderVerify(v) {
  // While it runs, the bar moves several times a second.
  if (v.running && !fastPoll) {
    fastPoll = setTimeout(() => { fastPoll = null; if (current === 'auditor') api('GET', '/api/verify').then(renderVerify).catch(() => {}); }, 300);
  }
  const bar = document.getElementById('verify-bar');
  if (!bar) return;
  document.getElementById('verify-progress').hidden = !v.running && !v.finished;
  bar.max = Math.max(v.total, 1);
  bar.value = v.running ? v.done : bar.max;
  document.getElementById('verify-count').textContent = v.running ? v.done + ' of ' + v.total + ' entries' : (v.finished ? 'done' : '');
  for (const id of ['verify-node', 'verify-file']) document.getElementById(id).disabled = v.running;
  replace('verify-result', [v.running, v.finished, v.ok, v.error], () => {
    if (v.running) return el('p', {}, 'Verifying ' + v.source + '…');
    if (!v.finished) return el('p', { class: 'muted' }, 'Not verified in this session yet.');
    const r = v.report || {};
    const out = [el('div', { class: 'banner ' + (v.ok ? 'ok' : 'bad'), id: 'verify-verdict' },
      v.ok ? 'PASSED: all checks hold for ' + (r.entries || 0) + ' entries of ' + v.source
        : 'FAILED: ' + (r.first_failure ? 'at index ' + r.first_failure.index + ': ' + r.first_failure.reason : v.error))];
    if (r.checks) out.push(table(['check', 'result'], Object.keys(r.checks).sort().map(k => [k, r.checks[k] ? el('span', { class: 'ok' }, 'pass') : el('span', { class: 'bad' }, 'not passed')])));
    for (const w of r.warnings || []) out.push(el('p', { class: 'bad' }, 'warning: ' + w));
    out.push(el('p', { class: 'muted' }, 'finished ' + fmtTime(v.finished)));
    return out;
  });
  replace('history', [v.history, v.kept], () => [table(['finished', 'source', { label: 'size', num: true }, 'root', 'signed by', 'verdict'],
        v.history.slice().reverse().map(h => [fmtTime(h.finished), h.source, h.size || '', el('code', {}, h.root || ''),
          (h.signers || []).join(', ') + (h.root ? (h.trusted ? ' (trusted)' : ' (not checked)') : ''),
          h.ok ? el('span', { class: 'ok' }, 'passed') : el('span', { class: 'bad' }, 'failed: ' + h.failure)])),
    el('p', { id: 'kept' }, v.kept ? ['Kept for the next verification\'s rollback check (', el('code', {}, v.kept.file), '): the checkpoint of size ' + v.kept.size + ', root ', el('code', {}, v.kept.root), '.']
      : 'No checkpoint kept yet for the rollback check: the first verification that passes against trusted keys keeps one.')]);
  if (!v.running && v.has_html && lastReport !== v.finished) {
    lastReport = v.finished;
    api('GET', '/api/verify/report').then(html => {
      const f = el('iframe', { class: 'report', title: 'audit report', sandbox: 'allow-same-origin' });
      f.srcdoc = html;
      f.addEventListener('load', () => { f.style.height = (f.contentDocument.documentElement.scrollHeight + 20) + 'px'; });
      document.getElementById('report').replaceChildren(f);
      document.getElementById('report-note').hidden = true;
    }).catch(e => setStatus(e.message, 'bad'));
  }
}

// flowDigest is a flow's digest after its algorithm's name: blake3, or
// sha256 for flows committed before shipments were hashed with BLAKE3.
function flowDigest(f) {
  return f.blake3 ? 'blake3 ' + f.blake3 : 'sha256 ' + (f.sha256 || '');
}

// flowView is one join job's data flows: a chart (each shipment a box,
// an arrow to the node that received it; on a phone, drawn top to bottom)
// and the same as a table.
function flowView(j) {
  const name = a => (j.node_names || {})[a] || short(a);
  const flows = (j.flows || []).map(f => ({ ...f, fromName: name(f.from), toName: name(f.to),
    sentence: f.dataset + ': columns ' + f.columns.join(', ') + ', ' + f.rows + ' rows, moved from ' + name(f.from) + ' to ' + name(f.to) + '; ' + flowDigest(f) + ' (ledger entry ' + f.index + ')' }));
  return el('div', { class: 'join' },
    el('h3', {}, j.job + ' joins ' + j.datasets.join(', ') + ' ', pill(j.status), j.runner ? ' · run by ' + name(j.runner) : ''),
    flows.length ? flowChart(j, flows, name) : el('p', { class: 'muted' }, 'No data has moved for this job yet.'),
    table(['dataset', 'columns', { label: 'rows', num: true }, 'from', 'to', 'digest of what moved', { label: 'entry', num: true }],
      flows.map(f => [f.dataset, f.columns.join(', '), f.rows, f.fromName, f.toName, el('code', {}, flowDigest(f)), f.index])));
}

function flowChart(j, flows, name) {
  const narrow = window.innerWidth < 640;
  const boxH = 64, gap = 12;
  const clip = (t, n) => t.length > n ? t.slice(0, n - 1) + '…' : t;
  const id = 'arrow-' + j.job;
  const svg = sv('svg', { class: 'chart flows', role: 'group', 'aria-label': 'data flows of ' + j.job });
  svg.append(sv('title', {}, 'data flows of ' + j.job));
  svg.append(sv('defs', {}, sv('marker', { id, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
    sv('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#0b5cad' }))));
  const shipment = (f, x, y, w, chars) => {
    const g = sv('g', { class: 'flow', tabindex: 0, role: 'img', 'aria-label': f.sentence }, sv('title', {}, f.sentence),
      sv('rect', { x, y, width: w, height: boxH, rx: 6, fill: '#eef4fb', stroke: '#0b5cad' }));
    [f.dataset + ' · from ' + f.fromName, 'columns: ' + f.columns.join(', '), f.rows + ' rows · ' + flowDigest(f).slice(0, 19) + '…'].forEach((t, i) =>
      g.append(sv('text', { x: x + 10, y: y + 19 + i * 17, 'font-weight': i === 0 ? 600 : 400 }, clip(t, chars))));
    svg.append(g);
  };
  const node = (label, note, x, y, w, h, chars) => {
    svg.append(sv('rect', { x, y, width: w, height: h, rx: 6, fill: '#f6f8fa', stroke: '#57606a' }));
    svg.append(sv('text', { x: x + 10, y: y + h / 2 - 2, 'font-weight': 600 }, clip(label, chars)));
    svg.append(sv('text', { x: x + 10, y: y + h / 2 + 14, fill: '#57606a' }, note));
  };
  const note = a => a === j.runner ? 'runs the join' : 'received it first (job taken over)';
  if (narrow) {
    const W = 360, arrowH = 30, destH = 44, step = boxH + arrowH + destH + 2 * gap;
    svg.setAttribute('viewBox', `0 0 ${W} ${8 + flows.length * step}`);
    flows.forEach((f, i) => {
      const y = 4 + i * step;
      shipment(f, 4, y, W - 8, 44);
      svg.append(sv('line', { x1: W / 2, x2: W / 2, y1: y + boxH + 2, y2: y + boxH + arrowH - 2, stroke: '#0b5cad', 'stroke-width': 2, 'marker-end': `url(#${id})` }));
      node('to ' + f.toName, note(f.to), 4, y + boxH + arrowH, W - 8, destH, 44);
    });
    return svg;
  }
  const W = 680, boxW = 330, destX = 440, destW = 232;
  const H = 8 + flows.length * (boxH + gap);
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.style.maxWidth = W + 'px';
  const dests = [...new Set([...flows.filter(f => f.to === j.runner), ...flows].map(f => f.to))];
  const dh = (H - 8) / dests.length, destY = {};
  dests.forEach((d, i) => {
    const y = 4 + i * dh;
    node(name(d), note(d), destX, y + 2, destW, dh - gap, 30);
    destY[d] = y + (dh - gap) / 2 + 2;
  });
  flows.forEach((f, i) => {
    const y = 4 + i * (boxH + gap), cy = y + boxH / 2;
    shipment(f, 8, y, boxW, 46);
    svg.append(sv('path', { d: `M${8 + boxW},${cy} C${8 + boxW + 50},${cy} ${destX - 50},${destY[f.to]} ${destX - 2},${destY[f.to]}`, fill: 'none', stroke: '#0b5cad', 'stroke-width': 2, 'marker-end': `url(#${id})` }));
  });
  return svg;
}

function proofControls() {
  const inp = el('input', { type: 'text', id: 'proof-of', placeholder: 'entry index (e.g. 12) or job id (job-12)' });
  const out = el('div', { id: 'proof-out', 'aria-live': 'polite' });
  const go = async () => {
    const v = inp.value.trim();
    out.replaceChildren(el('p', {}, 'fetching and checking the proof…'));
    try {
      const q = /^job-/.test(v) ? 'job=' + encodeURIComponent(v) : 'index=' + encodeURIComponent(v);
      const p = await api('GET', '/api/proof?' + q);
      out.replaceChildren(el('p', { class: 'ok' }, 'Verified: entr' + (p.indexes.length > 1 ? 'ies ' : 'y ') + p.indexes.join(', ') + ' included in the checkpoint of size ' + p.size + ' (root ', el('code', {}, p.root), '), signed by ' + (p.signed_by || []).join(', ') + (p.trusted ? ' (trusted key)' : ' (signature not checked: no trusted keys)')));
    } catch (e) {
      out.replaceChildren(el('p', { class: 'bad' }, e.message));
    }
  };
  inp.addEventListener('keydown', e => { if (e.key === 'Enter') go(); });
  return el('div', {}, el('label', { for: 'proof-of' }, 'Entry index or job id'),
    el('div', { class: 'actions' }, inp, el('button', { type: 'button', class: 'primary', id: 'proof-go', onclick: go }, 'Prove')), out);
}

// ---- enterprise ----

function submitForm() {
  const purpose = el('input', { type: 'text', id: 'job-purpose', list: 'purposes', placeholder: 'as the policy states it' });
  const query = el('textarea', { id: 'job-query', placeholder: 'SELECT region, AVG(income) FROM tax2025 GROUP BY region' });
  const mode = el('select', { id: 'job-mode' },
    el('option', { value: 'masked' }, 'masked: run on the agency\'s node, output controlled and noised'),
    el('option', { value: 'he' }, 'he: computed on encrypted data, the result encrypted to your key'));
  const send = async () => {
    try {
      const j = await api('POST', '/api/jobs', { query: query.value, purpose: purpose.value, mode: mode.value });
      setStatus('Submitted ' + j.job + ': ' + j.status + (j.reason ? ' — ' + j.reason : '') + '.', j.status === 'rejected' ? 'bad' : 'ok');
      for (const k of Object.keys(shown)) delete shown[k];
      await VIEWS[current].refresh();
    } catch (e) {
      setStatus(e.message, 'bad');
    }
  };
  return el('div', {},
    el('label', { for: 'job-purpose' }, 'Purpose'), purpose, el('datalist', { id: 'purposes' }),
    el('label', { for: 'job-query' }, 'Query (SQL)'), query,
    el('label', { for: 'job-mode' }, 'Mode'), mode,
    el('div', { class: 'actions', style: 'margin-top:8px' }, el('button', { type: 'button', class: 'primary', id: 'job-send', onclick: send }, 'Submit job')),
    el('p', { class: 'muted' }, 'An he result is decrypted by sandboxctl on this machine with your key, never by this page; sandboxctl registers your account\'s HE public key first if it has none.'));
}

async function showResult(id, mode) {
  const box = document.getElementById('result');
  box.replaceChildren(el('p', {}, 'fetching ' + id + '…'));
  try {
    const r = await api('GET', '/api/jobs/' + id + '/result');
    const fmt = v => v === null ? '–' : (typeof v === 'number' ? (Math.round(v * 1e4) / 1e4).toString() : (typeof v === 'object' ? JSON.stringify(v) : String(v)));
    // A released value with its noise: "value ± h", h the larger distance
    // to an end of its 95% interval (as sandboxctl's table prints it).
    const cell = (v, stmts, c) => {
      const n = stmts ? stmts[c] : null;
      if (n && n.too_noisy) return 'too noisy';
      if (!n || typeof v !== 'number') return fmt(v);
      if (!n.ci95) return fmt(v) + ' ± ∞';
      const h = Math.max(v - n.ci95[0], n.ci95[1] - v);
      return fmt(v) + ' ± ' + fmt(h);
    };
    const cols = (r.columns || []).map(c => ({ label: c, num: true }));
    const known = new Set(['job', 'columns', 'rows', 'suppressed', 'epsilon_spent', 'result_sha256', 'he']);
    const extra = Object.keys(r).filter(k => !known.has(k));
    box.replaceChildren(el('div', {},
      el('h3', {}, 'Result of ', r.job || id),
      mode === 'he' ? el('p', { class: 'muted', id: 'he-note' }, 'An he result: the node sent it encrypted to your key; sandboxctl decrypted it on this machine, and this page got only the decrypted values.') : null,
      table(cols, (r.rows || []).map((row, i) => row.map((v, c) => cell(v, (r.noise || [])[i], c)))),
      el('p', {}, (r.rows || []).length + ' rows, ' + r.suppressed + ' cells suppressed, ε ' + fmtEps(r.epsilon_spent || 0) + ' spent; sha256 ', el('code', {}, r.result_sha256 || '')),
      extra.length ? el('div', {}, el('h3', {}, 'Noise and other fields the result carries'),
        table(['field', 'value'], extra.map(k => [k, el('code', {}, JSON.stringify(r[k]))]))) : null));
    document.getElementById('result-h').focus();
  } catch (e) {
    box.replaceChildren(el('p', { class: 'bad' }, e.message));
  }
}

start();
