// A real, certified OpenID provider (panva/oidc-provider) for Switchboard's tests.
// Usage: node provider.js <port> <config.json>; the config holds the clients and the accounts (sub -> claims).
// It signs in any login with any password (oidc-provider's development interactions: a login form, then a
// consent form, both plain HTML a test can fill in like a browser). Prints "ready" once it listens.
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const [port, configPath] = process.argv.slice(2);
const { clients, accounts } = JSON.parse(readFileSync(configPath, 'utf8'));
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients,
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  // Put the scopes' claims in the id_token itself: Switchboard reads the groups from it.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  async findAccount(ctx, sub) {
    const claims = { email: `${sub}@example.test`, ...(accounts[sub] || {}), sub };
    return { accountId: sub, claims: async () => claims };
  },
});
provider.on('server_error', (ctx, error) => console.error('server_error', error));
provider.listen(Number(port), '127.0.0.1', () => console.log('ready'));
