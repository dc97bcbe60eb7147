// RFC 6902 JSON Patch and RFC 6901 JSON Pointer, for the agent's page.
//
// AgentPatch.apply(doc, ops) applies the operations in order to doc, which
// it modifies in place, and returns the new document (a different value when
// an operation replaces the root). On error it throws a PatchError and doc
// may be partly patched: the caller must discard it (the page then asks the
// agent for a new snapshot).
(function (global) {
  "use strict";

  const hasOwn = (o, k) => Object.prototype.hasOwnProperty.call(o, k);
  const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
  const isContainer = (v) => v !== null && typeof v === "object";
  const indexRe = /^(0|[1-9][0-9]*)$/;

  class PatchError extends Error {
    constructor(msg) {
      super(msg);
      this.name = "PatchError";
    }
  }

  // parsePointer turns "/a/b~1c" into ["a", "b/c"].
  function parsePointer(p) {
    if (typeof p !== "string") throw new PatchError("pointer is not a string: " + JSON.stringify(p));
    if (p === "") return [];
    if (p[0] !== "/") throw new PatchError("pointer does not start with /: " + JSON.stringify(p));
    return p.slice(1).split("/").map((t) => {
      if (/~([^01]|$)/.test(t)) throw new PatchError("bad ~ escape in pointer " + JSON.stringify(p));
      return t.replace(/~1/g, "/").replace(/~0/g, "~");
    });
  }

  // formatPointer is the inverse of parsePointer.
  function formatPointer(tokens) {
    return tokens.map((t) => "/" + String(t).replace(/~/g, "~0").replace(/\//g, "~1")).join("");
  }

  function arrayIndex(arr, tok, allowEnd, path) {
    if (!indexRe.test(tok)) throw new PatchError("bad array index " + JSON.stringify(tok) + " in " + path);
    const i = Number(tok);
    if (i > arr.length || (!allowEnd && i === arr.length)) throw new PatchError("index " + i + " out of range in " + path);
    return i;
  }

  // lookup returns the value at tokens, or throws when there is none.
  function lookup(doc, tokens, path) {
    let v = doc;
    for (const t of tokens) {
      if (Array.isArray(v)) {
        v = v[arrayIndex(v, t, false, path)];
      } else if (isObject(v) && hasOwn(v, t)) {
        v = v[t];
      } else {
        throw new PatchError("path " + path + " does not exist");
      }
    }
    return v;
  }

  // setOwn sets an own property, including one named __proto__.
  function setOwn(obj, k, v) {
    if (k === "__proto__") {
      Object.defineProperty(obj, k, { value: v, writable: true, enumerable: true, configurable: true });
    } else {
      obj[k] = v;
    }
  }

  function clone(v) {
    if (!isContainer(v)) return v;
    if (Array.isArray(v)) return v.map(clone);
    const c = {};
    for (const k of Object.keys(v)) setOwn(c, k, clone(v[k]));
    return c;
  }

  function equal(a, b) {
    if (a === b) return true;
    if (!isContainer(a) || !isContainer(b)) return false;
    if (Array.isArray(a) !== Array.isArray(b)) return false;
    if (Array.isArray(a)) {
      if (a.length !== b.length) return false;
      for (let i = 0; i < a.length; i++) if (!equal(a[i], b[i])) return false;
      return true;
    }
    const ka = Object.keys(a);
    if (ka.length !== Object.keys(b).length) return false;
    for (const k of ka) if (!hasOwn(b, k) || !equal(a[k], b[k])) return false;
    return true;
  }

  function parentOf(doc, tokens, path) {
    const parent = lookup(doc, tokens.slice(0, -1), path);
    if (!isContainer(parent)) throw new PatchError("parent of " + path + " is not an object or array");
    return parent;
  }

  function add(doc, tokens, value, path) {
    if (tokens.length === 0) return value;
    const parent = parentOf(doc, tokens, path);
    const key = tokens[tokens.length - 1];
    if (Array.isArray(parent)) {
      if (key === "-") parent.push(value);
      else parent.splice(arrayIndex(parent, key, true, path), 0, value);
    } else {
      setOwn(parent, key, value);
    }
    return doc;
  }

  function remove(doc, tokens, path) {
    if (tokens.length === 0) throw new PatchError("cannot remove the whole document");
    const parent = parentOf(doc, tokens, path);
    const key = tokens[tokens.length - 1];
    if (Array.isArray(parent)) {
      parent.splice(arrayIndex(parent, key, false, path), 1);
    } else {
      if (!hasOwn(parent, key)) throw new PatchError("path " + path + " does not exist");
      delete parent[key];
    }
    return doc;
  }

  function replace(doc, tokens, value, path) {
    if (tokens.length === 0) return value;
    const parent = parentOf(doc, tokens, path);
    const key = tokens[tokens.length - 1];
    if (Array.isArray(parent)) {
      parent[arrayIndex(parent, key, false, path)] = value;
    } else {
      if (!hasOwn(parent, key)) throw new PatchError("path " + path + " does not exist");
      setOwn(parent, key, value);
    }
    return doc;
  }

  function needValue(op, i) {
    if (!hasOwn(op, "value")) throw new PatchError("operation " + i + " (" + op.op + ") has no value");
    return op.value;
  }

  // applyOp applies one operation and returns the document.
  function applyOp(doc, op, i) {
    if (!isObject(op)) throw new PatchError("operation " + i + " is not an object");
    const path = op.path;
    const tokens = parsePointer(path);
    switch (op.op) {
      case "add":
        return add(doc, tokens, clone(needValue(op, i)), path);
      case "remove":
        return remove(doc, tokens, path);
      case "replace":
        return replace(doc, tokens, clone(needValue(op, i)), path);
      case "move": {
        const from = parsePointer(op.from);
        if (op.from === path) {
          lookup(doc, from, op.from);
          return doc;
        }
        if (path.startsWith(op.from + "/")) throw new PatchError("cannot move " + op.from + " into its own child " + path);
        const v = lookup(doc, from, op.from);
        doc = remove(doc, from, op.from);
        return add(doc, tokens, v, path);
      }
      case "copy": {
        const v = clone(lookup(doc, parsePointer(op.from), op.from));
        return add(doc, tokens, v, path);
      }
      case "test":
        if (!equal(lookup(doc, tokens, path), needValue(op, i))) throw new PatchError("test failed at " + path);
        return doc;
    }
    throw new PatchError("operation " + i + ": unknown op " + JSON.stringify(op.op));
  }

  function apply(doc, ops) {
    if (!Array.isArray(ops)) throw new PatchError("patch is not an array");
    for (let i = 0; i < ops.length; i++) doc = applyOp(doc, ops[i], i);
    return doc;
  }

  global.AgentPatch = { apply, parsePointer, formatPointer, lookup, clone, equal, PatchError };
})(typeof window !== "undefined" ? window : globalThis);
