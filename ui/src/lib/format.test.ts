import { describe, expect, it } from 'vitest';
import {
  dateFieldText,
  formatDate,
  formatDateTime,
  parseDateText,
  parseTimeText,
  timeFieldText,
} from './format';

describe('dates and times follow the UI language', () => {
  const evening = new Date(2026, 11, 6, 20, 48).getTime();

  it('shows Danish dates as 06.12.2026 and times as 20.48, English as 06/12/2026 and 20:48', () => {
    expect(formatDateTime(evening, 'da')).toBe('06.12.2026, 20.48');
    expect(formatDateTime(evening, 'en')).toBe('06/12/2026, 20:48');
    expect(formatDate('2026-12-06', 'da')).toBe('06.12.2026');
    expect(formatDate('2026-12-06', 'en')).toBe('06/12/2026');
  });

  it('reads a typed date day first, in either language, and refuses dates that do not exist', () => {
    expect(parseDateText('06.12.2026')).toBe('2026-12-06');
    expect(parseDateText('6/12/26')).toBe('2026-12-06');
    expect(parseDateText(' 6-12-2026 ')).toBe('2026-12-06');
    expect(parseDateText('2026-12-06')).toBe('2026-12-06');
    expect(parseDateText('31.02.2026')).toBeNull();
    expect(parseDateText('12/31/2026')).toBeNull();
    expect(parseDateText('i morgen')).toBeNull();
    expect(parseDateText('')).toBeNull();
  });

  it('reads a typed time with a dot, a colon or nothing between hours and minutes', () => {
    expect(parseTimeText('20.48')).toBe('20:48');
    expect(parseTimeText('8:05')).toBe('08:05');
    expect(parseTimeText('2048')).toBe('20:48');
    expect(parseTimeText('9')).toBe('09:00');
    expect(parseTimeText('24.00')).toBeNull();
    expect(parseTimeText('20.60')).toBeNull();
  });

  it('shows a stored value in the field in the UI language, and leaves a half-typed one alone', () => {
    expect(dateFieldText('2026-12-06', 'da')).toBe('06.12.2026');
    expect(dateFieldText('', 'da')).toBe('');
    expect(dateFieldText('06.1', 'da')).toBe('06.1');
    expect(timeFieldText('20:48', 'da')).toBe('20.48');
    expect(timeFieldText('20:48', 'en')).toBe('20:48');
  });
});
