// The lab's OpenID Provider: npm `oidc-provider` (OpenID Certified) on loopback, configured
// from the JSON file named by argv[2] (written by tests/lab/oidc.py): issuer, port, clients,
// users with their groups, token lifetimes. Sign-in is the package's development interaction
// (a login form that takes any name and password); the users' claims, groups included, come
// from the configuration, and a name it does not list signs in with no groups.
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const users = config.users || {};

const provider = new Provider(config.issuer, {
  clients: config.clients,
  cookies: { keys: [config.cookie_key] },
  pkce: { required: () => true },
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  // The claims of the scopes asked for go into the ID token too, as Keycloak and Authentik do.
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  ttl: { IdToken: 3600, AccessToken: 3600, Session: 3600, Grant: 3600, Interaction: 600, ...config.ttl },
  // Consent is given once for every scope: the relying party is the operator's own.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid email profile groups');
    await grant.save();
    return grant;
  },
  async findAccount(ctx, id) {
    const user = users[id] || {};
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          preferred_username: id,
          name: user.name || id,
          email: user.email || `${id}@idp.test`,
          email_verified: true,
          groups: user.groups || [],
        };
      },
    };
  },
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));
provider.listen(config.port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${config.issuer}`);
});
