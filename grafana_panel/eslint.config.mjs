// Lint: typescript-eslint recommended rules + React hooks rules, the same spirit as @grafana/eslint-config.
import tseslint from 'typescript-eslint';
import reactHooks from 'eslint-plugin-react-hooks';

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', 'harness-dist/', 'loader-dist/', 'test-results/', 'playwright-report/', 'coverage/', '*.config.js', '*.config.mjs', 'jest-environment.js', 'webpack.shared.js', 'scripts/'] },
  ...tseslint.configs.recommended,
  {
    files: ['src/**/*.{ts,tsx}', 'jest-setup.ts'],
    plugins: { 'react-hooks': reactHooks },
    rules: {
      ...reactHooks.configs.recommended.rules,
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': 'error',
      eqeqeq: ['error', 'always', { null: 'ignore' }],
      'no-console': ['error', { allow: ['warn', 'error'] }],
    },
  }
);
