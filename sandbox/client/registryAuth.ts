/**
 * What a client sends a cloudlet with an oci:// synthesis (the server create's `cloudlet:registry_auth`):
 * this user's own stored login to the reference's registry (`cloudlet registry login`, `docker login`:
 * $DOCKER_CONFIG/config.json). A cloudlet does not lend its operator's login to projects, so a private
 * repository is pulled with the login of the user who asks, for that pull only.
 */
import { dockerConfigPath, lookupCredentials } from '../registry/credentials';
import { isOciUrl, parseReference } from '../registry/reference';

/** The login to send, or undefined (not oci://, or no login stored: the pull is anonymous). */
export function registryAuthFor(overlayUrl: string, file = dockerConfigPath()): { username: string; password: string } | undefined {
  if (!isOciUrl(overlayUrl)) return undefined;
  return lookupCredentials(parseReference(overlayUrl).registry, file)?.toRequestAuth();
}
