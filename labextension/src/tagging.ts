/**
 * Tagging a cell as a stage, the way mlnb/tags.py reads it: pure functions over a cell's tags
 * and its `metadata.mlnb` object, so the sidebar writes exactly what `%%mlnb` lines imply.
 *
 *   mlnb:KIND or mlnb:KIND:NAME in cell.metadata.tags
 *   {"version": 1, "model": VAR, "metrics": [...], "outputs": [...]} in cell.metadata.mlnb
 */

import { JSONValue } from './types';

export const STAGE_KINDS = ['data', 'train', 'serve'] as const;
export type StageKind = (typeof STAGE_KINDS)[number];
export const TAG_PREFIX = 'mlnb:';
export const SKIP_TAG = 'mlnb:skip';
export const METADATA_VERSION = 1;
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const MAGIC_LINE = /^%%mlnb(\s|$)/;

export interface IStageMark {
  kind: StageKind;
  name: string;
  model?: string | null;
  metrics?: string[];
  outputs?: string[];
}

export interface ICellMarkup {
  tags: string[];
  /** `cell.metadata.mlnb`, or undefined to delete it. */
  mlnb: { [key: string]: JSONValue } | undefined;
}

export function isValidName(name: string): boolean {
  return NAME.test(name);
}

/** `mlnb:KIND` when the name is the kind, else `mlnb:KIND:NAME` (tags.stage_tag). */
export function stageTag(kind: string, name?: string | null): string {
  return !name || name === kind ? `${TAG_PREFIX}${kind}` : `${TAG_PREFIX}${kind}:${name}`;
}

/** The first line of a cell when it is a `%%mlnb` line, else null. */
export function magicLine(source: string): string | null {
  const first = source.replace(/^\n+/, '').split('\n', 1)[0];
  return MAGIC_LINE.test(first) ? first : null;
}

/** The stage a cell's tags open, if any (the first stage tag; validation is the server's). */
export function markFromTags(tags: readonly string[]): { kind: string; name: string } | null {
  for (const tag of tags) {
    if (!tag.startsWith(TAG_PREFIX) || tag === SKIP_TAG) {
      continue;
    }
    const [kind, name] = tag.slice(TAG_PREFIX.length).split(':');
    return { kind, name: name ?? kind };
  }
  return null;
}

/** Why a mark cannot be written, or null when it can. */
export function checkMark(mark: IStageMark, source: string): string | null {
  if (!(STAGE_KINDS as readonly string[]).includes(mark.kind)) {
    return `unknown stage kind ${JSON.stringify(mark.kind)}: use data, train or serve`;
  }
  if (!isValidName(mark.name)) {
    return `${JSON.stringify(mark.name)} is not a valid stage name: use letters, digits and underscores, starting with a letter`;
  }
  if (mark.model && !isValidName(mark.model)) {
    return `${JSON.stringify(mark.model)} is not a variable name`;
  }
  const badOutput = (mark.outputs ?? []).find(v => !isValidName(v));
  if (badOutput !== undefined) {
    return `${JSON.stringify(badOutput)} in outputs is not a variable name`;
  }
  if (magicLine(source) !== null) {
    return 'this cell starts with a %%mlnb line: edit that line, or delete it to use tags';
  }
  return null;
}

/** The options object stored in cell.metadata.mlnb (tags.StageOptions.to_metadata). */
export function optionsMetadata(mark: IStageMark): { [key: string]: JSONValue } {
  const meta: { [key: string]: JSONValue } = { version: METADATA_VERSION };
  if (mark.model) {
    meta.model = mark.model;
  }
  if (mark.metrics && mark.metrics.length) {
    meta.metrics = [...mark.metrics];
  }
  if (mark.outputs && mark.outputs.length) {
    meta.outputs = [...mark.outputs];
  }
  return meta;
}

/**
 * Tag a cell as opening a stage: drops any other mlnb stage tag and `mlnb:skip` (a cell has
 * one mark), keeps every other tag in place, and writes the options object.
 */
export function tagCell(tags: readonly string[], mark: IStageMark): ICellMarkup {
  const kept = tags.filter(t => !t.startsWith(TAG_PREFIX));
  return { tags: [...kept, stageTag(mark.kind, mark.name)], mlnb: optionsMetadata(mark) };
}

/** Remove a cell's stage tags and options; other tags (and `mlnb:skip`) stay. */
export function untagCell(tags: readonly string[]): ICellMarkup {
  return {
    tags: tags.filter(t => !t.startsWith(TAG_PREFIX) || t === SKIP_TAG),
    mlnb: undefined
  };
}

/** Split `a, b,,c` into names. */
export function splitNames(text: string): string[] {
  return text
    .split(',')
    .map(s => s.trim())
    .filter(s => s.length > 0);
}
