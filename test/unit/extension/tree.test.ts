import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { serverUrls } from '../../../extension/state/urls';
import { accessibleLabel, cloudletNodes, formatBytes, overlayNodes, sandboxNodes, sandboxStatus, serverState, type NodeDesc } from '../../../extension/state/tree';
import type { ImageInfo, ServerInfo } from '../../../extension/api';

const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '../../../package.json'), 'utf8'));

/** Commands package.json shows on a tree item with this contextValue (evaluating the viewItem regexes). */
function menuFor(contextValue: string, inline: boolean): string[] {
  const out: string[] = [];
  for (const m of pkg.contributes.menus['view/item/context'] as Array<{ command: string; when: string; group?: string }>) {
    const re = /viewItem =~ \/(.+)\/$/.exec(m.when);
    assert.ok(re, `menu when clause uses a viewItem regex: ${m.when}`);
    if (new RegExp(re[1]).test(contextValue) && (m.group ?? '').startsWith('inline') === inline) out.push(m.command);
  }
  return out.sort();
}

const base: ImageInfo = { id: 'img-1', name: 'tiny', status: 'active', size: 3 * 1024 * 1024, cloudletType: 'cloudlet_base_disk', baseId: 'ab'.repeat(32) };
const overlayImg: ImageInfo = { id: 'img-2', name: 'ov', status: 'active', cloudletType: 'cloudlet_overlay', baseId: base.baseId };
const running: ServerInfo = { id: 's1', name: 'sandbox-tiny', status: 'ACTIVE', ports: { '8080/tcp': '127.0.0.1:40001' } };
const paused: ServerInfo = { id: 's2', name: 'another', status: 'PAUSED' };

describe('extension tree state', () => {
  it('17.6: forwarded ports become URLs (TCP only, lowest guest port first, a wildcard host is the cloudlet\'s)', () => {
    assert.deepEqual(serverUrls({ ports: { '8080/tcp': '127.0.0.1:40001', '80': '127.0.0.1:40000', '53/udp': '127.0.0.1:40002' } }),
      ['http://127.0.0.1:40000/', 'http://127.0.0.1:40001/']);
    assert.deepEqual(serverUrls({ ports: { '80': '0.0.0.0:40000' } }, 'https://edge1.example.org:8774'), ['http://edge1.example.org:40000/']);
    assert.deepEqual(serverUrls({ ports: { '80': 'nonsense' } }), []);
    assert.deepEqual(serverUrls({}), []);
  });

  it('the Sandbox view lists local bases (not overlays) then sandbox VMs', () => {
    const nodes = sandboxNodes([overlayImg, base], [running, paused]);
    assert.deepEqual(nodes.map((n) => [n.kind, n.label]), [['base', 'tiny'], ['sandbox', 'another'], ['sandbox', 'sandbox-tiny']]);
    assert.equal(nodes[0].contextValue, 'base local');
    assert.match(nodes[0].description!, /^abababababab · 3\.0 MiB$/);
    assert.equal(nodes[2].contextValue, 'sandbox running local web', 'web: it has a forwarded port');
    assert.equal(nodes[2].icon, 'vm-running');
    assert.match(nodes[2].description!, /8080\/tcp → 127\.0\.0\.1:40001/);
    assert.equal(nodes[1].contextValue, 'sandbox paused local');
  });

  it('contextValue drives the menus: each state gets the actions that apply', () => {
    const [b, p, r] = sandboxNodes([base], [running, paused]);
    assert.deepEqual(menuFor(b.contextValue, true), ['cloudlet.resumeBase']);
    assert.deepEqual(menuFor(r.contextValue, true), ['cloudlet.createOverlay', 'cloudlet.openInBrowser', 'cloudlet.openTerminal', 'cloudlet.pauseSandbox']);
    assert.ok(menuFor(r.contextValue, false).includes('cloudlet.copyUrl'));
    assert.deepEqual(menuFor(p.contextValue, true), ['cloudlet.createOverlay', 'cloudlet.openTerminal', 'cloudlet.unpauseSandbox']);
    assert.ok(menuFor(r.contextValue, false).includes('cloudlet.stopSandbox'));
    const [remote] = cloudletNodes([{ name: 'edge1', url: 'http://127.0.0.2:8774', condition: 'ok', servers: [running], images: [base] }]);
    const server = remote.children!.find((c) => c.kind === 'server')!;
    assert.equal(server.contextValue, 'server running web');
    assert.deepEqual(menuFor(server.contextValue, true), ['cloudlet.handoff', 'cloudlet.openInBrowser', 'cloudlet.showServer']);
    assert.deepEqual(menuFor(p.contextValue, false).filter((x) => /Browser|Url/.test(x)), [], 'no URL without a forwarded port');
    const stopped = cloudletNodes([{ name: 'e', url: 'u', condition: 'ok', servers: [{ id: 'x', name: 'x', status: 'SHUTOFF' }] }])[0].children![0];
    assert.deepEqual(menuFor(stopped.contextValue, true), ['cloudlet.showServer'], 'no handoff of a stopped server');
    assert.deepEqual(menuFor(remote.contextValue, true), ['cloudlet.synthesize']);
    assert.deepEqual(menuFor('cloudlet unreachable', true), [], 'no synthesize on an unreachable cloudlet');
  });

  it('a remote base shows on the cloudlet without the local resume action', () => {
    const [c] = cloudletNodes([{ name: 'edge1', url: 'http://127.0.0.2:8774', condition: 'ok', servers: [], images: [base] }]);
    const b = c.children!.find((x) => x.kind === 'base')!;
    assert.equal(b.contextValue, 'base');
    assert.deepEqual(menuFor(b.contextValue, true), []);
  });

  it('an unreachable cloudlet or wrong credentials show as a child message with Retry, not an empty tree', () => {
    const nodes = cloudletNodes([
      { name: 'down', url: 'http://127.0.0.9:1', condition: 'unreachable', error: 'ECONNREFUSED' },
      { name: 'badpw', url: 'http://127.0.0.2:8774', condition: 'unauthorized', error: '401' },
    ]);
    assert.equal(nodes[0].contextValue, 'cloudlet unreachable');
    assert.equal(nodes[0].icon, 'warning');
    const msg = nodes[0].children![0];
    assert.equal(msg.kind, 'message');
    assert.match(msg.label, /Not reachable: ECONNREFUSED/);
    assert.equal(msg.command?.id, 'cloudlet.refresh');
    assert.deepEqual(menuFor(msg.contextValue, true), ['cloudlet.refresh']);
    assert.equal(nodes[1].contextValue, 'cloudlet unauthorized');
    assert.match(nodes[1].children![0].label, /Wrong credentials/);
  });

  it('a connected but empty cloudlet says so', () => {
    const [c] = cloudletNodes([{ name: 'e', url: 'u', condition: 'ok', servers: [], images: [] }]);
    assert.equal(c.children!.length, 1);
    assert.match(c.children![0].label, /No servers or base VMs/);
  });

  it('overlays newest first, published ones marked for the publish actions', () => {
    const nodes = overlayNodes([
      { id: 'o1', name: 'old', baseId: 'b', size: 1024, createdAt: '2026-01-01T00:00:00Z' },
      { id: 'o2', name: 'new', baseId: 'b', size: 2048, createdAt: '2026-02-01T00:00:00Z', publishedRef: 'oci://127.0.0.1:5000/app:v2' },
    ]);
    assert.deepEqual(nodes.map((n: NodeDesc) => n.label), ['new', 'old']);
    assert.equal(nodes[0].contextValue, 'overlay published');
    assert.equal(nodes[1].contextValue, 'overlay');
    assert.match(nodes[0].description!, /oci:\/\/127\.0\.0\.1:5000\/app:v2/);
    assert.equal(nodes[0].command?.id, 'cloudlet.showOverlay');
  });

  it('status bar text follows the sandbox', () => {
    assert.match(sandboxStatus('ok', [running]).text, /vm-running\) sandbox-tiny/);
    assert.match(sandboxStatus('ok', [paused]).text, /debug-pause/);
    assert.match(sandboxStatus('empty', []).text, /Sandbox/);
    assert.match(sandboxStatus('unreachable', []).text, /daemon down/);
  });

  it('server states and sizes read well', () => {
    assert.equal(serverState('ACTIVE'), 'running');
    assert.equal(serverState('paused'), 'paused');
    assert.equal(serverState('BUILD'), 'busy');
    assert.equal(formatBytes(0), '0 B');
    assert.equal(formatBytes(1536), '1.5 KiB');
    assert.equal(formatBytes(5 * 1024 ** 3), '5.0 GiB');
  });

  it('17.11: a row\'s accessible name starts with what it shows (label, description), then the tooltip\'s details', () => {
    assert.equal(accessibleLabel({ label: 'test-guest', description: '00f345162c43 · 207 MiB', tooltip: 'Base VM test-guest\nbase ID 00f3\nimage 12' }),
      'test-guest, 00f345162c43 · 207 MiB. Base VM test-guest. base ID 00f3. image 12');
    assert.equal(accessibleLabel({ label: 'edge1', description: 'https://127.0.0.2:1', tooltip: 'edge1\nhttps://127.0.0.2:1' }), 'edge1, https://127.0.0.2:1. https://127.0.0.2:1');
    assert.equal(accessibleLabel({ label: 'No devices enrolled' }), 'No devices enrolled');
  });
});
