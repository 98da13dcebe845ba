import { describe, expect, it } from 'vitest';
import type { AppError } from './bindings';
import { errorText, formError } from './errors';
import { lookup } from './i18n/index.svelte';

const t = (key: string, params?: Record<string, string | number>) => lookup('da', key, params);
const e = (over: Partial<AppError>): AppError => ({
  code: 'internal',
  message: 'x',
  field: null,
  retry_after_ms: null,
  attempts_left: null,
  ...over,
});

describe('errorText', () => {
  it('shows attempts left for a wrong PIN', () => {
    expect(errorText(t, e({ code: 'wrong_pin', attempts_left: 2 }))).toBe('Forkert PIN-kode. 2 forsøg tilbage.');
    expect(errorText(t, e({ code: 'wrong_pin' }))).toBe('Forkert PIN-kode.');
  });
  it('shows the back-off wait in whole seconds', () => {
    expect(errorText(t, e({ code: 'back_off', retry_after_ms: 4100 }))).toContain('5 sekunder');
  });
  it('translates every other code, and anything unknown as internal', () => {
    expect(errorText(t, e({ code: 'offline' }))).toContain('Serveren kan ikke nås');
    expect(errorText(t, new Error('boom'))).toBe(lookup('da', 'error.internal'));
  });
});

describe('formError', () => {
  it('puts an invalid error next to its field, also for nested field names', () => {
    const r = formError(e({ code: 'invalid', field: 'anonymous.count', message: 'out of range' }), ['anonymous.count', 'note']);
    expect(r.general).toBeNull();
    expect(r.fields['anonymous.count']).toEqual({ key: 'error.invalid_field', params: { message: 'out of range' } });
    const nested = formError(e({ code: 'invalid', field: 'consent.date' }), ['consent']);
    expect(Object.keys(nested.fields)).toEqual(['consent']);
  });
  it('keeps errors about fields the form does not show, and other codes, general', () => {
    const err = e({ code: 'invalid', field: 'team_id' });
    expect(formError(err, ['note'])).toEqual({ fields: {}, general: err });
    const off = e({ code: 'offline' });
    expect(formError(off, ['note']).general).toBe(off);
  });
});
