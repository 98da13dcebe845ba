// Dates and times for display and entry, in the UI language's conventions (local time zone):
// Danish 06.12.2026 and 20.48, English 06/12/2026 and 20:48. Built here rather than by `Intl`
// or the webview's native date inputs, which follow the machine's locale (a Danish screen
// showed "12/06/2026"), not the language the worker chose.
import type { Language } from './bindings';

const pad = (n: number) => String(n).padStart(2, '0');

/** The date separator and the placeholder of a date field, per language. */
const DATE = { da: { sep: '.', hint: 'dd.mm.åååå' }, en: { sep: '/', hint: 'dd/mm/yyyy' } } as const;
const TIME = { da: { sep: '.', hint: 'tt.mm' }, en: { sep: ':', hint: 'hh:mm' } } as const;

/** What a date field shows before anything is typed. */
export const datePlaceholder = (lang: Language) => DATE[lang].hint;
/** What a time field shows before anything is typed. */
export const timePlaceholder = (lang: Language) => TIME[lang].hint;

function dayText(d: Date, lang: Language): string {
  const s = DATE[lang].sep;
  return `${pad(d.getDate())}${s}${pad(d.getMonth() + 1)}${s}${d.getFullYear()}`;
}

function clockText(d: Date, lang: Language): string {
  return `${pad(d.getHours())}${TIME[lang].sep}${pad(d.getMinutes())}`;
}

/** A moment (ms since the epoch), e.g. "06.12.2026, 20.48". */
export function formatDateTime(ms: number, lang: Language): string {
  const d = new Date(ms);
  return `${dayText(d, lang)}, ${clockText(d, lang)}`;
}

/** A time of day, e.g. "20.48". */
export function formatTime(ms: number, lang: Language): string {
  return clockText(new Date(ms), lang);
}

/** A `YYYY-MM-DD` date from Rust, e.g. "06.12.2026". */
export function formatDate(iso: string, lang: Language): string {
  const [y, m, d] = iso.split('-').map(Number);
  if (!y || !m || !d) return iso;
  return dayText(new Date(y, m - 1, d), lang);
}

/** Today (local) as `YYYY-MM-DD`. */
export function isoDate(d: Date = new Date()): string {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** A local `YYYY-MM-DDTHH:MM` value for `d` (what the visit form keeps). */
export function localDateTime(d: Date = new Date()): string {
  return `${isoDate(d)}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function addDays(days: number, d: Date = new Date()): Date {
  const x = new Date(d);
  x.setDate(x.getDate() + days);
  return x;
}

/** A typed date — day, month, year with `.`, `/`, `-` or spaces between, a two-digit year
 *  meaning 20xx, or `YYYY-MM-DD` — as `YYYY-MM-DD`; `null` if it is no real date. */
export function parseDateText(text: string): string | null {
  const t = text.trim();
  let y: number, m: number, d: number;
  const isoMatch = /^(\d{4})-(\d{1,2})-(\d{1,2})$/.exec(t);
  const dmy = /^(\d{1,2})[./\- ](\d{1,2})[./\- ](\d{2}|\d{4})$/.exec(t);
  if (isoMatch) [y, m, d] = [Number(isoMatch[1]), Number(isoMatch[2]), Number(isoMatch[3])];
  else if (dmy) {
    [d, m, y] = [Number(dmy[1]), Number(dmy[2]), Number(dmy[3])];
    if (dmy[3].length === 2) y += 2000;
  } else return null;
  const date = new Date(y, m - 1, d);
  if (date.getFullYear() !== y || date.getMonth() !== m - 1 || date.getDate() !== d) return null;
  return isoDate(date);
}

/** A typed time — hours and minutes with `.`, `:` or nothing between — as `HH:MM`; `null` if
 *  it is no time of day. */
export function parseTimeText(text: string): string | null {
  const match = /^(\d{1,2})(?:[.:]?(\d{2}))?$/.exec(text.trim());
  if (!match) return null;
  const [h, min] = [Number(match[1]), Number(match[2] ?? '0')];
  if (h > 23 || min > 59) return null;
  return `${pad(h)}:${pad(min)}`;
}

/** A `YYYY-MM-DD` value as the date field shows it ('' stays ''). */
export function dateFieldText(iso: string, lang: Language): string {
  return parseDateText(iso) ? formatDate(iso, lang) : iso;
}

/** An `HH:MM` value as the time field shows it. */
export function timeFieldText(hhmm: string, lang: Language): string {
  return parseTimeText(hhmm) ? hhmm.replace(':', TIME[lang].sep) : hhmm;
}
