import { coerce, coerceAll, fieldKind, formatParameters, initialValues } from '../params';
import { IParameter } from '../types';

const p = (name: string, type: string, def: any, choices: string[] = []): IParameter => ({
  name,
  type,
  default: def,
  comment: choices.length ? `choices: ${choices.join(', ')}` : '',
  choices
});

const breastCancer = [
  p('test_size', 'float', 0.25),
  p('seed', 'int', 42),
  p('C', 'float', 1.0),
  p('max_iter', 'int', 500)
];

describe('fields', () => {
  it('picks a field per type', () => {
    expect(fieldKind(p('a', 'bool', true))).toBe('checkbox');
    expect(fieldKind(p('a', 'str', 'x', ['x', 'y']))).toBe('select');
    expect(fieldKind(p('a', 'int', 1))).toBe('number');
    expect(fieldKind(p('a', 'str', 'x'))).toBe('text');
    expect(fieldKind(p('a', 'expr', 'np.arange(3)'))).toBe('readonly');
  });

  it('starts from the notebook defaults', () => {
    expect(initialValues([...breastCancer, p('on', 'bool', false), p('l', 'list', [1, 2])])).toEqual({
      test_size: '0.25',
      seed: '42',
      C: '1',
      max_iter: '500',
      on: false,
      l: '[1,2]'
    });
  });
});

describe('coerce', () => {
  it('shows lists, dicts and code read-only: mlnb run -p cannot set them', () => {
    expect(fieldKind(p('l', 'list', [1]))).toBe('readonly');
    expect(fieldKind(p('d', 'dict', {}))).toBe('readonly');
    const params = [p('l', 'list', [1])];
    expect(coerceAll(params, { l: '[2]' })).toEqual({ parameters: {}, errors: {} });
  });

  it('reads numbers and rejects what is not one', () => {
    expect(coerce(p('n', 'int', 1), ' 7 ')).toBe(7);
    expect(() => coerce(p('n', 'int', 1), '7.5')).toThrow('whole number');
    expect(() => coerce(p('n', 'int', 1), '')).toThrow('whole number');
    expect(() => coerce(p('n', 'int', 1), '99999999999999999999')).toThrow('too large');
    expect(coerce(p('x', 'float', 1.0), '1e-3')).toBe(0.001);
    expect(() => coerce(p('x', 'float', 1.0), 'abc')).toThrow('a number');
    expect(() => coerce(p('x', 'float', 1.0), 'Infinity')).toThrow('a number');
    expect(() => coerce(p('x', 'float', 1.0), ' ')).toThrow('a number');
  });

  it('keeps strings as typed and checks choices', () => {
    expect(coerce(p('s', 'str', 'a'), '42')).toBe('42');
    const choice = p('solver', 'str', 'lbfgs', ['lbfgs', 'saga']);
    expect(coerce(choice, 'saga')).toBe('saga');
    expect(() => coerce(choice, 'adam')).toThrow('one of lbfgs, saga');
  });

  it('reads booleans and None', () => {
    expect(coerce(p('b', 'bool', true), false)).toBe(false);
    expect(coerce(p('b', 'bool', true), 'True')).toBe(true);
    expect(() => coerce(p('b', 'bool', true), 'yes')).toThrow('true or false');
    expect(coerce(p('n', 'none', null), '')).toBeNull();
    expect(coerce(p('n', 'none', null), '3')).toBe(3);
    expect(coerce(p('n', 'none', null), 'text')).toBe('text');
    // typed as `mlnb run -p` types it (papermill's rule), as the %mlnb panel does
    expect(coerce(p('n', 'none', null), 'None')).toBeNull();
    expect(coerce(p('n', 'none', null), 'True')).toBe(true);
    expect(coerce(p('n', 'none', null), 'False')).toBe(false);
    expect(coerce(p('n', 'none', null), '2.5e3')).toBe(2500);
    expect(coerce(p('n', 'none', null), 'nan')).toBe('nan');
    expect(coerce(p('n', 'none', null), 'true')).toBe('true');
    expect(coerce(p('n', 'none', null), '[1, 2]')).toBe('[1, 2]');
  });
});

describe('coerceAll', () => {
  it('sends only what differs from the defaults', () => {
    const values = { ...initialValues(breastCancer), C: '0.5', seed: '42' };
    expect(coerceAll(breastCancer, values)).toEqual({ parameters: { C: 0.5 }, errors: {} });
  });

  it('names every field it cannot read and never sends expr defaults', () => {
    const params = [...breastCancer, p('grid', 'expr', 'np.arange(3)')];
    const values = { ...initialValues(params), seed: 'x', C: '', grid: 'changed' };
    const result = coerceAll(params, values);
    expect(result.parameters).toEqual({});
    expect(Object.keys(result.errors).sort()).toEqual(['C', 'seed']);
    expect(result.errors.seed).toBe('seed expects a whole number');
  });

  it('formats a run\'s parameters', () => {
    expect(formatParameters({ C: 0.5, solver: 'saga', on: true })).toBe('C=0.5, solver=saga, on=true');
    expect(formatParameters(undefined)).toBe('');
  });
});
