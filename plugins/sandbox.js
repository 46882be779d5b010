// The sandbox script around a plugin (see plugins/runtime.py): its placeholders are replaced
// by the call's context, the plugin's source and the names of the hooks it may declare.
// No timers (a hook runs once, synchronously) and no binary buffers: an ArrayBuffer's memory lives
// outside the V8 heap, where the isolate's hard memory limit does not see it.
for (const name of ["setTimeout", "clearTimeout", "ArrayBuffer", "SharedArrayBuffer", "DataView",
                    "Atomics", "WebAssembly", "Int8Array", "Uint8Array", "Uint8ClampedArray",
                    "Int16Array", "Uint16Array", "Int32Array", "Uint32Array", "Float16Array",
                    "Float32Array", "Float64Array", "BigInt64Array", "BigUint64Array"]) {
  delete globalThis[name];
}
const __pat = (function () {
  const stringify = JSON.stringify, parse = JSON.parse, has = Object.prototype.hasOwnProperty;
  const freeze = Object.freeze, keysOf = Object.keys, isArray = Array.isArray;
  const ctx = __PAT_CTX__;
  const logs = [], effects = [], writes = {};
  class PatPermissionError extends Error {
    constructor(message) { super(message); this.name = "PatPermissionError"; }
  }
  function need(permission) {
    if (ctx.permissions.indexOf(permission) < 0)
      throw new PatPermissionError("this plugin's manifest does not declare the '" + permission +
                                   "' permission");
  }
  function text(value) {
    if (typeof value === "string") return value;
    try { const s = stringify(value); return s === undefined ? String(value) : s; }
    catch (e) { return String(value); }
  }
  function logger(level) {
    return function (...parts) {
      if (logs.length < 200) logs[logs.length] = {level, message: parts.map(text).join(" ").slice(0, 2000)};
    };
  }
  function reachable(host) {
    host = String(host).toLowerCase();
    const bare = host.split(":")[0];
    for (const allowed of ctx.hosts) if (allowed === host || allowed === bare) return;
    throw new PatPermissionError("host " + host + " is not both declared in the manifest and " +
                                 "allowed by the operator (PAT_PLUGIN_ALLOWED_HOSTS)");
  }
  function hostOf(url) {
    const m = /^https?:\/\/(?:[^\/?#@]*@)?([^\/?#]+)/i.exec(String(url));
    if (!m) throw new TypeError("pat.http needs an absolute http:// or https:// URL");
    return m[1];
  }
  function effect(e) {
    if (effects.length >= 20) throw new PatPermissionError("at most 20 effects per hook call");
    effects[effects.length] = parse(stringify(e));
    return effects.length;
  }
  function http(method, url, body, options) {
    need("http"); reachable(hostOf(url));
    const headers = (options && options.headers) || {};
    return effect({kind: "http", method, url: String(url), headers,
                   body: body === undefined ? null : (typeof body === "string" ? body : stringify(body))});
  }
  function headerValues(email, name) {
    const wanted = String(name).toLowerCase();
    return (email && isArray(email.headers) ? email.headers : [])
      .filter(h => String(h[0]).toLowerCase() === wanted).map(h => String(h[1]));
  }
  const store = ctx.storage;
  const pat = freeze({
    plugin: freeze({id: ctx.plugin.id, version: ctx.plugin.version, tenant: ctx.plugin.tenant}),
    settings: freeze(ctx.settings),
    logger: freeze({debug: logger("debug"), info: logger("info"), warn: logger("warn"),
                    error: logger("error")}),
    storage: freeze({
      get(key) {
        need("storage"); key = String(key);
        if (has.call(writes, key)) return writes[key] === null ? undefined : parse(stringify(writes[key].v));
        return has.call(store, key) ? parse(stringify(store[key])) : undefined;
      },
      set(key, value) {
        need("storage");
        if (value === undefined) throw new TypeError("pat.storage.set needs a JSON value");
        writes[String(key)] = {v: parse(stringify(value))};
      },
      delete(key) { need("storage"); writes[String(key)] = null; },
      keys() {
        need("storage");
        const all = new Set(keysOf(store));
        for (const k of keysOf(writes)) { if (writes[k] === null) all.delete(k); else all.add(k); }
        return [...all].sort();
      },
    }),
    http: freeze({
      get(url, options) { return http("GET", url, undefined, options); },
      post(url, body, options) { return http("POST", url, body, options); },
    }),
    email: freeze({
      header(email, name) { const v = headerValues(email, name); return v.length ? v[0] : null; },
      headers: headerValues,
      links(email) {
        const found = new Set();
        const source = String((email && email.text) || "") + "\n" + String((email && email.html) || "");
        for (const m of source.matchAll(/https?:\/\/[^\s"'<>()]+/gi)) found.add(m[0].replace(/[.,;:!?]+$/, ""));
        return [...found];
      },
      send(message) {
        need("smtp");
        if (!message || typeof message !== "object") throw new TypeError("pat.email.send needs a message object");
        const host = String(message.host || ""), port = Number(message.port || 25);
        reachable(host + ":" + port);
        return effect({kind: "smtp", host, port, from: String(message.from || ""),
                       to: isArray(message.to) ? message.to.map(String) : [String(message.to || "")],
                       subject: String(message.subject || ""), text: String(message.text || ""),
                       headers: message.headers || {}});
      },
    }),
    export: freeze({
      csv(name, row) {
        need("export");
        if (!isArray(row)) throw new TypeError("pat.export.csv needs an array of values");
        return effect({kind: "csv", name: String(name), row: row.map(v => v === null || v === undefined ? "" : String(v))});
      },
    }),
  });
  const module = {exports: {}};
  const hooks = (function (module, exports, pat) {__PAT_CODE__
;return {__PAT_DECLARED__};
  })(module, module.exports, pat);
  function describe(e) {
    if (e && typeof e === "object" && typeof e.stack === "string") return e.stack.slice(0, 2000);
    return "the plugin threw " + text(e).slice(0, 2000);
  }
  function hookFunction(name) {
    const exported = module.exports || {};
    return typeof exported[name] === "function" ? exported[name] : hooks[name];
  }
  function defined() {
    return stringify(ctx.known.filter(name => typeof hookFunction(name) === "function"));
  }
  function run() {
    const fn = hookFunction(ctx.hook);
    let out;
    try {
      if (typeof fn !== "function") throw new TypeError("the plugin defines no function " + ctx.hook);
      const value = fn.apply(undefined, ctx.args);
      if (value !== null && (typeof value === "object" || typeof value === "function") && typeof value.then === "function")
        out = {status: "malformed", error: ctx.hook + " returned a Promise: hooks must return their result synchronously"};
      else out = {status: "ok", value: value === undefined ? null : value};
    } catch (e) {
      const overflow = e instanceof RangeError && /call stack/.test(e.message);
      out = {status: e instanceof PatPermissionError ? "denied" : overflow ? "stack_overflow" : "error",
             error: describe(e)};
    }
    out.logs = logs; out.effects = effects; out.writes = writes;
    try {
      return stringify(out);
    } catch (e) {
      return stringify({status: "malformed", error: "the hook returned a value that is not JSON: " + describe(e),
                        logs, effects: [], writes: {}});
    }
  }
  return freeze({run, defined});
})();
