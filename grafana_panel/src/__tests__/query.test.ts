// The standalone page's /query client against a real local HTTP server (node's http), one answer per path.
import { AddressInfo } from 'net';
import http from 'http';

import { okTables } from '../__fixtures__/frames';
import { parseExplanation } from '../frames';
import { queryBody, runQuery } from '../harness/query';

const range = { from: new Date('2026-01-01T00:00:00Z'), to: new Date('2026-01-02T00:00:00Z') };
let server: http.Server;
let base = '';
const received: unknown[] = [];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      if (req.url === '/query') {
        received.push(JSON.parse(body));
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(okTables()));
      } else if (req.url === '/fail') {
        res.writeHead(500, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ error: 'store is locked' }));
      } else if (req.url === '/html') {
        res.writeHead(200, { 'Content-Type': 'text/html' });
        res.end('<html>proxy login</html>');
      } else {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ not: 'a list' }));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

describe('runQuery', () => {
  it('posts the JSON data source request and returns data frames', async () => {
    const series = await runQuery(`${base}/query`, 'rca', { traceId: 'abc' }, range);
    expect(received[0]).toEqual({ ...queryBody('rca', { traceId: 'abc' }, range), requestId: expect.any(String) });
    const sent = received[0] as ReturnType<typeof queryBody>;
    expect(sent.targets).toEqual([{ refId: 'A', target: 'rca', payload: { traceId: 'abc' }, datasource: { type: 'simpod-json-datasource', uid: 'whyslow' } }]);
    expect(sent.range.from).toBe('2026-01-01T00:00:00.000Z');
    const explanation = parseExplanation(series);
    expect(explanation.summary?.status).toBe('ok');
    expect(explanation.contributions[0].node).toBe('payment:Charge');
    expect(explanation.edges).toHaveLength(okTables()[2].rows.length);
  });

  it('turns HTTP errors into a readable message', async () => {
    await expect(runQuery(`${base}/fail`, 'rca', {}, range)).rejects.toThrow('HTTP 500: store is locked');
  });

  it('rejects answers that are not JSON or not a list', async () => {
    await expect(runQuery(`${base}/html`, 'rca', {}, range)).rejects.toThrow('not JSON');
    await expect(runQuery(`${base}/object`, 'rca', {}, range)).rejects.toThrow('list of responses');
  });

  it('says when the backend cannot be reached', async () => {
    await expect(runQuery('http://127.0.0.1:9/query', 'rca', {}, range)).rejects.toThrow('Cannot reach the whyslow backend');
  });
});
