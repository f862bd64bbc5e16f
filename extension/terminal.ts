/**
 * A terminal into a sandbox VM: a Pseudoterminal over the VM's serial console, reached through the
 * daemon (CloudletSession.openConsole). Keys go to the console as typed; output is shown as it comes
 * (serial consoles send "\n" alone, the terminal wants "\r\n").
 */
import * as vscode from 'vscode';
import type { ConsoleStream } from './api';

export function toTerminalText(s: string): string {
  return s.replace(/\r?\n/g, '\r\n');
}

export class SerialConsoleTerminal implements vscode.Pseudoterminal {
  private readonly writeEmitter = new vscode.EventEmitter<string>();
  private readonly closeEmitter = new vscode.EventEmitter<number | void>();
  readonly onDidWrite = this.writeEmitter.event;
  readonly onDidClose = this.closeEmitter.event;
  private stream: ConsoleStream | undefined;
  private closed = false;

  constructor(private readonly name: string, private readonly connect: () => Promise<ConsoleStream>) {}

  async open(): Promise<void> {
    this.writeEmitter.fire(`\x1b[2mConnecting to the serial console of ${this.name}…\x1b[0m\r\n`);
    try {
      const s = await this.connect();
      if (this.closed) { s.close(); return; }
      this.stream = s;
      s.onData((t) => this.writeEmitter.fire(toTerminalText(t)));
      s.onClose((reason) => {
        if (this.closed) return;
        this.writeEmitter.fire(`\r\n\x1b[2m[console closed${reason ? `: ${reason}` : ''}]\x1b[0m\r\n`);
        this.stream = undefined;
      });
      // Wake the console so a prompt shows.
      s.write('\r');
    } catch (e) {
      this.writeEmitter.fire(`\x1b[31mCannot open the console: ${e instanceof Error ? e.message : String(e)}\x1b[0m\r\n`);
    }
  }

  handleInput(data: string): void {
    this.stream?.write(data);
  }

  close(): void {
    this.closed = true;
    this.stream?.close();
    this.stream = undefined;
    this.writeEmitter.dispose();
    this.closeEmitter.dispose();
  }
}
