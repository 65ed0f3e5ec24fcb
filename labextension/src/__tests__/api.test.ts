/**
 * The one reader of the server's error body (api.ts): the server's own JSON when it sent
 * one, else an error in the same shape made up from the HTTP status.
 */

const makeRequest = jest.fn();

jest.mock('@jupyterlab/services', () => ({
  ServerConnection: { makeSettings: () => ({ baseUrl: 'http://lab/' }), makeRequest }
}));
jest.mock('@jupyterlab/coreutils', () => ({
  URLExt: { join: (...parts: string[]) => parts.join('/').replace(/([^:])\/\/+/g, '$1/') }
}));

import { ApiError, errorOf, readError, requestAPI } from '../api';
import { IErrorInfo } from '../types';

const SHAPE = ['cell', 'cell_first_line', 'cell_index', 'error', 'fix', 'message', 'notebook', 'stage'];

const serverError: IErrorInfo = {
  error: 'unknown-stage',
  message: "no stage 'x'",
  fix: 'name a stage of the notebook',
  notebook: 'nb.ipynb',
  cell_index: 3,
  cell: 3,
  cell_first_line: 'x = 1',
  stage: null,
  status: 400,
  stages: [{ name: 'load', kind: 'data', cells: [1] }]
};

function answer(status: number, statusText: string, body: string): unknown {
  return { ok: status < 400, status, statusText, text: async () => body };
}

describe('readError', () => {
  it('keeps the error body the server sent, details included', () => {
    expect(readError(serverError, 400, 'Bad Request')).toEqual(serverError);
  });

  it('makes up an error in the same shape when the body is not one', () => {
    for (const body of [null, 'Not Found', [1, 2], { detail: 'x' }]) {
      const info = readError(body, 404, 'Not Found');
      expect(Object.keys(info).sort()).toEqual([...SHAPE, 'status'].sort());
      expect(info).toMatchObject({ error: 'http-404', message: '404 Not Found', status: 404 });
    }
  });

  it('says network when no answer came', () => {
    const info = readError(null, 0, 'cannot reach the Jupyter server: TypeError');
    expect(info).toMatchObject({ error: 'network', status: 0 });
    expect(info.message).toBe('cannot reach the Jupyter server: TypeError');
  });
});

describe('errorOf', () => {
  it("is an ApiError's own error, or a client error naming the notebook", () => {
    expect(errorOf(new ApiError(serverError))).toBe(serverError);
    const info = errorOf(new Error('boom'), 'nb.ipynb');
    expect(Object.keys(info).sort()).toEqual(SHAPE);
    expect(info).toMatchObject({ error: 'client', message: 'Error: boom', notebook: 'nb.ipynb' });
  });
});

describe('requestAPI', () => {
  it("throws the server's error body", async () => {
    makeRequest.mockResolvedValueOnce(answer(400, 'Bad Request', JSON.stringify(serverError)));
    await expect(requestAPI('inspect')).rejects.toEqual(new ApiError(serverError));
    makeRequest.mockResolvedValueOnce(answer(400, 'Bad Request', JSON.stringify(serverError)));
    const thrown = await requestAPI('inspect').catch((error: ApiError) => error.info);
    expect(thrown).toEqual(serverError);
  });

  it('throws a made-up error for an answer that is not JSON, or for no answer', async () => {
    makeRequest.mockResolvedValueOnce(answer(502, 'Bad Gateway', '<html>proxy</html>'));
    const proxied = await requestAPI('runs').catch((error: ApiError) => error.info);
    expect(proxied).toMatchObject({ error: 'http-502', message: '502 Bad Gateway', status: 502 });
    makeRequest.mockRejectedValueOnce(new TypeError('failed to fetch'));
    const lost = await requestAPI('runs').catch((error: ApiError) => error.info);
    expect(lost).toMatchObject({ error: 'network', status: 0 });
  });

  it('answers the JSON of a good answer', async () => {
    makeRequest.mockResolvedValueOnce(answer(200, 'OK', '{"version": "0.1.0", "api": 1}'));
    await expect(requestAPI('version')).resolves.toEqual({ version: '0.1.0', api: 1 });
  });
});
