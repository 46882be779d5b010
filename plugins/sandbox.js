// Pat's side of a plugin's V8 isolate (see plugins/runtime.py). Python evaluates this script in
// a fresh isolate, then the plugin's source as a script of its own, then `__pat.run()`. Nothing
// declared here is in the plugin's scope: this script leaves only the globals `pat` (the
// plugin's API) and `__pat` (Python's handle on the call), both frozen, non-writable and
// non-configurable, and `module`/`exports` for plugins written as CommonJS modules.
//
// Once its source has loaded, the plugin owns the isolate: it may replace any global, and any
// method or accessor of any prototype. So every intrinsic this script uses is captured here,
// before the plugin runs, and called through Reflect.apply; records are kept in null-prototype
// objects written with defineProperty; and the result Python gets is one JSON text assembled
// here from strings, never an object the plugin could have reached. Python still validates that
// text against a strict schema and checks every permission again: this script only keeps an
// honest result from being spoiled, it is not what keeps a plugin in its place.
//
// runtime.py fills in its two placeholders: the call's context (a string of JSON, the IIFE's
// argument: parsed, not written as an object literal, where a "__proto__" key from a message or
// a plugin's data would set a prototype) and the lookup of the hook functions a plugin's script
// may declare (from plugins.manifest.HOOKS).
//
// No timers (a hook runs once, synchronously) and no binary buffers: an ArrayBuffer's memory
// lives outside the V8 heap, where the isolate's hard memory limit does not see it. mini-racer
// declares its timers with `var`, which cannot be deleted: those are emptied instead.
(function (contextJson) {
  "use strict";
  const ctx = JSON.parse(contextJson);
  for (const name of ["setTimeout", "clearTimeout", "__timer_manager", "ArrayBuffer",
                      "SharedArrayBuffer", "DataView", "Atomics", "WebAssembly", "Int8Array",
                      "Uint8Array", "Uint8ClampedArray", "Int16Array", "Uint16Array", "Int32Array",
                      "Uint32Array", "Float16Array", "Float32Array", "Float64Array",
                      "BigInt64Array", "BigUint64Array"]) {
    if (!Reflect.deleteProperty(globalThis, name)) globalThis[name] = undefined;
  }
  const global = globalThis;
  const apply = Reflect.apply, defineProperty = Reflect.defineProperty;
  const getPrototypeOf = Reflect.getPrototypeOf;
  const freeze = Object.freeze, hasOwn = Object.hasOwn, objectKeys = Object.keys;
  const stringify = JSON.stringify, parse = JSON.parse;
  const isArray = Array.isArray, sortArray = Array.prototype.sort;
  const StringOf = String, NumberOf = Number, isInteger = Number.isInteger;
  const TypeErrorOf = TypeError, RangeErrorPrototype = RangeError.prototype;
  const RegExpOf = RegExp, regexpExec = RegExp.prototype.exec;
  const sliceString = String.prototype.slice, lowerCase = String.prototype.toLowerCase;
  const limits = ctx.limits;

  class PatPermissionError extends Error {
    constructor(message) {
      super(message);
      defineProperty(this, "name", {__proto__: null, value: "PatPermissionError"});
    }
  }
  freeze(PatPermissionError.prototype);
  freeze(PatPermissionError);

  // What this call has recorded. A list is a null-prototype object with its own count, so no
  // setter a plugin defines on Array.prototype or Object.prototype is ever involved.
  // Property descriptors have null prototypes too: defineProperty reads `get`, `set`, `value`...
  // through the prototype chain, where a plugin could have put its own.
  function list() { return {__proto__: null, count: 0}; }
  function append(into, item) {
    defineProperty(into, into.count, {__proto__: null, value: item, enumerable: true});
    into.count = into.count + 1;
  }
  function push(array, item) {
    defineProperty(array, array.length, {__proto__: null, value: item, writable: true,
                                         enumerable: true, configurable: true});
  }
  function joined(from) {
    let text = "";
    for (let i = 0; i < from.count; i++) text = text + (i ? "," : "") + from[i];
    return text;
  }
  const logs = list(), effects = list();
  const writes = {__proto__: null};  // key -> JSON text of the value, or null to delete
  const writtenKeys = list();
  const stored = {__proto__: null};  // the plugin's storage as the call began: key -> JSON text
  for (const key of objectKeys(ctx.storage)) {
    defineProperty(stored, key, {__proto__: null, value: stringify(ctx.storage[key]),
                                 enumerable: true});
  }
  // The first thing this call was refused. It stands even if the plugin catches the error:
  // a plugin that reaches beyond its permissions is denied, whatever it does next.
  let denial;
  let ran = false;

  function deny(message) {
    if (denial === undefined) denial = message;
    throw new PatPermissionError(message);
  }
  function matches(pattern, text) { return apply(regexpExec, pattern, [text]) !== null; }
  function cut(text, length) { return apply(sliceString, text, [0, length]); }
  function lower(text) { return apply(lowerCase, text, []); }
  function contains(items, wanted) {
    for (let i = 0; i < items.length; i++) if (items[i] === wanted) return true;
    return false;
  }
  function need(permission) {
    if (!contains(ctx.permissions, permission))
      deny("this plugin's manifest does not declare the '" + permission + "' permission");
  }
  function text(value) {
    if (typeof value === "string") return value;
    try {
      const json = stringify(value);
      return typeof json === "string" ? json : StringOf(value);
    } catch (e) {
      return "[a value that cannot be shown]";
    }
  }
  function logger(level) {
    return function (...parts) {
      let message = "";
      for (let i = 0; i < parts.length && message.length < limits.log_chars; i++)
        message = message + (i ? " " : "") + cut(text(parts[i]), limits.log_chars);
      if (logs.count < limits.logs)
        append(logs, '{"level":' + stringify(level) + ',"message":' +
                     stringify(cut(message, limits.log_chars)) + "}");
    };
  }
  function reachable(host, port) {
    const withPort = host + ":" + port;
    if (contains(ctx.hosts, host) || contains(ctx.hosts, withPort)) return;
    deny("host " + withPort + " is not both declared in the manifest and allowed by the " +
         "operator (PAT_PLUGIN_ALLOWED_HOSTS)");
  }
  const HTTP_URL = /^(https?):\/\/([a-z0-9.-]+)(?::([0-9]{1,5}))?(?:[/?#]|$)/i;
  const UNSAFE_URL = /[\s\\\x00-\x1f\x7f]/;
  const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,76}$/;
  const UNSAFE_VALUE = /[\r\n\x00]/, NOT_LATIN1 = /[^\x00-\xff]/;
  const EXPORT_NAME = /^[A-Za-z0-9_-]{1,64}$/;
  function effect(record) {
    if (effects.count >= limits.effects)
      deny("at most " + limits.effects + " effects per hook call");
    append(effects, record);
    return effects.count;
  }
  function forbiddenField(name, forbidden, prefixes) {
    if (contains(forbidden, name)) return true;
    for (let i = 0; i < prefixes.length; i++)
      if (cut(name, prefixes[i].length) === prefixes[i]) return true;
    return false;
  }
  // A plugin's own header fields as a JSON object text; those Pat sets itself are refused.
  function fields(source, forbidden, prefixes, what, latin1) {
    if (source === undefined || source === null) return "{}";
    if (typeof source !== "object") throw new TypeErrorOf(what + " headers must be an object");
    const names = objectKeys(source);
    if (names.length > limits.headers)
      throw new TypeErrorOf("at most " + limits.headers + " headers");
    let json = "";
    for (let i = 0; i < names.length; i++) {
      const name = StringOf(names[i]), value = StringOf(source[names[i]]);
      if (!matches(HEADER_NAME, name))
        throw new TypeErrorOf(stringify(name) + " is not a header name");
      if (forbiddenField(lower(name), forbidden, prefixes))
        deny(what + " may not set the " + name + " header: Pat sets it, or it is not the " +
             "plugin's to set");
      if (matches(UNSAFE_VALUE, value) || value.length > limits.header_chars)
        throw new TypeErrorOf("header " + name + " must be one line of at most " +
                              limits.header_chars + " characters");
      if (latin1 && matches(NOT_LATIN1, value))
        throw new TypeErrorOf("HTTP header " + name + " must be ISO-8859-1 text");
      json = json + (i ? "," : "") + stringify(name) + ":" + stringify(value);
    }
    return "{" + json + "}";
  }
  function http(method, url, body, options) {
    need("http");
    url = StringOf(url);
    const parts = apply(regexpExec, HTTP_URL, [url]);
    if (parts === null || matches(UNSAFE_URL, url) || url.length > limits.url_chars)
      throw new TypeErrorOf("pat.http needs an absolute http:// or https:// URL without " +
                            "credentials, spaces or backslashes");
    const scheme = lower(parts[1]), host = lower(parts[2]);
    const port = parts[3] !== undefined ? NumberOf(parts[3]) : scheme === "https" ? 443 : 80;
    if (port < 1 || port > 65535) throw new TypeErrorOf("pat.http needs a port from 1 to 65535");
    reachable(host, port);
    const headers = fields(options === undefined || options === null ? undefined : options.headers,
                           ctx.forbidden_http_headers, ctx.forbidden_http_prefixes, "pat.http",
                           true);
    let payload = null;
    if (body !== undefined) {
      payload = typeof body === "string" ? body : stringify(body);
      if (typeof payload !== "string") throw new TypeErrorOf("pat.http.post needs a JSON body");
      if (payload.length > limits.body_chars)
        throw new TypeErrorOf("the body is larger than " + limits.body_chars + " characters");
    }
    return effect('{"kind":"http","method":' + stringify(method) + ',"url":' + stringify(url) +
                  ',"headers":' + headers + ',"body":' + stringify(payload) + "}");
  }
  function headerValues(email, name) {
    const wanted = lower(StringOf(name));
    const found = [];
    const headers = email !== null && typeof email === "object" ? email.headers : undefined;
    if (!isArray(headers)) return found;
    for (let i = 0; i < headers.length; i++) {
      const header = headers[i];
      if (isArray(header) && lower(StringOf(header[0])) === wanted)
        push(found, StringOf(header[1]));
    }
    return found;
  }
  function links(email) {
    const found = [], seen = {__proto__: null};
    const source = email !== null && typeof email === "object"
      ? StringOf(email.text || "") + "\n" + StringOf(email.html || "") : "";
    const pattern = new RegExpOf("https?://[^\\s\"'<>()]+", "gi");
    const trailing = /[.,;:!?]+$/;
    for (let m = apply(regexpExec, pattern, [source]); m !== null;
         m = apply(regexpExec, pattern, [source])) {
      const end = apply(regexpExec, trailing, [m[0]]);
      const link = end === null ? m[0] : cut(m[0], m[0].length - end[0].length);
      if (!hasOwn(seen, link)) {
        defineProperty(seen, link, {__proto__: null, value: true});
        push(found, link);
      }
    }
    return found;
  }
  function storageKey(key) {
    key = StringOf(key);
    if (key.length < 1 || key.length > limits.key_chars || matches(/[\x00-\x1f\x7f]/, key))
      throw new TypeErrorOf("storage keys are 1-" + limits.key_chars +
                            " characters, without control characters");
    return key;
  }
  function write(key, json) {
    if (!hasOwn(writes, key)) append(writtenKeys, key);
    defineProperty(writes, key, {__proto__: null, value: json, writable: true, enumerable: true,
                                 configurable: true});
  }
  const settings = parse(stringify(ctx.settings));
  freeze(settings);
  const pat = freeze({
    plugin: freeze({id: ctx.plugin.id, version: ctx.plugin.version, tenant: ctx.plugin.tenant}),
    settings,
    logger: freeze({debug: logger("debug"), info: logger("info"), warn: logger("warn"),
                    error: logger("error")}),
    storage: freeze({
      get(key) {
        need("storage");
        key = storageKey(key);
        const json = hasOwn(writes, key) ? writes[key] : hasOwn(stored, key) ? stored[key] : null;
        return json === null ? undefined : parse(json);
      },
      set(key, value) {
        need("storage");
        key = storageKey(key);
        const json = value === undefined ? undefined : stringify(value);
        if (typeof json !== "string") throw new TypeErrorOf("pat.storage.set needs a JSON value");
        if (json.length > limits.value_chars)
          throw new TypeErrorOf("the value of " + key + " is larger than " + limits.value_chars +
                                " characters of JSON");
        write(key, json);
      },
      delete(key) { need("storage"); write(storageKey(key), null); },
      keys() {
        need("storage");
        const all = [], listed = {__proto__: null};
        function add(key) {
          if (hasOwn(listed, key)) return;
          defineProperty(listed, key, {__proto__: null, value: true});
          push(all, key);
        }
        const kept = objectKeys(stored);
        for (let i = 0; i < kept.length; i++) if (!hasOwn(writes, kept[i])) add(kept[i]);
        for (let i = 0; i < writtenKeys.count; i++)
          if (writes[writtenKeys[i]] !== null) add(writtenKeys[i]);
        return apply(sortArray, all, []);
      },
    }),
    http: freeze({
      get(url, options) { return http("GET", url, undefined, options); },
      post(url, body, options) { return http("POST", url, body, options); },
    }),
    email: freeze({
      header(email, name) { const v = headerValues(email, name); return v.length ? v[0] : null; },
      headers: headerValues,
      links,
      send(message) {
        need("smtp");
        if (message === null || typeof message !== "object")
          throw new TypeErrorOf("pat.email.send needs a message object");
        const host = lower(StringOf(message.host || "")), port = NumberOf(message.port || 25);
        if (!isInteger(port) || port < 1 || port > 65535)
          throw new TypeErrorOf("pat.email.send needs a port from 1 to 65535");
        reachable(host, port);
        const given = isArray(message.to) ? message.to : [message.to || ""];
        if (given.length < 1 || given.length > limits.recipients)
          throw new TypeErrorOf("pat.email.send needs 1 to " + limits.recipients + " recipients");
        let to = "";
        for (let i = 0; i < given.length; i++)
          to = to + (i ? "," : "") + stringify(StringOf(given[i]));
        const headers = fields(message.headers, ctx.forbidden_mail_headers, [], "pat.email.send",
                               false);
        return effect('{"kind":"smtp","host":' + stringify(host) + ',"port":' + stringify(port) +
                      ',"from":' + stringify(StringOf(message.from || "")) + ',"to":[' + to +
                      '],"subject":' + stringify(StringOf(message.subject || "")) +
                      ',"text":' + stringify(StringOf(message.text || "")) +
                      ',"headers":' + headers + "}");
      },
    }),
    export: freeze({
      csv(name, row) {
        need("export");
        name = StringOf(name);
        if (!matches(EXPORT_NAME, name))
          throw new TypeErrorOf("export names are 1-64 of A-Z, a-z, 0-9, _ and -");
        if (!isArray(row) || row.length > limits.csv_values)
          throw new TypeErrorOf("pat.export.csv needs an array of at most " + limits.csv_values +
                                " values");
        let values = "";
        for (let i = 0; i < row.length; i++) {
          const v = row[i], value = v === null || v === undefined ? "" : StringOf(v);
          values = values + (i ? "," : "") + stringify(cut(value, limits.csv_chars));
        }
        return effect('{"kind":"csv","name":' + stringify(name) + ',"row":[' + values + "]}");
      },
    }),
  });

  const declared = __PAT_DECLARED__;
  // `module` here is the global binding as the plugin left it (this closure declares none).
  function hookFunction(name) {
    const exported = typeof module === "object" && module !== null ? module.exports : undefined;
    if (exported !== null && (typeof exported === "object" || typeof exported === "function")) {
      const candidate = exported[name];
      if (typeof candidate === "function") return candidate;
    }
    const lookup = declared[name];
    return lookup === undefined ? undefined : lookup();
  }
  function describe(e) {
    try {
      const stack = e !== null && typeof e === "object" ? e.stack : undefined;
      if (typeof stack === "string") return cut(stack, limits.error_chars);
    } catch (ignored) {
      // A throwing `stack` getter: describe the value instead.
    }
    return "the plugin threw " + cut(text(e), limits.error_chars);
  }
  function overflowed(e) {
    try {
      return e !== null && typeof e === "object" && getPrototypeOf(e) === RangeErrorPrototype &&
             matches(/call stack/, StringOf(e.message));
    } catch (ignored) {
      return false;
    }
  }
  function result(status, error, value) {
    let json = '{"status":' + stringify(status);
    if (error !== undefined) json = json + ',"error":' + stringify(error);
    json = json + ',"logs":[' + joined(logs) + "]";
    if (status === "ok") {
      let written = "";
      for (let i = 0; i < writtenKeys.count; i++) {
        const key = writtenKeys[i], value = writes[key];
        written = written + (i ? "," : "") + stringify(key) + ":" +
                  (value === null ? "null" : '{"value":' + value + "}");
      }
      json = json + ',"value":' + value + ',"effects":[' + joined(effects) +
             '],"writes":{' + written + "}";
    }
    return json + "}";
  }
  // Python's one call into the isolate: the hook's result as JSON text.
  function run() {
    if (ran) throw new TypeErrorOf("__pat.run is Pat's to call, once");
    ran = true;
    let value;
    try {
      const hook = hookFunction(ctx.hook);
      if (typeof hook !== "function")
        throw new TypeErrorOf("the plugin defines no function " + ctx.hook);
      value = apply(hook, undefined, ctx.args);
    } catch (e) {
      if (denial !== undefined) return result("denied", denial);
      return result(overflowed(e) ? "stack_overflow" : "error", describe(e));
    }
    if (denial !== undefined) return result("denied", denial);
    try {
      if (value !== null && (typeof value === "object" || typeof value === "function") &&
          typeof value.then === "function")
        return result("malformed", ctx.hook + " returned a Promise: hooks must return their " +
                                   "result synchronously");
      const json = value === undefined ? "null" : stringify(value);
      if (typeof json !== "string")
        return result("malformed", ctx.hook + " returned a value that is not JSON " +
                                   "(a function or a symbol)");
      if (denial !== undefined) return result("denied", denial);
      return result("ok", undefined, json);
    } catch (e) {
      if (denial !== undefined) return result("denied", denial);
      return result("malformed", "the hook returned a value that is not JSON: " + describe(e));
    }
  }
  // The hooks the plugin defines, as a JSON list: checked against its manifest at install.
  function defined() {
    let json = "";
    for (let i = 0; i < ctx.known.length; i++) {
      const name = ctx.known[i];
      let found = false;
      try { found = typeof hookFunction(name) === "function"; } catch (ignored) { found = false; }
      if (found) json = json + (json ? "," : "") + stringify(name);
    }
    return "[" + json + "]";
  }

  defineProperty(global, "pat", {__proto__: null, value: pat, writable: false, enumerable: false,
                                 configurable: false});
  defineProperty(global, "__pat", {__proto__: null, value: freeze({__proto__: null, run, defined}),
                                   writable: false, enumerable: false, configurable: false});
  const commonjs = {exports: {}};
  defineProperty(global, "module", {__proto__: null, value: commonjs, writable: true,
                                    configurable: true});
  defineProperty(global, "exports", {__proto__: null, value: commonjs.exports, writable: true,
                                     configurable: true});
})(__PAT_CTX__);
//# sourceURL=pat-sandbox.js
