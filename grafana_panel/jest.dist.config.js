// `npm run verify:dist`: the production bundle in dist/, checked after the build (see verify/dist.test.tsx).
const base = require('./jest.config');

module.exports = { ...base, roots: ['<rootDir>/verify'], testMatch: ['**/*.test.tsx'] };
