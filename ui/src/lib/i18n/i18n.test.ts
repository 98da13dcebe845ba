import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as enums from '../enums';
import da from './da.json';
import en from './en.json';
import { i18n, interpolate, lookup } from './index.svelte';

const placeholders = (s: string) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();

describe('translation files', () => {
  it('have the same keys in Danish and English', () => {
    expect(Object.keys(en).sort()).toEqual(Object.keys(da).sort());
  });

  it('have no empty texts and the same placeholders in both languages', () => {
    const dict = da as Record<string, string>;
    const eng = en as Record<string, string>;
    for (const key of Object.keys(dict)) {
      expect(dict[key].trim(), key).not.toBe('');
      expect(eng[key].trim(), key).not.toBe('');
      expect(placeholders(eng[key]), key).toEqual(placeholders(dict[key]));
    }
  });

  it('translate every enum value', () => {
    const groups: [string, readonly string[]][] = [
      ['theme', enums.THEMES],
      ['referral', enums.REFERRALS],
      ['visit_kind', enums.VISIT_KINDS],
      ['housing', enums.HOUSING],
      ['consent', enums.CONSENT_STATUSES],
      ['consent_method', enums.CONSENT_METHODS],
      ['goal_status', enums.GOAL_STATUSES],
      ['task_status', enums.TASK_STATUSES],
      ['site_kind', enums.SITE_KINDS],
      ['site_log_kind', enums.SITE_LOG_KINDS],
      ['sync_state', enums.SYNC_STATES],
      ['entity', enums.ENTITY_KINDS],
      ['error', enums.ERROR_CODES],
      ['role', enums.ROLES],
      ['conflict_kind', ['open', 'notice']],
    ];
    for (const [group, values] of groups) {
      for (const v of values) expect(da, `${group}.${v}`).toHaveProperty([`${group}.${v}`]);
    }
  });

  it('contain every literal key the source code asks for', () => {
    const files: string[] = [];
    const walk = (dir: string) => {
      for (const name of readdirSync(dir)) {
        const p = join(dir, name);
        if (statSync(p).isDirectory()) walk(p);
        else if (/\.(svelte|ts)$/.test(name) && !name.endsWith('.test.ts')) files.push(p);
      }
    };
    walk(join(__dirname, '..', '..'));
    const missing: string[] = [];
    for (const f of files) {
      const src = readFileSync(f, 'utf8');
      for (const m of src.matchAll(/\b(?:t|tn)\('([a-z_.]+)'/g)) {
        const key = m[1];
        const plural = src.slice(m.index, m.index + 6).includes('tn(');
        const keys = plural ? [`${key}.one`, `${key}.other`] : [key];
        for (const k of keys) if (!(k in da)) missing.push(`${f}: ${k}`);
      }
    }
    expect(missing).toEqual([]);
  });
});

describe('lookup', () => {
  it('fills in placeholders and leaves unknown ones', () => {
    expect(interpolate('{n} af {m}', { n: 2 })).toBe('2 af {m}');
  });

  it('uses the language, then Danish, then the key', () => {
    expect(lookup('en', 'nav.today')).toBe('Today');
    expect(lookup('da', 'nav.today')).toBe('I dag');
    expect(lookup('en', 'no.such.key')).toBe('no.such.key');
  });

  it('falls back to Danish when English lacks a key', async () => {
    const { dictionaries } = await import('./index.svelte');
    const saved = dictionaries.en['nav.tasks'];
    delete dictionaries.en['nav.tasks'];
    try {
      expect(lookup('en', 'nav.tasks')).toBe('Opgaver');
    } finally {
      dictionaries.en['nav.tasks'] = saved;
    }
  });

  it('switches language and picks plural forms', () => {
    i18n.set('da');
    expect(i18n.tn('sync.unsynced', 1)).toBe('1 ændring ikke sendt');
    expect(i18n.tn('sync.unsynced', 3)).toBe('3 ændringer ikke sendt');
    i18n.set('en');
    expect(i18n.tv('theme', 'crisis')).toBe('Crisis');
    expect(i18n.tOr('field.unknown_field', 'unknown_field')).toBe('unknown_field');
    i18n.set('da');
  });
});
