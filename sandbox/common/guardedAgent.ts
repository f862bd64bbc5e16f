/**
 * An undici Agent whose every connection (first request, each redirect hop, a registry's token
 * realm) is checked against an AddressPolicy: literal addresses before connecting, names on the
 * addresses DNS gave (the lookup the socket then uses, so a second, rebinding answer cannot slip in).
 */
import { Agent, buildConnector } from 'undici';
import type { AddressPolicy } from './addressPolicy';

/** `ca`: extra CA certificate(s) to trust for TLS. */
export function guardedAgent(policy: AddressPolicy, options: Omit<Agent.Options, 'connect'> & { ca?: string | Buffer } = {}): Agent {
  const { ca, ...agentOptions } = options;
  return new Agent({ ...agentOptions, connect: policy.guard(buildConnector({ ...(ca ? { ca } : {}), lookup: policy.lookup } as buildConnector.BuildOptions)) });
}
