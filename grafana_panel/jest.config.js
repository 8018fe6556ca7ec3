// Jest: jsdom + swc (fast TS/TSX transform); ESM-only packages under node_modules are transformed too.
const esmPackages = ['d3-[a-z-]+', 'internmap', 'ol', 'marked', 'marked-mangle', 'uplot', 'react-calendar', 'get-user-locale', 'memoize', 'mimic-function', '@wojtekmaj/[a-z-]+', 'rbush', 'quickselect', 'earcut', 'pbf', 'color-[a-z]+', 'monaco-editor', '@grafana/[a-z-]+'];

module.exports = {
  testEnvironment: '<rootDir>/jest-environment.js',
  roots: ['<rootDir>/src'],
  testMatch: ['**/__tests__/**/*.test.{ts,tsx}'],
  setupFilesAfterEnv: ['<rootDir>/jest-setup.ts'],
  moduleNameMapper: { '\\.(css|scss|sass)$': 'identity-obj-proxy' },
  transform: {
    '^.+\\.(t|j)sx?$': ['@swc/jest', { jsc: { parser: { syntax: 'typescript', tsx: true }, transform: { react: { runtime: 'classic' } } } }],
    '^.+\\.mjs$': ['@swc/jest'],
  },
  transformIgnorePatterns: [`node_modules/(?!(${esmPackages.join('|')})/)`],
};
