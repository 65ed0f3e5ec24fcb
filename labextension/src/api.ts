/**
 * The one place that talks to the server extension: `requestAPI<T>()` over `/mlnb/...`.
 */

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { IErrorInfo, IImportanceAnswer, IJob, IPipeline, IRun } from './types';

/** A failed request, carrying the server's error JSON (or one made up for network failures). */
export class ApiError extends Error {
  constructor(readonly info: IErrorInfo) {
    super(info.message);
  }
}

function madeUpError(status: number, message: string): IErrorInfo {
  return {
    error: status ? `http-${status}` : 'network',
    message,
    fix: null,
    notebook: null,
    cell_index: null,
    cell: null,
    cell_first_line: null,
    stage: null,
    status
  };
}

/** The URL of a route under `/mlnb/`, for the browser to open itself (pages, downloads). */
export function pageUrl(endpoint: string, query: { [key: string]: string } = {}): string {
  const settings = ServerConnection.makeSettings();
  const search = new URLSearchParams(query).toString();
  return URLExt.join(settings.baseUrl, 'mlnb', endpoint) + (search ? `?${search}` : '');
}

export async function requestAPI<T>(
  endpoint: string,
  init: RequestInit = {},
  query: { [key: string]: string } = {}
): Promise<T> {
  const settings = ServerConnection.makeSettings();
  let url = URLExt.join(settings.baseUrl, 'mlnb', endpoint);
  const search = new URLSearchParams(query).toString();
  if (search) {
    url += `?${search}`;
  }
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ApiError(madeUpError(0, `cannot reach the Jupyter server: ${error}`));
  }
  const text = await response.text();
  let data: unknown = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const info =
      data && typeof data === 'object' && 'message' in (data as object)
        ? (data as IErrorInfo)
        : madeUpError(response.status, `${response.status} ${response.statusText}`);
    throw new ApiError(info);
  }
  return data as T;
}

const post = (body: unknown): RequestInit => ({ method: 'POST', body: JSON.stringify(body) });

export const api = {
  version: () => requestAPI<{ version: string; api: number }>('version'),
  inspect: (path: string) => requestAPI<IPipeline>('inspect', {}, { path }),
  inspectContent: (path: string, notebook: unknown) =>
    requestAPI<IPipeline>('inspect', post({ path, notebook })),
  runs: (path: string) => requestAPI<{ runs: IRun[] }>('runs', {}, { path }),
  startRun: (path: string, parameters: unknown, kernel?: string) =>
    requestAPI<{ run_id: string; job_id: string }>(
      'runs',
      post(kernel ? { path, parameters, kernel } : { path, parameters })
    ),
  run: (path: string, runId: string) =>
    requestAPI<IRun>(`runs/${encodeURIComponent(runId)}`, {}, { path }),
  importance: (path: string, runId: string) =>
    requestAPI<IImportanceAnswer>(`runs/${encodeURIComponent(runId)}/importance`, {}, { path }),
  computeImportance: (path: string, runId: string) =>
    requestAPI<IImportanceAnswer>(`runs/${encodeURIComponent(runId)}/importance`, post({ path })),
  startBuild: (path: string, runId: string | null) =>
    requestAPI<IJob>('builds', post(runId ? { path, run_id: runId } : { path })),
  job: (jobId: string) => requestAPI<IJob>(`jobs/${encodeURIComponent(jobId)}`),
  /** The run's HTML report (a page the server renders with `mlnb report`). */
  reportUrl: (path: string, runId: string) =>
    pageUrl(`runs/${encodeURIComponent(runId)}/report`, { path }),
  /** The run's executed notebook, as a download. */
  executedNotebookUrl: (path: string, runId: string) =>
    pageUrl(`runs/${encodeURIComponent(runId)}/notebook`, { path })
};
