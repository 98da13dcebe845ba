// The app's phase (first run → locked ⇄ unlocked) and settings, as Rust reports them.
// Rust decides the phase; the UI only follows `AppState`. Locking always reloads the page, so
// nothing personal stays in the DOM or in JS memory.
import { api } from '../api';
import type { AppState, Language, Me, Offer, Phase, Settings } from '../bindings';
import { i18n } from '../i18n/index.svelte';
import { sync } from './sync.svelte';

export type Reload = () => void;

/** Nothing offered: before Rust has answered. */
export const noOffer: Offer = {
  app: false,
  cases: false,
  citizens: false,
  edit_citizens: false,
  log_visits: false,
  sites: false,
  edit_sites: false,
  log_sites: false,
  resolve_conflicts: false,
  review_conflicts: false,
};

export class AppStore {
  /** `loading` until the first `app_state` answer arrives. */
  phase = $state<Phase | 'loading'>('loading');
  settings = $state<Settings>({ language: 'da', lock_timeout_secs: 300 });
  workerId = $state<string | null>(null);
  serverUrl = $state<string | null>(null);
  /** Who is signed in (name, role, team), once the server has said. */
  me = $state<Me | null>(null);
  /** What this worker's role is offered (decided in Rust, `core::access`). Until the first
   *  answer: nothing writable. */
  offer = $state<Offer>(noOffer);
  /** Set when `app_state` itself failed (the app cannot start). */
  fatal = $state<unknown>(null);

  constructor(private reload: Reload = () => location.reload()) {}

  /** Applies an `AppState` from any command that returns one. */
  apply(state: AppState) {
    this.phase = state.phase;
    this.settings = state.settings;
    this.workerId = state.worker_id;
    this.serverUrl = state.server_url;
    this.me = state.me;
    this.offer = state.offer;
    i18n.set(state.settings.language);
    sync.update(state.sync);
  }

  async load() {
    try {
      this.apply(await api.appState());
    } catch (e) {
      this.fatal = e;
    }
  }

  async firstRun(serverUrl: string, code: string, pin: string) {
    this.apply(await api.firstRun({ server_url: serverUrl.trim(), code: code.trim(), pin }));
  }

  async unlock(pin: string) {
    this.apply(await api.unlock(pin));
  }

  /** Locks now and reloads: the reloaded page asks Rust again and shows the lock screen. */
  async lock() {
    try {
      await api.lock();
    } finally {
      this.reload();
    }
  }

  /** The idle lock fired in Rust. */
  onLocked() {
    this.reload();
  }

  async saveSettings(next: Settings) {
    const saved = await api.setSettings(next);
    this.settings = saved;
    i18n.set(saved.language);
  }

  async setLanguage(language: Language) {
    await this.saveSettings({ ...this.settings, language });
  }

  /** Sign out and wipe this device, then start over at first run. `unsyncedShown` is the count
   *  the confirmation showed: Rust refuses if more changes are waiting by now. */
  async wipe(unsyncedShown: number) {
    await api.wipe(unsyncedShown);
    this.reload();
  }
}

export const app = new AppStore();
