/**
 * Semantic-gap discards before a snapshot: what the guest no longer uses should not travel in the
 * overlay. Both run through the guest agent, need no extra device (bases keep their format) and
 * leave the page cache alone:
 *   disk    `fstrim /`: ext4 sends its free extents as discards; the virtio disk runs with
 *           discard=unmap over a 4 KiB-cluster qcow2 layer, which turns them into zero clusters
 *           (stored as `zero`, or not at all where the base was zero too).
 *   memory  one short-lived process takes the guest's free memory (MemFree minus twice each zone's
 *           high watermark, with vm.min_free_kbytes lowered to 4 MiB for that time so the headroom
 *           is small), the kernel hands it out zeroed, and on exit it goes back to the free lists
 *           as zeros.
 * Why not virtio-balloon free page reporting: a new device is a new base format (every base
 * rebuilt), it reports only free 2 MiB blocks, later and asynchronously; see the notes in
 * docs/overlay-format.md ("Discards").
 */
import { CloudletError } from '../common/errors';
import type { ProgressSink } from '../common/progress';
import type { SandboxManager } from '../sandboxes/sandboxManager';
import { Qcow2Reader } from './qcow2Reader';

export interface DiscardOptions { memory: boolean; disk: boolean }
export const DEFAULT_DISCARD: DiscardOptions = { memory: true, disk: true };

/** `--discard both|memory|disk|none` of `cloudlet overlay create`. */
export function parseDiscardOption(text: string): DiscardOptions {
  switch (text) {
    case 'both': return { memory: true, disk: true };
    case 'memory': return { memory: true, disk: false };
    case 'disk': return { memory: false, disk: true };
    case 'none': return { memory: false, disk: false };
    default: throw new CloudletError('BadInput', `--discard ${JSON.stringify(text)} is not one of both, memory, disk, none`);
  }
}

export interface DiscardReport {
  /** Free guest memory the discard zeroed (bytes); undefined when not asked or not possible. */
  memoryZeroedBytes?: number;
  /** Disk layer bytes that held data before `fstrim` and no longer do. */
  diskFreedBytes?: number;
  /** Why a discard was skipped (old guest without fstrim, no agent...): the overlay is still correct. */
  skipped: string[];
  ms: number;
}

const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;

/** One line for people: "discards: freed memory left out 612.0 MiB, freed disk blocks 10.2 MiB". */
export function formatDiscard(d: DiscardReport): string {
  const parts: string[] = [];
  if (d.memoryZeroedBytes !== undefined) parts.push(`freed memory left out ${mib(d.memoryZeroedBytes)}`);
  if (d.diskFreedBytes !== undefined) parts.push(`freed disk blocks left out ${mib(d.diskFreedBytes)}`);
  for (const s of d.skipped) parts.push(`skipped ${s}`);
  return `discards: ${parts.join(', ') || 'none'}`;
}

/**
 * KiB of free memory one process may take without waking kswapd: per zone (DMA excluded, user pages
 * do not come from it) free pages minus twice the high watermark, minus 8 MiB of slack.
 * POSIX sh + awk (busybox or Debian). Prints one number.
 */
export function freeMemoryKibScript(zoneinfo = '/proc/zoneinfo'): string {
  return `awk '/^Node/{z=$4} $1=="pages"&&$2=="free"{f[z]=$3} $1=="high"{h[z]=$2} ` +
    `END{s=0; for(z in f) if(z!="DMA"){a=f[z]-2*h[z]; if(a>0)s+=a}; s=s*4-8192; if(s<0)s=0; print s}' ${zoneinfo}`;
}

/** vm.min_free_kbytes while the memory discard runs (never raised; restored when it ends). */
export const DISCARD_MIN_FREE_KIB = 4096;

/** Guest command for the memory discard; prints the KiB it zeroed. */
export function zeroFreeMemoryCommand(minFree = '/proc/sys/vm/min_free_kbytes', zoneinfo = '/proc/zoneinfo'): string {
  // dd's buffer is one allocation of bs bytes, filled by one read of /dev/zero: every page is
  // faulted in (zeroed by the kernel) and held until dd exits.
  // Watermarks scale with min_free_kbytes (Debian 12 on 1 GiB: 44 MiB, high watermark 65 MiB), and
  // order-0 allocations take the smallest free blocks first, so the 2x-high headroom left out the
  // largest free blocks: on the realistic guest those held 9.9 MB of deleted .debs. Lowering it for
  // the length of dd lets dd reach them; the old value is restored on any exit.
  return `old=$(cat ${minFree} 2>/dev/null) || old=; ` +
    `if [ -n "$old" ] && [ "$old" -gt ${DISCARD_MIN_FREE_KIB} ] 2>/dev/null; then ` +
    `trap 'echo "$old" > ${minFree}' EXIT; trap 'exit 143' INT TERM; echo ${DISCARD_MIN_FREE_KIB} > ${minFree} 2>/dev/null || :; fi; ` +
    `k=$(${freeMemoryKibScript(zoneinfo)}) || exit 1; if [ "$k" -gt 0 ]; then dd if=/dev/zero of=/dev/null bs=\${k}k count=1 2>/dev/null || exit 1; fi; echo "$k"`;
}

/** Parses the memory discard's output (the KiB it zeroed). */
export function parseZeroedKib(stdout: string): number {
  const last = stdout.trim().split('\n').pop() ?? '';
  if (!/^\d{1,12}$/.test(last)) throw new CloudletError('Internal', `memory discard: unexpected guest output ${JSON.stringify(stdout.slice(0, 200))}`);
  return Number(last);
}

function dataBytes(layer: string): number {
  const r = Qcow2Reader.open(layer);
  try {
    return r.clusters().filter((c) => c.hostOffset >= 0).length * r.info.clusterSize;
  } finally { r.close(); }
}

/**
 * Runs the discards asked for in a running sandbox with an agent. Failures of the guest side
 * (no fstrim, a kernel without discard) are reported in `skipped`, never fatal: an overlay without
 * the discard is only larger.
 */
export async function discardFreeSpace(manager: SandboxManager, sandbox: string, opts: DiscardOptions, progress?: ProgressSink): Promise<DiscardReport> {
  const t0 = Date.now();
  const report: DiscardReport = { skipped: [], ms: 0 };
  if (!opts.memory && !opts.disk) return report;
  const layer = manager.layout(sandbox).files.disk;
  if (opts.disk) {
    progress?.({ phase: 'discard', message: 'disk: fstrim (freed blocks leave the disk layer)' });
    const before = dataBytes(layer);
    // sync: the freed blocks of deleted files are free only once their metadata is written.
    const r = await manager.exec(sandbox, 'sync && fstrim / && sync', { timeoutMs: 300_000 });
    if (r.exitCode !== 0) report.skipped.push(`disk: fstrim failed (${(r.stderr || `status ${r.exitCode}`).trim().split('\n').pop()})`);
    else report.diskFreedBytes = Math.max(0, before - dataBytes(layer));
  }
  if (opts.memory) {
    progress?.({ phase: 'discard', message: 'memory: zeroing free guest memory' });
    const r = await manager.exec(sandbox, zeroFreeMemoryCommand(), { timeoutMs: 300_000 });
    if (r.exitCode !== 0) report.skipped.push(`memory: status ${r.exitCode} ${r.stderr.trim().split('\n').pop() ?? ''}`.trim());
    else report.memoryZeroedBytes = parseZeroedKib(r.stdout) * 1024;
  }
  report.ms = Date.now() - t0;
  return report;
}
