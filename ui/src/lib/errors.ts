// Rust's `AppError` → what the screen shows: a translated sentence per code, and for `invalid`
// errors the problem placed next to the field it names.
import type { AppError } from './bindings';
import { isAppError } from './api';
import type { Params } from './i18n/index.svelte';
import type { Problems } from './validation';

type T = (key: string, params?: Params) => string;

/** The translated sentence for any rejection (unknown shapes become `internal`). */
export function errorText(t: T, e: unknown): string {
  if (!isAppError(e)) return t('error.internal');
  switch (e.code) {
    case 'wrong_pin':
      return e.attempts_left === null
        ? t('error.wrong_pin')
        : t('error.wrong_pin_attempts', { n: e.attempts_left });
    case 'back_off':
      return t('error.back_off_wait', { s: Math.ceil((e.retry_after_ms ?? 0) / 1000) });
    default:
      return t(`error.${e.code}`);
  }
}

/**
 * Splits an error for a form: an `invalid` (or `weak_pin`) error about a field the form shows
 * becomes a field problem (`knownFields`); anything else is a form-level message.
 */
export function formError(
  e: unknown,
  knownFields: readonly string[],
): { fields: Problems; general: unknown } {
  if (isAppError(e) && (e.code === 'invalid' || e.code === 'weak_pin') && e.field) {
    const field = knownFields.find((f) => e.field === f || e.field?.startsWith(`${f}.`));
    if (field) return { fields: { [field]: fromAppError(e) }, general: null };
  }
  return { fields: {}, general: e };
}

function fromAppError(e: AppError) {
  return e.code === 'weak_pin'
    ? { key: 'error.weak_pin' }
    : { key: 'error.invalid_field', params: { message: e.message } };
}
