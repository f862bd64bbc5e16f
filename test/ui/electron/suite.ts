/** Runs inside desktop VS Code (see run.ts): the extension activates and every contributed command is registered. */
import * as path from 'path';
import * as vscode from 'vscode';
import Mocha from 'mocha';
import { strict as assert } from 'assert';

export function run(): Promise<void> {
  const mocha = new Mocha({ ui: 'bdd', timeout: 60000, color: true });
  mocha.suite.emit('pre-require', globalThis, 'suite', mocha);
  describe('Cloudlet Toolkit in desktop VS Code', () => {
    it('activates on its view and registers every contributed command', async () => {
      const ext = vscode.extensions.all.find((e) => e.packageJSON.name === 'cloudlet-toolkit');
      assert.ok(ext, 'extension present');
      await vscode.commands.executeCommand('cloudlet.sandbox.focus');
      await ext.activate();
      const all = await vscode.commands.getCommands(true);
      const contributed: string[] = ext.packageJSON.contributes.commands.map((c: { command: string }) => c.command);
      assert.deepEqual(contributed.filter((c) => !all.includes(c)), []);
      assert.ok(path.isAbsolute(ext.extensionPath));
    });
  });
  return new Promise((resolve, reject) => mocha.run((failures) => (failures ? reject(new Error(`${failures} failed`)) : resolve())));
}
