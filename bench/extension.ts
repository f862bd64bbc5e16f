/**
 * `npm run bench -- extension`: what having the extension costs, against a small sample extension
 * (one tree view, one command) built in the same run with the same tools.
 *   - bundle sizes: dist/extension.js (+ webview bundle) and the .vsix, vs the sample's;
 *   - bundle load: `require` of the production bundle in Node with a stand-in `vscode` module
 *     (module evaluation only), median of several fresh processes, vs the sample's;
 *   - activation in real VS Code (code-server 4.100.3): both .vsix installed in one code-server,
 *     both activated by opening their views, VS Code's own figures read from "Developer: Show Running
 *     Extensions" (code loading + activate call).
 * Last line: one JSON object with every figure; ratio_* = ours / sample.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as esbuild from 'esbuild';
import { ROOT, Workbench, ensureCodeServer, freePort, launchBrowser, startCodeServer, until } from '../test/ui/harness';

const log = (s: string) => process.stderr.write(`${s}\n`);

const SAMPLE_PKG = {
  name: 'sample-tree', displayName: 'Sample Tree', publisher: 'bench', version: '0.0.1', license: 'MIT',
  engines: { vscode: '^1.100.0' }, main: './dist/extension.js', activationEvents: ['onView:sample.items'],
  contributes: {
    viewsContainers: { activitybar: [{ id: 'sample', title: 'Sample', icon: 'media/icon.svg' }] },
    views: { sample: [{ id: 'sample.items', name: 'Items' }] },
    commands: [{ command: 'sample.refresh', title: 'Refresh', category: 'Sample' }],
  },
};
const SAMPLE_SRC = `import * as vscode from 'vscode';
class Items implements vscode.TreeDataProvider<string> {
  private e = new vscode.EventEmitter<void>();
  onDidChangeTreeData = this.e.event;
  refresh() { this.e.fire(); }
  getTreeItem(s: string) { return new vscode.TreeItem(s); }
  getChildren() { return ['one', 'two', 'three']; }
}
export function activate(ctx: vscode.ExtensionContext) {
  const items = new Items();
  ctx.subscriptions.push(vscode.window.registerTreeDataProvider('sample.items', items),
    vscode.commands.registerCommand('sample.refresh', () => items.refresh()));
}
export function deactivate() {}
`;

function run(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env: { ...process.env, ...env } });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

async function buildSample(dir: string): Promise<{ bundle: string; vsix: string }> {
  fs.mkdirSync(path.join(dir, 'media'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify(SAMPLE_PKG, null, 2));
  fs.writeFileSync(path.join(dir, 'extension.ts'), SAMPLE_SRC);
  fs.writeFileSync(path.join(dir, 'README.md'), '# Sample tree\n');
  fs.writeFileSync(path.join(dir, 'media/icon.svg'), '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><circle cx="8" cy="8" r="6" fill="currentColor"/></svg>');
  fs.writeFileSync(path.join(dir, '.vscodeignore'), '**\n!package.json\n!README.md\n!dist/extension.js\n!media/**\n');
  await esbuild.build({ entryPoints: [path.join(dir, 'extension.ts')], outfile: path.join(dir, 'dist/extension.js'), bundle: true, minify: true,
    platform: 'node', target: 'node20', format: 'cjs', external: ['vscode'], logLevel: 'warning' });
  const vsix = path.join(dir, 'sample.vsix');
  run(path.join(ROOT, 'node_modules/.bin/vsce'), ['package', '--no-dependencies', '--skip-license', '--allow-missing-repository', '--out', vsix], dir);
  return { bundle: path.join(dir, 'dist/extension.js'), vsix };
}

/** Median ms to require a bundle in a fresh Node with a stand-in 'vscode' module. */
function loadMs(bundle: string, runs = 7): number {
  const script = `
    const Module = require('module');
    const orig = Module._load;
    const stub = new Proxy(function () {}, { get: (t, k) => k === Symbol.toPrimitive ? () => '' : k === 'then' ? undefined : stub, apply: () => stub, construct: () => stub });
    Module._load = function (req, ...rest) { return req === 'vscode' ? stub : orig.call(this, req, ...rest); };
    const t0 = process.hrtime.bigint();
    require(${JSON.stringify(bundle)});
    process.stdout.write(String(Number(process.hrtime.bigint() - t0) / 1e6));`;
  const xs: number[] = [];
  for (let i = 0; i < runs; i++) xs.push(Number(run(process.execPath, ['-e', script], os.tmpdir())));
  xs.sort((a, b) => a - b);
  return xs[Math.floor(xs.length / 2)];
}

interface Activation { codeLoadingMs?: number; activateMs?: number; text: string }

function parseActivation(text: string): Activation {
  // The Running Extensions row reads e.g. "... Activation: 23ms" or "Startup Activation: 12ms".
  const m = /Activation:\s*(\d+)\s*ms/i.exec(text) ?? /(\d+)\s*ms/.exec(text);
  return { activateMs: m ? Number(m[1]) : undefined, text };
}

async function activationInCodeServer(ours: string, sample: string): Promise<{ ours: Activation; sample: Activation }> {
  ensureCodeServer();
  const ws = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-ext-ws-'));
  const unusedPort = await freePort();
  const cs = await startCodeServer({ workspace: ws, vsix: ours, settings: {
    // No daemon: activation only (the views load lazily after it, outside the measured call).
    'cloudlet.localDaemon.autoStart': false, 'cloudlet.localDaemon.listen': `127.0.0.1:${unusedPort}`,
  } });
  const ext = path.join(cs.dir, 'ext');
  const entry = path.join(ROOT, '.cache/code-server/node_modules/code-server/out/node/entry.js');
  run(process.execPath, [entry, '--config', path.join(cs.dir, 'config.yaml'), '--user-data-dir', path.join(cs.dir, 'ud'), '--extensions-dir', ext, '--install-extension', sample], cs.dir);
  const browser = await launchBrowser();
  try {
    const wb = await Workbench.open(browser, cs);
    try {
      return await measure(wb);
    } catch (e) {
      await wb.shot('bench-failed').catch(() => {});
      throw e;
    }
  } finally {
    await browser.close();
    await cs.stop();
    fs.rmSync(ws, { recursive: true, force: true });
  }
}

const RUNS = 5;

/** Activation of both extensions in `RUNS` fresh windows (reloads); the median of each. */
async function measure(wb: Workbench): Promise<{ ours: Activation; sample: Activation }> {
  const ours: number[] = [], sample: number[] = [];
  let last = { a: '', b: '' };
  for (let i = 0; i < RUNS; i++) {
    await wb.page.reload();  // a fresh window (and, the first time, picks up the second extension)
    await wb.page.locator('.activitybar').waitFor({ timeout: 60_000 });
    await wb.openCloudlets();
    await wb.page.locator('.activitybar .action-item [aria-label^="Sample"]').first().click();
    await wb.page.locator('.monaco-list-row', { hasText: 'three' }).first().waitFor({ timeout: 60_000 });
    await wb.command('Developer: Show Running Extensions');
    const row = (name: string) => wb.page.locator('.runtime-extensions-editor .monaco-list-row', { hasText: name }).first();
    const read = async (name: string) => until(`activation time of ${name}`, async () => {
      const t = await row(name).innerText();
      return /Activation:\s*\d+\s*ms/i.test(t) ? t : undefined;
    }, 60_000);
    last = { a: await read('Cloudlet Toolkit'), b: await read('Sample Tree') };
    const x = parseActivation(last.a).activateMs, y = parseActivation(last.b).activateMs;
    if (x !== undefined) ours.push(x);
    if (y !== undefined) sample.push(y);
    log(`  window ${i + 1}: ours ${x} ms, sample ${y} ms`);
  }
  await wb.shot('bench-running-extensions');
  const median = (xs: number[]) => { const v = [...xs].sort((p, q) => p - q); return v.length ? v[Math.floor(v.length / 2)] : undefined; };
  return {
    ours: { activateMs: median(ours), text: `median of ${ours.join(', ')} ms` },
    sample: { activateMs: median(sample), text: `median of ${sample.join(', ')} ms` },
  };
}

async function main() {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-ext-'));
  try {
    log('bench extension: packaging the extension (production bundles)');
    const ours = path.join(work, 'cloudlet-toolkit.vsix');
    run('bash', [path.join(ROOT, 'scripts/package.sh'), 'vsix'], ROOT, { VSIX_OUT: ours });
    const extBytes = fs.statSync(path.join(ROOT, 'dist/extension.js')).size;
    const webviewBytes = fs.statSync(path.join(ROOT, 'dist/webview.js')).size;
    const vsixBytes = fs.statSync(ours).size;
    log('bench extension: building the sample extension');
    const sample = await buildSample(path.join(work, 'sample'));
    const sampleBytes = fs.statSync(sample.bundle).size;
    const sampleVsix = fs.statSync(sample.vsix).size;
    log('bench extension: bundle load in Node (median of 7)');
    const loadOurs = loadMs(path.join(ROOT, 'dist/extension.js'));
    const loadSample = loadMs(sample.bundle);
    log(`  ours ${loadOurs.toFixed(2)} ms, sample ${loadSample.toFixed(2)} ms`);
    log('bench extension: activation in code-server');
    let act: { ours: Activation; sample: Activation } | undefined;
    try { act = await activationInCodeServer(ours, sample.vsix); } catch (e) { log(`  activation not measured: ${(e as Error).message.split('\n')[0]}`); }
    if (act) log(`  ours: ${act.ours.text.replace(/\s+/g, ' ')}\n  sample: ${act.sample.text.replace(/\s+/g, ' ')}`);
    const r2 = (x: number) => Math.round(x * 100) / 100;
    const result = {
      extension_bundle_bytes: extBytes, webview_bundle_bytes: webviewBytes, vsix_bytes: vsixBytes,
      sample_bundle_bytes: sampleBytes, sample_vsix_bytes: sampleVsix,
      ratio_bundle_vs_sample: r2(extBytes / sampleBytes), ratio_vsix_vs_sample: r2(vsixBytes / sampleVsix),
      bundle_load_ms: r2(loadOurs), sample_bundle_load_ms: r2(loadSample), ratio_bundle_load_vs_sample: r2(loadOurs / loadSample),
      activation_runs: RUNS, activation_ms: act?.ours.activateMs ?? null, sample_activation_ms: act?.sample.activateMs ?? null,
      ratio_activation_vs_sample: act?.ours.activateMs !== undefined && act?.sample.activateMs ? r2(act.ours.activateMs / act.sample.activateMs) : null,
      vscode: '1.100.3 (code-server 4.100.3)', node: process.version,
    };
    console.log(JSON.stringify(result));
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

void main().catch((e) => { console.error(e); process.exit(1); });
