/**
 * What the Sandbox view, the status bar and "Show Install Steps" say when the local daemon cannot
 * run: which tool is missing and the steps that install it. Pure (no vscode), unit-tested.
 */

/** Which tool the local daemon lacks: what the Sandbox view's welcome and the status bar name. */
export type MissingTool = 'node' | 'cli' | 'nodePath' | 'cliPath';

/** The CLI and daemon as a user installs them: the tarball `npm run package` makes (artifacts/cloudlet-toolkit-X.Y.Z.tgz). */
export function installCommand(version: string): string {
  return `npm install -g --allow-scripts=better-sqlite3,zstd-napi ./cloudlet-toolkit-${version}.tgz`;
}

/** One line naming exactly what is missing. */
export function missingToolSummary(m: MissingTool | undefined, detail?: string): string {
  switch (m) {
    case 'node': return 'Node.js (20 or newer) is not on PATH: the local sandbox daemon runs under it.';
    case 'cli': return 'The cloudlet CLI is not on PATH and cloudlet.cliPath is empty: the local sandbox runs as "cloudlet serve".';
    case 'nodePath': return `cloudlet.nodePath names a file that does not exist${detail ? ` (${detail})` : ''}.`;
    case 'cliPath': return `cloudlet.cliPath names a file that does not exist${detail ? ` (${detail})` : ''}.`;
    default: return detail ?? 'The local cloudlet daemon does not answer.';
  }
}

/** The install steps as Markdown, for the extension of this version. */
export function installStepsMarkdown(version: string, missing?: MissingTool): string {
  const tgz = `cloudlet-toolkit-${version}.tgz`;
  return [
    '# Install the Cloudlet Toolkit CLI and daemon',
    '',
    missing ? `**Missing now:** ${missingToolSummary(missing)}` : '',
    '',
    'The extension runs the local sandbox as `cloudlet serve` (a daemon on 127.0.0.1) under the system Node.js.',
    'Remote cloudlets run the same daemon (see docs/deploy.md of the toolkit).',
    '',
    '1. **Node.js 20 or newer** and the tools native modules build with (Debian/Ubuntu):',
    '',
    '   ```sh',
    '   sudo apt-get install nodejs npm python3 make g++ qemu-system-x86 qemu-utils',
    '   ```',
    '',
    `2. **The tarball** \`${tgz}\`: from the release, or built in a checkout of the toolkit with`,
    '',
    '   ```sh',
    '   npm ci && npm run package     # writes artifacts/' + tgz + ' and the .vsix',
    '   ```',
    '',
    '3. **Install it** (its native modules, SQLite and zstd, are built for your Node.js here):',
    '',
    '   ```sh',
    `   ${installCommand(version)}`,
    '   ```',
    '',
    '   Without root, add `--prefix ~/.local` and make sure `~/.local/bin` is on PATH.',
    '',
    '4. **Tell the extension**: when `cloudlet` is on PATH, press Retry in the Sandbox view. Otherwise run',
    '   **Cloudlet: Locate CLI...** and pick the installed `bin/cloudlet` (it is saved as `cloudlet.cliPath`).',
    '',
    'The first start makes the daemon\'s data folder (`~/.local/share/cloudlet`) and its local admin password',
    '(`admin.password` there), which the extension reads by itself.',
    '',
  ].join('\n');
}
