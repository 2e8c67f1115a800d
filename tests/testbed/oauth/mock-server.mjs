// OAuth 2 / OIDC server for mailbox tests: the npm package oauth2-mock-server (its OAuth2Issuer and
// OAuth2Service, unmodified) plus what its CLI lacks:
//  * Microsoft-shaped paths: /{tenant}/v2.0/.well-known/openid-configuration, /{tenant}/.well-known/...,
//    /{tenant}/oauth2/v2.0/{authorize,token}  (MSAL needs an https authority with a path segment)
//  * the mailbox identity: login_hint on /authorize -> `email`/`preferred_username` claims in the access and
//    id tokens, carried over to refresh-token grants (the stock server always says sub=johndoe)
//  * the granted scope is the scope requested at /authorize (the stock server answers "dummy")
//  * authorization codes work once; refresh tokens it did not issue get invalid_grant (stock: any string works)
//  * /introspect (RFC 7662, form or JSON) and /userinfo verify the JWT's signature, issuer and expiry
//    (stock: active:true / sub:johndoe for anything)
//  * /revoke (RFC 7009) really revokes a refresh token it issued (stock: answers 200, forgets nothing)
//  * a test-control endpoint, POST /testbed/control with a JSON object (tests/testbed/oauth.py drives it):
//      {"revoke_user": "alice@example.test"}  every refresh token of that user gets invalid_grant from now on
//      {"revoke_all": true}                   every refresh token issued so far gets invalid_grant
//      {"access_ttl": 5}                      later access tokens expire after 5 s (null: back to 3600)
//      {"rotate_refresh": true}               a refresh token works once: each refresh grant returns a new one
//                                             and retires the old one (as Microsoft may); false: reusable
//      {"fail_token": {"count": 2, "status": 503, "error": "temporarily_unavailable"}}
//                                             the next 2 token requests fail with that status and error
//                                             (count 0 clears it)
//    It answers with the state: {"token_requests": {grant_type: n}, "refresh_tokens": n, ...}; GET too.
//    Loopback test servers only: it has no authentication.
// Usage: node mock-server.mjs [--host 127.0.0.1] [--port 18443|0] [--cert c.pem --key k.pem] [--jwk key.json]
//   --jwk FILE  signing key (private JWK); generated and written there if FILE does not exist yet
// Prints "OAuth 2 mock (oauth2-mock-server) ready: issuer <url>" once it listens.
import http from 'node:http';
import https from 'node:https';
import fs from 'node:fs';
import { OAuth2Issuer, OAuth2Service } from 'oauth2-mock-server';
import { jwtVerify, createLocalJWKSet } from 'jose';

const args = Object.fromEntries(process.argv.slice(2).reduce((a, v, i, arr) =>
  (v.startsWith('--') ? a.push([v.slice(2), arr[i + 1]]) : a, a), []));
const host = args.host ?? '127.0.0.1';
const port = Number(args.port ?? 18443);
const tls = args.cert && args.key;

const issuer = new OAuth2Issuer(false);     // false: issuer URL without a trailing slash
if (args.jwk && fs.existsSync(args.jwk)) {
  await issuer.keys.add(JSON.parse(fs.readFileSync(args.jwk, 'utf8')));
} else {
  await issuer.keys.generate('RS256');
  if (args.jwk) fs.writeFileSync(args.jwk, JSON.stringify(issuer.keys.toJSON(true)[0]), { mode: 0o600 });
}
const service = new OAuth2Service(issuer);

const codeUser = new Map();      // auth code -> {user: login_hint, scope}
const refreshUser = new Map();   // refresh token we issued -> {user, scope}
const control = { accessTtl: null, rotateRefresh: false, failToken: null, tokenRequests: {} };
service.on('beforeAuthorizeRedirect', (redirect, req) => {
  const code = redirect.url.searchParams.get('code');
  if (code) codeUser.set(code, { user: req.query.login_hint ?? 'johndoe@example.test', scope: req.query.scope });
});
const userFor = (body) => body.grant_type === 'authorization_code' ? codeUser.get(body.code)
  : body.grant_type === 'refresh_token' ? refreshUser.get(body.refresh_token) : undefined;
service.on('beforeTokenSigning', (token, req) => {
  const user = userFor(req.body);
  if (user) Object.assign(token.payload, { email: user.user, preferred_username: user.user, email_verified: true });
  if (user?.scope && !req.body.scope && token.payload.scope) token.payload.scope = user.scope;  // granted = requested
  token.payload.client_id ??= req.body.client_id;
  // access tokens only (they carry a scope; id tokens do not)
  if (control.accessTtl !== null && 'scope' in token.payload) token.payload.exp = token.payload.iat + control.accessTtl;
});
service.on('beforeResponse', (resp, req) => {
  const grant = req.body.grant_type ?? 'unknown';
  control.tokenRequests[grant] = (control.tokenRequests[grant] ?? 0) + 1;
  if (control.failToken) {        // injected failure: nothing else happens (the code stays unused, no new tokens)
    const f = control.failToken;
    if (--f.count <= 0) control.failToken = null;
    resp.statusCode = f.status; resp.body = { error: f.error, error_description: 'failure injected by the test bed' };
    return;
  }
  const user = userFor(req.body);
  if (req.body.grant_type === 'refresh_token' && !user) {
    resp.statusCode = 400; resp.body = { error: 'invalid_grant', error_description: 'unknown refresh token' }; return;
  }
  if (req.body.grant_type === 'authorization_code') codeUser.delete(req.body.code);   // codes are single use
  if (req.body.grant_type === 'refresh_token' && control.rotateRefresh) refreshUser.delete(req.body.refresh_token);
  if (user?.scope && !req.body.scope) resp.body.scope = user.scope;
  if (user && resp.body.refresh_token) refreshUser.set(resp.body.refresh_token, user);
  if (control.accessTtl !== null && resp.body.expires_in) resp.body.expires_in = control.accessTtl;
});

function state() {
  return { token_requests: control.tokenRequests, refresh_tokens: refreshUser.size, access_ttl: control.accessTtl,
           rotate_refresh: control.rotateRefresh, fail_token: control.failToken };
}
function applyControl(c) {
  if (c.revoke_user) for (const [t, u] of refreshUser) if (u.user === c.revoke_user) refreshUser.delete(t);
  if (c.revoke_all) refreshUser.clear();
  if ('access_ttl' in c) control.accessTtl = c.access_ttl === null ? null : Number(c.access_ttl);
  if ('rotate_refresh' in c) control.rotateRefresh = Boolean(c.rotate_refresh);
  if ('fail_token' in c) {
    const f = c.fail_token ?? {};
    control.failToken = f.count > 0 ? { count: Number(f.count), status: Number(f.status ?? 503),
      error: f.error ?? 'temporarily_unavailable' } : null;
  }
  if (c.reset_counters) control.tokenRequests = {};
}

async function verify(token) {
  const { payload } = await jwtVerify(token ?? '', createLocalJWKSet({ keys: issuer.keys.toJSON() }), { issuer: issuer.url });
  return payload;
}
function readBody(req) {
  return new Promise((ok) => { let b = ''; req.on('data', (c) => (b += c)); req.on('end', () => ok(b)); });
}
function json(res, status, obj) { res.writeHead(status, { 'content-type': 'application/json' }); res.end(JSON.stringify(obj)); }

async function listener(req, res) {
  const url = new URL(req.url, 'http://x');
  console.log(new Date().toISOString(), req.method, url.pathname);
  // Microsoft-shaped aliases -> the stock endpoints
  url.pathname = url.pathname
    .replace(/^\/[^/]+(\/v2\.0)?\/\.well-known\/openid-configuration$/, '/.well-known/openid-configuration')
    .replace(/^\/[^/]+\/oauth2\/v2\.0\/(authorize|token)$/, '/$1');
  req.url = url.pathname + url.search;
  try {
    if (url.pathname === '/testbed/control') {
      if (req.method === 'POST') applyControl(JSON.parse((await readBody(req)) || '{}'));
      return json(res, 200, state());
    }
    if (req.method === 'POST' && url.pathname === '/revoke') {
      // RFC 7009: 200 whether or not the token was known
      const token = new URLSearchParams(await readBody(req)).get('token');
      if (token) refreshUser.delete(token);
      return json(res, 200, {});
    }
    if (req.method === 'POST' && url.pathname === '/introspect') {
      const raw = await readBody(req);
      const token = (req.headers['content-type'] ?? '').includes('json') ? JSON.parse(raw).token : new URLSearchParams(raw).get('token');
      try { const p = await verify(token); return json(res, 200, { ...p, active: true, username: p.email ?? p.sub }); }
      catch (e) { console.log('introspect: invalid token:', e.code ?? e.message); return json(res, 200, { active: false }); }
    }
    if (req.method === 'GET' && url.pathname === '/userinfo') {
      const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
      try { const p = await verify(m?.[1]); return json(res, 200, { sub: p.sub, email: p.email, email_verified: true }); }
      catch { return json(res, 401, { error: 'invalid_token' }); }
    }
  } catch (e) { return json(res, 500, { error: String(e) }); }
  service.requestHandler(req, res);
}

const server = tls
  ? https.createServer({ key: fs.readFileSync(args.key), cert: fs.readFileSync(args.cert) }, listener)
  : http.createServer(listener);
server.listen(port, host, () => {
  // the issuer names the address really served (the stock CLI says https://localhost:PORT for 127.0.0.1)
  issuer.url = `${tls ? 'https' : 'http'}://${host}:${server.address().port}`;
  console.log(`OAuth 2 mock (oauth2-mock-server) ready: issuer ${issuer.url}`);
});
// close keep-alive connections too (Dovecot's introspection client keeps one), or close() waits for them
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => { server.close(() => process.exit(0)); server.closeAllConnections(); });
