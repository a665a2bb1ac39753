package sandbox

import (
	"errors"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	pg "github.com/pganalyze/pg_query_go/v6"
	pgparser "github.com/pganalyze/pg_query_go/v6/parser"
)

// This file gets PostgreSQL's parse tree of a query from libpg_query.
//
// pg_query_go's Parse asks libpg_query for the tree as protobuf and decodes
// it with proto.Unmarshal. For a 10 KB query that costs ~1.2 ms of CPU, and
// little of it is parsing: protobuf-c packs each Node (a oneof of ~270
// node kinds) by visiting every one of its ~270 field descriptors, twice
// (size, then pack) and again per level of nesting, and the reflective Go
// decoder allocates its way through the result. libpg_query's JSON output
// of the same tree costs a quarter of the C time, and the tree's JSON for
// the node kinds a SELECT the sandbox runs is made of (below) is decoded
// here straight into pg_query_go's types, without reflection.
//
// The decoder knows a closed set of node kinds and, for each, every field
// libpg_query writes. Anything else (another node kind, a field it does
// not know, JSON it does not expect) makes it give up, and the query is
// parsed again by pg_query_go's own protobuf path: what the walker sees is
// the same tree either way (TestParseTreeMatchesProtobuf and
// FuzzParseTree compare them), only the rare query pays twice.

// errTreeFallback is the decoder giving up on a tree it does not fully
// know; parseTree then takes pg_query_go's protobuf path.
var errTreeFallback = errors.New("sandbox: parse tree needs the protobuf path")

// parseTree parses src with PostgreSQL's grammar. Errors are pg_query_go's
// (*pgparser.Error for a syntax error), as pg.Parse returns them. src is
// valid UTF-8 without NUL (ParseQuery checks).
func parseTree(src string) (*pg.ParseResult, error) {
	js, err := pgparser.ParseToJSON(src)
	if err != nil {
		return nil, err
	}
	if tree, err := decodeTree(js); err == nil {
		return tree, nil
	}
	return pg.Parse(src)
}

// decodeTree decodes libpg_query's JSON parse tree, or returns
// errTreeFallback.
func decodeTree(js string) (*pg.ParseResult, error) {
	d := &treeDecoder{s: js}
	tree := d.parseResult()
	d.ws()
	if d.err == nil && d.i != len(d.s) {
		d.fail()
	}
	if d.err != nil {
		return nil, d.err
	}
	return tree, nil
}

// treeDecoder reads JSON as libpg_query writes it. Its first error sticks:
// every method returns a zero value once err is set.
type treeDecoder struct {
	s     string
	i     int
	depth int
	err   error
	// Slabs of the most frequent node kinds: one allocation per 32 nodes
	// instead of one each (a tree's nodes live and die together).
	nodeSlab slab[pg.Node]
	consts   slab[pg.A_Const]
	strs     slab[pg.String]
	colRefs  slab[pg.ColumnRef]
	nConst   slab[pg.Node_AConst]
	nStr     slab[pg.Node_String_]
	nColRef  slab[pg.Node_ColumnRef]
	constStr slab[pg.A_Const_Sval]
	constInt slab[pg.A_Const_Ival]
	ints     slab[pg.Integer]
}

// slab hands out pointers into chunks of Ts.
type slab[T any] struct{ free []T }

func (s *slab[T]) new() *T {
	if len(s.free) == 0 {
		s.free = make([]T, 32)
	}
	x := &s.free[0]
	s.free = s.free[1:]
	return x
}

// maxTreeDepth bounds the decoder's recursion; deeper trees take the
// protobuf path (whose decoder has its own limit).
const maxTreeDepth = 1000

func (d *treeDecoder) fail() {
	if d.err == nil {
		d.err = errTreeFallback
	}
}

func (d *treeDecoder) ws() {
	for d.i < len(d.s) {
		switch d.s[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// next reports whether the object or array opened by open ('{' or '[')
// has another member, consuming the opening bracket on the first call
// (first true), the separating comma on later ones, and the closing
// bracket at the end.
func (d *treeDecoder) next(open byte, first *bool) bool {
	if d.err != nil {
		return false
	}
	d.ws()
	closer := byte('}')
	if open == '[' {
		closer = ']'
	}
	if *first {
		*first = false
		if d.i >= len(d.s) || d.s[d.i] != open {
			d.fail()
			return false
		}
		d.i++
		d.ws()
		if d.i < len(d.s) && d.s[d.i] == closer {
			d.i++
			return false
		}
		return true
	}
	if d.i < len(d.s) {
		switch d.s[d.i] {
		case ',':
			d.i++
			return true
		case closer:
			d.i++
			return false
		}
	}
	d.fail()
	return false
}

// key reads an object's key and its colon.
func (d *treeDecoder) key() string {
	k := d.str()
	d.ws()
	if d.err != nil || d.i >= len(d.s) || d.s[d.i] != ':' {
		d.fail()
		return ""
	}
	d.i++
	d.ws()
	return k
}

// str reads a JSON string. Without escapes it is a slice of the text (so
// the tree's strings keep the JSON text alive as long as the tree, which
// is what a query's plan and refusals need anyway; no copy per string).
func (d *treeDecoder) str() string {
	if d.err != nil {
		return ""
	}
	d.ws()
	if d.i >= len(d.s) || d.s[d.i] != '"' {
		d.fail()
		return ""
	}
	start := d.i + 1
	for j := start; j < len(d.s); j++ {
		switch c := d.s[j]; {
		case c == '"':
			d.i = j + 1
			return d.s[start:j]
		case c == '\\':
			return d.unescape(start)
		case c < 0x20:
			d.fail()
			return ""
		}
	}
	d.fail()
	return ""
}

// unescape reads a JSON string with escapes, from start (after the quote).
func (d *treeDecoder) unescape(start int) string {
	b := make([]byte, 0, 64)
	j := start
	for j < len(d.s) {
		c := d.s[j]
		switch {
		case c == '"':
			d.i = j + 1
			return string(b)
		case c < 0x20:
			d.fail()
			return ""
		case c != '\\':
			b = append(b, c)
			j++
			continue
		}
		if j+1 >= len(d.s) {
			break
		}
		j += 2
		switch d.s[j-1] {
		case '"', '\\', '/':
			b = append(b, d.s[j-1])
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, ok := d.hex4(j)
			if !ok {
				d.fail()
				return ""
			}
			j += 4
			if utf16.IsSurrogate(r) {
				r2, ok := rune(-1), false
				if j+6 <= len(d.s) && d.s[j] == '\\' && d.s[j+1] == 'u' {
					r2, ok = d.hex4(j + 2)
				}
				if ok {
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						r = dec
						j += 6
					} else {
						r = utf8.RuneError
					}
				} else {
					r = utf8.RuneError
				}
			}
			b = utf8.AppendRune(b, r)
		default:
			d.fail()
			return ""
		}
	}
	d.fail()
	return ""
}

func (d *treeDecoder) hex4(j int) (rune, bool) {
	if j+4 > len(d.s) {
		return 0, false
	}
	v, err := strconv.ParseUint(d.s[j:j+4], 16, 32)
	return rune(v), err == nil
}

// number reads a JSON integer.
func (d *treeDecoder) number() string {
	if d.err != nil {
		return ""
	}
	d.ws()
	j := d.i
	if j < len(d.s) && d.s[j] == '-' {
		j++
	}
	for j < len(d.s) && d.s[j] >= '0' && d.s[j] <= '9' {
		j++
	}
	n := d.s[d.i:j]
	d.i = j
	return n
}

func (d *treeDecoder) int32() int32 {
	n := d.number()
	if d.err != nil {
		return 0
	}
	v, err := strconv.ParseInt(n, 10, 32)
	if err != nil {
		d.fail()
	}
	return int32(v)
}

func (d *treeDecoder) uint32() uint32 {
	n := d.number()
	if d.err != nil {
		return 0
	}
	v, err := strconv.ParseUint(n, 10, 32)
	if err != nil {
		d.fail()
	}
	return uint32(v)
}

func (d *treeDecoder) bool() bool {
	if d.err != nil {
		return false
	}
	d.ws()
	switch {
	case len(d.s)-d.i >= 4 && d.s[d.i:d.i+4] == "true":
		d.i += 4
		return true
	case len(d.s)-d.i >= 5 && d.s[d.i:d.i+5] == "false":
		d.i += 5
		return false
	}
	d.fail()
	return false
}

// enum reads an enum's name as its number in values (pg_query_go's
// X_value maps).
func (d *treeDecoder) enum(values map[string]int32) int32 {
	name := d.str()
	v, ok := values[name]
	if !ok {
		d.fail()
	}
	return v
}

func (d *treeDecoder) parseResult() *pg.ParseResult {
	x := &pg.ParseResult{}
	for first := true; d.next('{', &first); {
		switch d.key() {
		case "version":
			x.Version = d.int32()
		case "stmts":
			for first := true; d.next('[', &first); {
				x.Stmts = append(x.Stmts, d.rawStmt())
			}
		default:
			d.fail()
		}
	}
	return x
}

func (d *treeDecoder) rawStmt() *pg.RawStmt {
	x := &pg.RawStmt{}
	for first := true; d.next('{', &first); {
		switch d.key() {
		case "stmt":
			x.Stmt = d.node()
		case "stmt_location":
			x.StmtLocation = d.int32()
		case "stmt_len":
			x.StmtLen = d.int32()
		default:
			d.fail()
		}
	}
	return x
}

// nodes reads an array of nodes.
func (d *treeDecoder) nodes() []*pg.Node {
	var out []*pg.Node
	for first := true; d.next('[', &first); {
		out = append(out, d.node())
	}
	return out
}

// node reads a Node: an object with one key, the node's kind ({} for a
// NULL list element, an empty Node).
func (d *treeDecoder) node() *pg.Node {
	if d.depth >= maxTreeDepth {
		d.fail()
		return nil
	}
	d.depth++
	n := d.nodeSlab.new()
	for first := true; d.next('{', &first); {
		if n.Node != nil {
			d.fail()
			return nil
		}
		switch d.key() {
		case "SelectStmt":
			n.Node = &pg.Node_SelectStmt{SelectStmt: d.selectStmt()}
		case "ResTarget":
			n.Node = &pg.Node_ResTarget{ResTarget: d.resTarget()}
		case "ColumnRef":
			x := d.nColRef.new()
			x.ColumnRef = d.columnRef()
			n.Node = x
		case "String":
			x := d.nStr.new()
			x.String_ = d.string_()
			n.Node = x
		case "Integer":
			n.Node = &pg.Node_Integer{Integer: d.integer()}
		case "Float":
			n.Node = &pg.Node_Float{Float: d.float()}
		case "Boolean":
			n.Node = &pg.Node_Boolean{Boolean: d.boolean()}
		case "A_Const":
			x := d.nConst.new()
			x.AConst = d.aConst()
			n.Node = x
		case "A_Expr":
			n.Node = &pg.Node_AExpr{AExpr: d.aExpr()}
		case "A_Star":
			n.Node = &pg.Node_AStar{AStar: d.aStar()}
		case "BoolExpr":
			n.Node = &pg.Node_BoolExpr{BoolExpr: d.boolExpr()}
		case "FuncCall":
			n.Node = &pg.Node_FuncCall{FuncCall: d.funcCall()}
		case "CaseExpr":
			n.Node = &pg.Node_CaseExpr{CaseExpr: d.caseExpr()}
		case "CaseWhen":
			n.Node = &pg.Node_CaseWhen{CaseWhen: d.caseWhen()}
		case "CoalesceExpr":
			n.Node = &pg.Node_CoalesceExpr{CoalesceExpr: d.coalesceExpr()}
		case "MinMaxExpr":
			n.Node = &pg.Node_MinMaxExpr{MinMaxExpr: d.minMaxExpr()}
		case "NullTest":
			n.Node = &pg.Node_NullTest{NullTest: d.nullTest()}
		case "TypeCast":
			n.Node = &pg.Node_TypeCast{TypeCast: d.typeCast()}
		case "RangeVar":
			n.Node = &pg.Node_RangeVar{RangeVar: d.rangeVar()}
		case "JoinExpr":
			n.Node = &pg.Node_JoinExpr{JoinExpr: d.joinExpr()}
		case "SortBy":
			n.Node = &pg.Node_SortBy{SortBy: d.sortBy()}
		case "List":
			n.Node = &pg.Node_List{List: d.list()}
		default:
			d.fail()
		}
	}
	d.depth--
	return n
}

func (d *treeDecoder) selectStmt() *pg.SelectStmt {
	x := &pg.SelectStmt{}
	for first := true; d.next('{', &first); {
		switch d.key() {
		case "distinctClause":
			x.DistinctClause = d.nodes()
		case "targetList":
			x.TargetList = d.nodes()
		case "fromClause":
			x.FromClause = d.nodes()
		case "whereClause":
			x.WhereClause = d.node()
		case "groupClause":
			x.GroupClause = d.nodes()
		case "groupDistinct":
			x.GroupDistinct = d.bool()
		case "havingClause":
			x.HavingClause = d.node()
		case "windowClause":
			x.WindowClause = d.nodes()
		case "valuesLists":
			x.ValuesLists = d.nodes()
		case "sortClause":
			x.SortClause = d.nodes()
		case "limitOffset":
			x.LimitOffset = d.node()
		case "limitCount":
			x.LimitCount = d.node()
		case "limitOption":
			x.LimitOption = pg.LimitOption(d.enum(pg.LimitOption_value))
		case "lockingClause":
			x.LockingClause = d.nodes()
		case "op":
			x.Op = pg.SetOperation(d.enum(pg.SetOperation_value))
		case "all":
			x.All = d.bool()
		default: // intoClause, withClause, larg, rarg
			d.fail()
		}
	}
	return x
}

func (d *treeDecoder) resTarget() *pg.ResTarget {
	x := &pg.ResTarget{}
	for first := true; d.next('{', &first); {
		switch d.key() {
		case "name":
			x.Name = d.str()
		case "indirection":
			x.Indirection = d.nodes()
		case "val":
			x.Val = d.node()
		case "location":
			x.Location = d.int32()
		default:
			d.fail()
		}
	}
	return x
}

func (d *treeDecoder) columnRef() *pg.ColumnRef {
	x := d.colRefs.new()
	for first := true; d.next('{', &first); {
		switch d.key() {
		case "fields":
			x.Fields = d.nodes()
		case "location":
			x.Location = d.int32()
		default:
			d.fail()
		}
	}
	return x
}

func (d *treeDecoder) string_() *pg.String {
	x := d.strs.new()
	for first := true; d.next('{', &first); {
		switch d.key() {
		case "sval":
			x.Sval = d.str()
		default:
			d.fail()
		}
	}
	return x
}

func (d *treeDecoder) integer() *pg.Integer {
	x := d.ints.new()
	for first := true; d.next('{', &first); {
		switch d.key() {
		case "ival":
			x.Ival = d.int32()
		default:
			d.fail()
		}
	}
	return x
}

func (d *treeDecoder) float() *pg.Float {
	x := &pg.Float{}
	for first := true; d.next('{', &first); {
		switch d.key() {
		case "fval":
			x.Fval = d.str()
		default:
			d.fail()
		}
	}
	return x
}

func (d *treeDecoder) boolean() *pg.Boolean {
	x := &pg.Boolean{}
	for first := true; d.next('{', &first); {
		switch d.key() {
		case "boolval":
			x.Boolval = d.bool()
		default:
			d.fail()
		}
	}
	return x
}

func (d *treeDecoder) bitString() *pg.BitString {
	x := &pg.BitString{}
	for first := true; d.next('{', &first); {
		switch d.key() {
		case "bsval":
			x.Bsval = d.str()
		default:
			d.fail()
		}
	}
	return x
}

func (d *treeDecoder) aConst() *pg.A_Const {
	x := d.consts.new()
	for first := true; d.next('{', &first); {
		switch d.key() {
		case "ival":
			v := d.constInt.new()
			v.Ival = d.integer()
			x.Val = v
		case "fval":
			x.Val = &pg.A_Const_Fval{Fval: d.float()}
		case "boolval":
			x.Val = &pg.A_Const_Boolval{Boolval: d.boolean()}
		case "sval":
			v := d.constStr.new()
			v.Sval = d.string_()
			x.Val = v
		case "bsval":
			x.Val = &pg.A_Const_Bsval{Bsval: d.bitString()}
		case "isnull":
			x.Isnull = d.bool()
		case "location":
			x.Location = d.int32()
		default:
			d.fail()
		}
	}
	return x
}

func (d *treeDecoder) aExpr() *pg.A_Expr {
	x := &pg.A_Expr{}
	for first := true; d.next('{', &first); {
		switch d.key() {
		case "kind":
			x.Kind = pg.A_Expr_Kind(d.enum(pg.A_Expr_Kind_value))
		case "name":
			x.Name = d.nodes()
		case "lexpr":
			x.Lexpr = d.node()
		case "rexpr":
			x.Rexpr = d.node()
		case "location":
			x.Location = d.int32()
		default:
			d.fail()
		}
	}
	return x
}

func (d *treeDecoder) aStar() *pg.A_Star {
	x := &pg.A_Star{}
	for first := true; d.next('{', &first); {
		d.key()
		d.fail()
	}
	return x
}

func (d *treeDecoder) boolExpr() *pg.BoolExpr {
	x := &pg.BoolExpr{}
	for first := true; d.next('{', &first); {
		switch d.key() {
		case "boolop":
			x.Boolop = pg.BoolExprType(d.enum(pg.BoolExprType_value))
		case "args":
			x.Args = d.nodes()
		case "location":
			x.Location = d.int32()
		default: // xpr
			d.fail()
		}
	}
	return x
}

func (d *treeDecoder) funcCall() *pg.FuncCall {
	x := &pg.FuncCall{}
	for first := true; d.next('{', &first); {
		switch d.key() {
		case "funcname":
			x.Funcname = d.nodes()
		case "args":
			x.Args = d.nodes()
		case "agg_order":
			x.AggOrder = d.nodes()
		case "agg_filter":
			x.AggFilter = d.node()
		case "agg_within_group":
			x.AggWithinGroup = d.bool()
		case "agg_star":
			x.AggStar = d.bool()
		case "agg_distinct":
			x.AggDistinct = d.bool()
		case "func_variadic":
			x.FuncVariadic = d.bool()
		case "funcformat":
			x.Funcformat = pg.CoercionForm(d.enum(pg.CoercionForm_value))
		case "location":
			x.Location = d.int32()
		default: // over
			d.fail()
		}
	}
	return x
}

func (d *treeDecoder) caseExpr() *pg.CaseExpr {
	x := &pg.CaseExpr{}
	for first := true; d.next('{', &first); {
		switch d.key() {
		case "casetype":
			x.Casetype = d.uint32()
		case "casecollid":
			x.Casecollid = d.uint32()
		case "arg":
			x.Arg = d.node()
		case "args":
			x.Args = d.nodes()
		case "defresult":
			x.Defresult = d.node()
		case "location":
			x.Location = d.int32()
		default: // xpr
			d.fail()
		}
	}
	return x
}

func (d *treeDecoder) caseWhen() *pg.CaseWhen {
	x := &pg.CaseWhen{}
	for first := true; d.next('{', &first); {
		switch d.key() {
		case "expr":
			x.Expr = d.node()
		case "result":
			x.Result = d.node()
		case "location":
			x.Location = d.int32()
		default: // xpr
			d.fail()
		}
	}
	return x
}

func (d *treeDecoder) coalesceExpr() *pg.CoalesceExpr {
	x := &pg.CoalesceExpr{}
	for first := true; d.next('{', &first); {
		switch d.key() {
		case "coalescetype":
			x.Coalescetype = d.uint32()
		case "coalescecollid":
			x.Coalescecollid = d.uint32()
		case "args":
			x.Args = d.nodes()
		case "location":
			x.Location = d.int32()
		default: // xpr
			d.fail()
		}
	}
	return x
}

func (d *treeDecoder) minMaxExpr() *pg.MinMaxExpr {
	x := &pg.MinMaxExpr{}
	for first := true; d.next('{', &first); {
		switch d.key() {
		case "minmaxtype":
			x.Minmaxtype = d.uint32()
		case "minmaxcollid":
			x.Minmaxcollid = d.uint32()
		case "inputcollid":
			x.Inputcollid = d.uint32()
		case "op":
			x.Op = pg.MinMaxOp(d.enum(pg.MinMaxOp_value))
		case "args":
			x.Args = d.nodes()
		case "location":
			x.Location = d.int32()
		default: // xpr
			d.fail()
		}
	}
	return x
}

func (d *treeDecoder) nullTest() *pg.NullTest {
	x := &pg.NullTest{}
	for first := true; d.next('{', &first); {
		switch d.key() {
		case "arg":
			x.Arg = d.node()
		case "nulltesttype":
			x.Nulltesttype = pg.NullTestType(d.enum(pg.NullTestType_value))
		case "argisrow":
			x.Argisrow = d.bool()
		case "location":
			x.Location = d.int32()
		default: // xpr
			d.fail()
		}
	}
	return x
}

func (d *treeDecoder) typeCast() *pg.TypeCast {
	x := &pg.TypeCast{}
	for first := true; d.next('{', &first); {
		switch d.key() {
		case "arg":
			x.Arg = d.node()
		case "typeName":
			x.TypeName = d.typeName()
		case "location":
			x.Location = d.int32()
		default:
			d.fail()
		}
	}
	return x
}

func (d *treeDecoder) typeName() *pg.TypeName {
	x := &pg.TypeName{}
	for first := true; d.next('{', &first); {
		switch d.key() {
		case "names":
			x.Names = d.nodes()
		case "typeOid":
			x.TypeOid = d.uint32()
		case "setof":
			x.Setof = d.bool()
		case "pct_type":
			x.PctType = d.bool()
		case "typmods":
			x.Typmods = d.nodes()
		case "typemod":
			x.Typemod = d.int32()
		case "arrayBounds":
			x.ArrayBounds = d.nodes()
		case "location":
			x.Location = d.int32()
		default:
			d.fail()
		}
	}
	return x
}

func (d *treeDecoder) rangeVar() *pg.RangeVar {
	x := &pg.RangeVar{}
	for first := true; d.next('{', &first); {
		switch d.key() {
		case "catalogname":
			x.Catalogname = d.str()
		case "schemaname":
			x.Schemaname = d.str()
		case "relname":
			x.Relname = d.str()
		case "inh":
			x.Inh = d.bool()
		case "relpersistence":
			x.Relpersistence = d.str()
		case "alias":
			x.Alias = d.alias()
		case "location":
			x.Location = d.int32()
		default:
			d.fail()
		}
	}
	return x
}

func (d *treeDecoder) alias() *pg.Alias {
	x := &pg.Alias{}
	for first := true; d.next('{', &first); {
		switch d.key() {
		case "aliasname":
			x.Aliasname = d.str()
		case "colnames":
			x.Colnames = d.nodes()
		default:
			d.fail()
		}
	}
	return x
}

func (d *treeDecoder) joinExpr() *pg.JoinExpr {
	x := &pg.JoinExpr{}
	for first := true; d.next('{', &first); {
		switch d.key() {
		case "jointype":
			x.Jointype = pg.JoinType(d.enum(pg.JoinType_value))
		case "isNatural":
			x.IsNatural = d.bool()
		case "larg":
			x.Larg = d.node()
		case "rarg":
			x.Rarg = d.node()
		case "usingClause":
			x.UsingClause = d.nodes()
		case "join_using_alias":
			x.JoinUsingAlias = d.alias()
		case "quals":
			x.Quals = d.node()
		case "alias":
			x.Alias = d.alias()
		case "rtindex":
			x.Rtindex = d.int32()
		default:
			d.fail()
		}
	}
	return x
}

func (d *treeDecoder) sortBy() *pg.SortBy {
	x := &pg.SortBy{}
	for first := true; d.next('{', &first); {
		switch d.key() {
		case "node":
			x.Node = d.node()
		case "sortby_dir":
			x.SortbyDir = pg.SortByDir(d.enum(pg.SortByDir_value))
		case "sortby_nulls":
			x.SortbyNulls = pg.SortByNulls(d.enum(pg.SortByNulls_value))
		case "useOp":
			x.UseOp = d.nodes()
		case "location":
			x.Location = d.int32()
		default:
			d.fail()
		}
	}
	return x
}

func (d *treeDecoder) list() *pg.List {
	x := &pg.List{}
	for first := true; d.next('{', &first); {
		switch d.key() {
		case "items":
			x.Items = d.nodes()
		default:
			d.fail()
		}
	}
	return x
}
