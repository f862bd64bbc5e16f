/**
 * One admission rule for everything that starts a VM on this cloudlet (issue 11.2): server creates
 * (base resume and synthesis), handoff sessions, base creations and builds (POST /sandbox/v1/bases,
 * /builds) all count against max_servers. A server counts
 * from its row (BUILD, ACTIVE, PAUSED); a VM started before its server row exists (a handoff
 * session's QEMU waiting for the rounds) holds a slot until the row is written or the session ends.
 *
 * Check and record happen in one synchronous step: no await between them, so parallel requests
 * cannot all pass the check before any of them is counted.
 */
import { CloudletError, isCloudletError } from '../../common/errors';

/** A place held for a VM that has no server row yet. */
export interface AdmissionSlot {
  /** Gives the place back (idempotent). */
  release(): void;
}

export class Admission {
  private readonly held = new Set<AdmissionSlot>();

  /** `countServers`: servers that hold or are building a VM (synchronous). */
  constructor(readonly maxServers: number, private readonly countServers: () => number) {}

  /** VMs counted now: servers plus held slots. */
  inUse(): number { return this.countServers() + this.held.size; }

  /** Throws the quota error (403) when no VM can start now. */
  check(): void {
    if (this.inUse() >= this.maxServers) {
      throw new CloudletError('Forbidden', `Quota exceeded for instances: this cloudlet runs at most ${this.maxServers} servers`);
    }
  }

  /** Checks and runs `record` (which must be synchronous: it writes the server row) in one step. */
  admit<T>(record: () => T): T {
    this.check();
    return record();
  }

  /** Checks and holds a slot for a VM whose server row comes later. */
  reserve(): AdmissionSlot {
    this.check();
    const slot: AdmissionSlot = { release: () => { this.held.delete(slot); } };
    this.held.add(slot);
    return slot;
  }

  /** Runs `record` (synchronous, writes the row that now counts the VM) and gives the slot back in the same step. */
  convert<T>(slot: AdmissionSlot, record: () => T): T {
    try { return record(); } finally { slot.release(); }
  }
}

/**
 * A place for a VM that is not a server (a base creation, a build), with the refusal said for it:
 * `what` is the action ("create base web"), the hint what frees a place. Same code and status.
 */
export function holdPlaceFor(admission: Admission, what: string): AdmissionSlot {
  try {
    return admission.reserve();
  } catch (e) {
    if (!isCloudletError(e)) throw e;
    throw new CloudletError(e.code, `cannot ${what} now: this cloudlet already runs its limit of ${admission.maxServers} VMs (max_servers; servers, handoffs, base creations and builds count)`,
      { status: e.status, hint: 'stop or delete a server, or wait for a running base creation or build to end, then try again (or raise max_servers in the daemon config)' });
  }
}

/** Runs `start` (which starts the job that will release `slot`); if it throws, the place is given back. */
export function startOrRelease<T>(slot: AdmissionSlot, start: () => T): T {
  try { return start(); } catch (e) { slot.release(); throw e; }
}
