/**
 * The cloudlet daemon: one Fastify app, each ApiModule mounted under its prefix with its service's
 * OpenStack error bodies, SQLite (WAL) state, Keystone auth, jobs with SSE progress, an event bus.
 * `startDaemon` is what `cloudlet serve`, the extension's local sandbox and the tests call.
 */
import * as fs from 'fs';
import * as http from 'http';
import * as https from 'https';
import * as path from 'path';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import Database from '../common/sqlite';
import type { ErrorObject } from 'ajv';
import type { ApiModule, DaemonContext } from './context';
import { type DaemonConfig, loadConfig } from './config';
import { createIdentityProvider, EmbeddedIdentity, type IdentityProvider } from './identityProvider';
import { callerOf, resolveCaller } from './requestAuth';
import { registerSelf } from './selfRegistration';
import { Jobs, migrateJobs } from './jobs';
import { LocalEventBus } from './events';
import { errorBodyFor, glanceHtmlError, wantsJson } from './errorBodies';
import { cloudletModule } from './api/cloudlet';
import { identityModule } from './api/identity';
import { builtinModules } from './modules';
import { CloudletError, codeForStatus, describeError, type ErrorCode } from '../common/errors';
import { hideHostPaths, registerDataRoot } from '../common/hostErrors';
import { createLogger, type Logger } from '../common/log';
import { storePaths } from '../common/paths';
import { SERVICE_NAMES } from '../client/regions';
import { listenError, prepareListen, type ListenOptions } from './listen';
import { installValidation, validationAnswer, type RouteShape } from './validation';
import { cloudletSchemas } from './api/schemas/cloudlet';
import { isTcpPort } from '../common/tcpPort';

export interface DaemonOptions {
  host: string;
  port: number;                  // 0 = any free port
  dataDir: string;
  configFile?: string;
  config?: DaemonConfig;         // instead of configFile (tests)
  /** Base URL others use to reach this daemon; default http(s)://host:port */
  publicUrl?: string;
  /** TLS (certificate files or self-signed), plain HTTP off loopback, trust for calls to other cloudlets. */
  listen?: ListenOptions;
  /** Per service type, a different base URL in the catalog (e.g. image on another address). */
  serviceUrls?: Record<string, string>;
  /** Extra addresses to listen on as well, "HOST:PORT" (e.g. the address of serviceUrls' image). */
  extraListen?: string[];
  /** The API modules besides identity and cloudlet (default: every built-in module). */
  modules?: ApiModule[];
  /** Largest JSON body accepted (bytes). */
  bodyLimit?: number;
  log?: Logger;
}

export interface Daemon {
  url: string;
  port: number;
  ctx: DaemonContext;
  app: FastifyInstance;
  identity: IdentityProvider;
  jobs: Jobs;
  events: LocalEventBus;
  config: DaemonConfig;
  /** Every route registered, with its schemas (what the unit test of the validation rule lists). */
  routes: RouteShape[];
  /** SHA-256 fingerprint of the TLS certificate it serves (undefined: plain HTTP). */
  fingerprint?: string;
  /** The catalog URL of a service type. */
  serviceUrl(type: string): string;
  close(): Promise<void>;
}

export function serviceName(type: string): string { return SERVICE_NAMES[type] ?? type; }

export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  const log = opts.log ?? createLogger(`cloudlet@${opts.host}`);
  const extraAddrs = (opts.extraListen ?? []).map(splitHostPort);
  // Certificates, the plain-HTTP policy, the data folder's owner and free ports: before any state is touched.
  const edge = await prepareListen({
    ...opts.listen, dataDir: opts.dataDir, publicUrl: opts.publicUrl, log,
    hosts: [{ host: opts.host, port: opts.port }, ...extraAddrs.map(([host, port]) => ({ host, port }))],
  });
  const paths = storePaths(opts.dataDir);
  registerDataRoot(opts.dataDir);  // answers show paths in it as DATA/...
  for (const d of [paths.root, paths.tmp]) fs.mkdirSync(d, { recursive: true });
  const config = opts.config ?? loadConfig(opts.configFile, opts.dataDir);
  const region = config.region ?? 'RegionOne';

  const db = new Database(path.join(opts.dataDir, 'cloudlet.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 5000');
  db.pragma('foreign_keys = ON');
  migrateJobs(db);
  const identity = createIdentityProvider(db, config, log, edge.peerTrust);
  const events = new LocalEventBus();
  const jobs = new Jobs(db, events, log);
  const interrupted = jobs.recoverInterrupted();
  if (interrupted.length) log.warn(`${interrupted.length} job(s) were cut by the last stop and are marked ERROR`);
  // tmp/ holds only work in progress of this daemon's jobs, none of which runs now: a crash's
  // half-built downloads and launch folders go, so nothing partial is ever taken for complete.
  for (const f of fs.readdirSync(paths.tmp)) fs.rmSync(path.join(paths.tmp, f), { recursive: true, force: true });

  const app = Fastify({
    bodyLimit: opts.bodyLimit ?? 1024 * 1024, logger: false, forceCloseConnections: true, return503OnClosing: false,
    ...(edge.tls ? { https: edge.tls } : {}),
  }) as unknown as FastifyInstance;
  // Every route declares its schemas (strict ajv, no coercion); JSON bodies have a depth cap.
  const routes = installValidation(app);
  // Uploads are raw streams the handler consumes.
  // An empty one is no body: glanceclient sends its DELETEs and tag PUTs as empty octet-streams.
  app.addContentTypeParser('application/octet-stream', (req, payload, done) => {
    const empty = req.headers['content-length'] === '0' && !req.headers['transfer-encoding'];
    done(null, empty ? undefined : payload);
  });

  const state = { url: '' };
  const ctx: DaemonContext = {
    db, dataDir: opts.dataDir, log, jobs, events, peerTrust: edge.peerTrust,
    get publicUrl() { return state.url; },
    serviceUrl: (type) => serviceUrl(type),
    auth: callerOf,
    requireAdmin: (req) => {
      const a = callerOf(req);
      if (!a.isAdmin) throw new CloudletError('Forbidden', 'this call needs the admin role');
      return a;
    },
    stillValid: async (a) => {
      const now = await identity.validate(a.token);
      return !!now && now.userId === a.userId && now.projectId === a.projectId;
    },
  };
  const serviceUrl = (type: string): string => {
    const mod = modules.find((m) => m.serviceType === type);
    return opts.serviceUrls?.[type] ?? (mod ? state.url + mod.prefix : '');
  };

  const modules: ApiModule[] = [
    // The daemon is its own Keystone unless an external one validates tokens.
    ...(identity instanceof EmbeddedIdentity ? [identityModule(identity.store, () => catalog())] : []),
    cloudletModule(jobs, events),
    ...(opts.modules ?? builtinModules({ config, dataDir: opts.dataDir })),
  ];
  const catalog = () => modules.map((m) => ({
    id: m.serviceType, type: m.serviceType, name: serviceName(m.serviceType),
    endpoints: ['public', 'internal'].map((iface) => ({
      id: `${m.serviceType}-${iface}`, interface: iface, region, region_id: region, url: serviceUrl(m.serviceType),
    })),
  }));

  for (const m of modules) m.migrate(db);
  // Every request's caller is resolved before its route runs (an external Keystone is a network call).
  app.addHook('onRequest', resolveCaller(identity));
  // Where a 401 sends clients: the configured URL, never the request's Host header.
  const authUrl = () => identity.externalAuthUrl ?? `${serviceUrl('identity')}/v3`;
  for (const m of modules) {
    await app.register(async (scoped) => {
      scoped.setErrorHandler((err, req, reply) => sendError(m.serviceType, err as Error, req, reply, log, authUrl()));
      scoped.setNotFoundHandler((req, reply) => sendError(m.serviceType, new CloudletError('NotFound', `no such resource: ${req.method} ${req.url.split('?')[0]}`), req, reply, log, authUrl()));
      m.routes(scoped, ctx);
    }, { prefix: m.prefix });
    if (m.rootRoutes) {
      await app.register(async (scoped) => {
        scoped.setErrorHandler((err, req, reply) => sendError(m.serviceType, err as Error, req, reply, log, authUrl()));
        m.rootRoutes!(scoped, ctx);
      }, { prefix: m.prefix.replace(/\/[^/]+$/, '') });
    }
  }
  app.setErrorHandler((err, req, reply) => sendError('identity', err as Error, req, reply, log, authUrl()));
  app.setNotFoundHandler((req, reply) => void reply.code(404).send(errorBodyFor('identity', 404, `no such resource: ${req.method} ${req.url.split('?')[0]}`, { code: 'NotFound' })));
  // The root lists where each service lives, like a devstack host's landing page.
  // In a fleet, identity is the external Keystone: clients given this URL find where to log in.
  app.get('/', { schema: cloudletSchemas.root }, async () => ({ cloudlet: true, region, identity_provider: identity.kind,
    services: { ...Object.fromEntries(modules.map((m) => [m.serviceType, serviceUrl(m.serviceType)])), ...(identity.externalAuthUrl ? { identity: identity.externalAuthUrl } : {}) } }));

  const extraServers: http.Server[] = [];
  try {
    await app.listen({ host: opts.host, port: opts.port }).catch((e: NodeJS.ErrnoException) => { throw listenError(e, opts.host, opts.port); });
    for (const [h, p] of extraAddrs) {
      const handler = (req: http.IncomingMessage, res: http.ServerResponse) => app.routing(req, res);
      const s = edge.tls ? https.createServer(edge.tls, handler) : http.createServer(handler);
      extraServers.push(s);
      await new Promise<void>((resolve, reject) => { s.once('error', (e) => reject(listenError(e, h, p))); s.listen(p, h, () => resolve()); });
    }
  } catch (e) {
    for (const s of extraServers) s.close();
    await app.close().catch(() => undefined);
    db.close();
    throw e;
  }
  const port = (app.server.address() as { port: number }).port;
  const hostInUrl = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  state.url = (opts.publicUrl ?? `${edge.scheme}://${hostInUrl}:${port}`).replace(/\/$/, '');
  for (const m of modules) await m.start?.(ctx);
  log.info(`listening on ${state.url} (data ${opts.dataDir}; identity ${identity.externalAuthUrl ?? 'embedded'}, region ${region})${edge.fingerprint ? `, TLS certificate SHA-256 ${edge.fingerprint}` : ''}`);
  const selfRegistration = config.identity?.provider === 'keystone' && config.identity.register_region
    ? registerSelf(config.identity, region, Object.fromEntries(modules.map((m) => [m.serviceType, serviceUrl(m.serviceType)])), log, edge.peerTrust) : undefined;

  let closing: Promise<void> | undefined;
  return {
    url: state.url, port, ctx, app, identity, jobs, events, config, routes, serviceUrl, fingerprint: edge.fingerprint,
    close: () => closing ??= (async () => {
      selfRegistration?.stop();
      await jobs.stopAll();
      for (const m of [...modules].reverse()) {
        try { await m.stop?.(); } catch (e) { log.warn(`stopping ${m.serviceType}: ${describeError(e)}`); }
      }
      for (const s of extraServers) { s.closeAllConnections(); await new Promise((r) => s.close(r)); }
      await app.close();
      identity.close?.();
      db.close();
    })(),
  };
}

export function splitHostPort(addr: string): [string, number] {
  const i = addr.lastIndexOf(':');
  const host = i > 0 ? addr.slice(0, i).replace(/^\[|\]$/g, '') : addr;
  const port = i > 0 ? Number(addr.slice(i + 1)) : NaN;
  if (!host || (port !== 0 && !isTcpPort(port))) throw new CloudletError('BadInput', `not an ADDR:PORT: ${addr}`);
  return [host, port];
}

function sendError(serviceType: string, err: FastifyError | Error, req: FastifyRequest, reply: FastifyReply, log: Logger, authUrl: string): void {
  const { status, code, message, hint } = errorAnswer(err, req, log);
  // OpenStack clients show only the message: the hint goes into it as well as beside it.
  const shown = hint ? `${message} (${hint})` : message;
  // keystonemiddleware answers 401 for every service with the Keystone body and this header.
  const body = errorBodyFor(status === 401 ? 'identity' : serviceType, status, shown, { code, hint });
  if (status === 401) void reply.header('www-authenticate', `Keystone uri="${authUrl.replace(/\/v3$/, '')}"`);
  // Glance answers a client that did not ask for JSON (glanceclient) in HTML, as webob does.
  if (serviceType === 'image' && status !== 401 && !wantsJson(req.headers.accept)) {
    void reply.code(status).type('text/html; charset=UTF-8').send(glanceHtmlError(status, shown, { code, hint }));
    return;
  }
  void reply.code(status).send(body);
}

/** Status, code, message and hint of any error a route threw; what is no client error is logged and hidden. */
function errorAnswer(err: FastifyError | Error, req: FastifyRequest, log: Logger): { status: number; code: ErrorCode; message: string; hint?: string } {
  if (err instanceof CloudletError) {
    // cancelled: no client-closed status in OpenStack
    return { status: err.status === 499 ? 409 : err.status, code: err.code, message: hideHostPaths(err.message), hint: err.hint && hideHostPaths(err.hint) };
  }
  const fe = err as FastifyError;
  if (fe.validation) return { status: 400, code: 'BadInput', ...validationAnswer(fe.validation as ErrorObject[], fe.validationContext) };
  if (typeof fe.statusCode === 'number' && fe.statusCode < 500) {
    const malformed = fe.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err instanceof SyntaxError;
    return { status: fe.statusCode, code: codeForStatus(fe.statusCode), message: malformed ? `malformed request body: ${err.message}` : err.message };
  }
  log.error(`${req.method} ${req.url}: ${describeError(err)}`, err.stack ?? '');
  return { status: 500, code: 'Internal', message: 'internal error; see the daemon log' };
}
