// Who may use the approval page: a bearer of the token (constant-time compare), and for a
// state-changing request, only the page itself (CSRF token in a custom header, same origin).
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/** The cookie that carries the token once the page was opened with `?token=` (one per port: cookies ignore ports). */
export function tokenCookie(port: number): string {
  return `switchboard_token_${port}`;
}
/** The header a POST must carry with the page's CSRF token. */
export const CSRF_HEADER = 'x-switchboard-csrf';

/** A fresh random token: 32 bytes, base64url. */
export function newToken(): string {
  return randomBytes(32).toString('base64url');
}

/** True when `given` is the token: both are hashed first, so the compare is constant-time and length-blind. */
export function tokenMatches(given: string | undefined, token: string): boolean {
  if (given === undefined) return false;
  const a = createHash('sha256').update(given, 'utf8').digest();
  const b = createHash('sha256').update(token, 'utf8').digest();
  return timingSafeEqual(a, b);
}

/** The CSRF token the page sends back in {@link CSRF_HEADER}: derived from the token, useless without the page. */
export function csrfFor(token: string): string {
  return createHmac('sha256', token).update('agent-switchboard csrf v1').digest('hex');
}

/** The token a request presents: `Authorization: Bearer`, `?token=` (a sign-in), or the cookie (in that order). */
export function presentedToken(req: IncomingMessage, url: URL, cookieName: string): string | undefined {
  const auth = req.headers.authorization;
  if (typeof auth === 'string' && auth.startsWith('Bearer ')) return auth.slice(7).trim();
  const query = url.searchParams.get('token');
  if (query !== null) return query;
  return readCookie(req.headers.cookie, cookieName);
}

function readCookie(header: string | undefined, name: string): string | undefined {
  if (typeof header !== 'string' || header.length > 8192) return undefined;
  for (const part of header.split(';')) {
    const at = part.indexOf('=');
    if (at > 0 && part.slice(0, at).trim() === name) {
      try {
        return decodeURIComponent(part.slice(at + 1).trim());
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

/**
 * Why a state-changing request is refused as a possible cross-site request, or undefined
 * when it is the page's own: the CSRF header matches, the `Origin` (when sent) is this
 * server, and `Sec-Fetch-Site` (when sent) is `same-origin`.
 */
export function csrfRefusal(req: IncomingMessage, token: string, origin: string): string | undefined {
  const header = req.headers[CSRF_HEADER];
  if (typeof header !== 'string' || !tokenMatches(header, csrfFor(token))) return `missing or wrong ${CSRF_HEADER} header`;
  const from = req.headers.origin;
  if (from !== undefined && from !== origin) return `cross-origin request from ${JSON.stringify(from.slice(0, 200))}`;
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin') return `Sec-Fetch-Site is ${JSON.stringify(String(site).slice(0, 50))}`;
  return undefined;
}
