import type { Problem } from './validation';

/** `aria-describedby` for an input with an optional hint and problem (see Field.svelte). */
export function describedBy(id: string, problem?: Problem | null, hint = false): string | undefined {
  const ids = [hint ? `${id}-hint` : '', problem ? `${id}-error` : ''].filter(Boolean);
  return ids.length ? ids.join(' ') : undefined;
}

/** Moves focus to the screen's heading after navigation, so screen readers announce it. */
export function focusHeading(node: HTMLElement) {
  queueMicrotask(() => node.focus({ preventScroll: true }));
}
