// Pieces shared by the plugin build and the standalone page build.
const swcRule = {
  test: /\.[tj]sx?$/,
  exclude: /node_modules/,
  use: {
    loader: 'swc-loader',
    options: {
      jsc: {
        target: 'es2019',
        parser: { syntax: 'typescript', tsx: true },
        transform: { react: { runtime: 'classic' } },
      },
    },
  },
};

module.exports = { swcRule };
