#!/usr/bin/env node
// Development only: serves harness-dist/ at /ui/ and answers POST /query from src/__fixtures__ so the standalone
// page can be worked on without a backend. `node scripts/fixture-server.js [port]`; binds 127.0.0.1.
const fs = require('fs');
const http = require('http');
const path = require('path');

const root = path.join(__dirname, '..');
const dist = path.join(root, 'harness-dist');
const fixture = (name) => JSON.parse(fs.readFileSync(path.join(root, 'src', '__fixtures__', name), 'utf8'));
const types = { '.html': 'text/html', '.js': 'text/javascript', '.svg': 'image/svg+xml', '.txt': 'text/plain' };

function answer(body) {
  const target = body.targets?.[0]?.target;
  const traceId = body.targets?.[0]?.payload?.traceId ?? '';
  if (target === 'outliers') {
    return fixture('outliers.json');
  }
  const rca = fixture('rca-ok.json');
  if (!traceId) {
    rca[0].rows[0][0] = 'no_trace';
  } else if (traceId !== rca[0].rows[0][2] && traceId !== '0af7651916cd43dd8448eb211c80319c') {
    rca[0].rows[0][0] = 'unknown_trace';
    rca[0].rows[0][1] = `trace ${traceId} is not in the store`;
  } else {
    return rca;
  }
  return [rca[0]];
}

const server = http.createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/query') {
    let data = '';
    req.on('data', (c) => (data += c));
    req.on('end', () => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(answer(JSON.parse(data || '{}'))));
    });
    return;
  }
  const url = new URL(req.url, 'http://x');
  if (!url.pathname.startsWith('/ui/')) {
    res.writeHead(302, { Location: '/ui/' });
    return res.end();
  }
  const rel = url.pathname.slice(4) || 'index.html';
  const file = path.join(dist, path.normalize(rel));
  if (!file.startsWith(dist) || !fs.existsSync(file)) {
    res.writeHead(404);
    return res.end('not found');
  }
  res.writeHead(200, { 'Content-Type': types[path.extname(file)] ?? 'application/octet-stream' });
  fs.createReadStream(file).pipe(res);
});

server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  console.log(`fixture server on http://127.0.0.1:${server.address().port}/ui/`);
});
