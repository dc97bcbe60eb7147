package filter

import (
	"slices"
)

// Requires reports whether e can hold only on documents whose value at path
// is one of vals, compared as strings (the content of a JSON string, the
// JSON text of any other value): it is so when e constrains path with = or
// in and string, true, false or null values, in every way e can hold. path
// is compared as written. A caller evaluating many expressions on one
// document can then skip, by one lookup, those whose values it does not
// have. ok is false when e says no such thing (then vals is nil);
// comparisons with numbers never constrain (10 equals 1e1).
func (e *Expr) Requires(path string) (vals []string, ok bool) {
	set, ok := requires(e.root, path)
	if !ok {
		return nil, false
	}
	vals = make([]string, 0, len(set))
	for v := range set {
		vals = append(vals, v)
	}
	slices.Sort(vals)
	return vals, true
}

func requires(n node, path string) (map[string]bool, bool) {
	switch n := n.(type) {
	case *cond:
		if n.path != path {
			return nil, false
		}
		var vals []value
		switch n.op {
		case opEq:
			vals = []value{n.val}
		case opIn:
			vals = n.set
		default:
			return nil, false
		}
		set := make(map[string]bool, len(vals))
		for _, v := range vals {
			if v.kind == kindNumber {
				return nil, false
			}
			set[v.str] = true
		}
		return set, true
	case andNode:
		// Every term must hold: each constraining term narrows the set.
		var acc map[string]bool
		for _, x := range n {
			set, ok := requires(x, path)
			if !ok {
				continue
			}
			if acc == nil {
				acc = set
				continue
			}
			for v := range acc {
				if !set[v] {
					delete(acc, v)
				}
			}
		}
		return acc, acc != nil
	case orNode:
		// One term is enough: the set holds only when every term has one.
		acc := map[string]bool{}
		for _, x := range n {
			set, ok := requires(x, path)
			if !ok {
				return nil, false
			}
			for v := range set {
				acc[v] = true
			}
		}
		return acc, true
	}
	return nil, false
}
