/**
 * Real VS Code for UI tests: code-server 4.100.3 (VS Code 1.100) from .cache/code-server (made by
 * scripts/setup-code-server.sh), the packaged .vsix installed with --install-extension, driven by
 * Playwright in Debian's Chromium. Everything listens on 127.0.0.1; everything started is stopped.
 * Screenshots go to artifacts/screenshots/ (git-ignored).
 */
import { spawn, spawnSync, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { chromium, type Browser, type Frame, type FrameLocator, type Locator, type Page } from 'playwright-core';
import { ensureInstalledCli } from '../integration/fixtures/install';

export const ROOT = path.resolve(__dirname, '../..');
export const SHOTS = path.join(ROOT, 'artifacts', 'screenshots');
const CS_DIR = process.env.CODE_SERVER_DIR ?? path.join(ROOT, '.cache', 'code-server');
const CS_ENTRY = path.join(CS_DIR, 'node_modules', 'code-server', 'out', 'node', 'entry.js');
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Installs code-server when the cache lacks it (idempotent, fast when cached). */
export function ensureCodeServer(): string {
  if (!fs.existsSync(CS_ENTRY) || !fs.readdirSync(CS_DIR).some((f) => f.startsWith('.ready-'))) {
    const r = spawnSync('bash', [path.join(ROOT, 'scripts/setup-code-server.sh')], { stdio: 'inherit', cwd: ROOT });
    if (r.status !== 0) throw new Error('scripts/setup-code-server.sh failed');
  }
  return CS_ENTRY;
}

let vsix: string | undefined;
/** `npm run package` once per test run; returns the .vsix path. */
export function ensureVsix(): string {
  if (vsix) return vsix;
  const out = path.join(ROOT, 'artifacts', 'ui', 'cloudlet-toolkit.vsix');
  const r = spawnSync('bash', [path.join(ROOT, 'scripts/package.sh'), 'vsix'], { cwd: ROOT, env: { ...process.env, VSIX_OUT: out }, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`packaging failed:\n${r.stdout}\n${r.stderr}`);
  vsix = out;
  return out;
}

export interface CodeServer {
  url: string;
  dir: string;
  userSettings: string;
  workspace: string;
  proc: ChildProcess;
  log(): string;
  setSettings(patch: Record<string, unknown>): void;
  stop(): Promise<void>;
}

export const BASE_SETTINGS: Record<string, unknown> = {
  'security.workspace.trust.enabled': false,
  'workbench.startupEditor': 'none',
  'workbench.tips.enabled': false,
  'workbench.welcomePage.walkthroughs.openOnInstall': false,
  'workbench.colorTheme': 'Default Dark Modern',
  'telemetry.telemetryLevel': 'off',
  'terminal.integrated.gpuAcceleration': 'off',
  'extensions.autoCheckUpdates': false,
  'extensions.autoUpdate': false,
  'update.mode': 'none',
  'window.commandCenter': false,
  'chat.commandCenter.enabled': false,
  'workbench.secondarySideBar.defaultVisibility': 'hidden',
};

export async function startCodeServer(o: { workspace: string; settings: Record<string, unknown>; env?: Record<string, string>; vsix: string }): Promise<CodeServer> {
  const entry = ensureCodeServer();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudlet-ui-'));
  const ud = path.join(dir, 'ud');
  const ext = path.join(dir, 'ext');
  const userSettings = path.join(ud, 'User', 'settings.json');
  fs.mkdirSync(path.dirname(userSettings), { recursive: true });
  let settings = { ...BASE_SETTINGS, ...o.settings };
  fs.writeFileSync(userSettings, JSON.stringify(settings, null, 2));
  const common = ['--config', path.join(dir, 'config.yaml'), '--user-data-dir', ud, '--extensions-dir', ext];
  const inst = spawnSync(process.execPath, [entry, ...common, '--install-extension', o.vsix], { encoding: 'utf8', cwd: dir });
  if (inst.status !== 0 || !/was successfully installed/.test(inst.stdout + inst.stderr)) {
    throw new Error(`--install-extension failed (${inst.status}):\n${inst.stdout}\n${inst.stderr}`);
  }
  let out = '';
  const proc = spawn(process.execPath, [entry, ...common, '--bind-addr', '127.0.0.1:0', '--auth', 'none', '--disable-telemetry',
    '--disable-update-check', '--disable-workspace-trust', '--disable-getting-started-override', o.workspace],
  // Its own process group, so stop() ends code-server with its extension hosts and pty host.
  { cwd: dir, env: { ...process.env, ...(o.env ?? {}) }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  proc.stdout!.on('data', (b) => { out += b; });
  proc.stderr!.on('data', (b) => { out += b; });
  const url = await new Promise<string>((resolve, reject) => {
    const t = setInterval(() => {
      const m = out.match(/HTTP server listening on (http:\/\/127\.0\.0\.1:\d+)/);
      if (m) { clearInterval(t); resolve(m[1]); }
    }, 100);
    proc.once('exit', (c) => { clearInterval(t); reject(new Error(`code-server exited (${c}):\n${out}`)); });
  });
  return {
    url, dir, userSettings, workspace: o.workspace, proc,
    log: () => out,
    setSettings(patch) {
      settings = { ...settings, ...patch };
      fs.writeFileSync(userSettings, JSON.stringify(settings, null, 2));
    },
    async stop() {
      const group = (sig: NodeJS.Signals) => { try { process.kill(-proc.pid!, sig); } catch { /* gone */ } };
      if (proc.exitCode === null && proc.signalCode === null) {
        const gone = new Promise((r) => proc.once('exit', r));
        group('SIGTERM');
        const k = setTimeout(() => group('SIGKILL'), 10000);
        await gone;
        clearTimeout(k);
      }
      // Extension hosts still shutting down (they run deactivate) get a moment, then the group goes.
      await sleep(3000);
      group('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Drives the workbench of one code-server like a user: palette, views, quick inputs, notifications, webviews. */
export class Workbench {
  private shotNo = 0;
  constructor(readonly page: Page, readonly cs: CodeServer) {}

  static async open(browser: Browser, cs: CodeServer): Promise<Workbench> {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    await page.goto(`${cs.url}/?folder=${encodeURIComponent(cs.workspace)}`, { timeout: 120_000 });
    await page.locator('.monaco-workbench').waitFor({ timeout: 90_000 });
    await page.locator('.activitybar').waitFor({ timeout: 60_000 });
    return new Workbench(page, cs);
  }

  /** Saves artifacts/screenshots/NN-name.png and returns its path. */
  async shot(name: string): Promise<string> {
    fs.mkdirSync(SHOTS, { recursive: true });
    const file = path.join(SHOTS, `${String(++this.shotNo).padStart(2, '0')}-${name}.png`);
    await this.page.screenshot({ path: file });
    return file;
  }

  /** Runs a command by its palette title, e.g. "Cloudlet: Resume Base VM in Sandbox". */
  async command(title: string): Promise<void> {
    const input = this.page.locator('.quick-input-widget .quick-input-box input');
    for (let attempt = 0; attempt < 3; attempt++) {
      await this.page.keyboard.press('Escape');
      await this.page.locator('.monaco-workbench').click({ position: { x: 700, y: 5 } }).catch(() => {});
      await this.page.keyboard.press('F1');
      try { await input.waitFor({ state: 'visible', timeout: 5000 }); break; } catch { /* focus was elsewhere: retry */ }
    }
    await input.fill(`>${title}`);
    const row = this.page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first();
    await row.waitFor({ timeout: 30_000 });
    await sleep(200);
    await row.click();
  }

  /** Answers an open quick input (input box or quick pick) with `text` and Enter. */
  async answer(text: string, opts: { pick?: string; timeout?: number } = {}): Promise<void> {
    const input = this.page.locator('.quick-input-widget:visible .quick-input-box input');
    await input.waitFor({ state: 'visible', timeout: opts.timeout ?? 30_000 });
    await input.fill(text);
    if (opts.pick) {
      await this.page.locator('.quick-input-widget:visible .quick-input-list .monaco-list-row', { hasText: opts.pick }).first().waitFor({ timeout: 15_000 });
    }
    await sleep(150);
    await input.press('Enter');
    // Under load the widget can stay up with this answer for a while; the next answer() must not
    // type into it. Done when it is hidden or holds another value (the next step). A refused value
    // stays: the cap keeps such tests from waiting long.
    await this.page.waitForFunction(`(() => {
      const widget = document.querySelector('.quick-input-widget');
      const box = widget && widget.querySelector('.quick-input-box input');
      return !box || widget.style.display === 'none' || widget.offsetParent === null || box.value !== ${JSON.stringify(text)};
    })()`, undefined, { timeout: 5000 }).catch(() => {});
    await sleep(150);
  }

  /** Picks the quick-pick row whose label contains `label`. */
  async pick(label: string, timeout = 30_000): Promise<void> {
    const row = this.page.locator('.quick-input-widget:visible .quick-input-list .monaco-list-row', { hasText: label }).first();
    await row.waitFor({ timeout });
    await row.click();
    await sleep(300);
  }

  async openCloudlets(): Promise<void> {
    const item = this.page.locator('.activitybar .action-item a[aria-label^="Cloudlets"], .activitybar .action-item [aria-label^="Cloudlets"]').first();
    await item.waitFor({ timeout: 60_000 });
    const pane = this.page.locator('.pane-header', { hasText: 'Sandbox' });
    if (!(await pane.isVisible().catch(() => false))) await item.click();
    await pane.waitFor({ timeout: 30_000 });
  }

  /** A tree row in the view whose title is `view`, by (part of) its label. */
  treeRow(view: string, label: string | RegExp): Locator {
    const pane = this.page.locator('.pane', { has: this.page.locator('.pane-header', { hasText: view }) });
    return pane.locator('.monaco-list-row', { hasText: label });
  }

  viewPane(view: string): Locator {
    return this.page.locator('.pane', { has: this.page.locator('.pane-header', { hasText: view }) });
  }

  notification(text: string | RegExp): Locator {
    return this.page.locator('.notifications-toasts .notification-toast, .notifications-center .notification-list-item', { hasText: text }).first();
  }

  async clickNotificationButton(text: string | RegExp, button: string): Promise<void> {
    await this.notification(text).locator('.monaco-button', { hasText: button }).first().click();
  }

  async clearNotifications(): Promise<void> {
    await this.page.keyboard.press('Escape');
    await this.command('Notifications: Clear All Notifications').catch(() => {});
    await this.page.keyboard.press('Escape');
  }

  /** The content frame of the webview panel whose tab title contains `title`. */
  webview(title: string): FrameLocator {
    void title;
    // The active editor's webview: VS Code wraps it in iframe.webview > iframe#active-frame.
    return this.page.frameLocator('iframe.webview.ready').last().frameLocator('#active-frame');
  }

  async focusEditorTab(title: string): Promise<void> {
    await this.page.locator('.tabs-container .tab', { hasText: title }).first().click();
  }

  /** Text of the visible terminal (DOM renderer: GPU acceleration is off in the test settings). */
  async terminalText(): Promise<string> {
    return (await this.page.locator('.terminal-wrapper.active .xterm-rows, .terminal .xterm-rows').last().innerText().catch(() => '')) ?? '';
  }

  /**
   * Switches the color theme and checks it stuck: the theme picker previews the focused row, so the
   * wanted class can show up and vanish again if Enter lands on another row. Retries until the
   * workbench keeps the wanted theme for a second.
   */
  async setTheme(theme: 'Default Light Modern' | 'Default Dark Modern'): Promise<void> {
    const wanted = theme.includes('Light') ? '.monaco-workbench.vs' : '.monaco-workbench.vs-dark';
    for (let attempt = 1; ; attempt++) {
      await this.command('Preferences: Color Theme');
      await this.answer(theme.replace('Default ', ''), { pick: theme.replace('Default ', '') });
      await this.page.locator(wanted).waitFor({ timeout: 30_000 }).catch(() => {});
      await sleep(1000);
      if (await this.page.locator(wanted).count()) return;
      if (attempt === 3) throw new Error(`the color theme did not switch to ${theme}`);
      await this.page.keyboard.press('Escape');
    }
  }

  /** Closes the bottom panel (terminal) so an editor panel gets the whole height for a screenshot. */
  async closeBottomPanel(): Promise<void> {
    if (await this.page.locator('.part.panel.bottom:visible').count()) await this.command('View: Hide Panel').catch(() => {});
    await this.page.keyboard.press('Escape');
    await sleep(300);
  }
}

/**
 * The steps several UI files share, each as a user takes it. After "Cloudlet: Synthesize on
 * Cloudlet..." (and its picks): the Server panel's timeline shows, then its status reaches ACTIVE.
 * Returns the panel.
 */
export async function serverPanelActive(wb: Workbench, timeoutMs = 600_000): Promise<FrameLocator> {
  const panel = wb.webview('Server');
  await panel.locator('[data-test=timeline]').waitFor({ timeout: 300_000 });
  await until('the server to be ACTIVE', async () => (await panel.locator('[data-test=status]').innerText().catch(() => '')) === 'ACTIVE', timeoutMs);
  return panel;
}

/** "Cloudlet: Add Cloudlet..." answered URL, name, user (`alice@demo`), password (an HTTP cloudlet: no certificate question); the caller waits for the outcome it expects. */
export async function addCloudlet(wb: Workbench, o: { url: string; name: string; user: string; password: string }): Promise<void> {
  await wb.command('Cloudlet: Add Cloudlet...');
  await wb.answer(o.url);
  await wb.answer(o.name);
  await wb.answer(o.user);
  await wb.answer(o.password);
}

/** "Cloudlet: Open Sandbox Terminal": the serial console connects, `command` is typed, `expect` shows in the terminal. */
export async function sandboxTerminalRuns(wb: Workbench, command: string, expect: RegExp): Promise<void> {
  await wb.command('Cloudlet: Open Sandbox Terminal');
  await wb.page.locator('.terminal-wrapper, .xterm').first().waitFor({ timeout: 60_000 });
  // Connected: something besides our "Connecting…" line (the console's recent output, a prompt).
  await until('the console to connect', async () => (await wb.terminalText()).split('\n').some((l) => l.trim() && !/Connecting to the serial console/.test(l)), 60_000);
  await wb.page.locator('.xterm').last().click();
  await wb.page.keyboard.type(`${command}\n`, { delay: 20 });
  await until('the command output in the terminal', async () => expect.test(await wb.terminalText()), 60_000);
}

/** Polls `fn` until it returns a truthy value (no timing assertion: the mocha timeout bounds it). */
export async function until<T>(what: string, fn: () => Promise<T | undefined | false | null>, timeoutMs = 120_000, everyMs = 500): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try { const v = await fn(); if (v) return v; } catch (e) { last = e; }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await sleep(everyMs);
  }
}

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const net = await import('net');
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => resolve(p)); });
  });
}

/**
 * The UI tests run against the packaged install, not the checkout: `npm run package -- cli`
 * installed into an empty prefix (test/integration/fixtures/install.ts). Every daemon the tests
 * start (fixtures/daemon.ts) runs from it too; returns its `cloudlet`.
 */
export async function useInstalledCli(): Promise<string> {
  // CLOUDLET_UI_CLI: an install made before (a helper iterating on the UI; the default run installs).
  if (process.env.CLOUDLET_UI_CLI) { process.env.CLOUDLET_TEST_CLI = process.env.CLOUDLET_UI_CLI; return process.env.CLOUDLET_UI_CLI; }
  const { bin } = await ensureInstalledCli();
  process.env.CLOUDLET_TEST_CLI = bin;
  return bin;
}

/** Settings that run the local daemon from the installed CLI (useInstalledCli), on a given port and data folder. */
export function installedDaemonSettings(cli: string, localPort: number, localData: string): Record<string, unknown> {
  return {
    'cloudlet.nodePath': process.execPath,
    'cloudlet.cliPath': cli,
    'cloudlet.localDaemon.listen': `127.0.0.1:${localPort}`,
    'cloudlet.localDaemon.dataDir': localData,
  };
}

/**
 * A UI test file is one user flow whose steps build on each other: once a step fails, the later
 * ones are skipped (they would fail for the same reason and hide the first cause), and the failed
 * step leaves a screenshot, what `onFail` prints, and the end of code-server's log.
 */
export function stepFlow(name: string, get: () => { wb?: Workbench; cs?: CodeServer }, onFail?: () => Promise<void>): void {
  let failedStep: string | undefined;
  beforeEach(function () { if (failedStep) this.skip(); });
  afterEach(async function () {
    if (this.currentTest?.state !== 'failed') return;
    failedStep = this.currentTest.title;
    const { wb, cs } = get();
    await wb?.shot(`FAILED-${name}-${this.currentTest.title.replace(/\W+/g, '-').slice(0, 40)}`).catch(() => {});
    await onFail?.().catch((e) => console.log(`(no more detail: ${(e as Error).message})`));
    console.log(cs?.log().split('\n').slice(-30).join('\n'));
  });
}

/** One UI test file's editor: code-server with the packaged .vsix, a browser, the workbench page, its screenshots. */
export interface Ui {
  cs: CodeServer;
  browser: Browser;
  wb: Workbench;
  /** Saves a screenshot named `prefix-name` and remembers it for the closing list. */
  shot(name: string): Promise<string>;
  /** Closes the browser and stops code-server (with its extension hosts); prints the screenshots taken. */
  close(): Promise<void>;
}

/** The start-up every UI test file shares: package the .vsix once, start code-server on `workspace`, open it in Chromium. */
export async function openUi(o: { workspace: string; settings: Record<string, unknown>; env?: Record<string, string>; shotPrefix?: string }): Promise<Ui> {
  const cs = await startCodeServer({ workspace: o.workspace, settings: o.settings, env: o.env, vsix: ensureVsix() });
  let browser: Browser | undefined;
  try {
    browser = await launchBrowser();
    const wb = await Workbench.open(browser, cs);
    const shots: string[] = [];
    const b = browser;
    return {
      cs, browser: b, wb,
      async shot(name) { const f = await wb.shot(o.shotPrefix ? `${o.shotPrefix}-${name}` : name); shots.push(f); return f; },
      async close() {
        await b.close().catch(() => {});
        await cs.stop().catch(() => {});
        if (shots.length) console.log(`screenshots:\n  ${shots.join('\n  ')}`);
      },
    };
  } catch (e) {
    await browser?.close().catch(() => {});
    await cs.stop().catch(() => {});
    throw e;
  }
}

export interface AxeViolation { id: string; impact: string; help: string; nodes: string[] }

let axeSource: string | undefined;
/**
 * Runs axe-core (WCAG 2 A/AA rules, colour contrast included) in `frame` and returns the violations
 * of impact serious or critical. Injected through the DevTools protocol, so a webview's CSP does
 * not stop it. `include`: CSS selectors of the parts to check (default: the whole document);
 * `disable`: rules not run (each caller says why).
 */
export async function axeSerious(frame: Frame, include?: string[], disable: string[] = []): Promise<AxeViolation[]> {
  axeSource ??= fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
  if (!(await frame.evaluate('typeof window.axe === "object"'))) await frame.evaluate(axeSource);
  const found = await frame.evaluate(async ({ inc, off }) => {
    const g = globalThis as unknown as { document: unknown; axe: { run(ctx: unknown, opts: unknown): Promise<{ violations: { id: string; impact?: string; help: string; nodes: { target: unknown[]; failureSummary?: string }[] }[] }> } };
    const r = await g.axe.run(inc ? { include: inc.map((s) => [s]) } : g.document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] }, rules: Object.fromEntries(off.map((r) => [r, { enabled: false }])), resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact ?? '', help: v.help, nodes: v.nodes.slice(0, 5).map((n) => `${n.target.join(' ')}: ${n.failureSummary ?? ''}`) }));
  }, { inc: include, off: disable });
  return found.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

/** The Frame behind a webview's FrameLocator (axe runs in a Frame). */
export async function frameOf(locator: FrameLocator): Promise<Frame> {
  const body = await locator.locator('body').elementHandle({ timeout: 60_000 });
  const f = await body.ownerFrame();
  if (!f) throw new Error('the webview has no frame');
  return f;
}
