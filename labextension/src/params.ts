/**
 * The parameters form: what each field shows and how its text becomes a typed value.
 * Pure functions; the server checks the values again before it starts a run.
 */

import { IParameter, JSONValue } from './types';

/** What the form holds for one parameter: text for most types, a flag for booleans. */
export type FieldValue = string | boolean;

export type FieldKind = 'checkbox' | 'select' | 'number' | 'text' | 'readonly';

/** The types `mlnb run -p/-r` can set; others (lists, dicts, code) are shown read-only. */
export const SETTABLE_TYPES = ['int', 'float', 'bool', 'str', 'none'];

export function fieldKind(param: IParameter): FieldKind {
  if (!SETTABLE_TYPES.includes(param.type)) {
    return 'readonly';
  }
  if (param.type === 'bool') {
    return 'checkbox';
  }
  if (param.choices.length > 0) {
    return 'select';
  }
  if (param.type === 'int' || param.type === 'float') {
    return 'number';
  }
  return 'text';
}

/** The form's starting value for a parameter: its default from the notebook. */
export function initialValue(param: IParameter): FieldValue {
  const value = param.default;
  switch (param.type) {
    case 'bool':
      return value === true;
    case 'str':
    case 'expr':
      return String(value ?? '');
    case 'none':
      return '';
    case 'int':
    case 'float':
      return String(value);
    default:
      return JSON.stringify(value);
  }
}

export function initialValues(params: IParameter[]): { [name: string]: FieldValue } {
  const values: { [name: string]: FieldValue } = {};
  for (const p of params) {
    values[p.name] = initialValue(p);
  }
  return values;
}

export interface ICoerced {
  /** The parameters to send: only those whose value differs from the notebook's default. */
  parameters: { [name: string]: JSONValue };
  /** A message per field that cannot be read. */
  errors: { [name: string]: string };
}

const INT = /^[+-]?\d+$/;

/** Read one field as its parameter's type; throws an Error with a message for the user. */
export function coerce(param: IParameter, raw: FieldValue): JSONValue {
  if (param.type === 'bool') {
    if (typeof raw === 'boolean') {
      return raw;
    }
    const text = raw.trim().toLowerCase();
    if (text === 'true' || text === 'false') {
      return text === 'true';
    }
    throw new Error('expects true or false');
  }
  const text = String(raw);
  if (param.choices.length > 0 && !param.choices.includes(text)) {
    throw new Error(`expects one of ${param.choices.join(', ')}`);
  }
  switch (param.type) {
    case 'int': {
      if (!INT.test(text.trim())) {
        throw new Error('expects a whole number');
      }
      const value = Number(text.trim());
      if (!Number.isSafeInteger(value)) {
        throw new Error('is too large');
      }
      return value;
    }
    case 'float': {
      const value = text.trim() === '' ? NaN : Number(text.trim());
      if (!Number.isFinite(value)) {
        throw new Error('expects a number');
      }
      return value;
    }
    case 'str':
      return text;
    case 'none':
      return text.trim() === '' ? null : asCommandLineValue(text);
    default:
      return parseLoose(text);
  }
}

/**
 * The text of a field whose default is None, typed as `mlnb run -p NAME TEXT` types it
 * (papermill's rule, mlnb.run_arguments): None, True and False, then a whole or a finite
 * number, else the text itself.
 */
export function asCommandLineValue(text: string): JSONValue {
  const word = text.trim();
  if (word === 'None') {
    return null;
  }
  if (word === 'True' || word === 'False') {
    return word === 'True';
  }
  if (/^[-+]?\d+$/.test(word)) {
    const whole = Number(word);
    return Number.isSafeInteger(whole) ? whole : text;
  }
  if (/^[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?$/.test(word)) {
    const number = Number(word);
    return Number.isFinite(number) ? number : text;
  }
  return text;
}

/** A JSON literal when the text is one, else the text itself. */
function parseLoose(text: string): JSONValue {
  try {
    return JSON.parse(text) as JSONValue;
  } catch {
    return text;
  }
}

function sameValue(a: JSONValue, b: JSONValue): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Read the whole form: typed values that differ from the defaults, and field errors. */
export function coerceAll(
  params: IParameter[],
  values: { [name: string]: FieldValue }
): ICoerced {
  const result: ICoerced = { parameters: {}, errors: {} };
  for (const param of params) {
    if (fieldKind(param) === 'readonly' || !(param.name in values)) {
      continue;
    }
    try {
      const value = coerce(param, values[param.name]);
      if (!sameValue(value, param.default)) {
        result.parameters[param.name] = value;
      }
    } catch (error) {
      result.errors[param.name] = `${param.name} ${(error as Error).message}`;
    }
  }
  return result;
}

/** Parameters of a past run as short text, e.g. `C=0.5, seed=1`. */
export function formatParameters(parameters: { [name: string]: JSONValue } | undefined): string {
  if (!parameters) {
    return '';
  }
  return Object.entries(parameters)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(', ');
}
