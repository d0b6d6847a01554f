// Browser tests of the report and the web UI (run by run.sh, which builds the cases and
// starts the servers). Every page is checked twice against XSS: the sentinel a payload
// would set stays unset, and no element a payload would inject exists in the DOM (so the
// test fails on broken escaping even though the CSP would stop the script).
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import path from 'node:path';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} not set (run tests/browser/run.sh)`);
  return v;
};
const ARTIFACTS = env('ARTIFACTS');
const DEMO_URL = env('DEMO_URL');
const HOSTILE_URL = env('HOSTILE_URL');
const base = (u) => new URL(u).origin;

const browser = await chromium.launch({
  executablePath: env('CHROMIUM'),
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});

let checks = 0;
const dialogs = [];
function watch(page) {
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss().catch(() => {}); });
}

// No payload ran and none became markup.
async function assertInert(page, where) {
  const state = await page.evaluate(() => ({
    pwned: typeof window.__pwned !== 'undefined',
    scripts: document.querySelectorAll('script').length,
    handlers: [...document.querySelectorAll('*')].filter((e) => [...e.attributes].some((a) => a.name.startsWith('on'))).length,
    injected: document.querySelectorAll('img[src="x"], svg[onload]').length,
  }));
  assert.equal(state.pwned, false, `${where}: a payload ran`);
  assert.equal(state.scripts, 0, `${where}: a <script> element exists`);
  assert.equal(state.handlers, 0, `${where}: an element has an on* handler`);
  assert.equal(state.injected, 0, `${where}: a payload element was injected`);
  assert.equal(dialogs.length, 0, `${where}: a dialog opened: ${dialogs}`);
  checks++;
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

// Clicks a form's submit button and waits for the page that answers it.
async function submit(page, sel) {
  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click(sel)]);
  if (/\/annotate$/.test(page.url())) {
    throw new Error(`the form was refused: ${await page.locator('main').innerText()}`);
  }
}

async function text(page, sel) {
  return (await page.locator(sel).first().innerText()).trim();
}

// ---- The report, opened from disk as a reader would.
{
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  watch(page);
  await page.goto('file://' + env('DEMO_REPORT'));
  assert.match(await text(page, 'h1'), /Breach report/);
  for (const id of ['summary', 'notification', 'incidents', 'mail', 'exposure', 'posture', 'coverage', 'triage', 'evidence']) {
    assert.equal(await page.locator(`section#${id}`).count(), 1, `report section ${id}`);
  }
  assert.ok(await page.locator('svg.chain circle').count() > 5, 'attack chain drawn');
  assert.ok(await page.locator('table.matrix .tech').count() > 3, 'ATT&CK matrix');
  assert.match(await text(page, '#notification'), /DRAFT/);
  assert.match(await text(page, '#summary'), /unique electors/);
  assert.ok(await page.locator('section.campaign table.recipients tbody tr').count() >= 400, 'every recipient graded');
  await assertInert(page, 'demo report');
  await shot(page, 'report-demo');
  await page.emulateMedia({ media: 'print' });
  await page.pdf({ path: path.join(ARTIFACTS, 'report-demo.pdf'), format: 'A4' });

  await page.emulateMedia({ media: 'screen' });
  await page.goto('file://' + env('HOSTILE_REPORT'));
  await assertInert(page, 'hostile report');
  const body = await page.locator('body').innerText();
  assert.ok(body.includes('<script>window.__pwned=1</script> hostile rule title'), 'hostile rule title shown as text');
  assert.ok(body.includes('"><svg onload=window.__pwned=1>.log'), 'hostile file name shown as text');
  assert.ok(body.includes('<img src=x onerror=window.__pwned=1> Interview request'), 'hostile subject shown as text');
  await shot(page, 'report-hostile');
  await ctx.close();
}

// ---- The UI: access token, pages, pivots, filters, search, triage.
{
  // Without the token: refused.
  const anon = await browser.newContext();
  const p0 = await anon.newPage();
  const r0 = await p0.goto(base(DEMO_URL) + '/');
  assert.equal(r0.status(), 403, 'no token, no access');
  const r0b = await anon.request.post(base(DEMO_URL) + '/annotate', { form: { csrf: 'x', target: 'incident', id: 'x', verdict: 'benign' } });
  assert.equal(r0b.status(), 403, 'no token, no change');
  await anon.close();

  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  watch(page);
  await page.goto(DEMO_URL);
  assert.ok(!page.url().includes('token='), 'token dropped from the address bar');
  assert.match(await text(page, 'h1'), /Case/);
  await assertInert(page, 'overview');
  await shot(page, 'ui-overview');

  // Incident → timeline.
  await page.locator('a[href^="/incidents/"]').first().click();
  await page.waitForURL(/\/incidents\//);
  assert.ok(await page.locator('svg.chain circle').count() > 5, 'incident timeline');
  assert.ok(await page.locator('table.stages tbody tr').count() > 5, 'stages');
  await assertInert(page, 'incident');
  await shot(page, 'ui-incident');
  const incidentUrl = page.url();

  // Triage: mark the incident confirmed with a note.
  await page.selectOption('form.triage select[name=verdict]', 'confirmed');
  await page.fill('form.triage input[name=note]', 'checked by the browser test <b>not bold</b>');
  await submit(page, 'form.triage button[type=submit]');
  assert.equal(page.url(), incidentUrl, 'back on the incident after triage');
  const verdict = page.locator('ul.triage li').first();
  assert.match(await verdict.innerText(), /confirmed by browser-test .*checked by the browser test <b>not bold<\/b>/);
  assert.equal(await page.locator('ul.triage b').count(), 0, 'a note is text, not markup');
  await assertInert(page, 'incident after triage');

  // CSRF: the same post with a wrong token, from this (authenticated) browser, is refused.
  const forged = await ctx.request.post(base(DEMO_URL) + '/annotate', {
    form: { csrf: 'forged', target: 'incident', id: incidentUrl.split('/').pop(), verdict: 'benign' },
  });
  assert.equal(forged.status(), 403, 'CSRF token checked');
  const crossSite = await ctx.request.post(base(DEMO_URL) + '/annotate', {
    form: { csrf: 'forged', target: 'incident', id: 'x', verdict: 'benign' },
    headers: { Origin: 'http://evil.example' },
  });
  assert.equal(crossSite.status(), 403, 'cross-origin post refused');

  // Pivot: a host in the stage table → everything about it.
  await page.locator('table.stages a[href^="/entity/host/"]').first().click();
  await page.waitForURL(/\/entity\/host\//);
  assert.match(await page.locator('main').innerText(), /findings name it/);
  assert.ok(await page.locator('table.findings tbody tr').count() > 0, 'host pivot lists findings');
  await assertInert(page, 'host pivot');

  // A finding → the event as read → its rule's findings.
  await page.locator('table.findings a[href^="/findings/"]').first().click();
  await page.waitForURL(/\/findings\/[0-9a-f]/);
  assert.ok(await page.locator('pre.event').count() === 1, 'event as read');
  await assertInert(page, 'finding');
  await shot(page, 'ui-finding');
  await page.locator('a', { hasText: 'every finding of this rule' }).click();
  await page.waitForURL(/\/findings\?rule=/);
  assert.ok(await page.locator('table.findings tbody tr').count() > 0, 'rule pivot');

  // Filters: level and host.
  await page.goto(base(DEMO_URL) + '/findings');
  await page.selectOption('form.filters select[name=level]', 'critical');
  await page.fill('form.filters input[name=host]', 'exch01');
  await page.click('form.filters button[type=submit]');
  await page.waitForURL(/level=critical/);
  const levels = await page.locator('table.findings tbody tr td:nth-child(2)').allInnerTexts();
  assert.ok(levels.length > 0, 'critical findings on exch01');
  assert.ok(levels.every((l) => /critical/i.test(l)), `only critical: ${levels}`);
  const hosts = await page.locator('table.findings tbody tr td:nth-child(4)').allInnerTexts();
  assert.ok(hosts.every((h) => /^exch01/i.test(h)), `only exch01: ${hosts}`);
  await shot(page, 'ui-findings-filtered');

  // Full-text search from the header.
  await page.fill('header form input[name=q]', 'certutil');
  await page.press('header form input[name=q]', 'Enter');
  await page.waitForURL(/q=certutil/);
  const count = await text(page, 'p.count');
  assert.match(count, /^[1-9]\d* findings match/, `search finds certutil: ${count}`);
  await assertInert(page, 'search');

  // Campaign → recipients; exposure; coverage; the report with the triage note.
  await page.goto(base(DEMO_URL) + '/');
  await page.locator('a[href^="/campaigns/"]').first().click();
  await page.waitForURL(/\/campaigns\//);
  assert.ok(await page.locator('table.recipients tbody tr').count() >= 400, 'every recipient of the campaign');
  await assertInert(page, 'campaign');
  await shot(page, 'ui-campaign');
  await page.goto(base(DEMO_URL) + '/exposure');
  assert.match(await page.locator('main').innerText(), /unique electors/);
  await page.goto(base(DEMO_URL) + '/posture');
  assert.match(await page.locator('main').innerText(), /weaknesses found/);
  await assertInert(page, 'posture');
  await page.goto(base(DEMO_URL) + '/coverage');
  assert.match(await page.locator('main').innerText(), /log files read/);
  await shot(page, 'ui-coverage');
  await page.goto(base(DEMO_URL) + '/report.html');
  assert.match(await page.locator('body').innerText(), /checked by the browser test/);
  await assertInert(page, 'report from the UI');
  await ctx.close();
}

// ---- The UI over the hostile case: every page, every finding.
{
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  watch(page);
  await page.goto(HOSTILE_URL);
  await assertInert(page, 'hostile overview');
  const origin = base(HOSTILE_URL);
  const visit = async (href, where) => {
    await page.goto(origin + href);
    await assertInert(page, where);
  };
  const links = async (sel) => [...new Set(await page.locator(sel).evaluateAll((as) => as.map((a) => a.getAttribute('href'))))];
  for (const href of await links('a[href^="/incidents/"], a[href^="/campaigns/"], a[href^="/entity/"]')) {
    await visit(href, `hostile ${href}`);
  }
  await visit('/findings', 'hostile findings');
  for (const href of await links('table.findings a[href^="/findings/"]')) {
    await visit(href, `hostile ${href}`);
    for (const pivot of await links('a[href^="/entity/"], a[href^="/findings?rule="]')) {
      await visit(pivot, `hostile pivot ${pivot}`);
    }
  }
  await visit('/findings?q=' + encodeURIComponent('<script>window.__pwned=1</script>'), 'hostile search');
  await visit('/findings?host=' + encodeURIComponent('"><img src=x onerror=window.__pwned=1>'), 'hostile filter value');
  await visit('/coverage', 'hostile coverage');
  assert.ok((await page.locator('main').innerText()).includes('"><svg onload=window.__pwned=1>.log'), 'hostile file name as text');
  await visit('/report.html', 'hostile report via UI');
  await page.goto(origin + '/');
  await page.locator('a[href^="/campaigns/"]').first().click();
  await page.waitForURL(/\/campaigns\//);
  await page.fill('form.triage input[name=note]', '<img src=x onerror=window.__pwned=1>');
  await submit(page, 'form.triage button[type=submit]');
  assert.match(page.url(), /\/campaigns\//);
  assert.match(await page.locator('ul.triage').innerText(), /<img src=x onerror=window.__pwned=1>/);
  await assertInert(page, 'hostile triage note');
  await shot(page, 'ui-hostile-campaign');
  await ctx.close();
}

await browser.close();
console.log(`browser tests: OK (${checks} pages checked inert; screenshots in ${ARTIFACTS})`);
