// End-to-end test of the real app: the built Tauri binary, driven through tauri-driver and
// Debian's WebKitWebDriver under Xvfb, against a real feltbog-server on 127.0.0.1.
//
//   node tests/e2e/run.mjs            (scripts/test runs it after building the binaries)
//
// Steps: enrol and set a PIN; log a quick contact with the server stopped (the sync bar shows
// it unsynced and offline); start the server, see it synced and present in the server's
// database; lock after idle and unlock; restart the app and unlock from cold. It prints the
// timings the issue asks for and saves screenshots of the real app into docs/screenshots/.
// Environment: FELTBOG_APP, FELTBOG_SERVER (binaries; default target/debug/...),
// FELTBOG_E2E_SCREENSHOTS=0 to skip screenshots.
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, mkdirSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { remote } from 'webdriverio';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const appBin = resolve(process.env.FELTBOG_APP ?? join(root, 'target/debug/feltbog-app'));
const serverBin = resolve(process.env.FELTBOG_SERVER ?? join(root, 'target/debug/feltbog-server'));
const shots = process.env.FELTBOG_E2E_SCREENSHOTS !== '0';
const PIN = '582047';
const MARKER = `e2e-note-${process.pid}-${Date.now()}`;
// The idle lock for this run (the app reads it at start instead of the 5-minute setting).
const LOCK_AFTER_SECS = 20;

const work = mkdtempSync(join(tmpdir(), 'feltbog-e2e-'));
const children = [];
const figures = {};
let step = 'start';
/** The current WebDriver session, for a screenshot and the page text when a step fails. */
let current;

function log(msg) {
  console.log(`e2e: ${msg}`);
}

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.on('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

function start(cmd, args, env = {}) {
  // Its own process group, so stopping it also stops what it started (tauri-driver starts
  // WebKitWebDriver, which starts the app).
  const child = spawn(cmd, args, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  child.output = '';
  child.stdout.on('data', (d) => (child.output += d));
  child.stderr.on('data', (d) => (child.output += d));
  children.push(child);
  return child;
}

async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((ok) => child.once('exit', ok));
  process.kill(-child.pid, 'SIGTERM');
  await exited;
}

/** Waits (bounded) until `probe` returns a truthy value; `what` names it in the failure. */
async function until(what, probe, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let value;
    try {
      value = await probe();
    } catch {
      value = undefined;
    }
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((ok) => setTimeout(ok, 100));
  }
}

async function waitForPort(port, what) {
  // Connect, never bind: binding to probe would steal the port from a slow starter.
  await until(what, () =>
    new Promise((ok) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        ok(true);
      });
      socket.once('error', () => ok(false));
    }),
  );
}

function serverAdmin(dataDir, ...args) {
  return execFileSync(serverBin, ['--data-dir', dataDir, 'admin', ...args], {
    encoding: 'utf8',
  }).trim();
}

function startServer(dataDir, port) {
  return start(serverBin, ['--data-dir', dataDir, 'serve', '--listen', `127.0.0.1:${port}`]);
}

/** How many of the server's applied changes carry the marker note (the server keeps JSON). */
function serverHasMarker(dataDir) {
  const db = join(dataDir, 'feltbog-server.sqlite');
  const out = execFileSync(
    'python3',
    [
      '-c',
      'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); ' +
        'print(c.execute("SELECT count(*) FROM changes WHERE mutation LIKE ?", ("%"+sys.argv[2]+"%",)).fetchone()[0])',
      db,
      MARKER,
    ],
    { encoding: 'utf8' },
  );
  return Number(out.trim());
}

async function session(driverPort) {
  return remote({
    hostname: '127.0.0.1',
    port: driverPort,
    logLevel: 'error',
    connectionRetryCount: 0,
    capabilities: {
      browserName: 'wry',
      'wdio:enforceWebDriverClassic': true,
      'tauri:options': { application: appBin },
    },
  });
}

async function shot(browser, name) {
  if (!shots) return;
  const dir = join(root, 'docs/screenshots');
  mkdirSync(dir, { recursive: true });
  await browser.saveScreenshot(join(dir, `app-${name}.png`));
}

async function screen(browser, name, timeoutMs = 30_000) {
  const el = await browser.$(`[data-screen="${name}"]`);
  await el.waitForDisplayed({ timeout: timeoutMs });
  return el;
}

async function syncBar(browser) {
  const bar = await browser.$('[data-testid="sync-bar"]');
  return {
    state: await bar.getAttribute('data-state'),
    unsynced: Number(await bar.getAttribute('data-unsynced')),
  };
}

async function main() {
  for (const [what, path] of [
    ['app binary', appBin],
    ['server binary', serverBin],
  ]) {
    if (!existsSync(path)) throw new Error(`${what} missing at ${path}: build it first`);
  }
  const serverData = join(work, 'server');
  const appData = join(work, 'xdg-data');
  mkdirSync(appData, { recursive: true });

  step = 'server set-up';
  const serverPort = await freePort();
  const team = serverAdmin(serverData, 'create-team', 'Team Nord');
  const worker = serverAdmin(serverData, 'create-worker', '--team', team, '--name', 'Anne');
  const code = serverAdmin(serverData, 'enrolment-code', '--worker', worker);
  let server = startServer(serverData, serverPort);
  await waitForPort(serverPort, 'the server to listen');

  step = 'Xvfb and tauri-driver';
  // Xvfb picks a free display itself and writes its number to fd 3.
  const xvfb = spawn('Xvfb', ['-displayfd', '3', '-screen', '0', '1280x800x24', '-nolisten', 'tcp'], {
    stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
    detached: true,
  });
  xvfb.output = '';
  xvfb.stderr.on('data', (d) => (xvfb.output += d));
  children.push(xvfb);
  let displayNumber = '';
  xvfb.stdio[3].on('data', (d) => (displayNumber += d));
  await until('Xvfb to report its display', () => displayNumber.includes('\n'), 10_000);
  const display = `:${displayNumber.trim()}`;
  const driverPort = await freePort();
  const nativePort = await freePort();
  const driver = start('tauri-driver', ['--port', String(driverPort), '--native-port', String(nativePort)], {
    DISPLAY: display,
    XDG_DATA_HOME: appData,
    [`FELTBOG_LOCK_AFTER_SECS`]: String(LOCK_AFTER_SECS),
    RUST_LOG: 'warn',
  });
  await waitForPort(driverPort, 'tauri-driver to listen');
  await waitForPort(nativePort, 'WebKitWebDriver to listen');

  step = 'first run: enrol and choose a PIN';
  let t0 = Date.now();
  let browser = await session(driverPort);
  current = browser;
  await screen(browser, 'first-run');
  figures.coldStartToFirstRunMs = Date.now() - t0;
  await (await browser.$('#server-url')).setValue(`http://127.0.0.1:${serverPort}`);
  await (await browser.$('#enrol-code')).setValue(code);
  await (await browser.$('#pin')).setValue(PIN);
  await (await browser.$('#pin-repeat')).setValue(PIN);
  await shot(browser, 'first-run');
  t0 = Date.now();
  await (await browser.$('#first-run-submit')).click();
  await screen(browser, 'today');
  figures.enrolMs = Date.now() - t0;
  log(`enrolled in ${figures.enrolMs} ms (key calibration + enrolment)`);

  step = 'log a contact with the server stopped';
  await stop(server);
  await (await browser.$('#open-quick-contact')).click();
  await screen(browser, 'quick-contact');
  const anon = await browser.$('#qc-anonymous');
  if (!(await anon.isSelected())) await anon.click();
  await (await browser.$('#qc-count')).setValue('3');
  await (await browser.$('#qc-description')).setValue('Tre unge ved stationen');
  await (await browser.$('[data-theme="network_and_loneliness"]')).click();
  await (await browser.$('#qc-note')).setValue(MARKER);
  await shot(browser, 'quick-contact');
  t0 = Date.now();
  await (await browser.$('#qc-save')).click();
  await (await browser.$('[data-testid="saved-toast"]')).waitForDisplayed({ timeout: 10_000 });
  figures.saveVisitMs = Date.now() - t0;
  await screen(browser, 'today');
  // The save kicked the sync, which finds the server gone: unsynced and offline.
  await (await browser.$('#sync-now')).click();
  const offline = await until('the sync bar to show 1 unsynced change while offline', async () => {
    const bar = await syncBar(browser);
    return bar.unsynced >= 1 && bar.state === 'offline' && bar;
  });
  log(`server stopped: sync bar ${JSON.stringify(offline)}`);
  await shot(browser, 'today-offline');
  if (serverHasMarker(serverData) !== 0) throw new Error('the visit reached a stopped server?');

  step = 'start the server: synced and present on the server';
  server = startServer(serverData, serverPort);
  await waitForPort(serverPort, 'the server to listen again');
  t0 = Date.now();
  await (await browser.$('#sync-now')).click();
  const online = await until('the sync bar to show everything synced', async () => {
    const bar = await syncBar(browser);
    return bar.unsynced === 0 && bar.state === 'online' && bar;
  });
  figures.syncAfterReconnectMs = Date.now() - t0;
  log(`server started: sync bar ${JSON.stringify(online)}`);
  const onServer = serverHasMarker(serverData);
  if (onServer < 1) throw new Error('the synced visit is not in the server database');
  log(`the visit is on the server (${onServer} change carrying its note)`);
  await shot(browser, 'today-synced');

  step = 'lock after idle, then unlock';
  t0 = Date.now();
  await screen(browser, 'lock', (LOCK_AFTER_SECS + 30) * 1000);
  const idleMs = Date.now() - t0;
  log(`locked after ${(idleMs / 1000).toFixed(1)} s idle (limit ${LOCK_AFTER_SECS} s)`);
  const html = await browser.getPageSource();
  if (html.includes(MARKER) || html.includes('Tre unge ved stationen')) {
    throw new Error('personal data is still in the page after the idle lock');
  }
  await shot(browser, 'lock');
  await (await browser.$('#unlock-pin')).setValue('000000');
  await (await browser.$('#unlock-submit')).click();
  await until('a wrong-PIN message with the attempts left', async () =>
    /forsøg tilbage|attempts? left/i.test(await browser.$('[data-screen="lock"] [role="alert"]').getText()),
  );
  await (await browser.$('#unlock-submit')).waitForEnabled({ timeout: 10_000 });
  await (await browser.$('#unlock-pin')).setValue(PIN);
  await (await browser.$('#unlock-submit')).click();
  await screen(browser, 'today');
  await browser.deleteSession();

  step = 'cold start of the app to the lock screen, unlock to caseload';
  t0 = Date.now();
  browser = await session(driverPort);
  current = browser;
  await screen(browser, 'lock');
  figures.coldStartToLockMs = Date.now() - t0;
  await (await browser.$('#unlock-pin')).setValue(PIN);
  t0 = Date.now();
  await (await browser.$('#unlock-submit')).click();
  await screen(browser, 'today');
  await (await browser.$('#nav-caseload')).click();
  await screen(browser, 'caseload');
  figures.unlockToCaseloadMs = Date.now() - t0;
  await browser.deleteSession();

  await stop(server);
  await stop(driver);
  await stop(xvfb);
  log(`figures: ${JSON.stringify(figures)}`);
  writeFileSync(join(work, 'figures.json'), JSON.stringify(figures, null, 2));
  log('passed');
}

let failed = false;
try {
  await main();
} catch (e) {
  failed = true;
  console.error(`e2e: FAILED at step "${step}": ${e?.stack ?? e}`);
  if (current) {
    try {
      const png = join(tmpdir(), 'feltbog-e2e-failure.png');
      await current.saveScreenshot(png);
      console.error(`e2e: screenshot at ${png}; page text:\n${await (await current.$('body')).getText()}`);
    } catch {
      // the session is gone
    }
  }
  for (const c of children) {
    if (c.output) console.error(`--- output of ${c.spawnfile} ---\n${c.output.slice(-4000)}`);
  }
} finally {
  for (const c of children) {
    try {
      process.kill(-c.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  rmSync(work, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
