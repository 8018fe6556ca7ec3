// The standalone page (served by `whyslow serve` at /ui/): the real panel component, bundled with React and
// @grafana/data + @grafana/ui, in grafana_panel/harness-dist/ (index.html + one script, relative URLs).
const path = require('path');
const HtmlWebpackPlugin = require('html-webpack-plugin');
const TerserPlugin = require('terser-webpack-plugin');

const { swcRule } = require('./webpack.shared');

module.exports = (env = {}) => {
  const production = Boolean(env.production);
  return {
    mode: production ? 'production' : 'development',
    devtool: false,
    context: path.join(__dirname, 'src'),
    entry: { harness: './harness/index.tsx' },
    output: {
      path: path.join(__dirname, 'harness-dist'),
      filename: '[name].[contenthash:8].js',
      publicPath: '',
      clean: true,
    },
    resolve: { extensions: ['.ts', '.tsx', '.js', '.jsx', '.mjs'] },
    module: {
      rules: [
        swcRule,
        { test: /\.css$/, type: 'asset/source' },
        { test: /\.(svg|png|woff2?)$/, type: 'asset/resource' },
      ],
    },
    optimization: {
      minimize: production,
      minimizer: [new TerserPlugin({ minify: TerserPlugin.swcMinify })],
      splitChunks: false,
    },
    plugins: [
      new HtmlWebpackPlugin({ template: './harness/index.html', favicon: './img/logo.svg', inject: 'body' }),
    ],
    performance: { hints: false },
    stats: 'errors-warnings',
  };
};
