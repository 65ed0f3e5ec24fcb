/**
 * mlnb's JupyterLab plugin: a left sidebar with the active notebook's pipeline, runs and builds.
 */

import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { MainAreaWidget } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { IFrame, LabIcon } from '@jupyterlab/ui-components';

import { IShellActions, SidebarModel } from './model';
import { MlnbSidebar } from './panel';

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <rect x="8" y="2" width="8" height="5" rx="1.5"/>
    <rect x="2" y="16" width="8" height="5" rx="1.5"/>
    <rect x="14" y="16" width="8" height="5" rx="1.5"/>
    <path d="M11.25 7h1.5v3.5H18.5a.75.75 0 0 1 .75.75V16h-1.5v-4h-11.5v4h-1.5v-4.75a.75.75 0 0 1 .75-.75h5.75z"/>
  </g>
</svg>`;

export const mlnbIcon = new LabIcon({ name: 'mlnb:pipeline', svgstr: ICON_SVG });

const SIDEBAR_ID = 'mlnb-sidebar';
const REPORT_CLASS = 'mlnb-report';

/** The sidebar's ways into JupyterLab's shell: tabs, the main area, the document manager. */
function shellActions(app: JupyterFrontEnd): IShellActions {
  const reports = new Map<string, MainAreaWidget<IFrame>>();
  return {
    activate: (panel: NotebookPanel) => app.shell.activateById(panel.id),
    openReport: (url: string, runId: string) => {
      let widget = reports.get(runId);
      if (!widget || widget.isDisposed) {
        // The report is the executed notebook's HTML: shown sandboxed (no scripts, its own
        // origin), as the server's Content-Security-Policy also demands.
        const frame = new IFrame({ sandbox: [] });
        frame.url = url;
        widget = new MainAreaWidget({ content: frame });
        widget.id = `mlnb-report-${runId}`;
        widget.addClass(REPORT_CLASS);
        widget.title.label = `Report ${runId}`;
        widget.title.caption = `mlnb report of run ${runId}`;
        widget.title.icon = mlnbIcon;
        widget.title.closable = true;
        reports.set(runId, widget);
        app.shell.add(widget, 'main');
      }
      app.shell.activateById(widget.id);
    },
    openNotebook: (path: string) => void app.commands.execute('docmanager:open', { path })
  };
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'mlnb:sidebar',
  description: "The active notebook's mlnb stages, parameters, runs and builds.",
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    restorer: ILayoutRestorer | null
  ) => {
    const model = new SidebarModel(shellActions(app));
    const sidebar = new MlnbSidebar(model);
    sidebar.id = SIDEBAR_ID;
    sidebar.title.icon = mlnbIcon;
    sidebar.title.caption = 'mlnb pipeline';
    app.shell.add(sidebar, 'left', { rank: 650 });
    restorer?.add(sidebar, SIDEBAR_ID);

    app.commands.addCommand('mlnb:open-sidebar', {
      label: 'Show the mlnb pipeline',
      execute: () => app.shell.activateById(SIDEBAR_ID)
    });

    tracker.currentChanged.connect((_, panel) => void model.setNotebook(panel));
    void model.checkVersion();
    void model.setNotebook(tracker.currentWidget);
  }
};

export default plugin;
