// The live status page's script (index.html): polls /status.json once a second and draws the
// run, a card per worker, the loss and gradient-norm curves (ECharts, served by weft), the
// checkpoints and the events. With a coordinator secret it offers a stop, which asks for it.
'use strict';

const $ = (id) => document.getElementById(id);
const fmt = (x, digits = 4) =>
  typeof x === 'number' && Number.isFinite(x) ? x.toFixed(digits) : '–';
const int = (x) => (typeof x === 'number' ? Math.round(x).toLocaleString('en-US') : '–');
const PHASES = ['compute', 'comm', 'wait', 'data', 'optim'];

function duration(seconds) {
  if (typeof seconds !== 'number') return '–';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n) => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

function text(tag, content, className) {
  const el = document.createElement(tag);
  el.textContent = content;
  if (className) el.className = className;
  return el;
}

function lineChart(el) {
  const chart = echarts.init(el, null, { renderer: 'svg' });
  chart.setOption({
    animation: false,
    grid: { left: 50, right: 16, top: 28, bottom: 28 },
    legend: { top: 0 },
    tooltip: { trigger: 'axis' },
    xAxis: { type: 'value', name: 'step', nameLocation: 'end', minInterval: 1 },
    yAxis: { type: 'value', scale: true },
    series: [],
  });
  window.addEventListener('resize', () => chart.resize());
  return chart;
}

const charts = { loss: lineChart($('loss-chart')), gnorm: lineChart($('gnorm-chart')) };

function drawCharts(s) {
  const line = (name, data) => ({ name, type: 'line', showSymbol: false, data });
  const val = s.val.map((m) => [m.step, m.loss]);
  charts.loss.setOption({
    series: [line('train', s.loss), { ...line('val', val), showSymbol: true }],
  });
  charts.gnorm.setOption({ series: [line('grad norm', s.gradNorm)] });
  $('loss-chart').dataset.points = String(s.loss.length);
  $('gnorm-chart').dataset.points = String(s.gradNorm.length);
}

function workerCard(w) {
  const card = document.createElement('div');
  card.className = `card ${w.state}${w.straggler ? ' straggler' : ''}`;
  card.dataset.worker = w.name;
  card.dataset.state = w.state;
  card.append(text('span', w.state + (w.straggler ? ' · straggler' : ''), 'state'));
  card.append(text('div', w.name, 'name'));
  const stage = w.stage >= 0 ? ` · stage ${w.stage}` : '';
  card.append(text('div', `rank ${w.rank}${stage} · ${w.host || '?'}`, 'meta'));
  const heard =
    w.heartbeatAgeMs === null ? 'gone' : `heard ${(w.heartbeatAgeMs / 1000).toFixed(1)} s ago`;
  card.append(text('div', heard, 'meta'));
  if (w.reason) card.append(text('div', w.reason, 'meta reason'));
  if (w.times) {
    const t = w.times;
    const total = PHASES.reduce((sum, p) => sum + t[`${p}Ms`], 0) || 1;
    const bar = document.createElement('div');
    bar.className = 'bar';
    for (const p of PHASES) {
      const part = document.createElement('span');
      part.className = p;
      part.style.width = `${(100 * t[`${p}Ms`]) / total}%`;
      part.title = `${p} ${t[`${p}Ms`].toFixed(1)} ms`;
      bar.append(part);
    }
    card.append(bar);
    const parts = PHASES.map((p) => `${p} ${t[`${p}Ms`].toFixed(0)}`).join(' · ');
    card.append(text('div', `step ${t.step}: ${parts} ms`, 'meta times'));
  }
  return card;
}

function draw(s) {
  document.title = `weft · ${s.run.name} · step ${s.step}/${s.run.steps}`;
  $('run-name').textContent = s.run.name;
  $('phase').textContent = s.phase;
  $('phase').className = `badge ${s.phase}`;
  $('summary').textContent =
    `${int(s.run.params)} parameters (${s.run.summary}) · ${s.run.objective} · ` +
    `${s.run.backend} backend · ${s.run.outDir}`;
  $('step').textContent = `${s.step} / ${s.run.steps}`;
  const last = s.last;
  $('loss').textContent = fmt(last && last.loss);
  $('val').textContent = fmt(s.val.length > 0 ? s.val[s.val.length - 1].loss : undefined);
  $('tps').textContent = int(last && last.tokensPerSec);
  $('lr').textContent = last ? last.lr.toExponential(2) : '–';
  $('gnorm').textContent = fmt(last && last.gradNorm, 3);
  $('eta').textContent = duration(s.etaSeconds);
  $('workers').replaceChildren(...s.workers.map(workerCard));
  drawCharts(s);
  const time = (at) => new Date(at).toLocaleTimeString();
  $('checkpoints').replaceChildren(
    ...s.checkpoints.map((c) => text('li', `step ${c.step} · ${time(c.at)} · ${c.dir}`)),
  );
  $('events').replaceChildren(
    ...s.events
      .slice()
      .reverse()
      .map((e) => text('li', `${time(e.at)} ${e.text}`, `event ${e.kind}`)),
  );
  $('controls').hidden = !s.controls;
  $('updated').textContent = `updated ${time(s.now)}`;
}

async function poll() {
  try {
    const response = await fetch('status.json', { cache: 'no-store' });
    if (response.ok) draw(await response.json());
  } catch {
    $('phase').textContent = 'unreachable';
    $('phase').className = 'badge failed';
  }
  setTimeout(poll, 1000);
}

$('stop-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const response = await fetch('stop', {
    method: 'POST',
    headers: { Authorization: `Bearer ${$('secret').value}` },
  });
  const body = await response.json().catch(() => ({}));
  $('stop-result').textContent = body.status || body.error || `HTTP ${response.status}`;
});

poll();
