/** sandbox/client: the only way extension/ and cli/ reach a cloudlet. */
export * from './client';
export * from './types';
export { readSse, type SseMessage } from './sse';
