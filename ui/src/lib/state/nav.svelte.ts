// State-based navigation: one current route and a back stack. No URLs (the app is one page
// in a webview), so nothing about a citizen ends up in history or the address bar.
import type { Offer, VisitView } from '../bindings';

export type Route =
  | { name: 'today' }
  | { name: 'caseload' }
  | { name: 'citizen'; id: string }
  | { name: 'citizen-edit'; id: string | null }
  | { name: 'pathway-edit'; citizenId: string; list: PathwayList; itemId: string | null }
  | { name: 'quick-contact' }
  | { name: 'visit'; citizenId: string | null; edit?: VisitView }
  | { name: 'tasks' }
  | { name: 'sites' }
  | { name: 'site-log'; siteId: string }
  | { name: 'conflicts' }
  | { name: 'set-aside' }
  | { name: 'settings' };

/** What the pathway form edits: one of the citizen's item lists, or the circumstances. */
export type PathwayList =
  | 'housing_history'
  | 'courses'
  | 'course_reviews'
  | 'referrals'
  | 'network'
  | 'consents'
  | 'circumstances';

export type TopLevel = 'today' | 'caseload' | 'tasks' | 'sites' | 'conflicts' | 'set-aside' | 'settings';

/** The navigation bar's items for what a role is offered, in order: case work first for those
 *  who do it, the sites first for a caretaker. */
export function topLevels(offer: Offer): TopLevel[] {
  const work: TopLevel[] = offer.cases ? ['today', 'caseload', 'tasks', 'sites'] : ['sites', 'caseload'];
  const shown = work.filter((k) => {
    if (k === 'today' || k === 'tasks') return offer.cases;
    if (k === 'caseload') return offer.citizens;
    return offer.sites;
  });
  if (offer.app) shown.push('conflicts');
  shown.push('settings');
  return shown;
}

/** Where a role's app opens: today for case work, the sites for a caretaker, settings for a
 *  role without an app (which say why). */
export function home(offer: Offer): TopLevel {
  return topLevels(offer)[0];
}

export class Nav {
  route = $state<Route>({ name: 'today' });
  stack = $state<Route[]>([]);

  /** Opens a screen on top of the current one. */
  go(route: Route) {
    this.stack.push(this.route);
    this.route = route;
  }

  /** Opens a top-level screen (navigation bar): clears the back stack. */
  top(name: TopLevel) {
    this.stack = [];
    this.route = { name };
  }

  /** Replaces the current screen (e.g. a saved form by the page it created). */
  replace(route: Route) {
    this.route = route;
  }

  back() {
    this.route = this.stack.pop() ?? { name: 'today' };
  }

  get canGoBack() {
    return this.stack.length > 0;
  }
}

export const nav = new Nav();
