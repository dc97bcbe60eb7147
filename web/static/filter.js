// The filter language of the agent (SPEC section 6), evaluated in the page
// on event records.
//
// AgentFilter.parse(text) returns a predicate over a parsed JSON value, or
// throws a FilterError with a 1-based column. The grammar, the values and
// the comparison rules are the agent's (package filter). Paths are a subset
// of gjson: dot-separated keys with "\" escapes, array indexes, and "#" for
// an array's length. gjson queries "#(...)", wildcards, modifiers and pipes
// are refused with a message: filter those with `agent events --filter`.
// Regular expressions are JavaScript's, which agree with RE2 on the common
// syntax.
(function (global) {
  "use strict";

  class FilterError extends Error {
    constructor(msg, col) {
      super("column " + col + ": " + msg);
      this.name = "FilterError";
      this.column = col;
    }
  }

  const hasOwn = (o, k) => Object.prototype.hasOwnProperty.call(o, k);
  const numberRe = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$/;
  const isSpace = (c) => c === " " || c === "\t" || c === "\n" || c === "\r";
  const keywords = new Set(["and", "or", "not", "in"]);
  const maxDepth = 100;

  // Parser works on an array of code points so that columns count runes.
  class Parser {
    constructor(text) {
      this.s = Array.from(text);
      this.i = 0;
      this.depth = 0; // open parentheses and nots, bounded
      this.parens = 0; // parentheses open at this point
    }
    col() {
      return this.i + 1;
    }
    fail(msg, at) {
      throw new FilterError(msg, at === undefined ? this.col() : at + 1);
    }
    peek() {
      return this.s[this.i];
    }
    skip() {
      while (this.i < this.s.length && isSpace(this.s[this.i])) this.i++;
    }
    // word reads a keyword at the cursor without consuming it.
    keyword() {
      this.skip();
      for (const k of ["and", "or", "not", "in"]) {
        let ok = true;
        for (let j = 0; j < k.length; j++) if (this.s[this.i + j] !== k[j]) ok = false;
        const after = this.s[this.i + k.length];
        if (ok && (after === undefined || isSpace(after) || after === "(" || after === ")" || after === "[" || after === '"')) return k;
      }
      return "";
    }
    parse() {
      this.skip();
      if (this.i >= this.s.length) this.fail("empty filter");
      const e = this.or();
      this.skip();
      if (this.i < this.s.length) this.fail(this.peek() === ")" ? "unbalanced )" : "unexpected " + JSON.stringify(this.peek()));
      return e;
    }
    or() {
      let l = this.and();
      while (this.keyword() === "or") {
        this.i += 2;
        const a = l, b = this.and();
        l = (d) => a(d) || b(d);
      }
      return l;
    }
    and() {
      let l = this.unary();
      while (this.keyword() === "and") {
        this.i += 3;
        const a = l, b = this.unary();
        l = (d) => a(d) && b(d);
      }
      return l;
    }
    enter() {
      if (++this.depth > maxDepth) this.fail("nesting deeper than " + maxDepth);
    }
    unary() {
      this.skip();
      if (this.i >= this.s.length) this.fail("expected a condition");
      if (this.keyword() === "not") {
        this.i += 3;
        this.enter();
        const e = this.unary();
        this.depth--;
        return (d) => !e(d);
      }
      if (this.peek() === "(") {
        const open = this.i;
        this.i++;
        this.parens++;
        this.enter();
        const e = this.or();
        this.skip();
        if (this.peek() !== ")") this.fail("( at column " + (open + 1) + " is not closed");
        this.i++;
        this.parens--;
        this.depth--;
        return e;
      }
      return this.cond();
    }
    cond() {
      const start = this.i;
      const path = this.path();
      if (path.length === 0) this.fail("expected a path");
      if (keywords.has(this.s.slice(start, this.i).join(""))) this.fail("a path cannot be the keyword " + this.s.slice(start, this.i).join("") + " (write \\ before it)", start);
      const get = compilePath(path, start, this);
      const op = this.op();
      if (!op) return (d) => truthy(get(d));
      this.skip();
      const valAt = this.i;
      const v = this.value(op);
      if (op === "~" || op === "!~") {
        let re;
        try {
          re = new RegExp(strForm(v));
        } catch (e) {
          this.fail("bad regular expression: " + e.message, valAt);
        }
        const neg = op === "!~";
        return (d) => {
          const x = get(d);
          return x !== undefined && re.test(strForm(x)) !== neg;
        };
      }
      if (op === "in") {
        if (!Array.isArray(v)) this.fail("in needs an array value", valAt);
        return (d) => {
          const x = get(d);
          return x !== undefined && v.some((e) => compare(x, e) === 0);
        };
      }
      const test = {
        "=": (c) => c === 0, "==": (c) => c === 0, "!=": (c) => c !== 0,
        ">": (c) => c > 0, ">=": (c) => c >= 0, "<": (c) => c < 0, "<=": (c) => c <= 0,
      }[op];
      return (d) => {
        const x = get(d);
        return x !== undefined && test(compare(x, v));
      };
    }
    // path reads a path: to whitespace, = ! < > ~ or ), with \ escapes kept.
    path() {
      const out = [];
      while (this.i < this.s.length) {
        const c = this.s[this.i];
        if (isSpace(c) || "=!<>~)".includes(c)) break;
        if (c === "\\") {
          if (this.i + 1 >= this.s.length) this.fail("\\ at the end of the filter");
          out.push(c, this.s[this.i + 1]);
          this.i += 2;
          continue;
        }
        if (c === "(") this.fail("gjson queries are not supported in the page; use agent events --filter");
        out.push(c);
        this.i++;
      }
      return out;
    }
    op() {
      this.skip();
      const two = (this.s[this.i] || "") + (this.s[this.i + 1] || "");
      for (const o of ["==", "!=", "!~", ">=", "<="]) {
        if (two === o) {
          this.i += 2;
          return o;
        }
      }
      const c = this.peek();
      if (c === "=" || c === ">" || c === "<" || c === "~") {
        this.i++;
        return c;
      }
      if (c === "!") this.fail("expected != or !~");
      if (this.keyword() === "in") {
        this.i += 2;
        return "in";
      }
      return "";
    }
    value(op) {
      const at = this.i;
      const c = this.peek();
      if (c === undefined) this.fail("expected a value");
      if (c === '"') return this.json(this.scanString(), at);
      if (c === "[") {
        if (op !== "in") this.fail("an array value is for in only");
        return this.json(this.scanArray(), at);
      }
      const regex = op === "~" || op === "!~";
      let end = this.i;
      while (end < this.s.length && !isSpace(this.s[end])) {
        if (!regex && this.s[end] === ")") break;
        end++;
      }
      if (regex) {
        // Only the ) that close parentheses opened earlier are taken off.
        let open = this.parens;
        while (open > 0 && end > this.i && this.s[end - 1] === ")") {
          end--;
          open--;
        }
      }
      const word = this.s.slice(this.i, end).join("");
      if (word === "") this.fail("expected a value");
      this.i = end;
      if (regex) return word;
      if (word === "true") return true;
      if (word === "false") return false;
      if (word === "null") return null;
      if (numberRe.test(word)) return Number(word);
      if (!/^[\p{L}\p{N}_.\-:/@+]+$/u.test(word)) this.fail("bad value " + JSON.stringify(word) + " (quote it)", at);
      return word;
    }
    scanString() {
      const start = this.i;
      this.i++;
      while (this.i < this.s.length) {
        const c = this.s[this.i++];
        if (c === "\\") this.i++;
        else if (c === '"') return this.s.slice(start, this.i).join("");
      }
      this.fail("string not closed", start);
    }
    scanArray() {
      const start = this.i;
      let depth = 0;
      while (this.i < this.s.length) {
        const c = this.s[this.i];
        if (c === '"') {
          this.scanString();
          continue;
        }
        this.i++;
        if (c === "[") depth++;
        else if (c === "]" && --depth === 0) return this.s.slice(start, this.i).join("");
      }
      this.fail("array not closed", start);
    }
    json(text, at) {
      try {
        return JSON.parse(text);
      } catch (e) {
        this.fail("bad JSON value: " + e.message, at);
      }
    }
  }

  // compilePath turns a gjson path (subset) into a getter returning
  // undefined when the path does not exist.
  function compilePath(chars, start, p) {
    const keys = [];
    let cur = "";
    for (let j = 0; j < chars.length; j++) {
      const c = chars[j];
      if (c === "\\") {
        cur += chars[++j];
      } else if (c === ".") {
        keys.push(cur);
        cur = "";
      } else if (c === "*" || c === "?" || c === "|" || (c === "@" && cur === "") || (c === "#" && chars[j + 1] === "(")) {
        p.fail("gjson " + c + " is not supported in the page; use agent events --filter", start + j);
      } else {
        cur += c;
      }
    }
    keys.push(cur);
    return (d) => {
      let v = d;
      for (const k of keys) {
        if (Array.isArray(v)) {
          if (k === "#") v = v.length;
          else if (/^(0|[1-9][0-9]*)$/.test(k) && Number(k) < v.length) v = v[Number(k)];
          else return undefined;
        } else if (v !== null && typeof v === "object" && hasOwn(v, k)) {
          v = v[k];
        } else {
          return undefined;
        }
      }
      return v;
    };
  }

  function truthy(v) {
    if (v === undefined || v === null || v === false || v === 0 || v === "") return false;
    if (Array.isArray(v)) return v.length > 0;
    if (typeof v === "object") return Object.keys(v).length > 0;
    return true;
  }

  // strForm is how a value compares as a string: a string's content, the
  // JSON text of anything else.
  function strForm(v) {
    return typeof v === "string" ? v : JSON.stringify(v);
  }

  function compare(x, v) {
    if (typeof x === "number" && typeof v === "number") return x < v ? -1 : x > v ? 1 : 0;
    const a = strForm(x), b = strForm(v);
    return a < b ? -1 : a > b ? 1 : 0;
  }

  function parse(text) {
    return new Parser(String(text)).parse();
  }

  global.AgentFilter = { parse, FilterError };
})(typeof window !== "undefined" ? window : globalThis);
