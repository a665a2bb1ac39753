package sandbox

import (
	"bufio"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	pg "github.com/pganalyze/pg_query_go/v6"
	pgparser "github.com/pganalyze/pg_query_go/v6/parser"
	"google.golang.org/protobuf/proto"
)

// treeQueries cover every node kind and field the JSON decoder reads, the
// string escapes libpg_query writes, and kinds it leaves to the protobuf
// path.
var treeQueries = []struct {
	name, sql string
	fast      bool // decoded from JSON, without the protobuf path
}{
	{"aliases, CASE, post-processing, HAVING, ORDER BY, LIMIT", query10KB(), true},
	{"constants of every kind", `SELECT 1, 0, -3, 1.5, -2.5e-3, 'x', NULL, true, false, B'101', X'1f', 2147483648 FROM t`, true},
	{"string escapes", "SELECT COUNT(*) FROM t WHERE s IN ('q\"\\\\', E'tab\\there\\nnl', '<>&', 'é', '日本', '😀', E'\\x01\\x1f', U&'\\0041')", true},
	{"unicode identifiers", `SELECT "Région", "日本", COUNT(*) FROM "Tåble" GROUP BY 1, 2`, true},
	{"functions and aggregates", `SELECT COUNT(*), COUNT(DISTINCT a), SUM(a) FILTER (WHERE b > 1), string_agg(a, ',' ORDER BY a), VARIADIC_F(VARIADIC ARRAY[1]), percentile_cont(0.5) WITHIN GROUP (ORDER BY a) FROM t`, false},
	{"plain aggregates", `SELECT COUNT(*), COUNT(DISTINCT a), SUM(a) FILTER (WHERE b > 1), max(a ORDER BY a) FROM t`, true},
	{"operators", `SELECT SUM(a * 2 - 1) / COUNT(*), -AVG(a), POWER(AVG(a), 2), a || b, a % 2, a ^ 2 FROM t WHERE a <> 1 AND b != 2 AND c >= 3 AND d <= 4 AND e LIKE 'x%' AND f NOT ILIKE 'y' AND g SIMILAR TO 'z' AND h IS DISTINCT FROM 1 AND i = ANY(ARRAY[1]) AND j BETWEEN SYMMETRIC 1 AND 2 GROUP BY a`, false},
	{"predicates", `SELECT COUNT(*) FROM t WHERE (a IN (1, 2) OR NOT b NOT IN ('x')) AND c BETWEEN 1 AND 2 AND d NOT BETWEEN 3 AND 4 AND e IS NULL AND f IS NOT NULL AND g LIKE 'x%' AND h NOT ILIKE 'y'`, true},
	{"CASE, COALESCE, LEAST, GREATEST, casts", `SELECT CASE WHEN a > 1 THEN 'x' WHEN a > 0 THEN 'y' ELSE NULL END, CASE b WHEN 1 THEN 2 END, COALESCE(AVG(a), 0), LEAST(1, 2), GREATEST(3, 4), a::int, CAST(b AS numeric(10, 2)), c::text[], COUNT(*) FROM t GROUP BY 1, 2`, true},
	{"joins", `SELECT COUNT(*) FROM a AS x JOIN b y ON x.k = y.k LEFT JOIN c USING (k) RIGHT OUTER JOIN d ON true FULL JOIN e AS z (p, q) USING (k) AS u NATURAL JOIN f CROSS JOIN g`, true},
	{"schema-qualified names and stars", `SELECT t.*, s.t.c, COUNT(*) FROM s.t, cat.s.u`, true},
	{"grouping and ordering", `SELECT a, COUNT(*) FROM t GROUP BY DISTINCT a, ROLLUP (b) HAVING COUNT(*) > 1 ORDER BY 2 DESC NULLS LAST, a USING <, 1 ASC NULLS FIRST OFFSET 2 FETCH FIRST 3 ROWS WITH TIES`, false},
	{"order by and limits", `SELECT a, COUNT(*) FROM t GROUP BY a ORDER BY 2 DESC NULLS LAST, a USING <, 1 ASC NULLS FIRST LIMIT ALL OFFSET 2`, true},
	{"DISTINCT", `SELECT DISTINCT ON (a) a FROM t`, true},
	{"VALUES", `VALUES (1, 'a'), (2, NULL)`, true},
	{"locking", `SELECT a FROM t FOR UPDATE`, false},
	{"several statements", "SELECT COUNT(*) FROM t; SELECT 1;\n-- x\nSELECT 2", true},
	{"comments", "/* a */ SELECT -- b\n COUNT(*) /* c /* nested */ */ FROM t", true},
	{"subquery", `SELECT COUNT(*) FROM (SELECT 1) s WHERE a IN (SELECT b FROM u)`, false},
	{"CTE", `WITH x AS (SELECT 1) SELECT COUNT(*) FROM x`, false},
	{"window", `SELECT COUNT(*) OVER (PARTITION BY a) FROM t`, false},
	{"set operation", `SELECT COUNT(*) FROM t UNION SELECT 1`, false},
	{"SELECT INTO", `SELECT COUNT(*) INTO u FROM t`, false},
	{"DDL", `DROP TABLE t`, false},
	{"parameter", `SELECT COUNT(*) FROM t WHERE a = $1`, false},
	{"empty", ``, true},
	{"only a comment", `-- nothing`, true},
}

// TestParseTreeMatchesProtobuf: the tree decoded from libpg_query's JSON
// equals the one pg_query_go decodes from its protobuf, for the queries
// above and the fuzz corpora; the queries the sandbox runs do not take
// the protobuf path.
func TestParseTreeMatchesProtobuf(t *testing.T) {
	for _, c := range treeQueries {
		t.Run(c.name, func(t *testing.T) {
			fast := checkTree(t, c.sql)
			if fast != c.fast {
				t.Fatalf("decoded from JSON: %v, want %v", fast, c.fast)
			}
		})
	}
	for _, dir := range []string{"FuzzCheckQuery", "FuzzParseQuery", "FuzzParseTree"} {
		files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", dir, "*"))
		for _, f := range files {
			t.Run(dir+"/"+filepath.Base(f), func(t *testing.T) {
				checkTree(t, readFuzzString(t, f))
			})
		}
	}
}

// TestParseTreeMatchesProtobufOnTestQueries: every SQL string literal in
// this package's tests (the accepted and refused corpora, hostile inputs,
// the engines' tests) parses to the same tree both ways.
func TestParseTreeMatchesProtobufOnTestQueries(t *testing.T) {
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	fset := token.NewFileSet()
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil && strings.Contains(strings.ToUpper(s), "SELECT ") {
					seen[s] = true
				}
			}
			return true
		})
	}
	if len(seen) < 100 {
		t.Fatalf("only %d queries found in the tests", len(seen))
	}
	fast := 0
	for s := range seen {
		if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 && checkTree(t, s) {
			fast++
		}
	}
	t.Logf("%d queries, %d decoded from JSON", len(seen), fast)
}

// TestParseTreeSyntaxError: a syntax error is pg_query_go's, with its
// position, as pg.Parse returns it.
func TestParseTreeSyntaxError(t *testing.T) {
	for _, src := range []string{"SELEC 1", "SELECT (1 FROM t", "SELECT 'unterminated"} {
		t.Run(src, func(t *testing.T) {
			_, err := parseTree(src)
			_, want := pg.Parse(src)
			var pe, we *pgparser.Error
			if !errors.As(err, &pe) || !errors.As(want, &we) || *pe != *we {
				t.Fatalf("got %#v, want %#v", err, want)
			}
		})
	}
}

// TestDecodeTreeRefusesMalformedJSON: JSON the decoder does not expect
// sends it to the protobuf path, never to a partial tree.
func TestDecodeTreeRefusesMalformedJSON(t *testing.T) {
	good, err := pgparser.ParseToJSON("SELECT a, COUNT(*) FROM t WHERE s = E'\\n' GROUP BY a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeTree(good); err != nil {
		t.Fatalf("the valid tree: %v", err)
	}
	for i := range len(good) {
		if _, err := decodeTree(good[:i]); err == nil {
			t.Fatalf("a tree cut at byte %d decoded", i)
		}
	}
	for i, js := range []string{
		good + "x", good + "{}", `{"version":1,"stmts":[{"stmt":{"Nope":{}}}]}`,
		`{"version":1,"stmts":[{"stmt":{"SelectStmt":{},"ResTarget":{}}}]}`,
		`{"version":1,"stmts":[{"stmt":{"SelectStmt":{"op":"NOPE"}}}]}`,
		`{"version":99999999999}`, `{"version":1,"stmts":[{"stmt":{"String":{"sval":"\u12"}}}]}`,
		`{"version":1,"stmts":[{"stmt":{"String":{"sval":"\q"}}}]}`, `{"version":1,}`, `{"version":1 "stmts":[]}`,
		`{"version":1,"stmts":[{"stmt":{"SelectStmt":{"all":tru}}}]}`, `{"version":"1"}`,
	} {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			if _, err := decodeTree(js); !errors.Is(err, errTreeFallback) {
				t.Fatalf("%s: %v", js, err)
			}
		})
	}
}

// TestDecodeTreeDepth: nesting past maxTreeDepth goes to the protobuf path.
func TestDecodeTreeDepth(t *testing.T) {
	src := "SELECT COUNT(*) FROM t WHERE " + strings.Repeat("NOT ", maxTreeDepth+10) + "a = 1"
	js, err := pgparser.ParseToJSON(src)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeTree(js); !errors.Is(err, errTreeFallback) {
		t.Fatalf("decoded a tree %d levels deep: %v", maxTreeDepth+10, err)
	}
	checkTree(t, src)
}

// FuzzParseTree: whatever the text ParseQuery lets through to the parser
// (valid UTF-8 without NUL), the tree parseTree gives equals pg_query_go's,
// and errors match.
func FuzzParseTree(f *testing.F) {
	for _, c := range treeQueries {
		if len(c.sql) < 1000 {
			f.Add(c.sql)
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
			return // ParseQuery refuses these before parsing
		}
		checkTree(t, s)
	})
}

// checkTree compares parseTree's tree and error with pg.Parse's and
// reports whether the tree was decoded from JSON.
func checkTree(t *testing.T, src string) bool {
	t.Helper()
	got, err := parseTree(src)
	want, wantErr := pg.Parse(src)
	var pe, we *pgparser.Error
	if (err == nil) != (wantErr == nil) || err != nil && (!errors.As(err, &pe) || !errors.As(wantErr, &we) || *pe != *we) {
		t.Fatalf("error %#v, pg_query_go's %#v", err, wantErr)
	}
	if err != nil {
		return false
	}
	if !proto.Equal(got, want) {
		t.Fatalf("the trees differ:\n%v\n%v", got, want)
	}
	js, err := pgparser.ParseToJSON(src)
	if err != nil {
		t.Fatal(err)
	}
	_, err = decodeTree(js)
	return err == nil
}

// readFuzzString reads a one-string Go fuzz corpus file.
func readFuzzString(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "string("); ok {
			s, err := strconv.Unquote(strings.TrimSuffix(v, ")"))
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			return s
		}
	}
	t.Fatalf("%s: no string in the corpus file", path)
	return ""
}
