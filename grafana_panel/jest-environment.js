// jsdom, plus Node's own fetch (jsdom has none), so the page's /query client can talk to a real local server.
const JSDOMEnvironment = require('jest-environment-jsdom').default;

class JSDOMWithFetch extends JSDOMEnvironment {
  async setup() {
    await super.setup();
    Object.assign(this.global, { fetch, Request, Response, Headers });
  }
}

module.exports = JSDOMWithFetch;
