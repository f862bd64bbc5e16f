/**
 * A device's Docker engine address: `unix:///run/dev1.sock` or `tcp://127.0.0.5:2375`.
 * Parsed into dockerode connection options. Only the daemon sees it.
 */
import { CloudletError } from '../common/errors';

export type EngineEndpoint = { socketPath: string } | { host: string; port: number; protocol: 'http' };

export function parseEngineEndpoint(text: unknown): EngineEndpoint {
  if (typeof text !== 'string' || text.trim() === '') {
    throw new CloudletError('BadInput', 'engine_endpoint is required: unix:///path/to/docker.sock or tcp://HOST:PORT');
  }
  if (text.startsWith('unix://')) {
    const socketPath = text.slice('unix://'.length);
    if (!socketPath.startsWith('/')) throw new CloudletError('BadInput', `engine_endpoint '${text}': the socket path must be absolute`);
    return { socketPath };
  }
  const m = /^(?:tcp|http):\/\/([^:/]+):(\d+)\/?$/.exec(text);
  if (m) return { host: m[1], port: Number(m[2]), protocol: 'http' };
  throw new CloudletError('BadInput', `engine_endpoint '${text}' is not unix:///path or tcp://HOST:PORT`);
}
