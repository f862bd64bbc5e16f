/** sandbox/client: the only way extension/ and cli/ reach a cloudlet. */
export * from './client';
export * from './types';
export { readSse, type SseMessage } from './sse';
// One error type on both sides of the wire: what the daemon threw, the client (and extension) rebuild.
export { CloudletError, ERROR_CODES, codeForStatus, describeError, errorOfFault, faultOf, isCloudletError, isErrorCode } from '../common/errors';
export type { ErrorCode, Fault } from '../common/errors';
export * from './transport';
// Pure helpers the editor shares with the CLI and daemon.
export { formatBytes } from '../common/bytes';
export { isTcpPort } from '../common/tcpPort';
// An oci:// synthesis carries the user's own registry login (never the cloudlet operator's).
