/**
 * The standalone page's bearer token for a backend run with `whyslow serve --auth-token`: asked for when
 * /query answers 401, kept in sessionStorage only (this tab, until it closes or the user signs out), never
 * put in the URL and never logged, and sent as `Authorization: Bearer <token>` on every request.
 */
export const TOKEN_KEY = 'whyslow.authToken';

function storage(): Storage | null {
  try {
    return window.sessionStorage;
  } catch {
    return null; // storage disabled: the token lives in memory for this page only
  }
}

export function loadToken(): string {
  return storage()?.getItem(TOKEN_KEY) ?? '';
}

export function saveToken(token: string): void {
  storage()?.setItem(TOKEN_KEY, token);
}

export function clearToken(): void {
  storage()?.removeItem(TOKEN_KEY);
}

/** Request headers carrying the token (none without one). */
export function authHeaders(token: string): Record<string, string> {
  const t = token.trim();
  return t ? { Authorization: `Bearer ${t}` } : {};
}
