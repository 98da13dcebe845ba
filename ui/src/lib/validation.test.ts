import { describe, expect, it } from 'vitest';
import {
  checkNewTag,
  emptyCitizenForm,
  emptyVisitForm,
  isIsoDate,
  lockMinutes,
  normaliseTags,
  parseWhole,
  toCitizenInput,
  toVisitInput,
  validateCitizen,
  validateFirstRun,
  validateMerged,
  validateQuickContact,
  validateSite,
  validateSiteLog,
  validateTask,
  validateUnlock,
  validateVisit,
} from './validation';

const keys = (p: object) => Object.keys(p).sort();

describe('first run', () => {
  const ok = { serverUrl: 'https://feltbog.example.dk', code: 'ABC-123', pin: '246810', pinRepeat: '246810' };
  it('accepts a complete form', () => expect(validateFirstRun(ok)).toEqual({}));
  it('requires every field', () =>
    expect(keys(validateFirstRun({ serverUrl: '', code: ' ', pin: '', pinRepeat: '' }))).toEqual(['code', 'pin', 'pin_repeat', 'server_url']));
  it('wants http:// or https://', () => {
    expect(validateFirstRun({ ...ok, serverUrl: 'feltbog.example.dk' }).server_url?.key).toBe('validation.server_url');
    expect(validateFirstRun({ ...ok, serverUrl: 'ftp://x' }).server_url?.key).toBe('validation.server_url');
    expect(validateFirstRun({ ...ok, serverUrl: 'http://10.0.0.2:8080' })).toEqual({});
  });
  it('wants a PIN of at least 6 characters, typed twice the same', () => {
    expect(validateFirstRun({ ...ok, pin: '12345', pinRepeat: '12345' }).pin?.key).toBe('validation.pin_short');
    expect(validateFirstRun({ ...ok, pinRepeat: '246811' }).pin_repeat?.key).toBe('validation.pin_mismatch');
    expect(validateFirstRun({ ...ok, pin: 'æøå æøå', pinRepeat: 'æøå æøå' })).toEqual({});
  });
});

describe('unlock', () => {
  it('needs something typed, nothing more', () => {
    expect(keys(validateUnlock(''))).toEqual(['pin']);
    expect(validateUnlock('1')).toEqual({});
  });
});

describe('citizen', () => {
  const base = emptyCitizenForm('2026-11-23');
  it('needs an alias or a name', () => {
    expect(keys(validateCitizen(base, 2026))).toEqual(['alias']);
    expect(validateCitizen({ ...base, fullName: 'Jens' }, 2026)).toEqual({});
  });
  it('checks CPR shape and birth year range', () => {
    const f = { ...base, alias: 'R', cpr: '0101901234', birthYear: '1990' };
    expect(validateCitizen(f, 2026)).toEqual({});
    expect(keys(validateCitizen({ ...f, cpr: '01-01-90' }, 2026))).toEqual(['cpr']);
    expect(validateCitizen({ ...f, birthYear: '1899' }, 2026).birth_year?.params).toEqual({ min: 1900, max: 2026 });
    expect(keys(validateCitizen({ ...f, birthYear: 'abc' }, 2026))).toEqual(['birth_year']);
    expect(keys(validateCitizen({ ...f, birthYear: '2027' }, 2026))).toEqual(['birth_year']);
  });
  it('needs a consent date when consent is recorded', () => {
    const f = { ...base, alias: 'R', hasConsent: true, consentDate: '' };
    expect(keys(validateCitizen(f, 2026))).toEqual(['consent.date']);
    expect(validateCitizen({ ...f, consentDate: '2026-02-30' }, 2026)['consent.date']?.key).toBe('validation.date');
  });
  it('builds the Rust input: trimmed, blank goals dropped, consent only when recorded', () => {
    const input = toCitizenInput({
      ...base,
      alias: ' Ravnen ',
      birthYear: '1990',
      goals: [
        { id: null, text: ' Egen bolig ', status: 'active' },
        { id: null, text: '  ', status: 'active' },
      ],
    });
    expect(input.alias).toBe('Ravnen');
    expect(input.birth_year).toBe(1990);
    expect(input.goals).toEqual([{ id: null, text: 'Egen bolig', status: 'active' }]);
    expect(input.consent).toBeNull();
    expect(toCitizenInput({ ...base, alias: 'x', hasConsent: true }).consent?.date).toBe('2026-11-23');
  });
});

describe('citizen tags and archiving', () => {
  const base = { ...emptyCitizenForm('2026-11-23'), alias: 'Ravnen' };
  it('starts with no tags, not archived', () => {
    expect(base.tags).toEqual([]);
    expect(base.archived).toBe(false);
    expect(validateCitizen(base, 2026)).toEqual({});
  });
  it('allows a tag of 60 characters, not 61 (counted as characters, not UTF-16 units)', () => {
    expect(validateCitizen({ ...base, tags: ['x'.repeat(60)] }, 2026)).toEqual({});
    expect(validateCitizen({ ...base, tags: ['æ'.repeat(60)] }, 2026)).toEqual({});
    expect(validateCitizen({ ...base, tags: ['😀'.repeat(60)] }, 2026)).toEqual({});
    const p = validateCitizen({ ...base, tags: ['ok', 'x'.repeat(61)] }, 2026);
    expect(keys(p)).toEqual(['tags']);
    expect(p.tags).toEqual({ key: 'validation.tag_too_long', params: { max: 60 } });
  });
  it('allows 50 tags, not 51; blank and repeated ones do not count', () => {
    const fifty = Array.from({ length: 50 }, (_, i) => `t${i}`);
    expect(validateCitizen({ ...base, tags: [...fifty, ' ', 't0', ' t1 '] }, 2026)).toEqual({});
    expect(validateCitizen({ ...base, tags: [...fifty, 't50'] }, 2026).tags).toEqual({ key: 'validation.tags_too_many', params: { max: 50 } });
  });
  it('normalises tags: trimmed, blank dropped, each once, order kept', () => {
    expect(normaliseTags([' natcafé ', '', '  ', 'metadon', 'natcafé'])).toEqual(['natcafé', 'metadon']);
  });
  it('checks a tag before it is added', () => {
    expect(checkNewTag([], ' natcafé ')).toBeNull();
    expect(checkNewTag(['natcafé'], 'natcafé')).toBeNull(); // already there: nothing to add
    expect(checkNewTag([], '   ')).toBeNull(); // blank: nothing to add
    expect(checkNewTag([], 'x'.repeat(61))?.key).toBe('validation.tag_too_long');
    const fifty = Array.from({ length: 50 }, (_, i) => `t${i}`);
    expect(checkNewTag(fifty, 'one more')).toEqual({ key: 'validation.tags_too_many', params: { max: 50 } });
    expect(checkNewTag(fifty.slice(1), 'one more')).toBeNull();
  });
  it('sends tags (normalised) and archived to Rust', () => {
    const input = toCitizenInput({ ...base, tags: [' natcafé', '', 'metadon', 'natcafé '], archived: true });
    expect(input.tags).toEqual(['natcafé', 'metadon']);
    expect(input.archived).toBe(true);
    expect(toCitizenInput(base)).toMatchObject({ tags: [], archived: false });
  });
});

describe('quick contact and visit', () => {
  const now = new Date('2026-11-23T12:00:00').getTime();
  it('quick contact defaults to one anonymous person and is valid as is', () => {
    const f = emptyVisitForm('street_contact');
    expect(f.anonymous).toBe(true);
    expect(f.count).toBe('1');
    expect(validateQuickContact(f)).toEqual({});
  });
  it('checks the count and needs a citizen when not anonymous', () => {
    const f = emptyVisitForm('street_contact');
    expect(keys(validateQuickContact({ ...f, count: '0' }))).toEqual(['anonymous.count']);
    expect(keys(validateQuickContact({ ...f, count: '501' }))).toEqual(['anonymous.count']);
    expect(keys(validateQuickContact({ ...f, count: '' }))).toEqual(['anonymous.count']);
    expect(keys(validateQuickContact({ ...f, anonymous: false }))).toEqual(['citizen_id']);
    expect(validateQuickContact({ ...f, anonymous: false, citizenId: 'c1' })).toEqual({});
  });
  it('visit: duration, wellbeing 1–10 optional, no future start', () => {
    const f = { ...emptyVisitForm('home_visit', 'c1') };
    expect(validateVisit(f, now)).toEqual({});
    expect(keys(validateVisit({ ...f, duration: '1441' }, now))).toEqual(['duration_minutes']);
    expect(keys(validateVisit({ ...f, wellbeing: '11' }, now))).toEqual(['wellbeing']);
    expect(validateVisit({ ...f, wellbeing: '10' }, now)).toEqual({});
    expect(keys(validateVisit({ ...f, startedAt: '2026-11-23T13:00' }, now))).toEqual(['started_at']);
    expect(validateVisit({ ...f, startedAt: '2026-11-23T12:04' }, now)).toEqual({});
  });
  it('visit: a follow-up needs a title, a due date and a known citizen', () => {
    const f = { ...emptyVisitForm('home_visit', 'c1'), followUp: true };
    expect(keys(validateVisit(f, now))).toEqual(['follow_up.due', 'follow_up.title']);
    expect(validateVisit({ ...f, followUpTitle: 'Ring', followUpDue: '2026-11-30' }, now)).toEqual({});
    expect(keys(validateVisit({ ...f, anonymous: true, followUpTitle: 'Ring', followUpDue: '2026-11-30' }, now))).toEqual(['follow_up']);
  });
  it('builds the Rust input for an anonymous contact and for a citizen visit', () => {
    const anon = toVisitInput({ ...emptyVisitForm('street_contact'), count: '2', description: ' ved Netto ', themes: ['housing'] });
    expect(anon).toMatchObject({ citizen_id: null, anonymous_count: 2, anonymous_description: 'ved Netto', started_at_ms: null, duration_minutes: 5, follow_up: null, wellbeing: null });
    const visit = toVisitInput({ ...emptyVisitForm('home_visit', 'c1'), wellbeing: '7', followUp: true, followUpTitle: ' Ring ', followUpDue: '2026-11-30' });
    expect(visit).toMatchObject({ citizen_id: 'c1', anonymous_count: null, wellbeing: 7, follow_up: { title: 'Ring', due: '2026-11-30' } });
  });
});

describe('small forms', () => {
  it('task needs a title and a real date', () => {
    expect(keys(validateTask({ title: '', due: '' }))).toEqual(['due', 'title']);
    expect(validateTask({ title: 'x', due: '2026-13-01' }).due?.key).toBe('validation.date');
    expect(validateTask({ title: 'x', due: '2026-12-01' })).toEqual({});
  });
  it('site needs a name; a log entry a note; a merge some text', () => {
    expect(keys(validateSite({ kind: 'shelter', name: ' ', address: '' }))).toEqual(['name']);
    expect(keys(validateSiteLog({ kind: 'repair', note: '' }))).toEqual(['note']);
    expect(keys(validateMerged(' \n'))).toEqual(['text']);
    expect(validateMerged('ok')).toEqual({});
  });
  it('helpers', () => {
    expect(parseWhole(' 12 ')).toBe(12);
    expect(parseWhole('')).toBeNull();
    expect(parseWhole('1.5')).toBeNaN();
    expect(isIsoDate('2024-02-29')).toBe(true);
    expect(isIsoDate('2023-02-29')).toBe(false);
    expect(lockMinutes(300)).toBe(5);
    expect(lockMinutes(3600)).toBe(60);
    expect(lockMinutes(400)).toBe(5);
  });
});
