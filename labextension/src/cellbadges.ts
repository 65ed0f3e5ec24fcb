/**
 * The stage badges on the notebook's cells: data attributes and a kind class (`mlnb-kind-data`,
 * whose tone the sidebar's chips use too) on each cell's node, drawn by style/base.css as a
 * label at the top of the cell (`.jp-Cell.mlnb-badged::before`).
 * Attributes rather than widgets: they survive JupyterLab re-rendering and windowing a cell,
 * and need no change to the cell's layout.
 */

import { Notebook } from '@jupyterlab/notebook';

import { ICellBadge } from './badges';

export const BADGE_CLASS = 'mlnb-badged';
const LABEL = 'data-mlnb-badge';
const KIND = 'data-mlnb-badge-kind';
const PART = 'data-mlnb-badge-part';
const KIND_PREFIX = 'mlnb-kind-';

function removeKindClasses(node: HTMLElement): void {
  Array.from(node.classList)
    .filter(c => c.startsWith(KIND_PREFIX))
    .forEach(c => node.classList.remove(c));
}

/** Give each cell of `notebook` its badge, by 0-based index; take it off the others. */
export function showBadges(notebook: Notebook, badges: Map<number, ICellBadge>): void {
  notebook.widgets.forEach((cell, index) => {
    const node = cell.node;
    const badge = badges.get(index);
    if (!badge) {
      if (node.classList.contains(BADGE_CLASS)) {
        node.classList.remove(BADGE_CLASS);
        removeKindClasses(node);
        [LABEL, KIND, PART].forEach(name => node.removeAttribute(name));
      }
      return;
    }
    if (node.getAttribute(KIND) !== badge.kind) {
      removeKindClasses(node);
      node.classList.add(`${KIND_PREFIX}${badge.kind}`);
    }
    node.classList.add(BADGE_CLASS);
    node.setAttribute(LABEL, badge.label);
    node.setAttribute(KIND, badge.kind);
    node.setAttribute(PART, badge.part);
  });
}
