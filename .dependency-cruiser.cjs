/**
 * The layer order of sandbox/ and the import rules around it, checked by `npm run lint` and the lint
 * stage of `npm test` (`depcruise sandbox extension webview`). docs/architecture.md draws the layers.
 *
 * A folder (or a group of files, for the daemon's core vs. its routes) may import its own layer and
 * the layers below it, never one above it, and never a sibling in its own layer (they stay
 * independent). No import cycles anywhere.
 */
const layers = [
  ['common'],
  ['qemu'],
  ['guest'],
  ['base'],
  ['sandboxes'],
  ['overlay'],
  ['build', 'client'],
  ['registry'],
  // The daemon's core: context, stores, jobs, events, identity, the server lifecycle, and the routes'
  // schemas (api/schemas/: pure data, also used by handoff's receiver routes).
  ['cloudlet-core'],
  // Services the daemon plugs in.
  ['devices', 'handoff'],
  // Routes and the wiring of the daemon.
  ['cloudlet-daemon'],
  ['service'],
  ['cli'],
];

/** Path patterns of a layer member (a folder of sandbox/, or one of the two halves of sandbox/cloudlet). */
const DAEMON = '^sandbox/cloudlet/(api/(?!schemas/)|modules\\.ts$|daemon\\.ts$)';
function pathOf(name) {
  if (name === 'cloudlet-daemon') return { path: DAEMON };
  if (name === 'cloudlet-core') return { path: '^sandbox/cloudlet/', pathNot: DAEMON };
  return { path: `^sandbox/${name}/` };
}
function anyOf(names) {
  const paths = names.map((n) => (n === 'cloudlet-core' ? '^sandbox/cloudlet/' : pathOf(n).path));
  const out = { path: paths.map((p) => `(${p})`).join('|') };
  // cloudlet-core as a target must not match the daemon half
  if (names.includes('cloudlet-core') && !names.includes('cloudlet-daemon')) out.pathNot = DAEMON;
  return out;
}

const layerRules = layers.flatMap((layer, i) => layer.map((name) => {
  const above = layers.slice(i + 1).flat();
  const siblings = layer.filter((n) => n !== name);
  const forbidden = [...above, ...siblings];
  return forbidden.length ? {
    name: `layer-${name}`,
    comment: `sandbox/${name} may import only the layers below it (.dependency-cruiser.cjs): not ${forbidden.join(', ')}`,
    severity: 'error',
    from: pathOf(name),
    to: anyOf(forbidden),
  } : undefined;
})).filter(Boolean);

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'An import cycle: modules that need each other are one module, or one of them owns an interface the other implements.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    ...layerRules,
    {
      name: 'sandbox-without-editor',
      comment: 'sandbox/ runs without VS Code and never imports the extension or the webview.',
      severity: 'error',
      from: { path: '^sandbox/' },
      to: { path: '^(extension|webview)/' },
    },
    {
      name: 'extension-through-client',
      comment: 'extension/ reaches cloudlets only through sandbox/client (and the pure helpers it re-exports), and the user\'s registry login for an oci:// synthesis through sandbox/registry/synthesisLogin.ts.',
      severity: 'error',
      from: { path: '^extension/' },
      to: { path: '^sandbox/', pathNot: '^sandbox/(client/|common/(errors|bytes|tcpPort|progress)\\.ts$|registry/synthesisLogin\\.ts$)' },
    },
    {
      name: 'webview-pure',
      comment: 'The webview bundle talks to the host only through extension/protocol.ts (types and pure constants).',
      severity: 'error',
      from: { path: '^webview/' },
      to: { path: '^(extension/(?!protocol\\.ts$)|sandbox/(?!common/(bytes|progress)\\.ts$))' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(node_modules|dist|\\.cache|artifacts)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.json'] },
  },
};
