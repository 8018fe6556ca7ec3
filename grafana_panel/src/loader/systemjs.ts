/**
 * SystemJS as Grafana's frontend sets it up for plugins (public/app/features/plugins/loader/systemjs.ts and
 * systemjsHooks.ts): the loader with its AMD and named-register extras, `define` kept aside as
 * `window.__grafana_amd_define`, AMD sources wrapped so they call that `define`, and every resolved id recorded
 * (the test checks that the plugin asked only for shared modules).
 */
import 'systemjs/dist/system.js';
import 'systemjs/dist/extras/amd.js';
import 'systemjs/dist/extras/named-register.js';

/** The part of SystemJS 6's API the host uses. */
export interface SystemJSLoader {
  import(id: string): Promise<Record<string, unknown>>;
  set(id: string, module: object): void;
  addImportMap(map: { imports: Record<string, string> }): void;
  resolve(id: string, parentUrl?: string): string;
  fetch(url: string, options?: RequestInit): Promise<Response>;
  constructor: { prototype: SystemJSLoader };
}

declare global {
  interface Window {
    System: SystemJSLoader;
    define?: unknown;
    __grafana_amd_define?: unknown;
  }
}

export const SystemJS = window.System;
window.__grafana_amd_define = window.define;

const AMD_MODULE = /(^|\n)\s*define\(/;
const JS_CONTENT_TYPE = /^(text|application)\/(x-)?javascript(;|$)/;

/** Ids the loaded code asked SystemJS to resolve, with what they resolved to. */
export const resolved: Array<{ id: string; url: string }> = [];

const proto = SystemJS.constructor.prototype;
const originalFetch = proto.fetch;
proto.fetch = async function (url: string, options?: RequestInit): Promise<Response> {
  const response = await originalFetch.call(this, url, options);
  if (!JS_CONTENT_TYPE.test(response.headers.get('content-type') ?? '')) {
    return response;
  }
  const source = await response.text();
  const wrapped = AMD_MODULE.test(source) ? `(function(define) {\n${source}\n})(window.__grafana_amd_define);` : source;
  return new Response(new Blob([wrapped], { type: 'text/javascript' }));
};

const originalResolve = proto.resolve;
proto.resolve = function (id: string, parentUrl?: string): string {
  const url = originalResolve.call(this, id, parentUrl);
  resolved.push({ id, url });
  return url;
};
