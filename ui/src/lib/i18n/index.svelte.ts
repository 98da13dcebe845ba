// Translations: every product text goes through `i18n.t`. Danish is the default and the
// fallback; a key missing from both prints itself so it is seen, never crashes a screen.
import type { Language } from '../bindings';
import da from './da.json';
import en from './en.json';

export type Dict = Record<string, string>;
export type Params = Record<string, string | number>;

export const dictionaries: Record<Language, Dict> = { da, en };

/** Replaces `{name}` placeholders with `params.name`. */
export function interpolate(text: string, params?: Params): string {
  if (!params) return text;
  return text.replace(/\{(\w+)\}/g, (whole, name: string) =>
    name in params ? String(params[name]) : whole,
  );
}

/** Looks a key up in `lang`, then in Danish, then returns the key itself. */
export function lookup(lang: Language, key: string, params?: Params): string {
  const text = dictionaries[lang][key] ?? dictionaries.da[key] ?? key;
  return interpolate(text, params);
}

/** The BCP 47 locale used for dates and numbers. */
export function locale(lang: Language): string {
  return lang === 'da' ? 'da-DK' : 'en-GB';
}

class I18n {
  lang = $state<Language>('da');

  /** Translates `key` with `{name}` parameters. */
  t = (key: string, params?: Params): string => lookup(this.lang, key, params);

  /** Translates `key`, or shows `fallback` when no dictionary has it (e.g. a field name). */
  tOr = (key: string, fallback: string): string =>
    dictionaries[this.lang][key] ?? dictionaries.da[key] ?? fallback;

  /** Plural: `key.one` when n is 1, else `key.other`; `{n}` is filled in. */
  tn = (key: string, n: number, params?: Params): string =>
    lookup(this.lang, `${key}.${n === 1 ? 'one' : 'other'}`, { n, ...params });

  /** Translates an enum value, e.g. `tv('theme', 'crisis')`. */
  tv = (group: string, value: string): string => lookup(this.lang, `${group}.${value}`);

  set(lang: Language) {
    this.lang = lang;
    if (typeof document !== 'undefined') document.documentElement.lang = lang;
  }
}

export const i18n = new I18n();
