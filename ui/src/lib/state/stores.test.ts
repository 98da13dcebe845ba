import { clearMocks, mockIPC } from '@tauri-apps/api/mocks';
import { emit } from '@tauri-apps/api/event';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { AppError, AppState, SyncBar } from '../bindings';
import { throttledTouch } from '../idle';
import { i18n } from '../i18n/index.svelte';
import { AppStore, noOffer } from './app.svelte';
import { Nav } from './nav.svelte';
import { emptyBar, sync, SyncStore } from './sync.svelte';

const bar = (over: Partial<SyncBar> = {}): SyncBar => ({ ...emptyBar, ...over });
const appState = (over: Partial<AppState> = {}): AppState => ({
  phase: 'locked',
  settings: { language: 'da', lock_timeout_secs: 300 },
  sync: bar({ state: 'offline', unsynced: 3 }),
  worker_id: null,
  server_url: 'https://feltbog.example.dk',
  me: null,
  offer: { ...noOffer, app: true, cases: true, citizens: true, edit_citizens: true, log_visits: true, sites: true, edit_sites: true, log_sites: true, resolve_conflicts: true },
  ...over,
});
const wrongPin: AppError = { code: 'wrong_pin', message: 'wrong', field: null, retry_after_ms: null, attempts_left: 4 };

afterEach(() => {
  clearMocks();
  i18n.set('da');
});

describe('AppStore phases', () => {
  it('starts loading and follows app_state: first run → unlocked', async () => {
    const calls: string[] = [];
    mockIPC((cmd, args) => {
      calls.push(cmd);
      if (cmd === 'app_state') return appState({ phase: 'first_run', server_url: null });
      if (cmd === 'first_run') {
        expect(args).toEqual({ input: { server_url: 'https://x.dk', code: 'ABC', pin: '246810' } });
        return appState({ phase: 'unlocked', worker_id: 'w1' });
      }
      return undefined;
    });
    const app = new AppStore(() => {});
    expect(app.phase).toBe('loading');
    await app.load();
    expect(app.phase).toBe('first_run');
    await app.firstRun(' https://x.dk ', ' ABC ', '246810');
    expect(app.phase).toBe('unlocked');
    expect(app.workerId).toBe('w1');
    expect(calls).toEqual(['app_state', 'first_run']);
  });

  it('stays locked on a wrong PIN, unlocks with the right one, and takes the sync bar along', async () => {
    mockIPC((cmd, args) => {
      if (cmd === 'unlock') {
        if ((args as { pin: string }).pin !== '246810') throw wrongPin;
        return appState({ phase: 'unlocked', sync: bar({ state: 'online', unsynced: 1 }) });
      }
      return undefined;
    });
    const app = new AppStore(() => {});
    app.apply(appState());
    expect(app.phase).toBe('locked');
    await expect(app.unlock('000000')).rejects.toEqual(wrongPin);
    expect(app.phase).toBe('locked');
    await app.unlock('246810');
    expect(app.phase).toBe('unlocked');
    expect(sync.bar.unsynced).toBe(1);
  });

  it('reloads after lock (even if lock fails), on the locked event, and after wipe', async () => {
    const reload = vi.fn();
    mockIPC((cmd) => {
      if (cmd === 'lock') throw new Error('already locked');
      if (cmd === 'wipe') return appState({ phase: 'first_run' });
      return undefined;
    });
    const app = new AppStore(reload);
    await expect(app.lock()).rejects.toThrow();
    app.onLocked();
    await app.wipe(0);
    expect(reload).toHaveBeenCalledTimes(3);
  });

  it('takes the language from settings and saves a new one', async () => {
    mockIPC((cmd, args) => (cmd === 'set_settings' ? (args as { settings: unknown }).settings : undefined));
    const app = new AppStore(() => {});
    app.apply(appState({ settings: { language: 'en', lock_timeout_secs: 600 } }));
    expect(i18n.lang).toBe('en');
    await app.setLanguage('da');
    expect(i18n.lang).toBe('da');
    expect(app.settings).toEqual({ language: 'da', lock_timeout_secs: 600 });
  });

  it('records a failed start', async () => {
    mockIPC(() => {
      throw { code: 'internal', message: 'x', field: null, retry_after_ms: null, attempts_left: null };
    });
    const app = new AppStore(() => {});
    await app.load();
    expect(app.fatal).toMatchObject({ code: 'internal' });
  });
});

describe('SyncStore', () => {
  it('follows sync events', async () => {
    mockIPC(() => undefined, { shouldMockEvents: true });
    const s = new SyncStore();
    const unlisten = await s.listen();
    await emit('sync', bar({ state: 'syncing', unsynced: 5, progress: { pulled: 30, pending: 10, more: true } }));
    expect(s.bar.state).toBe('syncing');
    expect(s.bar.unsynced).toBe(5);
    expect(s.fraction).toBe(0.75);
    await emit('sync', bar({ state: 'online' }));
    expect(s.bar.state).toBe('online');
    expect(s.fraction).toBeNull();
    unlisten();
  });

  it('a bar read before the latest event does not put "syncing" back after the sync ended', async () => {
    mockIPC(() => undefined, { shouldMockEvents: true });
    const s = new SyncStore();
    const unlisten = await s.listen();
    await emit('sync', bar({ state: 'syncing', version: 5 }));
    await emit('sync', bar({ state: 'online', unsynced: 0, version: 6 }));
    // A refresh after a save, read while the sync ran, answered after it ended.
    s.update(bar({ state: 'syncing', unsynced: 1, version: 5 }));
    expect(s.bar.state).toBe('online');
    expect(s.bar.unsynced).toBe(0);
    // A read as new as the last event (a save since) is taken.
    s.update(bar({ state: 'online', unsynced: 1, version: 6 }));
    expect(s.bar.unsynced).toBe(1);
    unlisten();
  });

  it('refreshes from sync_bar and keeps the old bar when that fails', async () => {
    let fail = false;
    mockIPC((cmd) => {
      if (cmd !== 'sync_bar') return undefined;
      if (fail) throw { code: 'locked' };
      return bar({ unsynced: 7 });
    });
    const s = new SyncStore();
    await s.refresh();
    expect(s.bar.unsynced).toBe(7);
    fail = true;
    await s.refresh();
    expect(s.bar.unsynced).toBe(7);
  });

  it('sync now shows requesting while it runs', async () => {
    let resolve: (b: SyncBar) => void = () => {};
    mockIPC((cmd) => (cmd === 'sync_now' ? new Promise<SyncBar>((r) => (resolve = r)) : undefined));
    const s = new SyncStore();
    const p = s.syncNow();
    expect(s.requesting).toBe(true);
    resolve(bar({ state: 'syncing' }));
    await p;
    expect(s.requesting).toBe(false);
    expect(s.bar.state).toBe('syncing');
  });
});

describe('Nav', () => {
  it('goes, goes back, replaces and resets at the top level', () => {
    const nav = new Nav();
    expect(nav.route).toEqual({ name: 'today' });
    nav.go({ name: 'citizen', id: 'c1' });
    nav.go({ name: 'citizen-edit', id: 'c1' });
    expect(nav.canGoBack).toBe(true);
    nav.back();
    expect(nav.route).toEqual({ name: 'citizen', id: 'c1' });
    nav.replace({ name: 'visit', citizenId: 'c1' });
    nav.back();
    expect(nav.route).toEqual({ name: 'today' });
    nav.back();
    expect(nav.route).toEqual({ name: 'today' });
    nav.go({ name: 'quick-contact' });
    nav.top('tasks');
    expect(nav.canGoBack).toBe(false);
    expect(nav.route).toEqual({ name: 'tasks' });
  });
});

describe('throttledTouch', () => {
  it('touches at most once per interval and swallows failures', async () => {
    let now = 0;
    const touch = vi.fn(() => Promise.reject(new Error('locked')));
    const activity = throttledTouch(touch, 15_000, () => now);
    activity();
    activity();
    now = 14_999;
    activity();
    now = 15_000;
    activity();
    expect(touch).toHaveBeenCalledTimes(2);
  });
});
