/**
 * OpenStack error bodies, one shape per service, as the upstream services send them, so that
 * standard clients (novaclient, openstacksdk, blazarclient, zunclient) show our messages. Each
 * body also carries `cloudlet_error: {code, hint?}` (after the upstream keys, an object without a
 * `message`, so OpenStack clients pass over it): how sandbox/client rebuilds the same error.
 */
import type { ErrorCode } from '../common/errors';

const TITLES: Record<number, string> = {
  400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed',
  409: 'Conflict', 413: 'Request Entity Too Large', 429: 'Too Many Requests', 415: 'Unsupported Media Type', 416: 'Requested Range Not Satisfiable',
  499: 'Client Closed Request', 500: 'Internal Server Error', 501: 'Not Implemented', 503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

export function statusTitle(status: number): string {
  return TITLES[status] ?? (status >= 500 ? 'Internal Server Error' : 'Bad Request');
}

/** Nova's fault names by status (nova/api/openstack/wsgi.py). */
const NOVA_FAULTS: Record<number, string> = {
  400: 'badRequest', 401: 'unauthorized', 403: 'forbidden', 404: 'itemNotFound', 405: 'badMethod',
  409: 'conflictingRequest', 413: 'overLimit', 415: 'badMediaType', 429: 'overLimit', 501: 'notImplemented',
  503: 'serviceUnavailable',
};

/** Nova: {"itemNotFound": {"code": 404, "message": "..."}} */
export function novaError(status: number, message: string): Record<string, unknown> {
  return { [NOVA_FAULTS[status] ?? 'computeFault']: { code: status, message } };
}

/** Keystone (and keystonemiddleware's 401 for every service): {"error": {code, title, message}} */
export function keystoneError(status: number, message: string): Record<string, unknown> {
  return { error: { code: status, title: statusTitle(status), message } };
}

/** Glance (webob fault rendered as JSON): {"code": "404 Not Found", "title": ..., "message": ...} */
export function glanceError(status: number, message: string): Record<string, unknown> {
  return { code: `${status} ${statusTitle(status)}`, title: statusTitle(status), message };
}

const escapeHtml = (t: string) => t.replace(/[&<>]/g, (c) => `&#${c.charCodeAt(0)};`);

/**
 * Glance as webob renders a fault for a client that did not ask for JSON (glanceclient sends
 * an Accept of any type, and reads HTML faults line by line, tags stripped). The `cloudlet_error` rides in
 * an HTML comment on a line of its own, which that reading drops.
 */
export function glanceHtmlError(status: number, message: string, extra: { code: ErrorCode; hint?: string }): string {
  const head = `${status} ${statusTitle(status)}`;
  const fault = JSON.stringify({ code: extra.code, ...(extra.hint ? { hint: extra.hint } : {}) }).replace(/--/g, '\\u002d-');
  return `<html>\n <head>\n  <title>${head}</title>\n </head>\n <body>\n  <h1>${head}</h1>\n  ${escapeHtml(message).replace(/\n/g, '<br />')}<br /><br />\n`
    + `<!-- cloudlet_error: ${fault} -->\n </body>\n</html>`;
}

/**
 * Whether a request takes a JSON fault: webob's choice between text/html and application/json for
 * an Accept header; without one (scripts, our tests' injected requests) JSON, where webob would pick HTML.
 */
export function wantsJson(accept: string | undefined): boolean {
  if (!accept) return true;
  const offers = accept.split(',').map((p) => p.trim().split(';')[0].toLowerCase());
  const json = offers.findIndex((o) => o === 'application/json' || o === 'application/*');
  const html = offers.findIndex((o) => o === 'text/html' || o === 'text/*' || o === '*/*');
  return json >= 0 && (html < 0 || json < html);
}

/** Blazar: {"error_code": 404, "error_message": "...", "error_name": "..."} */
export function blazarError(status: number, message: string, name?: string): Record<string, unknown> {
  return { error_code: status, error_message: message, error_name: name ?? statusTitle(status).replace(/ /g, '') };
}

/**
 * Zun: {"errors": [{status, code, title, detail, request_id, links}]}. Zun's title is the fault's
 * message (zunclient prints only the title: "ERROR: <title> (HTTP 400)").
 */
export function zunError(status: number, message: string): Record<string, unknown> {
  return { errors: [{ request_id: '', code: '', status, title: message.split('\n')[0] || statusTitle(status), detail: message, links: [] }] };
}

/** Doni / Ironic (WSME): {"error_message": "{\"faultstring\": ..., \"faultcode\": ...}"} */
export function inventoryError(status: number, message: string): Record<string, unknown> {
  return { error_message: JSON.stringify({ faultstring: message, faultcode: status < 500 ? 'Client' : 'Server', debuginfo: null }) };
}

function upstreamBody(serviceType: string, status: number, message: string): Record<string, unknown> {
  switch (serviceType) {
    case 'compute': return novaError(status, message);
    case 'image': return glanceError(status, message);
    case 'reservation': return blazarError(status, message);
    case 'container': return zunError(status, message);
    case 'inventory': return inventoryError(status, message);
    default: return keystoneError(status, message);
  }
}

/** The body for an error of `status` from the service of type `serviceType`, with its code and hint. */
export function errorBodyFor(serviceType: string, status: number, message: string, extra: { code: ErrorCode; hint?: string }): Record<string, unknown> {
  return { ...upstreamBody(serviceType, status, message), cloudlet_error: { code: extra.code, ...(extra.hint ? { hint: extra.hint } : {}) } };
}
