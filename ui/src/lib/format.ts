// Dates and times for display, in the UI language's conventions (local time zone).
import type { Language } from './bindings';
import { locale } from './i18n/index.svelte';

export function formatDateTime(ms: number, lang: Language): string {
  return new Intl.DateTimeFormat(locale(lang), {
    day: 'numeric',
    month: 'short',
    hour: '2-digit',
    minute: '2-digit',
  }).format(new Date(ms));
}

export function formatTime(ms: number, lang: Language): string {
  return new Intl.DateTimeFormat(locale(lang), { hour: '2-digit', minute: '2-digit' }).format(
    new Date(ms),
  );
}

/** A `YYYY-MM-DD` date from Rust, shown as e.g. "3. dec. 2026". */
export function formatDate(iso: string, lang: Language): string {
  const [y, m, d] = iso.split('-').map(Number);
  if (!y || !m || !d) return iso;
  return new Intl.DateTimeFormat(locale(lang), {
    day: 'numeric',
    month: 'short',
    year: 'numeric',
  }).format(new Date(y, m - 1, d));
}

const pad = (n: number) => String(n).padStart(2, '0');

/** Today (local) as `YYYY-MM-DD`. */
export function isoDate(d: Date = new Date()): string {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** A local `datetime-local` input value for `d`. */
export function localDateTime(d: Date = new Date()): string {
  return `${isoDate(d)}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function addDays(days: number, d: Date = new Date()): Date {
  const x = new Date(d);
  x.setDate(x.getDate() + days);
  return x;
}
