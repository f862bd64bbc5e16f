/**
 * The "Cloudlet" output channel: every API call (method, URL without query secrets, status, time),
 * the local daemon's lifecycle and every command failure. Never a header, body, token or password.
 */
import * as vscode from 'vscode';
import type { ApiCallRecord } from './api';
import { formatCall } from './state/apiLog';

export { formatCall, redactUrl } from './state/apiLog';

export class Output implements vscode.Disposable {
  readonly channel: vscode.LogOutputChannel;
  /** Last calls, kept for tests and the "Show API Log" quick look. */
  readonly recent: string[] = [];

  constructor() {
    this.channel = vscode.window.createOutputChannel('Cloudlet', { log: true });
  }

  call(c: ApiCallRecord): void {
    const line = formatCall(c);
    this.recent.push(line);
    if (this.recent.length > 200) this.recent.shift();
    if (c.status === 'error' || (typeof c.status === 'number' && c.status >= 400)) this.channel.warn(line);
    else this.channel.info(line);
  }

  info(msg: string): void { this.channel.info(msg); }
  warn(msg: string): void { this.channel.warn(msg); }
  error(msg: string): void { this.channel.error(msg); }
  dispose(): void { this.channel.dispose(); }
}
