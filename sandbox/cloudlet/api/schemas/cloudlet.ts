/** Schemas of the cloudlet service's routes (api/cloudlet.ts: jobs and event streams) and the daemon's root. */
import { NO_BODY, NO_QUERY, params } from './common';

const JOB = params('id');

export const cloudletSchemas = {
  root: { querystring: NO_QUERY },
  listJobs: { querystring: NO_QUERY },
  showJob: { querystring: NO_QUERY, params: JOB },
  cancelJob: { querystring: NO_QUERY, params: JOB, body: NO_BODY },
  jobEvents: { querystring: NO_QUERY, params: JOB },
  events: { querystring: NO_QUERY },
};
