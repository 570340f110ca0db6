// Why this file exists: Relay's integration tests need a real, certified OpenID Connect
// authorization server to prove that Relay interoperates with something other than our own
// fake. This script runs panva's `oidc-provider` on the loopback interface with one confidential
// client and a headless "auto-approve" interaction, so a test can drive the whole authorization
// code + PKCE flow over plain HTTP without a browser or a human.
//
// Usage: node server.mjs [PORT]   (PORT defaults to $PORT, then 0 = any free port)
// Prints exactly one line `READY http://127.0.0.1:PORT` on stdout once it accepts connections.
//
// Environment:
//   RELAY_REDIRECT_URIS   redirect URIs of the client, separated by commas or whitespace
//                         (default http://127.0.0.1/callback)
//   OIDC_CLIENT_ID        client id (default relay-test)
//   OIDC_CLIENT_SECRET    client secret (default relay-secret)
//   OIDC_AUTH_METHOD      token endpoint auth method (default client_secret_basic)
//   ACCESS_TOKEN_TTL      access token lifetime in seconds (default 3600)
//   REFRESH_TOKEN_TTL     refresh token lifetime in seconds (default 14 days)
//   ROTATE_REFRESH_TOKENS "false" to keep refresh tokens on refresh (default: rotate every time)
//   ALWAYS_ISSUE_REFRESH_TOKEN "true" to issue refresh tokens even without offline_access
//   OIDC_ACCOUNT_ID       account that is logged in automatically (default user-1)
//
// Interaction scripting through the authorization request itself:
//   login_hint=<id>       logs in account <id> instead of OIDC_ACCOUNT_ID
//   login_hint=deny       the "user" refuses: the client gets error=access_denied

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const env = process.env;

function positiveInt(name, fallback) {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number.parseInt(raw, 10);
  if (!Number.isFinite(value) || value <= 0) {
    throw new Error(`${name} must be a positive integer of seconds, got ${raw}`);
  }
  return value;
}

const portArg = process.argv[2] ?? env.PORT ?? '0';
const port = Number.parseInt(portArg, 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  throw new Error(`invalid port ${portArg}`);
}

const redirectUris = (env.RELAY_REDIRECT_URIS ?? 'http://127.0.0.1/callback')
  .split(/[\s,]+/)
  .filter(Boolean);
const clientId = env.OIDC_CLIENT_ID || 'relay-test';
const clientSecret = env.OIDC_CLIENT_SECRET || 'relay-secret';
const authMethod = env.OIDC_AUTH_METHOD || 'client_secret_basic';
const accessTokenTtl = positiveInt('ACCESS_TOKEN_TTL', 3600);
const refreshTokenTtl = positiveInt('REFRESH_TOKEN_TTL', 14 * 24 * 3600);
const rotate = env.ROTATE_REFRESH_TOKENS !== 'false';
const alwaysIssueRefresh = env.ALWAYS_ISSUE_REFRESH_TOKEN === 'true';
const defaultAccount = env.OIDC_ACCOUNT_ID || 'user-1';

// Fresh keys each run: nothing secret is ever written to the repository.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), use: 'sig', alg: 'RS256', kid: 'relay-test-rs256' };

// The issuer contains the port, and the provider needs its issuer up front: so bind first,
// then build the provider and route requests to it.
let handler = (_req, res) => {
  res.statusCode = 503;
  res.end();
};
const server = createServer((req, res) => handler(req, res));

await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, '127.0.0.1', resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;

function accountClaims(accountId) {
  return {
    sub: accountId,
    email: `${accountId}@example.test`,
    email_verified: true,
    name: `Test User ${accountId}`,
  };
}

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: redirectUris,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: authMethod,
    },
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  scopes: ['openid', 'offline_access', 'email', 'profile'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  async findAccount(_ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return accountClaims(sub);
      },
    };
  },
  features: {
    devInteractions: { enabled: false },
    revocation: { enabled: true },
    introspection: { enabled: true },
    userinfo: { enabled: true },
  },
  pkce: {
    methods: ['S256'],
    required: () => true,
  },
  interactions: {
    url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
  },
  clientBasedCORS: () => false,
  rotateRefreshToken: () => rotate,
  async issueRefreshToken(_ctx, client, code) {
    if (!client.grantTypeAllowed('refresh_token')) return false;
    return alwaysIssueRefresh || code.scopes.has('offline_access');
  },
  ttl: {
    AccessToken: accessTokenTtl,
    AuthorizationCode: 60,
    IdToken: 3600,
    RefreshToken: refreshTokenTtl,
    Interaction: 600,
    Session: 3600,
    Grant: refreshTokenTtl,
  },
});

// Headless stand-in for the login + consent pages: logs the scripted account in and grants
// everything that was asked for, in a single step.
async function autoInteraction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;

  if (params.login_hint === 'deny') {
    await provider.interactionFinished(
      req,
      res,
      { error: 'access_denied', error_description: 'the end-user denied the request' },
      { mergeWithLastSubmission: false },
    );
    return;
  }

  const accountId = session?.accountId ?? (params.login_hint || defaultAccount);
  const result = {};
  if (prompt.name === 'login' || !session?.accountId) {
    result.login = { accountId };
  }

  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId, clientId: params.client_id });
  if (params.scope) grant.addOIDCScope(params.scope);
  const missingClaims = prompt.details?.missingOIDCClaims;
  if (missingClaims?.length) grant.addOIDCClaims(missingClaims);
  for (const [indicator, scopes] of Object.entries(prompt.details?.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  result.consent = { grantId: await grant.save() };

  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
}

const providerCallback = provider.callback();
handler = (req, res) => {
  const { pathname } = new URL(req.url, issuer);
  if (req.method === 'GET' && /^\/interaction\/[^/]+$/.test(pathname)) {
    autoInteraction(req, res).catch((err) => {
      console.error('interaction failed:', err);
      if (!res.headersSent) {
        res.statusCode = 400;
        res.setHeader('Content-Type', 'text/plain');
      }
      res.end(`interaction failed: ${err.message}`);
    });
    return;
  }
  providerCallback(req, res);
};

provider.on('server_error', (_ctx, err) => console.error('server_error:', err));

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    server.close();
    process.exit(0);
  });
}

console.log(`READY ${issuer}`);
