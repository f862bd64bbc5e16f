/**
 * For machines with desktop VS Code: runs test/ui/electron/suite.ts inside it with
 * @vscode/test-electron, pointed at an installed VS Code by VSCODE_EXECUTABLE_PATH (never downloads).
 *   VSCODE_EXECUTABLE_PATH=/usr/share/code/code npm run test:electron
 * CI has no desktop VS Code: the UI tests there run in code-server (test/ui/extension.test.ts).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as esbuild from 'esbuild';
import { runTests } from '@vscode/test-electron';

async function main(): Promise<void> {
  const exe = process.env.VSCODE_EXECUTABLE_PATH;
  if (!exe) {
    console.log('test:electron: VSCODE_EXECUTABLE_PATH is not set (path of an installed desktop VS Code); nothing to run');
    return;
  }
  if (!fs.existsSync(exe)) throw new Error(`VSCODE_EXECUTABLE_PATH=${exe} does not exist`);
  const root = path.resolve(__dirname, '../../..');
  const out = path.join(root, 'out', 'electron-suite', 'index.js');
  await esbuild.build({ entryPoints: [path.join(__dirname, 'suite.ts')], outfile: out, bundle: true, platform: 'node', format: 'cjs', external: ['vscode', 'mocha'], target: 'node20' });
  const ws = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-electron-ws-'));
  const code = await runTests({
    vscodeExecutablePath: exe,
    extensionDevelopmentPath: root,
    extensionTestsPath: out,
    launchArgs: [ws, '--disable-extensions', '--skip-welcome', '--disable-workspace-trust'],
  });
  fs.rmSync(ws, { recursive: true, force: true });
  process.exitCode = code;
}

main().catch((e) => { console.error(e); process.exit(1); });
