// The standalone page's bearer token: kept in sessionStorage, sent on every /query, a 401 is recognisable.
import { AddressInfo } from 'net';
import http from 'http';

import { okTables } from '../__fixtures__/frames';
import { authHeaders, clearToken, loadToken, saveToken, TOKEN_KEY } from '../harness/auth';
import { QueryError, runQuery } from '../harness/query';

const TOKEN = 's3cret-token-42';
const range = { from: new Date('2026-01-01T00:00:00Z'), to: new Date('2026-01-02T00:00:00Z') };
let server: http.Server;
let base = '';
const seen: Array<string | undefined> = [];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      seen.push(req.headers.authorization);
      if (req.headers.authorization !== `Bearer ${TOKEN}`) {
        res.writeHead(401, { 'Content-Type': 'application/json', 'WWW-Authenticate': 'Bearer' });
        res.end(JSON.stringify({ error: 'missing or invalid bearer token' }));
        return;
      }
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(okTables()));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

beforeEach(() => {
  window.sessionStorage.clear();
  seen.length = 0;
});

test('without a token the backend answers 401, recognisable by status', async () => {
  const err = await runQuery(`${base}/query`, 'rca', { traceId: 'ab' }, range).catch((e) => e);
  expect(err).toBeInstanceOf(QueryError);
  expect((err as QueryError).status).toBe(401);
  expect((err as QueryError).message).toBe('HTTP 401: missing or invalid bearer token');
  expect(seen).toEqual([undefined]);
});

test('with the token every request carries Authorization: Bearer', async () => {
  const frames = await runQuery(`${base}/query`, 'rca', { traceId: 'ab' }, range, undefined, TOKEN);
  expect(frames.length).toBe(okTables().length);
  await runQuery(`${base}/query`, 'outliers', {}, range, undefined, TOKEN);
  expect(seen).toEqual([`Bearer ${TOKEN}`, `Bearer ${TOKEN}`]);
  const wrong = await runQuery(`${base}/query`, 'rca', {}, range, undefined, 'nope').catch((e) => e);
  expect((wrong as QueryError).status).toBe(401);
});

test('the token lives in sessionStorage only, and sign out forgets it', () => {
  expect(loadToken()).toBe('');
  saveToken(TOKEN);
  expect(window.sessionStorage.getItem(TOKEN_KEY)).toBe(TOKEN);
  expect(window.localStorage.getItem(TOKEN_KEY)).toBeNull();
  expect(window.location.href).not.toContain(TOKEN);
  expect(loadToken()).toBe(TOKEN);
  clearToken();
  expect(loadToken()).toBe('');
});

test('auth headers: none without a token, trimmed bearer with one', () => {
  expect(authHeaders('')).toEqual({});
  expect(authHeaders('   ')).toEqual({});
  expect(authHeaders(` ${TOKEN} `)).toEqual({ Authorization: `Bearer ${TOKEN}` });
});
