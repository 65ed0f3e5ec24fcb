/**
 * The one place that talks to the server extension: `requestAPI<T>()` over `/mlnb/...`.
 *
 * Every error the sidebar shows has one shape, `IErrorInfo` (the server's
 * `mlnb.errors.error_response` body plus the HTTP status), read by one function,
 * `readError`; `errorOf` turns anything thrown into it.
 */

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { IErrorInfo, IImportanceAnswer, IJob, IPipeline, IRun } from './types';

export type { IErrorInfo } from './types';

/** A failed request, carrying the server's error JSON (or one made up for network failures). */
export class ApiError extends Error {
  constructor(readonly info: IErrorInfo) {
    super(info.message);
  }
}

/** An error in the shape, coded `code`, for what the server did not describe itself. */
function madeUpError(
  code: string,
  message: string,
  status?: number,
  notebook: string | null = null
): IErrorInfo {
  const info: IErrorInfo = {
    error: code,
    message,
    fix: null,
    notebook,
    cell_index: null,
    cell: null,
    cell_first_line: null,
    stage: null
  };
  return status === undefined ? info : { ...info, status };
}

/**
 * The error a failed answer says: its JSON body when that is an error object (one with a
 * `message`), else one made up from the HTTP status (`http-404`; `network` for status 0,
 * when no answer came).
 */
export function readError(data: unknown, status: number, statusText = ''): IErrorInfo {
  if (data && typeof data === 'object' && 'message' in data) {
    return data as IErrorInfo;
  }
  const message = status ? `${status} ${statusText}` : statusText;
  return madeUpError(status ? `http-${status}` : 'network', message, status);
}

/** Anything thrown, as an error in the shape: an `ApiError`'s own, else a `client` error. */
export function errorOf(error: unknown, notebook: string | null = null): IErrorInfo {
  if (error instanceof ApiError) {
    return error.info;
  }
  return madeUpError('client', String(error), undefined, notebook);
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
    throw new ApiError(readError(null, 0, `cannot reach the Jupyter server: ${error}`));
  }
  const text = await response.text();
  let data: unknown = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    throw new ApiError(readError(data, response.status, response.statusText));
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
