import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { WALKTHROUGH_ID, WALKTHROUGH_STEPS } from '../../../extension/state/walkthrough';

const root = path.join(__dirname, '../../..');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));

/** Command ids that have a handler: every `id: 'cloudlet.x'` of a CommandDef in extension/commands/, plus other registerCommand calls in extension/. */
function handlerIds(): string[] {
  const ids: string[] = [];
  const walk = (dir: string) => {
    for (const f of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, f.name);
      if (f.isDirectory()) walk(p);
      else if (p.endsWith('.ts')) {
        const src = fs.readFileSync(p, 'utf8');
        if (p.includes(`${path.sep}commands${path.sep}`)) for (const m of src.matchAll(/(?:^\s*|\{ )id: '(cloudlet\.[\w.]+)'/gm)) ids.push(m[1]);
        for (const m of src.matchAll(/registerCommand\('(cloudlet\.[\w.]+)'/g)) ids.push(m[1]);
      }
    }
  };
  walk(path.join(root, 'extension'));
  return ids;
}

describe('extension contributions', () => {
  const contributed: string[] = pkg.contributes.commands.map((c: { command: string }) => c.command);

  it('every command in package.json has a handler and every handler a contribution', () => {
    const handlers = handlerIds();
    assert.equal(new Set(handlers).size, handlers.length, 'a handler id is defined twice');
    assert.deepEqual(contributed.filter((c) => !handlers.includes(c)), [], 'contributed without a handler');
    assert.deepEqual(handlers.filter((h) => !contributed.includes(h)), [], 'handled without a contribution');
  });

  it('every command is in category "Cloudlet" with a title', () => {
    for (const c of pkg.contributes.commands) {
      assert.equal(c.category, 'Cloudlet', c.command);
      assert.ok(c.title && c.title.length > 3, c.command);
    }
    assert.ok(pkg.contributes.commands.some((c: { title: string }) => c.title === 'Resume Base VM in Sandbox'));
  });

  it('the commands the issue lists are all there', () => {
    for (const id of ['addCloudlet', 'removeCloudlet', 'importBase', 'createBase', 'exportBase', 'resumeBase', 'openTerminal', 'buildFromWorkspace',
      'pauseSandbox', 'stopSandbox', 'createOverlay', 'showOverlay', 'synthesize', 'handoff', 'showServer', 'deleteServer']) {
      assert.ok(contributed.includes(`cloudlet.${id}`), id);
    }
  });

  it('menus and welcome links name existing commands; tree menus match on viewItem regexes', () => {
    for (const [where, items] of Object.entries(pkg.contributes.menus) as Array<[string, Array<{ command: string; when?: string }>]>) {
      for (const m of items) {
        assert.ok(contributed.includes(m.command), `${where}: ${m.command}`);
        if (where === 'view/item/context') assert.match(m.when!, /^viewItem =~ \/.+\/$/);
      }
    }
    for (const w of pkg.contributes.viewsWelcome) {
      for (const m of (w.contents as string).matchAll(/\(command:(cloudlet\.[\w.]+)/g)) assert.ok(contributed.includes(m[1]), m[1]);
    }
  });

  it('the Cloudlets container has the four views, activation is on views only (no "*")', () => {
    assert.deepEqual(pkg.contributes.viewsContainers.activitybar.map((c: { id: string; title: string }) => c.title), ['Cloudlets']);
    assert.deepEqual(pkg.contributes.views.cloudlets.map((v: { name: string }) => v.name), ['Sandbox', 'Cloudlets', 'Overlays', 'Devices']);
    assert.ok(!pkg.activationEvents.includes('*'));
    assert.ok(pkg.activationEvents.every((e: string) => /^on(View|Walkthrough):cloudlet\./.test(e)), pkg.activationEvents.join());
    assert.equal(pkg.main, './dist/extension.js');
    assert.ok(/\^1\.100/.test(pkg.engines.vscode));
  });

  it('the walkthrough and icons point to files that exist', () => {
    for (const w of pkg.contributes.walkthroughs) for (const s of w.steps) assert.ok(fs.existsSync(path.join(root, s.media.markdown)), s.media.markdown);
    assert.ok(fs.existsSync(path.join(root, pkg.contributes.viewsContainers.activitybar[0].icon)));
  });

  it('secrets are not settings: the cloudlets setting has no password field', () => {
    const items = pkg.contributes.configuration.properties['cloudlet.cloudlets'].items.properties;
    assert.ok(!Object.keys(items).some((k) => /pass|secret|token/i.test(k)));
  });

  it('17.8: walkthrough steps complete on success context keys only, never on merely running a command; there is a set-up step', () => {
    const steps = pkg.contributes.walkthroughs[0].steps as { id: string; completionEvents: string[]; description: string }[];
    assert.equal(steps[0].id, 'setup');
    for (const s of steps) {
      assert.ok(s.completionEvents.length && s.completionEvents.every((e) => /^onContext:cloudlet\.done\./.test(e)), `${s.id}: ${s.completionEvents}`);
    }
    assert.match(steps.find((s) => s.id === 'base')!.description, /command:cloudlet\.createBase/);
    // Each success event also marks its step complete by the id VS Code gives it (extension#walkthrough#step).
    assert.equal(WALKTHROUGH_ID, `${pkg.publisher}.${pkg.name}#${pkg.contributes.walkthroughs[0].id}`);
    assert.deepEqual(Object.values(WALKTHROUGH_STEPS).sort(), steps.map((s) => s.id).sort());
    for (const s of steps) assert.ok(s.completionEvents.includes(`onContext:cloudlet.done.${Object.keys(WALKTHROUGH_STEPS).find((k) => WALKTHROUGH_STEPS[k as keyof typeof WALKTHROUGH_STEPS] === s.id)}`), s.id);
  });

  it('17.11: Restricted Mode is declared (limited, saying what works) and the user-only settings are restricted', () => {
    const u = pkg.capabilities.untrustedWorkspaces;
    assert.equal(u.supported, 'limited');
    assert.match(u.description, /Build Overlay from Workspace/);
    for (const k of ['cloudlet.cliPath', 'cloudlet.nodePath', 'cloudlet.cloudlets', 'cloudlet.registry.default']) assert.ok(u.restrictedConfigurations.includes(k), k);
  });
});
