// The sync bar: kept current by `sync` events from Rust, and re-read on load and after saves.
import { api, onSync } from '../api';
import type { SyncBar } from '../bindings';

export const emptyBar: SyncBar = {
  state: 'unknown',
  unsynced: 0,
  set_aside: 0,
  only_here: 0,
  last_success_ms: null,
  progress: null,
  open_conflicts: 0,
  rescoping: false,
  changes: 0,
  version: 0,
};

export class SyncStore {
  bar = $state<SyncBar>({ ...emptyBar });
  /** True while a `sync_now` request is in flight. */
  requesting = $state(false);
  /** Moves when a sync changed what screens show; open pages read it in their load effect
   *  and reload (forms do not, so nothing typed is lost). Only set when it differs, so a
   *  progress event does not reload anything. */
  changes = $state(0);

  update(bar: SyncBar) {
    // A bar read before the latest event (a refresh answered late) is older: keep the newer.
    if (bar.version < this.bar.version) return;
    this.bar = bar;
    if (bar.changes !== this.changes) this.changes = bar.changes;
  }

  /** Re-reads the bar (after a save); errors (e.g. locked) leave it as it is. */
  async refresh() {
    try {
      this.update(await api.syncBar());
    } catch {
      // The bar is informative; a failed read must not break the screen that saved.
    }
  }

  async syncNow() {
    this.requesting = true;
    try {
      this.update(await api.syncNow());
    } finally {
      this.requesting = false;
    }
  }

  /** Listens for `sync` events; returns the unlisten function. */
  listen() {
    return onSync((bar) => this.update(bar));
  }

  /** Share of a long sync done, 0..1, or null when there is nothing to show. */
  get fraction(): number | null {
    const p = this.bar.progress;
    if (!p) return null;
    const total = p.pulled + p.pending;
    if (total === 0) return p.more ? 0 : null;
    return p.pulled / total;
  }
}

export const sync = new SyncStore();
