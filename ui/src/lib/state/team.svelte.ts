// The team's workers who carry cases, read once per unlock (they change only by sync, and a
// sync that changes the directory changes `sync.changes`).
import { api } from '../api';
import type { Colleague } from '../bindings';
import { sync } from './sync.svelte';

class Team {
  colleagues = $state<Colleague[]>([]);
  private loadedAt = -1;

  /** Loads the list unless it is current. */
  async load() {
    if (this.loadedAt === sync.changes) return;
    this.loadedAt = sync.changes;
    try {
      this.colleagues = await api.colleagues();
    } catch {
      this.loadedAt = -1;
    }
  }
}

export const team = new Team();
