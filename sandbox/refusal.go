package sandbox

import (
	"fmt"
	"strings"
)

// RefusalError is a query the engine will never run (an unknown column, a
// row-level output, a column-class rule), with where in the query text it
// is: Pos is a 1-based character position, 0 when the refusal is about the
// query as a whole. It wraps ErrRefused. Nodes refuse these before the
// ledger: nothing is recorded and no budget is spent.
type RefusalError struct {
	Pos int
	Msg string
}

func (e *RefusalError) Error() string {
	if e.Pos > 0 {
		return fmt.Sprintf("%v: position %d: %s", ErrRefused, e.Pos, e.Msg)
	}
	return fmt.Sprintf("%v: %s", ErrRefused, e.Msg)
}

func (e *RefusalError) Unwrap() error { return ErrRefused }

// Clauses of a query, for positions.
const (
	inSelect  = "select"
	inWhere   = "where"
	inGroupBy = "group"
)

// refuseAt builds a RefusalError at the first use of column name in the
// clause of q's text (or anywhere, if not found there).
func refuseAt(q *Query, clause, name, format string, a ...any) error {
	return &RefusalError{Pos: position(q.Source, clause, name), Msg: fmt.Sprintf(format, a...)}
}

// position finds the 1-based position of identifier name in the clause of
// a query's text: a small scan of words outside string literals, kept apart
// from the parser so that it does not depend on how the parser is built.
// It returns 0 when the name is not found.
func position(src, clause, name string) int {
	type word struct {
		text string
		pos  int
	}
	var words []word
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '\'':
			j := i + 1
			for j < len(src) && !(src[j] == '\'' && (j+1 >= len(src) || src[j+1] != '\'')) {
				if src[j] == '\'' {
					j++
				}
				j++
			}
			i = j + 1
		case c == '"':
			j := strings.IndexByte(src[i+1:], '"')
			if j < 0 {
				return 0
			}
			words = append(words, word{strings.ToLower(src[i+1 : i+1+j]), i + 1})
			i += j + 2
		case isLetter(c):
			j := i
			for j < len(src) && (isLetter(src[j]) || isDigit(src[j])) {
				j++
			}
			words = append(words, word{strings.ToLower(src[i:j]), i + 1})
			i = j
		default:
			i++
		}
	}
	name = strings.ToLower(name)
	ends := map[string][]string{
		inSelect:  {"from"},
		inWhere:   {"group", "order", "limit"},
		inGroupBy: {"order", "limit"},
		"from":    {"where", "group", "order", "limit"},
	}
	start := -1
	for k, w := range words {
		if w.text == clause {
			start = k + 1
			break
		}
	}
	if start >= 0 {
	scan:
		for _, w := range words[start:] {
			for _, e := range ends[clause] {
				if w.text == e {
					break scan
				}
			}
			if w.text == name {
				return w.pos
			}
		}
	}
	for _, w := range words {
		if w.text == name {
			return w.pos
		}
	}
	return 0
}

// FromPosition is the position of the dataset's name after FROM.
func (q *Query) FromPosition() int { return position(q.Source, "from", q.From) }
