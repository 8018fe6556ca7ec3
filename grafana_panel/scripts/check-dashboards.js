#!/usr/bin/env node
// Typechecks Grafana dashboard JSON files against the Dashboard type of @grafana/schema (the version the plugin
// builds against): each file becomes the object literal of `const dashboard: Dashboard = <json>` in a virtual
// TypeScript module, so literal unions and enums are checked and unknown fields are excess-property errors.
// Usage: node scripts/check-dashboards.js [file.json ...]  (default: ../deploy/grafana/dashboards/*.json)
const fs = require('fs');
const path = require('path');
const ts = require('typescript');

const here = __dirname;
const files = process.argv.slice(2).length
  ? process.argv.slice(2).map((f) => path.resolve(f))
  : fs
      .readdirSync(path.join(here, '../../deploy/grafana/dashboards'))
      .filter((f) => f.endsWith('.json'))
      .map((f) => path.join(here, '../../deploy/grafana/dashboards', f));

const options = {
  strict: true,
  noEmit: true,
  skipLibCheck: true,
  target: ts.ScriptTarget.ES2019,
  module: ts.ModuleKind.ESNext,
  moduleResolution: ts.ModuleResolutionKind.Bundler,
  types: [],
};

let failed = 0;
for (const file of files) {
  let json;
  try {
    json = JSON.stringify(JSON.parse(fs.readFileSync(file, 'utf8')), null, 2);
  } catch (e) {
    console.error(`${file}: not valid JSON: ${e.message}`);
    failed++;
    continue;
  }
  const virtual = path.join(here, '..', `__dashboard_check__${path.basename(file, '.json')}.ts`);
  const source = `import type { Dashboard } from '@grafana/schema';\nexport const dashboard: Dashboard = ${json};\n`;
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, version, ...rest) =>
    path.resolve(name) === virtual ? ts.createSourceFile(name, source, version) : getSourceFile(name, version, ...rest);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => path.resolve(name) === virtual || fileExists(name);
  const program = ts.createProgram([virtual], options, host);
  const diagnostics = ts.getPreEmitDiagnostics(program);
  for (const d of diagnostics) {
    const where = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start) : null;
    const text = ts.flattenDiagnosticMessageText(d.messageText, '\n');
    // line numbers refer to the file re-indented by JSON.stringify (line 2 of the module is line 1 of the JSON)
    console.error(`${path.relative(process.cwd(), file)}${where ? `:${where.line}` : ''}: ${text}`);
  }
  if (diagnostics.length) {
    failed++;
  } else {
    console.log(`${path.relative(process.cwd(), file)}: valid @grafana/schema Dashboard`);
  }
}
process.exit(failed ? 1 : 0);
