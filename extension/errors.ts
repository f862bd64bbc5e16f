/**
 * Errors the extension itself raises (a missing tool, a dismissed choice, a failed job). Same shape
 * as the sandbox's CloudletError (code, message, hint), which the client's ApiError also has, so
 * state/errors.ts classifies both alike. extension/ imports nothing of sandbox/ but sandbox/client.
 */
export type ExtErrorCode = 'BadInput' | 'NotFound' | 'Mismatch' | 'Unauthorized' | 'Unavailable' | 'MissingTool' | 'Cancelled' | 'Timeout' | 'Internal';

export class CloudletError extends Error {
  readonly code: ExtErrorCode;
  readonly hint?: string;
  constructor(code: ExtErrorCode, message: string, opts: { hint?: string } = {}) {
    super(message);
    this.name = 'CloudletError';
    this.code = code;
    this.hint = opts.hint;
  }
}
