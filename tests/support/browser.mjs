// Opens HTML files in Debian's headless Chromium (playwright-core drives it; no browser is downloaded) and prints,
// as one JSON line, what a person would see and what the page asked the network for.
//
//   node tests/support/browser.mjs '{"pages": [{"path": "/abs/report.html", "screenshot": "/abs/shot.png"}]}'
//
// For each page: every request other than the page's own file (a self-contained page makes none) and why any
// failed (ERR_BLOCKED_BY_CSP: the page's policy refused it before it left the browser), console
// messages and page errors (a Content-Security-Policy refusal is logged there), the title, the visible text, the
// chart's segments and totals as drawn (attributes and rendered size), the counts, and the table's rows.
// Nothing is blocked here: a request the page made is reported, not hidden.
import { chromium } from 'playwright-core';
import { pathToFileURL } from 'node:url';

const given = JSON.parse(process.argv[2]);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const version = browser.version();
const results = [];
try {
  for (const spec of given.pages) {
    const context = await browser.newContext({ viewport: { width: spec.width || 1280, height: spec.height || 900 } });
    const page = await context.newPage();
    const url = pathToFileURL(spec.path).href;
    const requests = [];
    const console_ = [];
    const errors = [];
    const failed = {};
    page.on('request', (request) => { if (request.url() !== url) requests.push(request.url()); });
    page.on('console', (message) => console_.push({ type: message.type(), text: message.text() }));
    page.on('pageerror', (error) => errors.push(String(error)));
    page.on('requestfailed', (request) => { failed[request.url()] = request.failure()?.errorText ?? 'failed'; });
    await page.goto(url, { waitUntil: 'load' });
    await page.waitForTimeout(spec.settleMs ?? 200); // a late fetch or CSP report would show by then
    const seen = await page.evaluate(() => {
      const rendered = (el) => { const r = el.getBoundingClientRect(); return { width: r.width, height: r.height }; };
      const svg = document.querySelector('svg#chart');
      return {
        title: document.title,
        text: document.body ? document.body.innerText : '',
        html: document.documentElement.outerHTML,
        scripts: document.scripts.length,
        chart: svg ? { ...rendered(svg), scaleTop: Number(svg.dataset.scaleTop) } : null,
        segments: [...document.querySelectorAll('svg#chart rect.segment')].map((r) => ({
          column: r.dataset.column, state: r.dataset.state, count: Number(r.dataset.count),
          height: Number(r.getAttribute('height')), y: Number(r.getAttribute('y')),
          renderedHeight: rendered(r).height, fill: r.getAttribute('fill'),
          tooltip: r.querySelector('title') ? r.querySelector('title').textContent : '',
        })),
        totals: Object.fromEntries([...document.querySelectorAll('svg#chart text.total')]
          .map((t) => [t.dataset.column, Number(t.textContent)])),
        labels: Object.fromEntries([...document.querySelectorAll('svg#chart text.label')]
          .map((t) => [t.dataset.column, t.textContent])),
        counts: Object.fromEntries([...document.querySelectorAll('[data-count-of]')]
          .map((b) => [b.dataset.countOf, Number(b.textContent)])),
        legend: [...document.querySelectorAll('ul.legend li')].map((li) => li.dataset.state),
        taken: document.querySelector('#taken') ? document.querySelector('#taken').getAttribute('datetime') : null,
        rows: [...document.querySelectorAll('#clusters-table tbody tr')].map((tr) => ({
          state: tr.dataset.state, cells: [...tr.cells].map((td) => td.innerText.trim()),
        })),
      };
    });
    if (spec.screenshot) {
      await page.screenshot({ path: spec.screenshot, fullPage: spec.fullPage ?? true,
        ...(spec.clipHeight ? { clip: { x: 0, y: 0, width: spec.width || 1280, height: spec.clipHeight },
          fullPage: true } : {}) });
    }
    results.push({ path: spec.path, requests, failed, console: console_, errors, ...seen });
    await context.close();
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify({ browser: version, pages: results }) + '\n');
