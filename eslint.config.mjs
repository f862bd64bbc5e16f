// Flat config: typescript-eslint's recommended rules, the two layering rules the design fixes, and size
// limits on the daemon's routes. The layer order of sandbox/ and import cycles: .dependency-cruiser.cjs.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const SQLITE_DRIVER = { name: 'better-sqlite3', allowTypeImports: true, message: 'import Database from sandbox/common/sqlite: better-sqlite3 12 serves only Node 20' };

export default tseslint.config(
  { ignores: ['node_modules/**', 'dist/**', '.cache/**', 'artifacts/**', 'out/**', '**/*.mjs', '**/*.js', '**/*.cjs', '.tmp*/**', 'bin/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
  {
    // sandbox/ runs without VS Code; SQLite comes from sandbox/common/sqlite (the driver for the running Node).
    files: ['sandbox/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { paths: ['vscode', SQLITE_DRIVER] }] },
  },
  {
    files: ['test/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { paths: [SQLITE_DRIVER] }] },
  },
  {
    // extension/ reaches cloudlets only through sandbox/client and stays free of native modules; the
    // user's registry login for an oci:// synthesis comes from sandbox/registry/synthesisLogin (pure JS).
    files: ['extension/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: ['better-sqlite3', 'zstd-napi', 'dockerode', '../sandbox/registry', '../../sandbox/registry'],
        patterns: [{ group: ['../sandbox/*', '!../sandbox/client', '!../sandbox/client/*', '!../sandbox/registry', '../sandbox/registry/*', '!../sandbox/registry/synthesisLogin',
          '../../sandbox/*', '!../../sandbox/client', '!../../sandbox/client/*', '!../../sandbox/registry', '../../sandbox/registry/*', '!../../sandbox/registry/synthesisLogin'], message: 'extension/ may import only sandbox/client (and sandbox/registry/synthesisLogin)' }],
      }],
    },
  },
  {
    // Routes only parse and answer: small files, small functions (the work lives in services).
    files: ['sandbox/cloudlet/api/**/*.ts'],
    rules: {
      'max-lines': ['error', { max: 200, skipBlankLines: false, skipComments: false }],
      'max-lines-per-function': ['error', { max: 80, skipBlankLines: false, skipComments: false }],
    },
  },
);
