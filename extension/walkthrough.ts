import * as vscode from 'vscode';

/**
 * A walkthrough step done: its completion event is this context key (package.json walkthroughs),
 * set only when the step's action succeeded (never by merely running its command). Apart from
 * commands/common.ts (which re-exports it) because ext.ts needs it and commands import Ext.
 */
export function walkthroughDone(step: 'setup' | 'base' | 'resumed' | 'built' | 'synthesized'): void {
  void vscode.commands.executeCommand('setContext', `cloudlet.done.${step}`, true);
}
