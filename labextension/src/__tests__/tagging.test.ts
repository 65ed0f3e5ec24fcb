import {
  checkMark,
  magicLine,
  markFromTags,
  optionsMetadata,
  splitNames,
  stageTag,
  tagCell,
  untagCell
} from '../tagging';

describe('the tag contract (mlnb/tags.py)', () => {
  it('names a stage tag like stage_tag', () => {
    expect(stageTag('train')).toBe('mlnb:train');
    expect(stageTag('train', 'train')).toBe('mlnb:train');
    expect(stageTag('train', 'fit')).toBe('mlnb:train:fit');
  });

  it('writes the options object like StageOptions.to_metadata', () => {
    expect(optionsMetadata({ kind: 'data', name: 'data' })).toEqual({ version: 1 });
    expect(
      optionsMetadata({ kind: 'train', name: 'fit', model: 'clf', metrics: ['auc'], outputs: [] })
    ).toEqual({ version: 1, model: 'clf', metrics: ['auc'] });
  });

  it('reads the mark of tags', () => {
    expect(markFromTags(['parameters'])).toBeNull();
    expect(markFromTags(['mlnb:skip'])).toBeNull();
    expect(markFromTags(['x', 'mlnb:train:fit'])).toEqual({ kind: 'train', name: 'fit' });
    expect(markFromTags(['mlnb:serve'])).toEqual({ kind: 'serve', name: 'serve' });
  });
});

describe('tagCell / untagCell', () => {
  it('replaces any other mark and keeps foreign tags in order', () => {
    const result = tagCell(['keep', 'mlnb:data', 'mlnb:skip', 'other'], {
      kind: 'train',
      name: 'fit',
      model: 'clf',
      metrics: ['auc']
    });
    expect(result).toEqual({
      tags: ['keep', 'other', 'mlnb:train:fit'],
      mlnb: { version: 1, model: 'clf', metrics: ['auc'] }
    });
  });

  it('untags a stage but keeps mlnb:skip and foreign tags', () => {
    expect(untagCell(['a', 'mlnb:train', 'mlnb:skip'])).toEqual({
      tags: ['a', 'mlnb:skip'],
      mlnb: undefined
    });
  });
});

describe('checkMark', () => {
  it('accepts a plain mark', () => {
    expect(checkMark({ kind: 'data', name: 'load' }, 'x = 1')).toBeNull();
  });

  it('refuses bad names, kinds and cells marked by a %%mlnb line', () => {
    expect(checkMark({ kind: 'data', name: '1load' }, '')).toMatch('not a valid stage name');
    expect(checkMark({ kind: 'fit' as any, name: 'fit' }, '')).toMatch('unknown stage kind');
    expect(checkMark({ kind: 'train', name: 'fit', model: 'my model' }, '')).toMatch(
      'not a variable name'
    );
    expect(checkMark({ kind: 'train', name: 'fit', outputs: ['a-b'] }, '')).toMatch('in outputs');
    expect(checkMark({ kind: 'data', name: 'data' }, '\n%%mlnb data\nx = 1')).toMatch('%%mlnb');
  });

  it('finds a %%mlnb first line as tags.py does', () => {
    expect(magicLine('%%mlnb train --name fit\nx')).toBe('%%mlnb train --name fit');
    expect(magicLine('%%mlnbx\n')).toBeNull();
    expect(magicLine('x = 1\n%%mlnb data')).toBeNull();
    expect(splitNames(' auc, ,f1 ')).toEqual(['auc', 'f1']);
  });
});
