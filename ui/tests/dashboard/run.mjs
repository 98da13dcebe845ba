// The supervisors' dashboard in Debian's Chromium (playwright-core) against a real
// feltbog-server with data synced by feltbog-device: first-time set-up, sign-in, back-off after
// wrong passwords, filters, charts that draw, CSV and Excel downloads parsed as a spreadsheet
// would, a cross-site change refused, axe on every screen, screenshots for the README.
// Needs target/debug/feltbog-server and feltbog-device (FELTBOG_SERVER, FELTBOG_DEVICE).
import AxeBuilder from '@axe-core/playwright';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { unzipSync, strFromU8 } from 'fflate';
import { chromium } from 'playwright-core';

const ui = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const root = resolve(ui, '..');
// Where cargo put them: CARGO_TARGET_DIR when set, else the workspace's target/.
const built = join(process.env.CARGO_TARGET_DIR ? resolve(root, process.env.CARGO_TARGET_DIR) : join(root, 'target'), 'debug');
const serverBin = resolve(process.env.FELTBOG_SERVER ?? join(built, 'feltbog-server'));
const deviceBin = resolve(process.env.FELTBOG_DEVICE ?? join(built, 'feltbog-device'));
const shots = join(root, 'docs/screenshots');
const t0 = Date.now();
const passed = [];
const failures = [];
let violations = 0;

const freePort = () =>
  new Promise((ok) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });

async function until(what, probe, timeoutMs = 20_000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

async function step(name, fn) {
  try {
    await fn();
    passed.push(name);
    console.log(`ok   ${name}`);
  } catch (e) {
    failures.push(name);
    console.log(`FAIL ${name}: ${e.stack ?? e}`);
  }
}

async function axe(page, screen) {
  const results = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']).analyze();
  const bad = results.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  violations += bad.length;
  assert(bad.length === 0, `axe on ${screen}: ${bad.map((v) => `${v.id} (${v.nodes.length})`).join(', ')}`);
}

// --- A server with two supervised teams and a year of synthetic work -----------------------
const data = await mkdtemp(join(tmpdir(), 'feltbog-dashboard-'));
const admin = (...args) => execFileSync(serverBin, ['--data-dir', join(data, 'server'), 'admin', ...args], { encoding: 'utf8' }).trim();
const nord = admin('create-team', 'Team Nord');
const syd = admin('create-team', 'Team Syd');
const sara = admin('create-worker', '--team', nord, '--name', 'Sara Supervisor', '--role', 'supervisor');
admin('supervise', '--worker', sara, '--team', syd);
const per = admin('create-worker', '--team', nord, '--name', 'Per Supervisor', '--role', 'supervisor');
const anna = admin('create-worker', '--team', nord, '--name', 'Anna', '--role', 'outreach');
const port = await freePort();
const server = spawn(serverBin, ['--data-dir', join(data, 'server'), 'serve', '--listen', `127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'pipe'] });
let serverLog = '';
server.stderr.on('data', (d) => (serverLog += d));
const base = `http://127.0.0.1:${port}`;
await until('the server', async () => (await fetch(`${base}/healthz`).catch(() => null))?.ok);

const store = join(data, 'anna.store');
const device = (args, input = '', at = store) =>
  execFileSync(deviceBin, ['--store', at, ...args], { input, encoding: 'utf8', env: { ...process.env, FELTBOG_PASSPHRASE: 'dashboard-test-passphrase' } }).trim();
device(['init', '--kdf-memory-kib', '19456', '--kdf-iterations', '2']);
device(['enrol', '--server', base, '--code', admin('enrolment-code', '--worker', anna)]);
const kinds = ['home_visit', 'street_contact', 'phone', 'contact_centre'];
const themes = ['housing', 'mental_health', 'substance_use', 'economy_and_debt'];
const housing = ['street', 'shelter', 'alternative_housing', 'own_rental'];
const citizens = [];
for (let i = 0; i < 12; i++) {
  citizens.push(JSON.parse(device(['--json', 'citizen', 'add', '--alias', `Markør ${i}`, '--cpr', '010190-1234', '--phone', '88776655', '--housing', housing[i % 4]])).id);
}
const lines = [];
for (let i = 0; i < 48; i++) {
  const args = ['--json', 'visit', 'add', '--citizen', citizens[i % 12], '--kind', kinds[i % 4], '--theme', themes[i % 4], '--note', 'Markørnote', '--wellbeing', String(3 + (i % 6))];
  if (i % 5 === 0) args.push('--referral', 'housing_support');
  const id = JSON.parse(device(args)).id;
  const record = JSON.parse(device(['--json', 'visit', 'show', id]));
  // Eight contacts with eight citizens a week over the last six weeks: the weekly chart has
  // a line above the discretion rule.
  record.started_at = new Date(Date.now() - Math.floor(i / 8) * 7 * 86_400_000).toISOString();
  lines.push(JSON.stringify({ kind: 'visit', record }));
}
device(['import'], `${lines.join('\n')}\n`);
device(['sync']);
// A conflict for the review: Anna's second tablet and her first edit one note offline.
const second = join(data, 'anna2.store');
device(['init', '--kdf-memory-kib', '19456', '--kdf-iterations', '2'], '', second);
device(['enrol', '--server', base, '--code', admin('enrolment-code', '--worker', anna)], '', second);
device(['sync'], '', second);
const disputed = JSON.parse(lines[0]).record.id;
for (const [at, note] of [[store, 'Talte om huslejen'], [second, 'Talte om lægen']]) {
  const record = JSON.parse(device(['--json', 'visit', 'show', disputed], '', at));
  device(['import'], `${JSON.stringify({ kind: 'visit', record: { ...record, note } })}\n`, at);
}
for (const at of [store, second, store]) device(['sync'], '', at);
const PASSWORD = 'rapporter om fredagen 7';

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: ['--no-sandbox'] });
const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'da-DK', acceptDownloads: true });
const page = await context.newPage();
const errors = [];
// Refused requests (401 before sign-in, 403 and 429 on purpose) are logged by Chromium as
// failed loads; their statuses are checked where they happen. Anything else is an error.
page.on('console', (m) => m.type() === 'error' && !m.text().startsWith('Failed to load resource') && errors.push(m.text()));
page.on('pageerror', (e) => errors.push(String(e)));

try {
  await step('first-time set-up with the one-time code, then sign-in', async () => {
    const code = admin('web-access', '--worker', sara, '--login', 'sara');
    await page.goto(base);
    await page.getByRole('heading', { name: 'Log ind' }).waitFor();
    await axe(page, 'sign-in');
    await page.getByRole('button', { name: /Første gang/ }).click();
    await page.getByLabel('Loginnavn').fill('sara');
    await page.getByLabel('Engangskode').fill(code);
    await page.getByLabel(/Nyt kodeord/).fill(PASSWORD);
    await page.getByLabel('Gentag kodeordet').fill(PASSWORD);
    await axe(page, 'set-up');
    await page.getByRole('button', { name: 'Gem kodeord' }).click();
    await page.getByText('Kodeordet er gemt').waitFor();
    await page.getByLabel('Kodeord', { exact: true }).fill(PASSWORD);
    await page.getByLabel('Loginnavn').fill('sara');
    await page.getByRole('button', { name: 'Log ind' }).click();
    await page.getByTestId('signed-in').filter({ hasText: 'Sara Supervisor' }).waitFor();
  });

  await step('the reports show with charts that draw', async () => {
    await page.locator('[data-report="conflicts"] table').first().waitFor();
    const overview = await page.locator('[data-report="contacts"] table').first().innerText();
    assert(/Kontakter\s+48/.test(overview), `contacts overview: ${overview}`);
    const drawn = await page.locator('canvas').evaluateAll((canvases) =>
      canvases.map((c) => {
        const { data } = c.getContext('2d').getImageData(0, 0, c.width, c.height);
        let painted = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) painted++;
        return painted;
      }),
    );
    assert(drawn.length >= 6, `only ${drawn.length} charts`);
    assert(drawn.every((n) => n > 100), `an empty chart: ${drawn}`);
    for (const text of ['Markør', '010190', '88776655', 'Markørnote']) {
      assert(!(await page.content()).includes(text), `the page shows ${text}`);
    }
    await axe(page, 'reports');
    await page.screenshot({ path: join(shots, 'dashboard-reports.png') });
  });

  await step('filter: one small team shows "<5" and no total', async () => {
    await page.getByLabel('Team').selectOption({ label: 'Team Syd' });
    await page.getByRole('button', { name: 'Vis' }).click();
    await until('Team Syd\'s figures', async () => {
      const overview = await page.locator('[data-report="contacts"] table').first().innerText();
      return /Kontakter\s+<5/.test(overview) || /Kontakter\s+0/.test(overview) ? overview : null;
    });
    await page.getByLabel('Team').selectOption({ label: 'Alle mine teams' });
    await page.getByRole('button', { name: 'Vis' }).click();
    await until('all teams again', async () => /Kontakter\s+48/.test(await page.locator('[data-report="contacts"] table').first().innerText()));
  });

  await step('CSV downloads as Danish Excel reads it: BOM, ";", decimal comma, no personal data', async () => {
    const [download] = await Promise.all([page.waitForEvent('download'), page.locator('[data-report="wellbeing"] a[data-format="csv"]').click()]);
    const bytes = await readFile(await download.path());
    assert(bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf, 'no BOM');
    const rows = bytes.toString('utf8').slice(1).split('\r\n').map((l) => l.split(';'));
    assert(rows[0][0] === 'Overblik' && rows[0][1] === 'Tal', `header: ${rows[0]}`);
    const mean = rows.find((r) => r[1] === 'Gennemsnit');
    assert(mean && /^\d+,\d$/.test(mean[2]), `mean: ${mean}`);
    assert(!bytes.toString('utf8').includes('Markør'), 'the CSV holds a name');
  });

  await step('Excel downloads with a sheet per table and native charts', async () => {
    const [download] = await Promise.all([page.waitForEvent('download'), page.locator('[data-report="contacts"] a[data-format="xlsx"]').click()]);
    const files = unzipSync(new Uint8Array(await readFile(await download.path())));
    const sheets = Object.keys(files).filter((f) => /^xl\/worksheets\/sheet\d+\.xml$/.test(f));
    assert(sheets.length === 7, `sheets: ${sheets}`);
    assert(Object.keys(files).some((f) => f.startsWith('xl/charts/chart')), 'no chart');
    const workbook = strFromU8(files['xl/workbook.xml']);
    assert(workbook.includes('Efter uge') && workbook.includes('Overblik'), 'sheet names');
    const strings = strFromU8(files['xl/sharedStrings.xml']);
    assert(strings.includes('Kontakter') && !strings.includes('Markør'), 'shared strings');
  });

  await step('English, then back to Danish', async () => {
    await page.getByRole('button', { name: 'English' }).click();
    await page.getByRole('heading', { name: 'Contacts', exact: true }).waitFor();
    await until('English tables', async () => (await page.locator('[data-report="contacts"] h3').first().innerText()) === 'Overview');
    await axe(page, 'reports-en');
    await page.getByRole('button', { name: 'Dansk' }).click();
    await page.getByRole('heading', { name: 'Kontakter', exact: true }).waitFor();
  });

  await step('a conflict settled in the dashboard reaches the tablets', async () => {
    await page.getByRole('button', { name: 'Konflikter' }).click();
    const item = page.getByRole('article', { name: 'Besøg – Notat' });
    await item.waitFor();
    const text = await item.innerText();
    assert(text.includes('Talte om huslejen') && text.includes('Talte om lægen'), text);
    assert(text.includes('skrevet af Anna'), 'the authors are named');
    await axe(page, 'conflicts');
    await page.screenshot({ path: join(shots, 'dashboard-conflicts.png') });
    await item.getByLabel('Skriv sammen').fill('Talte om huslejen og lægen');
    await item.getByRole('button', { name: 'Gem den samlede tekst' }).click();
    await page.getByRole('status').filter({ hasText: 'Konflikten er afgjort' }).waitFor();
    await page.getByText('Ingen åbne konflikter').waitFor();
    for (const at of [second, store]) {
      device(['sync'], '', at);
      const note = JSON.parse(device(['--json', 'visit', 'show', disputed], '', at)).note;
      assert(note === 'Talte om huslejen og lægen', `a tablet holds ${note}`);
    }
    await page.getByRole('button', { name: 'Rapporter' }).click();
    await page.locator('[data-report="contacts"] table').first().waitFor();
  });

  await step('a change without the CSRF token is refused', async () => {
    const status = await page.evaluate(async () => (await fetch('/dashboard/api/sign-out', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' })).status);
    assert(status === 403, `sign-out without the token answered ${status}`);
  });

  await step('sign out', async () => {
    await page.getByRole('button', { name: 'Log ud' }).click();
    await page.getByRole('heading', { name: 'Log ind' }).waitFor();
    const status = await page.evaluate(async () => (await fetch('/dashboard/api/session')).status);
    assert(status === 401, `the session survived: ${status}`);
  });

  await step('wrong passwords back off with a message saying how long to wait', async () => {
    const code = admin('web-access', '--worker', per, '--login', 'per');
    const api = (path, body) => fetch(`${base}/dashboard/api/${path}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    assert((await api('setup', { login: 'per', code, password: PASSWORD })).status === 204, 'set-up');
    await page.getByLabel('Loginnavn').fill('per');
    await page.getByLabel('Kodeord', { exact: true }).fill('forkert kodeord!');
    // Each answer is awaited (no timing): refusals until the back-off answers "wait".
    const statuses = [];
    for (let i = 0; i < 10 && !statuses.includes(429); i++) {
      const [response] = await Promise.all([
        page.waitForResponse((r) => r.url().endsWith('/dashboard/api/sign-in')),
        page.getByRole('button', { name: 'Log ind' }).click(),
      ]);
      statuses.push(response.status());
    }
    assert(statuses.slice(0, 3).every((s) => s === 401), `the first answers: ${statuses}`);
    assert(statuses.at(-1) === 429, `never asked to wait: ${statuses}`);
    await page.getByRole('alert').filter({ hasText: /Vent \d+ sekunder/ }).waitFor();
    await axe(page, 'sign-in-wait');
    await page.screenshot({ path: join(shots, 'dashboard-sign-in-wait.png') });
  });

  await step('no console errors or CSP violations', async () => {
    assert(errors.length === 0, errors.join('\n'));
  });
} finally {
  await browser.close();
  server.kill();
  await rm(data, { recursive: true, force: true });
}
if (failures.length) console.error(serverLog.slice(-3000));
console.log(`\nSummary: ${passed.length} flows passed, ${failures.length} failed; dashboard; axe serious/critical violations: ${violations}; ${((Date.now() - t0) / 1000).toFixed(1)} s`);
process.exit(failures.length ? 1 : 0);
