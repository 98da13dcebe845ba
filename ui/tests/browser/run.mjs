// Browser tests of the built UI (ui/dist; run `npm run build` first). Serves dist on 127.0.0.1
// with the app's CSP, runs Debian's Chromium through playwright-core, replaces the Rust backend
// with Tauri's mockIPC (tests/browser/fake-backend.ts, bundled here to an IIFE), and runs the main
// flows at 1280×800 and 800×1280: axe on every screen, touch targets ≥ 44 px, no console errors
// or CSP violations, screenshots into docs/screenshots. Exits non-zero naming the failed steps.
import AxeBuilder from '@axe-core/playwright';
import { createServer } from 'node:http';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { extname, join, normalize, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import QRCode from 'qrcode';
import { build } from 'vite';

const here = dirname(fileURLToPath(import.meta.url));
const ui = resolve(here, '../..');
const dist = join(ui, 'dist');
const shots = resolve(ui, '../docs/screenshots');
const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
  "connect-src ipc: http://ipc.localhost; object-src 'none'; base-uri 'none'; " +
  "frame-ancestors 'none'; form-action 'none'";
const VIEWPORTS = [
  { name: 'landscape', width: 1280, height: 800 },
  { name: 'portrait', width: 800, height: 1280 },
];
// Screens to photograph, per orientation.
const SHOOT = {
  landscape: ['first-run', 'today', 'quick-contact', 'citizen', 'conflicts', 'site-log', 'caseload', 'set-aside', 'pathway-edit'],
  portrait: ['lock', 'today', 'quick-contact', 'visit', 'citizen-edit', 'settings', 'pathway-edit'],
};

// ---------- harness ----------
const failures = [];
const passed = [];
const scanned = new Set();
const shot = new Set();
let violationCount = 0;

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

async function serve() {
  const types = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css', '.png': 'image/png', '.svg': 'image/svg+xml', '.json': 'application/json' };
  const server = createServer(async (req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname));
    const file = join(dist, path === '/' ? 'index.html' : path);
    if (!file.startsWith(dist)) return void res.writeHead(403).end();
    try {
      const body = await readFile(file);
      res.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream', 'content-security-policy': CSP, 'cache-control': 'no-store' });
      res.end(body);
    } catch {
      res.writeHead(404, { 'content-security-policy': CSP }).end('not found');
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return server;
}

async function bundleFake() {
  const out = await build({
    configFile: false,
    logLevel: 'warn',
    root: ui,
    build: {
      write: false,
      minify: false,
      lib: { entry: join(here, 'fake-backend.ts'), formats: ['iife'], name: 'FeltbogFake' },
    },
  });
  const result = Array.isArray(out) ? out[0] : out;
  return result.output[0].code;
}

/** A fresh context + page with the fake backend seeded; collects console errors. */
async function open(browser, base, vp, seed) {
  const context = await browser.newContext({ viewport: { width: vp.width, height: vp.height }, deviceScaleFactor: 1, hasTouch: true, locale: 'da-DK' });
  const page = await context.newPage();
  const errors = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('response', (r) => {
    if (r.status() >= 400) errors.push(`HTTP ${r.status()} for ${r.url()}`);
  });
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  await page.addInitScript((s) => {
    window.__FELTBOG_SEED__ = s;
  }, seed);
  await page.addInitScript({ content: fakeCode });
  await page.goto(base);
  return { context, page, errors };
}

async function screen(page, name) {
  await page.locator(`[data-screen="${name}"]`).waitFor({ state: 'visible', timeout: 5000 });
  await page.waitForTimeout(350); // debounced searches and loads settle
}

/** Axe + touch targets on the current screen; a screenshot if this one is listed. */
async function audit(page, name, vp, { shoot = true } = {}) {
  await screen(page, name);
  const small = await page.evaluate(() => {
    const bad = [];
    for (const el of document.querySelectorAll('button, input, select, textarea, a[href]')) {
      if (el.closest('.sr-only')) continue;
      let r = el.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue;
      const type = el.getAttribute('type');
      // A checkbox or radio is tapped through its whole label.
      if ((type === 'checkbox' || type === 'radio') && el.closest('label')) r = el.closest('label').getBoundingClientRect();
      if (r.width < 44 || r.height < 44) bad.push(`${el.tagName.toLowerCase()}#${el.id || ''}.${el.className || ''} ${Math.round(r.width)}×${Math.round(r.height)}`);
    }
    return bad;
  });
  assert(small.length === 0, `touch targets under 44 px on ${name}: ${small.join('; ')}`);
  const results = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']).analyze();
  const bad = results.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  scanned.add(`${name}@${vp.name}`);
  if (bad.length) {
    violationCount += bad.length;
    const text = bad.map((v) => `  [${v.impact}] ${v.id}: ${v.help}\n    ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join('\n    ')}`).join('\n');
    throw new Error(`axe found ${bad.length} serious/critical violation(s) on ${name}:\n${text}`);
  }
  if (shoot && SHOOT[vp.name].includes(name) && !shot.has(`${name}@${vp.name}`)) {
    shot.add(`${name}@${vp.name}`);
    // Scrolled to the top, without a leftover "saved" toast from the step before.
    await page.evaluate(() => {
      document.querySelector('main')?.scrollTo(0, 0);
      for (const el of document.querySelectorAll('.toast-region')) el.hidden = true;
    });
    await page.screenshot({ path: join(shots, `${name}-${vp.name}.png`) });
    await page.evaluate(() => {
      for (const el of document.querySelectorAll('.toast-region')) el.hidden = false;
    });
  }
}

async function flow(browser, base, vp, name, seed, fn) {
  const label = `${name} @ ${vp.name}`;
  let ctx;
  try {
    ctx = await open(browser, base, vp, seed);
    await fn(ctx.page, vp);
    assert(ctx.errors.length === 0, `console errors / CSP violations:\n  ${ctx.errors.join('\n  ')}`);
    passed.push(label);
    console.log(`ok   ${label}`);
  } catch (e) {
    failures.push(label);
    console.log(`FAIL ${label}\n     ${String(e?.message ?? e).split('\n').join('\n     ')}`);
    if (ctx?.page) await ctx.page.screenshot({ path: join(ui, 'test-results', `${name}-${vp.name}-failure.png`) }).catch(() => {});
  } finally {
    await ctx?.context.close();
  }
}

/** Waits until a saved draft holds `text`: a form keeps a draft as soon as it differs from how it
 * opened (e.g. a citizen picked), so "a draft exists" can be true before the typed words are in it. */
const draftHolds = (page, text) =>
  page.waitForFunction((t) => JSON.stringify(window.__fake.db().drafts).includes(t), text);
/** Asserts an input's value once the form has had a moment to take it (a resumed draft is put
 * into the form on the next update, not within the click). */
async function valueIs(page, sel, want, message) {
  await page.waitForFunction(([s, w]) => document.querySelector(s)?.value === w, [sel, want], { timeout: 5000 }).catch(() => {});
  assert((await page.inputValue(sel)) === want, message);
}
const unsynced = async (page) => Number(await page.getAttribute('[data-testid="sync-bar"]', 'data-unsynced'));
const text = (page) => page.locator('main').innerText();

// ---------- flows ----------
const flows = [
  ['first run → today', { phase: 'first_run', demo: false }, async (page, vp) => {
    await audit(page, 'first-run', vp);
    await page.click('#first-run-submit');
    assert(await page.locator('#server-url-error').isVisible(), 'empty form shows a server address error');
    await page.fill('#server-url', 'feltbog.example.dk');
    await page.fill('#enrol-code', 'K7P-22Q');
    await page.fill('#pin', '246810');
    await page.fill('#pin-repeat', '246811');
    await page.click('#first-run-submit');
    assert(await page.locator('#server-url-error').isVisible(), 'an address without http(s):// is refused');
    assert(await page.locator('#pin-repeat-error').isVisible(), 'different PINs are refused');
    await page.fill('#server-url', 'https://feltbog.example.dk');
    await page.fill('#pin-repeat', '246810');
    await page.click('#first-run-submit');
    await page.locator('.working').waitFor({ state: 'visible', timeout: 2000 });
    await screen(page, 'today');
    await audit(page, 'today', vp, { shoot: false }); // empty; the demo data makes a better picture
  }],
  ['revoked tablet: first run says the data was erased', { phase: 'first_run', demo: false }, async (page) => {
    const notice = page.locator('[data-testid="revoked-notice"]');
    assert(!(await notice.isVisible()), 'no notice on an ordinary first run');
    // What Rust does after a 401 with a wipe instruction: the store is gone, the bar says revoked.
    await page.evaluate(() => window.__fake.emitSync({ state: 'revoked', unsynced: 0 }));
    await notice.waitFor({ state: 'visible', timeout: 2000 });
    assert((await notice.innerText()).includes('slettet'), 'the notice says (in Danish) that the data was erased');
  }],
  ['a change of access: the sync bar says the tablet fetches its data again', { phase: 'unlocked', demo: true }, async (page) => {
    const notice = page.locator('[data-testid="rescoping"]');
    assert(!(await notice.isVisible()), 'no notice without a change of access');
    // What Rust reports while the tablet follows a scope change (core's store::Rescope).
    await page.evaluate(() => window.__fake.emitSync({ rescoping: true, state: 'syncing' }));
    await notice.waitFor({ state: 'visible', timeout: 2000 });
    assert((await notice.innerText()).includes('adgang er ændret'), 'the notice says (in Danish) that the access changed');
    await page.evaluate(() => window.__fake.emitSync({ rescoping: false, state: 'online' }));
    await notice.waitFor({ state: 'hidden', timeout: 2000 });
  }],
  ['first run opened by a feltbog-enrol: link: the fields come filled', { phase: 'first_run', demo: false, openedWith: 'feltbog-enrol:http://127.0.0.1:8080/#ABC-123' }, async (page) => {
    await screen(page, 'first-run');
    await page.locator('#filled-from').waitFor({ state: 'visible', timeout: 2000 });
    assert((await page.inputValue('#server-url')) === 'http://127.0.0.1:8080', 'server address from the link');
    assert((await page.inputValue('#enrol-code')) === 'ABC-123', 'code from the link');
    await page.fill('#enrol-code', 'XYZ-999');
    assert((await page.inputValue('#enrol-code')) === 'XYZ-999', 'typing stays possible');
  }],
  ['first run opened by a damaged link: said, and the fields stay empty', { phase: 'first_run', demo: false, openedWith: 'feltbog-enrol:ftp://x#ABC' }, async (page) => {
    await screen(page, 'first-run');
    await page.locator('.error-banner').waitFor({ state: 'visible', timeout: 2000 });
    assert((await page.locator('.error-banner').innerText()).includes('beskadiget'), 'a damaged link is named');
    assert((await page.inputValue('#server-url')) === '', 'nothing filled in');
  }],
  ['lock → wrong PIN → unlock → lock now', { phase: 'locked', demo: true }, async (page, vp) => {
    await audit(page, 'lock', vp);
    const bar = page.locator('[data-testid="sync-bar"]');
    assert(await bar.isVisible(), 'sync bar visible on the lock screen');
    await page.fill('#unlock-pin', '000000');
    await page.click('#unlock-submit');
    await page.locator('.error-banner').waitFor();
    const msg = await page.locator('.error-banner').innerText();
    assert(/4 forsøg tilbage/.test(msg), `wrong PIN shows attempts left, got "${msg}"`);
    await audit(page, 'lock', vp);
    await page.fill('#unlock-pin', '246810');
    await page.click('#unlock-submit');
    await screen(page, 'today');
    await audit(page, 'today', vp);
    await page.click('#nav-settings');
    assert(await page.evaluate(() => window.__fake.db().calls.filter((c) => c === 'touch').length === 1), 'a tap while unlocked calls touch once');
    await audit(page, 'settings', vp);
    await page.click('#lock-now');
    await screen(page, 'lock');
    assert(!(await page.content()).includes('Ravnen'), 'no personal data in the DOM after locking');
    await page.fill('#unlock-pin', '246810');
    await page.click('#unlock-submit');
    await screen(page, 'today');
    await page.evaluate(() => window.__fake.idleLock()); // the idle lock fires in Rust
    await screen(page, 'lock');
    assert(!(await page.content()).includes('Ravnen'), 'no personal data in the DOM after the idle lock');
  }],
  ['quick anonymous contact + sync now', { phase: 'unlocked', demo: true }, async (page, vp) => {
    await screen(page, 'today');
    const before = await unsynced(page);
    await page.click('#open-quick-contact'); // tap 1
    await audit(page, 'quick-contact', vp);
    assert(await page.isChecked('#qc-anonymous'), 'anonymous is the default');
    assert((await page.inputValue('#qc-count')) === '1', 'count defaults to 1');
    await page.click('[data-theme="substance_use"]'); // tap 2
    await page.click('[data-theme="housing"]'); // tap 3
    assert((await page.getAttribute('[data-theme="housing"]', 'aria-pressed')) === 'true', 'theme chip toggles on');
    await page.fill('#qc-description', 'Kvinde i 40erne ved Netto');
    await page.fill('#qc-note', 'Fik sovepose og info om natcaféen.');
    assert(await page.locator('#qc-save').isVisible(), 'save button in view');
    await page.click('#qc-save'); // tap 4
    await page.locator('[data-testid="saved-toast"]').waitFor();
    await screen(page, 'today');
    assert((await unsynced(page)) === before + 1, `unsynced went from ${before} to ${await unsynced(page)}`);
    assert((await text(page)).includes('Kvinde i 40erne ved Netto'), 'the contact is in recent contacts');
    await page.click('#sync-now');
    await page.waitForFunction(() => document.querySelector('[data-testid="sync-bar"]')?.getAttribute('data-state') === 'syncing');
    await page.waitForFunction(() => document.querySelector('[data-testid="sync-bar"]')?.getAttribute('data-state') === 'online' && document.querySelector('[data-testid="sync-bar"]')?.getAttribute('data-unsynced') === '0', null, { timeout: 5000 });
  }],
  ['add citizen → visit with follow-up → tasks, today, caseload search', { phase: 'unlocked', demo: true }, async (page, vp) => {
    await page.click('#nav-caseload');
    await audit(page, 'caseload', vp);
    await page.click('#add-citizen');
    await screen(page, 'citizen-edit');
    await page.click('#citizen-save');
    assert(await page.locator('#c-alias-error').isVisible(), 'alias or name is required');
    await page.fill('#c-alias', 'Birdie');
    await page.fill('#c-full-name', 'Birgit Prøvesen');
    await page.selectOption('#c-housing', 'stairwell_community');
    await page.click('#add-goal');
    await page.fill('#goal-0', 'Jeg vil gerne have en hund igen.');
    await page.check('#c-has-consent');
    await audit(page, 'citizen-edit', vp);
    await page.click('#citizen-save');
    await screen(page, 'citizen');
    let t = await text(page);
    assert(t.includes('Birdie') && t.includes('Jeg vil gerne have en hund igen.'), 'new citizen page shows alias and goal');
    await page.click('#citizen-new-visit');
    await audit(page, 'visit', vp);
    assert((await page.locator('.picked-label').innerText()).includes('Birdie'), 'citizen preselected');
    await page.fill('#v-place', 'Hjemme hos Birdie');
    await page.fill('#v-note', 'Birdie fortalte om sin gamle hund. Vi talte om at søge om husdyrtilladelse.');
    await page.click('[data-theme="network_and_loneliness"]');
    await page.selectOption('#v-wellbeing', '7');
    await page.check('#v-follow-up');
    await page.fill('#v-fu-title', 'Spørg boligselskabet om husdyr');
    await page.click('#visit-save');
    await screen(page, 'citizen');
    t = await text(page);
    assert(t.includes('Birdie fortalte om sin gamle hund'), 'visit on the citizen timeline');
    assert(t.includes('Spørg boligselskabet om husdyr'), 'follow-up task on the citizen page');
    await page.click('#nav-tasks');
    await audit(page, 'tasks', vp);
    assert((await text(page)).includes('Spørg boligselskabet om husdyr'), 'follow-up on the tasks screen');
    await page.click('#nav-today');
    await screen(page, 'today');
    assert((await text(page)).includes('Spørg boligselskabet om husdyr'), 'follow-up due on today');
    await page.click('#nav-caseload');
    await screen(page, 'caseload');
    await page.fill('#caseload-search', 'birdie');
    await page.waitForFunction(() => document.querySelectorAll('[data-citizen]').length === 1, null, { timeout: 3000 });
    assert((await page.locator('[data-citizen]').innerText()).includes('Birdie'), 'search finds the new citizen');
  }],
  ['citizen page: goals, visit, task done', { phase: 'unlocked', demo: true }, async (page, vp) => {
    await page.click('#nav-caseload');
    await screen(page, 'caseload');
    await page.click('[data-citizen] >> text=Ravnen');
    await audit(page, 'citizen', vp);
    const t = await text(page);
    assert(t.includes('Jeg vil have min egen lejlighed inden jul.'), 'goals shown');
    assert(t.includes('Talte om boligansøgningen'), 'visit shown');
    assert(t.includes('Overskredet'), 'overdue task marked');
    await page.click('#edit-citizen');
    await screen(page, 'citizen-edit');
    assert((await page.locator('.tag-chip').allInnerTexts()).some((x) => x.includes('natcafé')), 'existing tag shown as a chip');
    await page.fill('#c-tag-new', 'x'.repeat(61));
    await page.click('#c-tag-add');
    assert(await page.locator('#c-tag-new-error').isVisible(), 'a tag over 60 characters is refused');
    await page.fill('#c-tag-new', ' metadon ');
    await page.click('#c-tag-add');
    await page.locator('.tag-chip[data-tag="metadon"]').waitFor();
    assert(!(await page.locator('#c-tag-new-error').isVisible()), 'the tag error clears once a tag is added');
    assert(await page.locator('#c-archived').isVisible(), 'archive checkbox on an edit');
    await audit(page, 'citizen-edit', vp);
    await page.click('#citizen-save');
    await screen(page, 'citizen');
    const tags = await page.locator('.citizen-tags').innerText();
    assert(tags.includes('metadon') && tags.includes('natcafé'), `the new tag shows on the citizen page, got "${tags}"`);
    await page.click('.task >> text=Udført');
    await page.locator('[data-testid="saved-toast"]').waitFor();
    // Archiving: the case is closed, the citizen leaves the caseload.
    await page.click('#edit-citizen');
    await screen(page, 'citizen-edit');
    await page.click('label:has(#c-archived)');
    await page.click('#citizen-save');
    await screen(page, 'citizen');
    assert((await text(page)).includes('Arkiveret'), 'archived badge on the citizen page');
    await page.click('#nav-caseload');
    await screen(page, 'caseload');
    assert(!(await text(page)).includes('Ravnen'), 'an archived citizen leaves the caseload');
  }],
  ['conflict inbox: keep mine, merged, dismiss', { phase: 'unlocked', demo: true }, async (page, vp) => {
    await page.click('#nav-conflicts');
    await audit(page, 'conflicts', vp);
    const count = () => page.locator('[data-conflict]').count();
    assert((await count()) === 3, 'three conflicts');
    const t = await text(page);
    assert(t.includes('Min version') && t.includes('Deres version'), 'two versions side by side');
    assert(t.includes('skrevet af Bo Demo'), 'the other version names its author');
    // A goal's versions in words: its text, its status and date translated, no JSON.
    const goal = page.locator('[data-conflict]').nth(1);
    const goalText = await goal.innerText();
    assert(goalText.includes('På pause') && goalText.includes('Aktivt') && goalText.includes('02.11.2026'), 'goal status and date in words');
    assert(!goalText.includes('{') && !goalText.includes('"status"'), 'no raw JSON');
    await page.locator('[data-conflict]').nth(0).locator('.conflict-keep-mine').click();
    await page.waitForFunction(() => document.querySelectorAll('[data-conflict]').length === 2);
    const first = page.locator('[data-conflict]').nth(0);
    await first.locator('.conflict-merge').click();
    const merged = await first.locator('textarea').inputValue();
    assert(merged.includes('Komme ud at gå hver dag.') && merged.includes('frivilligcentret'), 'merge text holds both versions');
    await audit(page, 'conflicts', vp);
    await first.locator('textarea').fill('Gå en tur hver dag, gerne med en fra frivilligcentret.');
    await first.locator('.conflict-save-merged').click();
    await page.waitForFunction(() => document.querySelectorAll('[data-conflict]').length === 1);
    const notice = page.locator('[data-kind="notice"]');
    assert((await notice.locator('.conflict-keep-mine').count()) === 1 && (await notice.locator('.conflict-keep-theirs').count()) === 1, 'a notice offers keep mine / keep theirs');
    assert((await notice.locator('.conflict-merge, textarea').count()) === 0, 'a notice has no merge editor');
    await notice.locator('.conflict-dismiss').click();
    await page.waitForFunction(() => document.querySelectorAll('[data-conflict]').length === 0);
    assert(await page.locator('#nav-conflicts .badge').count() === 0, 'no open conflicts badge');
  }],
  ['site log entry with a resident (residents first, link to the citizen)', { phase: 'unlocked', demo: true }, async (page, vp) => {
    await page.click('#nav-sites');
    await audit(page, 'sites', vp);
    await page.click('[data-site] >> text=Toftegården');
    await screen(page, 'site-log');
    await page.selectOption('#log-kind', 'neighbour_dialogue');
    await page.fill('#log-note', 'Snak med naboerne om musik om aftenen. Aftalt ro efter kl. 22.');
    await page.locator('.pick-first button').first().waitFor();
    assert((await page.locator('.pick-group').first().innerText()).includes('Beboere på stedet'), 'residents group heading');
    assert((await page.locator('.pick-results button').first().innerText()).includes('Lille Mette'), 'the site\'s resident is listed first');
    assert((await page.locator('.pick-first button').count()) === 1, 'only the residents of this site in the first group');
    await audit(page, 'site-log', vp, { shoot: false });
    await page.fill('#log-residents', 'mette');
    await page.locator('.pick-results button', { hasText: 'Lille Mette' }).click();
    await page.click('#log-save');
    await page.locator('[data-testid="saved-toast"]').waitFor();
    await page.waitForFunction(() => document.querySelector('main')?.innerText.includes('Aftalt ro efter kl. 22.'));
    assert((await text(page)).includes('Beboere:'), 'entry lists residents');
    await audit(page, 'site-log', vp);
    const link = page.locator('.card', { hasText: 'Aftalt ro efter kl. 22.' }).locator('.resident-link', { hasText: 'Lille Mette' });
    assert((await link.count()) === 1, 'the resident is a link on the entry');
    await link.click();
    await screen(page, 'citizen');
    assert((await page.locator('h1').innerText()).includes('Lille Mette'), 'the resident link opens the citizen page');
    assert((await page.locator('#resident-log').innerText()).includes('Aftalt ro efter kl. 22.'), 'the resident page lists the log entries that name her');
  }],
  ['saves marked until the server has them; refused edits set aside, copied or discarded with a confirmation', { phase: 'unlocked', demo: true }, async (page, vp) => {
    await screen(page, 'today');
    assert((await page.locator('[data-mark="pending"]').count()) >= 1, 'an unsent visit carries a "not sent yet" mark');
    await page.click('#open-quick-contact');
    await screen(page, 'quick-contact');
    await page.fill('#qc-note', 'Kort snak ved bænken.');
    await page.click('#qc-save');
    await page.locator('[data-testid="saved-toast"]').waitFor();
    assert((await page.innerText('[data-testid="saved-toast"]')).toLowerCase().includes('gemt på tabletten'), 'the toast says saved on this tablet');
    await page.click('#set-aside-link');
    await audit(page, 'set-aside', vp);
    const item = page.locator('[data-seq]').first();
    assert((await item.getAttribute('data-reason')) === 'out_of_scope', 'the reason is shown');
    const t = await item.innerText();
    assert(t.includes('Du må ikke længere skrive i denne post') && t.includes('Hjalp med at pakke til flytningen'), 'the reason in words and the values');
    await item.locator('.set-aside-discard').click();
    const confirm = await item.locator('.confirm').innerText();
    assert(confirm.includes('går tabt for altid') && confirm.includes('Hjalp med at pakke'), 'the discard confirmation names what is lost');
    await audit(page, 'set-aside', vp, { shoot: false });
    await item.locator('button', { hasText: 'Annullér' }).click();
    await item.locator('.set-aside-copy').click();
    await page.selectOption(`#copy-to-41`, { label: 'Ravnen' });
    await item.locator('.set-aside-copy-confirm').click();
    await page.waitForFunction(() => document.querySelectorAll('[data-seq]').length === 0);
    assert((await text(page)).includes('Ingen afviste ændringer'), 'nothing left aside');
    assert((await page.locator('#set-aside-link').count()) === 0, 'the bar no longer counts refused edits');
    await page.click('#nav-caseload');
    await page.locator('.citizen-card', { hasText: 'Ravnen' }).click();
    await screen(page, 'citizen');
    assert((await text(page)).includes('Hjalp med at pakke til flytningen'), 'the copied contact is on the citizen page');
  }],
  ['an open page refreshes when a sync brings a colleague\'s change', { phase: 'unlocked', demo: true }, async (page) => {
    await page.click('#nav-caseload');
    await page.locator('.citizen-card', { hasText: 'Ravnen' }).click();
    await screen(page, 'citizen');
    assert(!(await text(page)).includes('+45 29 99 99 99'), 'not the new number yet');
    await page.evaluate(() => window.__fake.pulled((db) => { db.citizens.find((c) => c.alias === 'Ravnen').phone = '+45 29 99 99 99'; }));
    await page.waitForFunction(() => document.querySelector('main')?.innerText.includes('+45 29 99 99 99'), null, { timeout: 5000 });
    // A progress event alone (nothing changed) does not reload: the page keeps what it shows.
    const calls = await page.evaluate(() => window.__fake.db().calls.filter((c) => c === 'citizen').length);
    await page.evaluate(() => window.__fake.emitSync({ progress: { pulled: 1, pending: 1, more: true } }));
    await page.evaluate(() => window.__fake.emitSync({ progress: null }));
    await page.click('#nav-today');
    await screen(page, 'today');
    const after = await page.evaluate(() => window.__fake.db().calls.filter((c) => c === 'citizen').length);
    assert(after === calls, `no reload for a progress event (${calls} → ${after})`);
  }],
  ['dates typed and shown in the UI language (06.12.2026, 20.48)', { phase: 'unlocked', demo: true }, async (page, vp) => {
    await page.click('#nav-caseload');
    await page.locator('.citizen-card', { hasText: 'Ravnen' }).click();
    await screen(page, 'citizen');
    assert((await page.getAttribute('#task-due', 'placeholder')) === 'dd.mm.åååå', 'a Danish date field asks for dd.mm.åååå');
    assert(/^\d{2}\.\d{2}\.\d{4}$/.test(await page.inputValue('#task-due')), 'the default due date is shown as dd.mm.åååå');
    await page.fill('#task-title', 'Ring til lægen');
    await page.fill('#task-due', '31.02.2027');
    await page.click('#task-add');
    assert((await text(page)).includes('Ugyldig dato') || (await page.locator('#task-due[aria-invalid="true"]').count()) === 1, 'a date that does not exist is named');
    await page.fill('#task-due', '13.1.27');
    await page.click('#task-add');
    await page.locator('[data-testid="saved-toast"]').waitFor();
    await page.waitForFunction(() => document.querySelector('main')?.innerText.includes('Frist 13.01.2027'));
    await page.click('#citizen-new-visit');
    await screen(page, 'visit');
    await page.fill('#v-start', '06.12.2026');
    await page.fill('#v-start-time', '20.48');
    await page.locator('#v-start-time').blur();
    assert((await page.inputValue('#v-start-time')) === '20.48', 'a time of day shown as tt.mm');
    await audit(page, 'visit', vp, { shoot: false });
  }],
  ['a task edited (title, due, assignee) and a citizen handed over with a note', { phase: 'unlocked', demo: true }, async (page, vp) => {
    await page.click('#nav-tasks');
    await screen(page, 'tasks');
    const card = page.locator('.card.task', { hasText: 'Tjek om Kaj har fået lægetid' });
    await card.locator('.task-edit-open').click();
    await card.locator('input[id^="te-title-"]').fill('Tjek om Kaj har fået tid hos lægen');
    await card.locator('input[id^="te-due-"]').fill('24.12.2030');
    await card.locator('select[id^="te-assignee-"]').selectOption({ label: 'Bo Demo' });
    await audit(page, 'tasks', vp, { shoot: false });
    await card.locator('.task-edit-save').click();
    await page.locator('[data-testid="saved-toast"]').waitFor();
    const edited = page.locator('.card.task', { hasText: 'Tjek om Kaj har fået tid hos lægen' });
    await edited.waitFor();
    const t = await edited.innerText();
    assert(t.includes('Frist 24.12.2030') && t.includes('Til Bo Demo'), 'the edited task shows its due date and assignee');
    await page.click('#nav-caseload');
    await page.locator('.citizen-card', { hasText: 'Ravnen' }).click();
    await screen(page, 'citizen');
    await page.click('#hand-over');
    await page.locator('#handover-save').click();
    assert((await page.locator('#handover-to[aria-invalid="true"]').count()) === 1, 'a colleague must be chosen');
    await page.selectOption('#handover-to', { label: 'Bo Demo (Bostøtte)' });
    await page.fill('#handover-note', 'Boligmøde fredag kl. 10. Ravnen foretrækker sms.');
    await audit(page, 'citizen', vp, { shoot: false });
    await page.click('#handover-save');
    await page.locator('[data-testid="saved-toast"]').waitFor();
    await page.waitForFunction(() => document.querySelector('#primary-worker')?.textContent?.includes('Bo Demo'));
    assert((await text(page)).includes('Overdraget fra Anne Demo: Boligmøde fredag kl. 10.'), 'the hand-over task carries the note');
  }],
  ['a visit corrected by its author, and an anonymous contact linked to a citizen', { phase: 'unlocked', demo: true }, async (page, vp) => {
    await screen(page, 'today');
    const anon = page.locator('.card.visit', { hasText: 'To mænd ved stationen' });
    await anon.locator('.visit-edit-open').click();
    await screen(page, 'visit');
    assert((await page.inputValue('#v-note')) === 'Delte kaffe ud, fortalte om varmestuen.', 'the form opens with the saved note');
    assert((await page.locator('#v-follow-up').count()) === 0, 'no follow-up when correcting');
    await page.fill('#v-note', 'Delte kaffe ud, fortalte om varmestuen og natcaféen.');
    await page.fill('#v-link', 'kaj');
    await page.locator('.pick-results button', { hasText: 'Kaj fra broen' }).click();
    await audit(page, 'visit', vp, { shoot: false });
    await page.click('#visit-save');
    await page.locator('[data-testid="saved-toast"]').waitFor();
    await screen(page, 'today');
    await page.waitForFunction(() => document.querySelector('main')?.innerText.includes('og natcaféen'));
    assert((await page.locator('.card.visit', { hasText: 'og natcaféen' }).innerText()).includes('Kaj fra broen'), 'the corrected contact is now about Kaj');
    const colleagues = page.locator('.card.visit', { hasText: 'Mette savner nogen' });
    assert((await colleagues.locator('.visit-edit-open').count()) === 0, 'no correction of a colleague\'s visit');
  }],
  ['drafts survive another menu item and the idle lock, and are offered again', { phase: 'unlocked', demo: true }, async (page, vp) => {
    await page.click('#open-quick-contact');
    await screen(page, 'quick-contact');
    await page.fill('#qc-note', 'Halvskrevet: mand med hund ved kirken');
    await draftHolds(page, 'Halvskrevet: mand med hund ved kirken');
    await page.click('#nav-caseload');
    await screen(page, 'caseload');
    await page.click('#nav-today');
    await page.click('#open-quick-contact');
    await screen(page, 'quick-contact');
    await page.locator('#draft-resume').waitFor();
    await audit(page, 'quick-contact', vp, { shoot: false });
    await page.click('#draft-resume');
    await valueIs(page, '#qc-note', 'Halvskrevet: mand med hund ved kirken', 'the draft is back in the form');
    await page.click('#qc-save');
    await page.locator('[data-testid="saved-toast"]').waitFor();
    assert(Object.keys(await page.evaluate(() => window.__fake.db().drafts)).length === 0, 'a saved form leaves no draft');

    // The idle lock drops the page; the visit note typed before it is offered after unlocking.
    await page.click('#nav-caseload');
    await page.locator('.citizen-card', { hasText: 'Ravnen' }).click();
    await page.click('#citizen-new-visit');
    await screen(page, 'visit');
    await page.fill('#v-note', 'Notat skrevet lige før låsen');
    await draftHolds(page, 'Notat skrevet lige før låsen');
    await page.evaluate(() => window.__fake.idleLock());
    await screen(page, 'lock');
    await page.fill('#unlock-pin', '246810');
    await page.click('#unlock-submit');
    await screen(page, 'today');
    await page.click('#nav-caseload');
    await page.locator('.citizen-card', { hasText: 'Ravnen' }).click();
    await page.click('#citizen-new-visit');
    await screen(page, 'visit');
    await page.click('#draft-resume');
    await valueIs(page, '#v-note', 'Notat skrevet lige før låsen', 'the note typed before the lock is back');
    await page.click('#draft-discard').catch(() => {});

    // The citizen form: a half-typed phone number survives a tap on another menu item.
    await page.click('#nav-caseload');
    await page.locator('.citizen-card', { hasText: 'Ravnen' }).click();
    await page.click('#edit-citizen');
    await screen(page, 'citizen-edit');
    assert((await page.locator('#draft-resume').count()) === 0, 'an edit form just opened offers no draft');
    await page.fill('#c-phone', '+45 20 30 40 50');
    await draftHolds(page, '+45 20 30 40 50');
    await page.click('#nav-today');
    await page.click('#nav-caseload');
    await page.locator('.citizen-card', { hasText: 'Ravnen' }).click();
    await page.click('#edit-citizen');
    await screen(page, 'citizen-edit');
    await page.click('#draft-resume');
    await valueIs(page, '#c-phone', '+45 20 30 40 50', 'the phone typed before leaving is back');
  }],
  ['settings: English, wipe confirmation', { phase: 'unlocked', demo: true }, async (page, vp) => {
    await page.click('#nav-settings');
    await audit(page, 'settings', vp);
    const me = await page.innerText('#signed-in');
    assert(me.includes('Anne Demo') && me.includes('Opsøgende medarbejder') && me.includes('Team Nord'), 'settings name the signed-in worker, role and team');
    await page.click('#wipe');
    // 2 unsynced and 1 refused: all three exist only on this tablet.
    assert((await text(page)).includes('3 ændringer findes kun på denne tablet'), 'wipe confirmation counts refused edits as lost work');
    await page.click('#wipe-cancel');
    await page.click('label:has(#lang-en)');
    await page.waitForFunction(() => document.documentElement.lang === 'en');
    assert((await page.innerText('#nav-today')).includes('Today'), 'navigation in English');
    assert((await page.innerText('#sync-now')).includes('Sync now'), 'sync bar in English');
    await audit(page, 'settings', vp);
    await page.click('#nav-today');
    await audit(page, 'today', vp);
    await page.reload();
    await screen(page, 'today');
    assert((await page.evaluate(() => document.documentElement.lang)) === 'en', 'language kept after reload');
  }],
  ['caretaker: the sites first, and no action the server would refuse', { phase: 'unlocked', demo: true, role: 'caretaker' }, async (page, vp) => {
    await audit(page, 'sites', vp);
    if (vp.name === 'landscape') await page.screenshot({ path: join(shots, 'caretaker-sites-landscape.png') });
    for (const hidden of ['#nav-today', '#nav-tasks']) assert((await page.locator(hidden).count()) === 0, `no ${hidden} for a caretaker`);
    assert((await page.locator('#nav-sites').getAttribute('aria-current')) === 'page', 'the sites are the home screen');
    await page.click('[data-site] >> text=Toftegården');
    await screen(page, 'site-log');
    assert((await page.locator('#log-save').count()) === 1, 'a caretaker writes the site log');
    await audit(page, 'site-log', vp, { shoot: false });
    await page.click('#nav-caseload');
    await audit(page, 'caseload', vp, { shoot: false });
    assert((await page.locator('#add-citizen').count()) === 0, 'no new-citizen button');
    await page.locator('.citizen-card').first().click();
    await audit(page, 'citizen', vp, { shoot: false });
    for (const hidden of ['#edit-citizen', '#citizen-new-visit', '#task-add']) assert((await page.locator(hidden).count()) === 0, `no ${hidden} on a caretaker's citizen page`);
  }],
  ['supervisor: read-only but for the review of open free-text conflicts', { phase: 'unlocked', demo: true, role: 'supervisor' }, async (page, vp) => {
    await audit(page, 'today', vp, { shoot: false });
    if (vp.name === 'landscape') await page.screenshot({ path: join(shots, 'supervisor-today-landscape.png') });
    assert((await page.locator('#open-quick-contact').count()) === 0, 'no quick contact');
    await page.click('#nav-caseload');
    await screen(page, 'caseload');
    assert((await page.locator('#add-citizen').count()) === 0, 'no new-citizen button');
    await page.locator('.citizen-card').first().click();
    await screen(page, 'citizen');
    assert((await page.locator('#edit-citizen, #citizen-new-visit, #task-add').count()) === 0, 'no edits on a citizen page');
    await page.click('#nav-conflicts');
    await audit(page, 'conflicts', vp, { shoot: false });
    assert((await page.locator('[data-kind="open"] .conflict-keep-mine').count()) === 2, 'open free-text conflicts can be settled');
    assert((await page.locator('.conflict-dismiss').count()) === 0, 'no notice is dismissed by a supervisor');
    assert((await page.locator('[data-kind="notice"] .read-only-note').count()) === 1, 'a notice says it is read-only here');
    assert((await text(page)).includes('Version A') && (await text(page)).includes('Behold B'), 'a reviewer sees versions A and B');
    await page.locator('[data-kind="open"]').first().locator('.conflict-merge').click();
    await page.locator('[data-kind="open"]').first().locator('textarea').fill('Talte om boligansøgning og gæld; ringer sammen fredag.');
    await page.locator('[data-kind="open"]').first().locator('.conflict-save-merged').click();
    await page.waitForFunction(() => document.querySelectorAll('[data-conflict]').length === 2);
    await page.click('#nav-sites');
    await screen(page, 'sites');
    assert((await page.locator('#add-site').count()) === 0, 'no new-site button');
    await page.click('[data-site] >> text=Toftegården');
    await screen(page, 'site-log');
    assert((await page.locator('#log-save').count()) === 0, 'no site-log form');
  }],
  ['citizen pathway: housing timeline, kept homes, courses, referrals, network, consents, wellbeing trend', { phase: 'unlocked', demo: true }, async (page, vp) => {
    await page.click('#nav-caseload');
    await screen(page, 'caseload');
    await page.click('[data-citizen] >> text=Ravnen');
    await audit(page, 'citizen', vp, { shoot: false });
    const housing = await page.locator('#pathway-housing').innerText();
    assert(housing.includes('Boligforløb') && housing.includes('Egen lejebolig') && housing.includes('Herberg'), 'the housing timeline in Danish');
    assert(housing.includes('Huslejerestance'), 'rent arrears flagged');
    assert(/3 mdr\.: beholdt/.test(housing) && /6 mdr\.: mistet/.test(housing), `kept at 3 months, lost by 6: ${housing}`);
    assert(housing.includes('God til at fiske'), 'resources in the citizen\'s own words');
    const steps = await page.locator('.housing-step .what').allInnerTexts();
    assert(steps[0] === 'Herberg/forsorgshjem' && steps[steps.length - 1] === 'Gaden', `newest first: ${steps}`);
    const courses = await page.locator('#pathway-courses').innerText();
    assert(courses.includes('Housing First') && courses.includes('I gang') && courses.includes('Målene nået'), 'courses with how they ended');
    assert(courses.includes('Jeg vil have min egen lejlighed inden jul.'), 'a course names the goal it works on');
    assert(courses.includes('Afdragsordning på plads.'), 'a course review');
    const referrals = await page.locator('#pathway-referrals .referral').allInnerTexts();
    assert(referrals[0].includes('Boligselskab') && referrals[0].includes('Venter på svar'), `the open referral first: ${referrals[0]}`);
    assert((await page.locator('#pathway-network').innerText()).includes('Datteren Sofie'), 'the network');
    const consents = await page.locator('#pathway-consents').innerText();
    assert(consents.includes('Registrering og deling i teamet') && consents.includes('Bo Demo'), 'consent per purpose, with who recorded it');
    assert((await page.locator('.wellbeing-chart svg circle').count()) === 3, 'three wellbeing scores in the chart');
    assert((await page.locator('.wellbeing-chart svg').getAttribute('aria-label')).includes('senest 6'), 'the chart is described in words');
    if (vp.name === 'landscape') {
      await page.locator('#pathway-housing').scrollIntoViewIfNeeded();
      await page.screenshot({ path: join(shots, 'citizen-pathway-landscape.png') });
    } else {
      await page.locator('#pathway-referrals').scrollIntoViewIfNeeded();
      await page.screenshot({ path: join(shots, 'citizen-pathway-portrait.png') });
    }
  }],
  ['pathway forms: a move, a course on a goal, a review, a referral with follow-up, a network person, a consent, circumstances', { phase: 'unlocked', demo: true }, async (page, vp) => {
    await page.click('#nav-caseload');
    await screen(page, 'caseload');
    await page.click('[data-citizen] >> text=Ravnen');
    await screen(page, 'citizen');
    const before = await unsynced(page);
    // A move, dated back.
    await page.click('#pathway-add-housing');
    await audit(page, 'pathway-edit', vp);
    await page.selectOption('#p-situation', 'supported_housing');
    await page.fill('#p-from', '');
    await page.click('#pathway-save');
    assert(await page.locator('#p-from-error').isVisible(), 'a move needs a date');
    const d = new Date(Date.now() - 3 * 86_400_000);
    const p2 = (n) => String(n).padStart(2, '0');
    await page.fill('#p-from', `${p2(d.getDate())}.${p2(d.getMonth() + 1)}.${d.getFullYear()}`);
    await page.click('#pathway-save');
    await screen(page, 'citizen');
    assert((await page.locator('.housing-step .what').first().innerText()) === 'Botilbud', 'the move is the newest step');
    assert((await page.locator('#pathway-housing').innerText()).includes('Flyttede ind'), 'a move into a home is measured');
    // A course working on a goal.
    await page.click('#pathway-add-course');
    await audit(page, 'pathway-edit', vp, { shoot: false });
    await page.selectOption('#p-kind', 'cti');
    await page.locator('[data-goal]').nth(1).check();
    await page.fill('#p-course-note', 'Overgang fra herberg til egen bolig.');
    await page.click('#pathway-save');
    await screen(page, 'citizen');
    const cti = page.locator('.course', { hasText: 'CTI' });
    assert((await cti.innerText()).includes('Se min datter hver anden weekend.'), 'the new course names its goal');
    // A review of it.
    await cti.locator('[data-review]').click();
    await screen(page, 'pathway-edit');
    await page.click('#pathway-save');
    assert(await page.locator('#p-review-text-error').isVisible(), 'a review needs words');
    await page.fill('#p-review-text', 'Første måned gik godt; flytter ind næste uge.');
    await page.click('#pathway-save');
    await screen(page, 'citizen');
    assert((await page.locator('.course', { hasText: 'CTI' }).innerText()).includes('Første måned gik godt'), 'the review under its course');
    // A referral with a follow-up task.
    await page.click('#pathway-add-referral');
    await screen(page, 'pathway-edit');
    await page.selectOption('#p-target', 'social_nurse');
    await page.fill('#p-referral-note', 'Sår på benet.');
    await page.check('#p-make-follow-up');
    await page.fill('#p-fu-title', 'Spørg socialsygeplejersken om tid');
    await audit(page, 'pathway-edit', vp, { shoot: false });
    await page.click('#pathway-save');
    await screen(page, 'citizen');
    assert((await page.locator('.referral').first().innerText()).includes('Socialsygeplejerske'), 'the new referral is open, so first');
    assert((await text(page)).includes('Spørg socialsygeplejersken om tid'), 'its follow-up task on the citizen page');
    // Followed up: the outcome.
    await page.locator('.referral', { hasText: 'Socialsygeplejerske' }).locator('[data-edit]').click();
    await screen(page, 'pathway-edit');
    assert((await page.locator('#p-make-follow-up').count()) === 0, 'a referral with a task is not offered a second');
    await page.selectOption('#p-outcome', 'done');
    await page.click('#pathway-save');
    await screen(page, 'citizen');
    assert((await page.locator('.referral', { hasText: 'Socialsygeplejerske' }).innerText()).includes('Gennemført'), 'the outcome shown');
    // A network person: a name is needed.
    await page.click('#pathway-add-network');
    await screen(page, 'pathway-edit');
    await page.click('#pathway-save');
    assert(await page.locator('#p-name-error').isVisible(), 'a person needs a name');
    await page.fill('#p-name', 'Naboen Ole');
    await page.selectOption('#p-relation', 'neighbour');
    await page.check('#p-may-involve');
    await page.click('#pathway-save');
    await screen(page, 'citizen');
    assert((await page.locator('#pathway-network').innerText()).includes('Naboen Ole'), 'the person in the network');
    // A consent for another purpose.
    await page.click('#pathway-add-consent');
    await screen(page, 'pathway-edit');
    await page.selectOption('#p-purpose', 'involving_network');
    await page.fill('#p-consent-scope', 'Datteren må kontaktes');
    await page.click('#pathway-save');
    await screen(page, 'citizen');
    const consents = await page.locator('#pathway-consents').innerText();
    assert(consents.includes('Inddragelse af netværk') && consents.includes('Anne Demo'), 'the new purpose, recorded by the worker');
    // The circumstances.
    await page.click('#pathway-circumstances');
    await screen(page, 'pathway-edit');
    await page.check('#p-eviction');
    await page.click('#pathway-save');
    await screen(page, 'citizen');
    assert(await page.locator('#flag-eviction').isVisible(), 'at risk of eviction flagged');
    // Removing an item asks first.
    await page.locator('[data-edit^="network:"]', { hasText: 'Redigér' }).first().click();
    await screen(page, 'pathway-edit');
    await page.click('#pathway-remove');
    await page.click('#pathway-remove-yes');
    await screen(page, 'citizen');
    assert(!(await page.locator('#pathway-network').innerText()).includes('Datteren Sofie'), 'the person removed');
    assert((await unsynced(page)) === before + 10, `nine saves and a task wait for the next sync (${before} → ${await unsynced(page)})`);
  }],
  ['a visit names the support course and the goals it worked on', { phase: 'unlocked', demo: true }, async (page, vp) => {
    await page.click('#nav-caseload');
    await screen(page, 'caseload');
    await page.click('[data-citizen] >> text=Ravnen');
    await screen(page, 'citizen');
    await page.click('#citizen-new-visit');
    await screen(page, 'visit');
    await page.locator('#v-course').waitFor({ state: 'visible', timeout: 3000 });
    const options = await page.locator('#v-course option').allInnerTexts();
    assert(options.includes('Housing First') && !options.includes('Gældsrådgivning'), `only running courses: ${options}`);
    await page.selectOption('#v-course', { label: 'Housing First' });
    await page.locator('#v-pathway [data-goal]').first().check();
    await audit(page, 'visit', vp, { shoot: false });
    await page.fill('#v-note', 'Kiggede på lejligheden sammen.');
    await page.click('[data-referral="home_care"]');
    await page.click('#visit-save');
    await screen(page, 'citizen');
    const first = await page.locator('#pathway-referrals .referral').first().innerText();
    assert(first.includes('Hjemmepleje') && first.includes('Venter på svar'), `the visit's referral is followed on the citizen page: ${first}`);
    const saved = await page.evaluate(() => window.__fake.db().visits.find((v) => v.note === 'Kiggede på lejligheden sammen.'));
    assert(saved.course_id !== null && saved.goals.length === 1, 'the visit carries its course and goal');
  }],
  ['supervisor reads the pathway; a caretaker is not shown one', { phase: 'unlocked', demo: true, role: 'supervisor' }, async (page, vp) => {
    await page.click('#nav-caseload');
    await screen(page, 'caseload');
    await page.click('[data-citizen] >> text=Ravnen');
    await audit(page, 'citizen', vp, { shoot: false });
    assert((await page.locator('#pathway-housing').innerText()).includes('Boligforløb'), 'the pathway is shown');
    assert((await page.locator('[id^="pathway-add"], #pathway-circumstances, [data-edit], [data-review]').count()) === 0, 'no pathway form is offered');
  }],
  ['caretaker: a resident page has no pathway', { phase: 'unlocked', demo: true, role: 'caretaker' }, async (page) => {
    await page.click('#nav-caseload');
    await screen(page, 'caseload');
    await page.locator('.citizen-card').first().click();
    await screen(page, 'citizen');
    assert((await page.locator('#pathway-housing, #pathway-courses').count()) === 0, 'no pathway for site work');
  }],
  ['administrator: no app and no data, sign-out offered', { phase: 'unlocked', demo: true, role: 'admin' }, async (page, vp) => {
    await audit(page, 'settings', vp, { shoot: false });
    assert((await page.locator('#no-app').innerText()).includes('Din rolle bruger ikke tabletten'), 'says the role has no app');
    assert((await page.locator('.navbar button').count()) === 1, 'only the settings in the navigation');
    assert((await page.locator('#wipe').count()) === 1, 'sign out and wipe is offered');
  }],
];

// ---------- QR enrolment through Chromium's fake camera ----------
/** Writes a Y4M video (640×480, one frame: Chromium loops it) showing `text` as a QR code. */
async function qrVideo(text, path) {
  const qr = QRCode.create(text, { errorCorrectionLevel: 'M' });
  const n = qr.modules.size;
  const [W, H, scale] = [640, 480, Math.floor(400 / (n + 8))];
  const x0 = Math.floor((W - n * scale) / 2);
  const y0 = Math.floor((H - n * scale) / 2);
  const y = Buffer.alloc(W * H, 235); // white
  for (let r = 0; r < n; r++)
    for (let c = 0; c < n; c++)
      if (qr.modules.get(r, c))
        for (let dy = 0; dy < scale; dy++) y.fill(16, (y0 + r * scale + dy) * W + x0 + c * scale, (y0 + r * scale + dy) * W + x0 + (c + 1) * scale);
  const chroma = Buffer.alloc((W / 2) * (H / 2) * 2, 128); // no colour
  await writeFile(path, Buffer.concat([Buffer.from(`YUV4MPEG2 W${W} H${H} F10:1 Ip A1:1 C420jpeg\nFRAME\n`), y, chroma]));
}

const CAMERA_FLOWS = [
  ['first run: the enrolment QR code from the camera fills the fields', 'feltbog-enrol:https://feltbog.example.dk#K7QP-2MXW', async (page, vp) => {
    await screen(page, 'first-run');
    await page.click('#scan-qr');
    await page.locator('.qr-video').waitFor({ state: 'visible', timeout: 2000 });
    await page.locator('#filled-from').waitFor({ state: 'visible', timeout: 10_000 });
    assert((await page.inputValue('#server-url')) === 'https://feltbog.example.dk', 'server address from the QR code');
    assert((await page.inputValue('#enrol-code')) === 'K7QP-2MXW', 'code from the QR code');
    assert((await page.locator('.qr-video').count()) === 0, 'the camera closes once the code is read');
    await audit(page, 'first-run', vp, { shoot: false });
  }],
  ['first run: a foreign QR code is named, nothing filled', 'https://example.com/kantine/menu', async (page, vp) => {
    await screen(page, 'first-run');
    await page.click('#scan-qr');
    await page.locator('#qr-message').waitFor({ state: 'visible', timeout: 10_000 });
    assert((await page.locator('#qr-message').innerText()).includes('ikke en Feltbog-tilmelding'), 'says the code is not an enrolment');
    assert((await page.inputValue('#server-url')) === '' && (await page.inputValue('#enrol-code')) === '', 'nothing filled in');
    await audit(page, 'first-run', vp, { shoot: false });
    await page.click('#qr-close');
    assert((await page.locator('.qr-video').count()) === 0, 'the camera can be closed');
  }],
  ['first run: a damaged enrolment QR code is named', 'feltbog-enrol:https://feltbog.example.dk#', async (page) => {
    await screen(page, 'first-run');
    await page.click('#scan-qr');
    await page.locator('#qr-message').waitFor({ state: 'visible', timeout: 10_000 });
    assert((await page.locator('#qr-message').innerText()).includes('beskadiget'), 'says the code is damaged');
  }],
];

/** Each camera flow in its own Chromium, whose fake camera shows that flow's QR code. */
async function cameraFlows(base, vp) {
  for (const [name, text, fn] of CAMERA_FLOWS) {
    if (process.env.FLOWS && !name.includes(process.env.FLOWS)) continue;
    const video = join(tmpdir(), `feltbog-qr-${process.pid}.y4m`);
    await qrVideo(text, video);
    const camera = await chromium.launch({
      executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
      args: [...CHROMIUM_ARGS, '--use-fake-device-for-media-stream', `--use-file-for-fake-video-capture=${video}`, '--use-fake-ui-for-media-stream'],
    });
    try {
      await flow(camera, base, vp, name, { phase: 'first_run', demo: false }, fn);
    } finally {
      await camera.close();
    }
  }
}

// ---------- main ----------
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
const t0 = Date.now();
await mkdir(shots, { recursive: true });
await mkdir(join(ui, 'test-results'), { recursive: true });
const fakeCode = await bundleFake();
const server = await serve();
const base = `http://127.0.0.1:${server.address().port}/`;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: CHROMIUM_ARGS,
});
try {
  for (const vp of VIEWPORTS) {
    console.log(`\n# ${vp.name} ${vp.width}×${vp.height}`);
    // FLOWS=text runs only the flows whose name holds it (while working on one screen).
    for (const [name, seed, fn] of flows) {
      if (process.env.FLOWS && !name.includes(process.env.FLOWS)) continue;
      await flow(browser, base, vp, name, seed, fn);
    }
    await cameraFlows(base, vp);
  }
} finally {
  await browser.close();
  server.close();
}
const screens = [...new Set([...scanned].map((s) => s.split('@')[0]))].sort();
console.log(`\nSummary: ${passed.length} flows passed, ${failures.length} failed; axe scanned ${screens.length} screens (${scanned.size} screen×size): ${screens.join(', ')}; serious/critical violations: ${violationCount}; ${((Date.now() - t0) / 1000).toFixed(1)} s`);
if (failures.length) {
  console.log(`Failed: ${failures.join('; ')}`);
  process.exit(1);
}
