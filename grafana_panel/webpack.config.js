// Grafana panel plugin build (the layout @grafana/create-plugin scaffolds): src/module.ts -> dist/module.js as an
// AMD module, with Grafana's shared libraries left external, plus plugin.json, the logo and the README.
const path = require('path');
const CopyWebpackPlugin = require('copy-webpack-plugin');
const TerserPlugin = require('terser-webpack-plugin');

const pkg = require('./package.json');
const pluginJson = require('./src/plugin.json');
const { swcRule } = require('./webpack.shared');

const externals = [
  'react',
  'react-dom',
  'react-router',
  'react-router-dom',
  'rxjs',
  'lodash',
  'moment',
  'emotion',
  '@emotion/css',
  '@emotion/react',
  'd3',
  'jquery',
  /^@grafana\/(data|ui|runtime|schema|i18n|e2e-selectors)$/,
];

module.exports = (env = {}) => {
  const production = Boolean(env.production);
  return {
    mode: production ? 'production' : 'development',
    devtool: production ? 'source-map' : 'eval-source-map',
    context: path.join(__dirname, 'src'),
    entry: { module: './module.ts' },
    output: {
      path: path.join(__dirname, 'dist'),
      filename: '[name].js',
      clean: true,
      library: { type: 'amd' },
      publicPath: `public/plugins/${pluginJson.id}/`,
      uniqueName: pluginJson.id,
    },
    externals,
    resolve: { extensions: ['.ts', '.tsx', '.js', '.jsx'] },
    module: { rules: [swcRule] },
    optimization: {
      minimize: production,
      minimizer: [new TerserPlugin({ minify: TerserPlugin.swcMinify })],
    },
    plugins: [
      new CopyWebpackPlugin({
        patterns: [
          { from: '../README.md', to: '.' },
          { from: '../CHANGELOG.md', to: '.' },
          { from: 'img', to: 'img' },
          {
            from: 'plugin.json',
            to: '.',
            transform: (content) =>
              content
                .toString()
                .replace('%VERSION%', pkg.version)
                .replace('%TODAY%', new Date().toISOString().slice(0, 10)),
          },
        ],
      }),
    ],
    performance: { hints: false },
  };
};
