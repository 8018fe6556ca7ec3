// The Grafana-loader test page (tests/panel/test_grafana_loader.py): a small host that bundles SystemJS and the
// modules Grafana shares with plugins (@grafana/data, @grafana/ui, react, react-dom, @emotion/css) and loads the
// built dist/module.js through SystemJS, as Grafana's frontend does. Output: loader-dist/ (relative URLs).
const path = require('path');
const HtmlWebpackPlugin = require('html-webpack-plugin');

const harness = require('./webpack.harness.config');

module.exports = (env = {}) => {
  const base = harness(env);
  return {
    ...base,
    entry: { loader: './loader/host.tsx' },
    output: { ...base.output, path: path.join(__dirname, 'loader-dist') },
    // the whole of @grafana/ui is shared (as in Grafana), so its ESM files' extensionless imports must resolve
    module: { ...base.module, rules: [...base.module.rules, { test: /\.m?js$/, resolve: { fullySpecified: false } }] },
    plugins: [new HtmlWebpackPlugin({ template: './loader/index.html', favicon: './img/logo.svg', inject: 'body' })],
  };
};
