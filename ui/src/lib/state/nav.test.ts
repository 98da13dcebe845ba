import { describe, expect, it } from 'vitest';
import type { Offer } from '../bindings';
import { noOffer } from './app.svelte';
import { home, topLevels } from './nav.svelte';

const all: Offer = {
  app: true,
  cases: true,
  citizens: true,
  edit_citizens: true,
  log_visits: true,
  sites: true,
  edit_sites: true,
  log_sites: true,
  resolve_conflicts: true,
  review_conflicts: false,
};

describe('navigation by what a role is offered', () => {
  it('shows every screen to a field worker, who starts on today', () => {
    expect(topLevels(all)).toEqual(['today', 'caseload', 'tasks', 'sites', 'conflicts', 'settings']);
    expect(home(all)).toBe('today');
  });

  it('starts a caretaker on the sites, without today and tasks', () => {
    const caretaker = { ...all, cases: false, log_visits: false, edit_citizens: false };
    expect(topLevels(caretaker)).toEqual(['sites', 'caseload', 'conflicts', 'settings']);
    expect(home(caretaker)).toBe('sites');
  });

  it('leaves a role without an app only the settings', () => {
    expect(topLevels(noOffer)).toEqual(['settings']);
    expect(home(noOffer)).toBe('settings');
  });
});
