// Package filter implements the filter expressions of the agent (SPEC section 6), the one
// language read by `agent wait --filter`, `agent daemon status --filter`,
// `agent events --filter` and hook filters.
//
// A filter is parsed once with [Parse] and evaluated many times with [Expr.Match] on a JSON
// document: the cluster data for wait and status, a stream record for events and hooks.
//
// # Grammar
//
//	expr  := or
//	or    := and { "or" and }
//	and   := unary { "and" unary }
//	unary := "not" unary | "(" expr ")" | cond
//	cond  := PATH [ OP VALUE ]
//	OP    := "=" | "==" | "!=" | ">" | ">=" | "<" | "<=" | "~" | "!~" | "in"
//
// "not" binds tighter than "and", which binds tighter than "or": `not a=1 or b and c` is
// `(not a=1) or (b and c)`. The keywords are lowercase; whitespace separates tokens and is
// otherwise free, so `a=1`, `a = 1` and `a == 1` are the same condition.
//
// PATH is a gjson path (https://github.com/tidwall/gjson, SYNTAX.md) handed to gjson as written,
// for instance `monitor.nodes.n1.frozen`. It runs until whitespace, one of `= ! < > ~`, or
// `)`; a backslash makes the next character part of the path, which is how a key holding a dot
// is written (`monitor.nodes.db1\.example\.com.status`). A "(" in a path opens a gjson query
// that runs to its matching ")", spaces and operators included, so that a patch record can be
// searched: `data.#(path%"*/frozen").value>0`. A path that would read as a keyword
// (`and`, `or`, `not`, `in`) is rejected; write `\in` to look up a key named "in". When gjson
// finds several values (wildcards), the first one is used.
//
// VALUE is one of
//   - a JSON literal: a number (`0`, `-1.5`, `1e9`), a string (`"a b"`), `true`, `false`,
//     `null`, or, after `in` and only there, an array of those (`["up","warn"]`);
//   - a bare word of letters, digits and `_ . - : / @`, taken as a string (`idle`,
//     `n1.example.com`, `2026-11-22T10:00:00Z`), unless it is a JSON number or true, false or
//     null. `01` or `+1` are not JSON numbers, so they are the strings "01" and "+1".
//
// After `~` and `!~` the value is an RE2 regular expression ([regexp/syntax]), searched for
// anywhere in the value (anchor it with ^ and $ to match the whole value). Written bare it runs
// to the next whitespace, so `data.id~^instance_` needs no quotes; only the `)` characters at
// its end that close parentheses opened earlier in the filter are taken off, so
// `(data.id~^(a|b))` holds the regular expression `^(a|b)`. A regular expression with spaces,
// or one that ends in `)` inside parentheses, is written as a JSON string: `data.id~"^a b$"`.
// A regular expression that does not compile is a syntax error at the value's column.
//
// # Evaluation
//
// A PATH alone holds when the path exists and its value is not false, 0, "", null, [] or {}.
//
// Every comparison on a path that does not exist is false, whatever the operator: `a!=1` and
// `a!~x` are false when there is no a, like `a=1` and `a~x`. This keeps "the value is present
// and differs" apart from "there is no value"; write `not a=1` for "a is not 1, or there is no
// a", and `not a` for "a is missing or empty". A JSON null is a value, not a missing path.
//
// When both the document's value and VALUE are numbers they compare as numbers (as float64,
// so integers beyond 2^53 may compare equal). Everything else compares as strings, byte by
// byte: a JSON string by its content, any other value by its JSON text (`true`, `null`,
// `10`, `["n1"]`). So a document's number 10 equals the value "10", and a document's string
// "10" sorts before 9, as "10" sorts before "9"; `frozen=true` holds for the boolean true and
// for the string "true". `~` and `!~` search the same string form, so `seq~^12` works on a
// number and `up~"\"n1\""` on an array. `=` and `==` are the same operator. `in` holds when
// the value equals, by these rules, at least one element of the array; an array in the
// document is one value, not a set of elements (`up in ["n1"]` does not hold for ["n1"]):
// ask gjson whether it holds an element with `up.#(=="n1")`.
//
// The document should be valid JSON; on anything else Match still returns, with an
// unspecified result.
//
// # Errors and canonical form
//
// Parse returns a [*SyntaxError] that names the 1-based column, counted in runes, where the
// filter went wrong. Parse never panics, and nesting deeper than 100 parentheses or "not"s is
// an error rather than a risk to the stack.
//
// [Expr.String] prints a canonical form (minimal parentheses, `=` for `==`, values quoted only
// when needed) that parses back to the same form.
//
// # Concurrency
//
// An [Expr] does not change after Parse: any number of goroutines may call its methods at the
// same time. Match does not keep or modify the document.
package filter
