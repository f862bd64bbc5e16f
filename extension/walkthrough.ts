import * as vscode from 'vscode';
import { WALKTHROUGH_ID, WALKTHROUGH_STEPS } from './state/walkthrough';

/**
 * A walkthrough step done: set only when the step's action succeeded (never by merely running its
 * command). Its completion event is the context key cloudlet.done.STEP (package.json), and the step
 * is also marked complete directly: VS Code's walkthrough service counts an onContext event only
 * when the key changes after the service registered the walkthrough, which it does lazily (first
 * opened, up to 5 s later), so a set-up that succeeded before that was never ticked.
 * Apart from commands/common.ts (which re-exports it) because ext.ts needs it and commands import Ext.
 */
export function walkthroughDone(step: keyof typeof WALKTHROUGH_STEPS): void {
  void vscode.commands.executeCommand('setContext', `cloudlet.done.${step}`, true);
  void vscode.commands.executeCommand('welcome.markStepComplete', `${WALKTHROUGH_ID}#${WALKTHROUGH_STEPS[step]}`).then(undefined, () => { /* an editor without walkthroughs */ });
}
