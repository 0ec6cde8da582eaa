// The experiments dashboard, in the browser. Served by the gateway at /dashboard/dashboard.js after Chart.js
// (global `Chart`). It holds no data of its own: everything comes from the admin API with the admin key the user
// enters (or passes once in the URL fragment, #key=..., which never reaches a server or a log).
// Plain ES2020 in a module script (its own scope, no build step); every value from the API is written with
// textContent, never as HTML.
const KEY_STORAGE = 'twinserve.admin-key'
const REFRESH_MS = 5000
const PALETTE = [
  '#2563eb',
  '#dc2626',
  '#16a34a',
  '#d97706',
  '#7c3aed',
  '#0891b2',
  '#db2777',
  '#4b5563',
]
const DECISION_TEXT = {
  control: 'control',
  keep_running: 'keep running',
  arm_better: 'arm better',
  arm_worse: 'arm worse',
  guardrail_stop: 'guardrail stop',
}

const $ = (id) => document.getElementById(id)
const charts = {}
let selected = null
let timer = null

function takeKeyFromFragment() {
  const m = /(?:^#|&)key=([^&]+)/.exec(location.hash)
  if (!m) return
  sessionStorage.setItem(KEY_STORAGE, decodeURIComponent(m[1]))
  history.replaceState(null, '', location.pathname + location.search)
}

function el(tag, text, cls) {
  const e = document.createElement(tag)
  if (text !== undefined && text !== null) e.textContent = String(text)
  if (cls) e.className = cls
  return e
}

function color(i, alpha) {
  const hex = PALETTE[i % PALETTE.length]
  if (alpha === undefined) return hex
  const n = Number.parseInt(hex.slice(1), 16)
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`
}

const fmt = (v, digits = 3) => (v === null || v === undefined ? '–' : Number(v).toFixed(digits))
const pct = (v) => (v === null || v === undefined ? '–' : `${(100 * v).toFixed(1)}%`)
const pval = (p) => (p < 1e-4 ? p.toExponential(1) : p.toFixed(4))

async function api(path) {
  const key = sessionStorage.getItem(KEY_STORAGE)
  if (!key) throw Object.assign(new Error('no admin key'), { status: 401 })
  const res = await fetch(path, { headers: { authorization: `Bearer ${key}` } })
  const body = await res.json().catch(() => ({}))
  if (!res.ok)
    throw Object.assign(new Error(body.error || `HTTP ${res.status}`), { status: res.status })
  return body
}

function showLogin(message) {
  $('login').hidden = false
  $('main').hidden = true
  $('login-message').textContent = message || ''
}

function renderList(experiments) {
  const tbody = $('experiments').querySelector('tbody')
  tbody.replaceChildren()
  for (const e of experiments) {
    const tr = el('tr')
    tr.dataset.id = e.id
    if (e.id === selected) tr.className = 'selected'
    for (const v of [
      e.name,
      e.model,
      e.status,
      e.mode,
      e.arms.map((a) => a.name).join(' vs '),
      e.started_at ? new Date(e.started_at).toLocaleString() : '–',
    ])
      tr.append(el('td', v))
    tr.addEventListener('click', () => {
      selected = e.id
      void refresh()
    })
    tbody.append(tr)
  }
}

function renderSummary(r) {
  const e = r.experiment
  $('title').textContent = `${e.name} — ${e.model}`
  $('meta').textContent =
    `${e.id} · ${e.status} · unit ${e.unit} · ${e.mode}${e.stop_reason ? ` · ${e.stop_reason}` : ''}`
  const verdicts = $('verdicts')
  verdicts.replaceChildren()
  for (const a of r.arms) {
    if (a.control) continue
    const v = a.versus_control
    const text = `${a.arm}: ${DECISION_TEXT[a.decision]}${v ? ` (always-valid p = ${pval(v.p_value)}, Δ reward ${v.difference >= 0 ? '+' : ''}${fmt(v.difference)})` : ''}`
    verdicts.append(el('li', text, `decision-${a.decision}`))
  }
}

function renderTable(r) {
  const tbody = $('arms').querySelector('tbody')
  tbody.replaceChildren()
  r.arms.forEach((a, i) => {
    const tr = el('tr')
    tr.dataset.arm = a.arm
    const name = el('td')
    const swatch = el('span', '', 'swatch')
    swatch.style.background = color(i)
    name.append(swatch, document.createTextNode(`${a.arm}${a.control ? ' (control)' : ''}`))
    tr.append(name)
    const v = a.versus_control
    const cells = [
      a.status + (a.stop_reason ? `: ${a.stop_reason}` : ''),
      `${fmt(a.share, 1)}%`,
      a.n,
      pct(a.error_rate),
      a.latency_ms ? `${fmt(a.latency_ms.p50, 0)} / ${fmt(a.latency_ms.p95, 0)}` : '–',
      a.feedback,
      a.reward ? `${fmt(a.reward.mean)} [${fmt(a.reward.ci95[0])}, ${fmt(a.reward.ci95[1])}]` : '–',
      v ? `${v.difference >= 0 ? '+' : ''}${fmt(v.difference)}` : '–',
      v ? pval(v.p_value) : '–',
      DECISION_TEXT[a.decision],
    ]
    const names = [
      'status',
      'share',
      'n',
      'error-rate',
      'latency',
      'feedback',
      'reward',
      'difference',
      'p-value',
      'decision',
    ]
    cells.forEach((c, k) => {
      const td = el('td', c)
      td.dataset.col = names[k]
      tr.append(td)
    })
    tbody.append(tr)
  })
}

/** One arm of a rollout as "version: requests req, errors err (rate), p95 ms". */
function rolloutArm(a) {
  if (!a.version) return '–'
  return `${a.version}: ${a.requests} req, ${a.errors} err (${pct(a.error_rate)}), p95 ${fmt(a.p95_latency_ms, 0)} ms`
}

/** The versioned rollouts (issue #19): one row per model, the reason of a rollback in full. */
function renderRollouts(rollouts) {
  const tbody = $('rollouts').querySelector('tbody')
  tbody.replaceChildren()
  $('no-rollouts').hidden = rollouts.length > 0
  for (const r of rollouts) {
    const tr = el('tr', undefined, `rollout-${r.state}`)
    tr.dataset.model = r.model
    const cells = {
      model: r.model,
      state: r.state,
      percent: `${fmt(r.canary_percent, 1)}%`,
      group: r.group || 'any',
      stable: rolloutArm(r.arms.stable),
      canary: rolloutArm(r.arms.canary),
      'p-value': pval(r.p_value),
      reason: r.reason || '',
    }
    for (const [col, text] of Object.entries(cells)) {
      const td = el('td', text)
      td.dataset.col = col
      tr.append(td)
    }
    tbody.append(tr)
  }
}

function upsert(id, config) {
  const existing = charts[id]
  if (existing) {
    existing.data = config.data
    existing.options = config.options
    existing.update('none')
    return
  }
  charts[id] = new Chart($(id), config)
}

const base = { animation: false, responsive: true, maintainAspectRatio: false }
const timeTick = (v) => new Date(v).toLocaleTimeString()

/** One bar per arm for each dataset, on the y scale given. */
function armBars(id, names, datasets, y) {
  upsert(id, {
    type: 'bar',
    data: { labels: names, datasets },
    options: { ...base, scales: { y } },
  })
}

/** A dataset of one value per arm (null where it has none), each bar in its arm's colour. */
function perArm(r, label, value, alpha, extra = {}) {
  return {
    label,
    data: r.arms.map((a) => value(a) ?? null),
    backgroundColor: r.arms.map((_, i) => color(i, alpha)),
    ...extra,
  }
}

/** Mean reward: the interval as a floating bar, the mean as a point. */
function rewardChart(r, names) {
  armBars(
    'chart-reward',
    names,
    [
      perArm(r, '95% interval', (a) => a.reward?.ci95, 0.35, {
        borderColor: r.arms.map((_, i) => color(i)),
        borderWidth: 1,
      }),
      perArm(r, 'mean reward', (a) => a.reward?.mean, undefined, {
        type: 'line',
        showLine: false,
        pointRadius: 7,
        pointStyle: 'rectRot',
        borderColor: '#111827',
      }),
    ],
    { min: 0, max: 1, title: { display: true, text: 'reward' } },
  )
}

/** Traffic: exposures per time bucket, per arm. */
function trafficChart(r, names) {
  upsert('chart-traffic', {
    type: 'line',
    data: {
      datasets: names.map((name, i) => ({
        label: name,
        data: r.timeseries.points
          .filter((p) => p.arm === name)
          .map((p) => ({ x: p.t, y: p.exposures })),
        borderColor: color(i),
        backgroundColor: color(i, 0.2),
        borderWidth: 3,
        pointRadius: 2,
      })),
    },
    options: {
      ...base,
      scales: {
        x: {
          type: 'linear',
          ticks: { callback: timeTick, maxTicksLimit: 6, stepSize: r.timeseries.bucket_ms },
        },
        y: {
          beginAtZero: true,
          title: { display: true, text: `exposures / ${r.timeseries.bucket_ms / 1000} s` },
        },
      },
    },
  })
}

/** Latency: p50 and p95 per arm. */
function latencyChart(r, names) {
  armBars(
    'chart-latency',
    names,
    [perArm(r, 'p50', (a) => a.latency_ms?.p50, 0.55), perArm(r, 'p95', (a) => a.latency_ms?.p95)],
    { beginAtZero: true, title: { display: true, text: 'ms' } },
  )
}

/** Decades only on the log axis: 1, 0.1, 0.01, 1e-3, … */
const decadeTick = (v) =>
  Math.abs(Math.log10(v) % 1) < 1e-9
    ? v >= 0.01
      ? String(v)
      : `1e${Math.round(Math.log10(v))}`
    : ''

/** The always-valid p-value as rewards arrive, against the level a decision needs. */
function pValueChart(r, names) {
  const compared = r.arms.filter((a) => a.versus_control)
  const alpha = compared[0] ? compared[0].versus_control.alpha : 0.05
  const maxN = Math.max(
    1,
    ...Object.values(r.p_value_history).flatMap((h) => h.map((p) => p.rewards)),
  )
  const arms = names.flatMap((name, i) =>
    r.p_value_history[name]
      ? [
          {
            label: name,
            data: r.p_value_history[name].map((p) => ({
              x: p.rewards,
              y: Math.max(p.p_value, 1e-12),
            })),
            borderColor: color(i),
            borderWidth: 3,
            pointRadius: 0,
          },
        ]
      : [],
  )
  const level = {
    label: `α = ${alpha.toPrecision(2)}`,
    data: [
      { x: 0, y: alpha },
      { x: maxN, y: alpha },
    ],
    borderColor: '#6b7280',
    borderDash: [6, 4],
    borderWidth: 1,
    pointRadius: 0,
  }
  upsert('chart-pvalue', {
    type: 'line',
    data: { datasets: [...arms, level] },
    options: {
      ...base,
      scales: {
        x: {
          type: 'linear',
          min: 0,
          title: { display: true, text: 'rewards received (arm + control)' },
        },
        y: {
          type: 'logarithmic',
          max: 1,
          title: { display: true, text: 'always-valid p-value' },
          ticks: { callback: decadeTick },
        },
      },
    },
  })
}

function renderCharts(r) {
  const names = r.arms.map((a) => a.arm)
  rewardChart(r, names)
  trafficChart(r, names)
  latencyChart(r, names)
  pValueChart(r, names)
}

// Per-expert routing (issue #19) from the gateway's own counters (/metrics as JSON): traffic share = rows that
// gave the expert a weight above 0.1 over routed rows, mean weight = its weight sum over routed rows, mean
// entropy over the rows that were not abstained.
async function routingFamilies() {
  const key = sessionStorage.getItem(KEY_STORAGE)
  const res = await fetch('/metrics', {
    headers: { authorization: `Bearer ${key}`, accept: 'application/json' },
  })
  if (!res.ok) return []
  return (await res.json()).families || []
}

function renderRouting(families) {
  const samples = (name) => families.find((f) => f.name === name)?.samples || []
  const byModel = (name) => new Map(samples(name).map((s) => [s.labels.model, s.value]))
  const routed = byModel('twinserve_gateway_routed_rows_total')
  const abstained = byModel('twinserve_gateway_router_abstentions_total')
  const entropy = byModel('twinserve_gateway_router_entropy_sum')
  const drift = new Map()
  for (const s of samples('twinserve_gateway_routing_drift'))
    drift.set(s.labels.model, Math.max(drift.get(s.labels.model) ?? 0, s.value))
  const weights = new Map(
    samples('twinserve_gateway_expert_routed_weight_sum').map((s) => [
      `${s.labels.model}\u0000${s.labels.expert}`,
      s.value,
    ]),
  )
  const models = [...routed.keys()].filter((m) => routed.get(m) > 0).sort()
  $('routing').hidden = models.length === 0
  const mbody = $('routing-models').querySelector('tbody')
  mbody.replaceChildren()
  for (const m of models) {
    const n = routed.get(m)
    const a = abstained.get(m) || 0
    const tr = el('tr')
    tr.dataset.model = m
    tr.append(
      el('td', m),
      el('td', n),
      el('td', n > a ? fmt((entropy.get(m) || 0) / (n - a)) : '–'),
    )
    tr.append(el('td', pct(a / n)), el('td', fmt(drift.get(m))))
    mbody.append(tr)
  }
  const ebody = $('routing-experts').querySelector('tbody')
  ebody.replaceChildren()
  const rows = samples('twinserve_gateway_expert_routed_rows_total')
    .filter((s) => routed.get(s.labels.model) > 0)
    .sort((x, y) =>
      x.labels.model === y.labels.model
        ? x.labels.expert.localeCompare(y.labels.expert)
        : x.labels.model.localeCompare(y.labels.model),
    )
  for (const s of rows) {
    const n = routed.get(s.labels.model)
    const w = weights.get(`${s.labels.model}\u0000${s.labels.expert}`) || 0
    const tr = el('tr')
    tr.dataset.model = s.labels.model
    tr.dataset.expert = s.labels.expert
    tr.append(el('td', s.labels.model), el('td', s.labels.expert), el('td', pct(s.value / n)))
    tr.append(el('td', fmt(w / n)), el('td', s.value))
    ebody.append(tr)
  }
}

async function refresh() {
  clearTimeout(timer)
  try {
    const list = await api('/admin/experiments')
    $('login').hidden = true
    $('main').hidden = false
    const experiments = list.experiments
    if (!selected || !experiments.some((e) => e.id === selected)) {
      const running = experiments.find((e) => e.status === 'running')
      selected = (running || experiments[0])?.id || null
    }
    renderList(experiments)
    // A panel of its own: a failure to read the metrics leaves the experiments shown.
    try {
      renderRouting(await routingFamilies())
    } catch (err) {
      $('error').textContent = `could not load routing metrics: ${err.message}`
    }
    renderRollouts((await api('/admin/rollouts')).rollouts)
    if (!selected) {
      $('detail').hidden = true
      $('empty').hidden = false
    } else {
      const r = await api(`/admin/experiments/${encodeURIComponent(selected)}/results`)
      $('empty').hidden = true
      $('detail').hidden = false
      renderSummary(r)
      renderTable(r)
      renderCharts(r)
      $('updated').textContent = `updated ${new Date(r.generated_at).toLocaleTimeString()}`
    }
    document.body.dataset.ready = 'true'
    document.body.dataset.experiment = selected || ''
  } catch (err) {
    if (err.status === 401 || err.status === 403)
      return showLogin(err.status === 403 ? 'this key lacks the admin scope' : '')
    $('error').textContent = `could not load: ${err.message}`
  }
  timer = setTimeout(() => void refresh(), REFRESH_MS)
}

$('login-form').addEventListener('submit', (ev) => {
  ev.preventDefault()
  sessionStorage.setItem(KEY_STORAGE, $('key').value.trim())
  $('key').value = ''
  void refresh()
})
$('logout').addEventListener('click', () => {
  sessionStorage.removeItem(KEY_STORAGE)
  showLogin('')
})

takeKeyFromFragment()
void refresh()
