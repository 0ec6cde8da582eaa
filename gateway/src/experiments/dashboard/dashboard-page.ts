/**
 * The dashboard's HTML shell: static (no data, no key), so it may be served without authentication; the script
 * asks the admin API for everything with the admin key the user gives it.
 * @module
 */

/** Where the dashboard is mounted; its scripts are files under it. */
export const DASHBOARD_PATH = '/dashboard'
export const DASHBOARD_SCRIPT = 'dashboard.js'
export const CHART_SCRIPT = 'chart.umd.min.js'
export const DASHBOARD_SCRIPT_PATH = `${DASHBOARD_PATH}/${DASHBOARD_SCRIPT}`
export const CHART_SCRIPT_PATH = `${DASHBOARD_PATH}/${CHART_SCRIPT}`

/** Scripts only from the gateway; inline styles because Chart.js sizes its canvases with style attributes. */
export const DASHBOARD_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Twinserve experiments</title>
<link rel="icon" href="data:,">
<style>
  :root { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #111827; background: #f9fafb; }
  body { margin: 0; padding: 16px 24px; }
  header { display: flex; align-items: baseline; gap: 16px; }
  h1 { font-size: 20px; margin: 0 0 8px; }
  h2 { font-size: 16px; margin: 16px 0 4px; }
  table { border-collapse: collapse; width: 100%; background: #fff; font-size: 13px; }
  th, td { border-bottom: 1px solid #e5e7eb; padding: 4px 8px; text-align: left; white-space: nowrap; }
  #experiments tbody tr { cursor: pointer; }
  #experiments tr.selected { background: #eff6ff; }
  .swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; }
  .grid { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 12px; margin-top: 12px; }
  .card { background: #fff; border: 1px solid #e5e7eb; border-radius: 6px; padding: 8px 12px; }
  .card h3 { font-size: 13px; margin: 0 0 4px; color: #374151; }
  .chart { position: relative; height: 240px; }
  #meta, #updated { color: #6b7280; font-size: 12px; }
  #verdicts { margin: 6px 0; padding-left: 18px; }
  .decision-arm_better { color: #15803d; font-weight: 600; }
  .decision-arm_worse, .decision-guardrail_stop { color: #b91c1c; font-weight: 600; }
  #error { color: #b91c1c; }
  #rollouts td[data-col="reason"] { white-space: normal; }
  .rollout-rolled_back td[data-col="state"] { color: #b91c1c; font-weight: 600; }
  .rollout-promoted td[data-col="state"] { color: #15803d; font-weight: 600; }
</style>
</head>
<body>
<header><h1>Twinserve experiments</h1><span id="updated"></span><button id="logout" type="button">forget key</button></header>
<section id="login" hidden>
  <form id="login-form"><label>Admin API key <input id="key" type="password" autocomplete="off" size="50"></label>
  <button type="submit">Show experiments</button></form>
  <p id="login-message"></p>
</section>
<p id="error"></p>
<main id="main" hidden>
  <table id="experiments"><thead><tr><th>experiment</th><th>model</th><th>status</th><th>mode</th><th>arms</th><th>started</th></tr></thead><tbody></tbody></table>
  <p id="empty" hidden>No experiments yet: create one with POST /admin/experiments.</p>
  <h2>Rollouts</h2>
  <table id="rollouts"><thead><tr><th>model</th><th>state</th><th>canary share</th><th>group</th><th>stable</th><th>canary</th><th>always-valid p</th><th>reason</th></tr></thead><tbody></tbody></table>
  <p id="no-rollouts" hidden>No rollouts: set one with PUT /admin/models/{model}/rollout.</p>
  <section id="detail" hidden>
    <h2 id="title"></h2>
    <div id="meta"></div>
    <ul id="verdicts"></ul>
    <table id="arms"><thead><tr><th>arm</th><th>status</th><th>share</th><th>n</th><th>error rate</th><th>latency p50 / p95 (ms)</th><th>feedback</th><th>mean reward [95%]</th><th>Δ vs control</th><th>always-valid p</th><th>decision</th></tr></thead><tbody></tbody></table>
    <div class="grid">
      <div class="card"><h3>Mean reward with 95% interval</h3><div class="chart"><canvas id="chart-reward"></canvas></div></div>
      <div class="card"><h3>Always-valid p-value against the control</h3><div class="chart"><canvas id="chart-pvalue"></canvas></div></div>
      <div class="card"><h3>Traffic over time</h3><div class="chart"><canvas id="chart-traffic"></canvas></div></div>
      <div class="card"><h3>Latency at the gateway</h3><div class="chart"><canvas id="chart-latency"></canvas></div></div>
    </div>
  </section>
  <section id="routing" hidden>
    <h2>Routing per expert</h2>
    <table id="routing-models"><thead><tr><th>model</th><th>routed rows</th><th>mean entropy (nats)</th><th>abstained</th><th>drift (max over runners)</th></tr></thead><tbody></tbody></table>
    <table id="routing-experts"><thead><tr><th>model</th><th>expert</th><th>traffic share</th><th>mean weight</th><th>rows &gt; 0.1</th></tr></thead><tbody></tbody></table>
  </section>
</main>
<script src="${CHART_SCRIPT_PATH}"></script>
<script type="module" src="${DASHBOARD_SCRIPT_PATH}"></script>
</body>
</html>
`
