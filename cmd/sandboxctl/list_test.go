package main

import (
	"strings"
	"testing"
)

func TestParseListSpec(t *testing.T) {
	for _, c := range []struct {
		in   string
		want listSpec
		err  bool
	}{
		{in: "applicants=list.csv:id", want: listSpec{"applicants", "list.csv", "id"}},
		{in: "a=C:/data/list.csv:customer_id", want: listSpec{"a", "C:/data/list.csv", "customer_id"}},
		{in: "applicants=list.csv", err: true},
		{in: "=list.csv:id", err: true},
		{in: "applicants=list.csv:", err: true},
		{in: "applicants", err: true},
	} {
		t.Run(c.in, func(t *testing.T) {
			got, err := parseListSpec(c.in)
			if (err != nil) != c.err || (!c.err && got != c.want) {
				t.Fatalf("got %+v, %v", got, err)
			}
		})
	}
}

func TestReadList(t *testing.T) {
	for _, c := range []struct {
		name, csv string
		further   []string
		ids       int
		err       string
	}{
		{"distinct", "id,branch\na,x\nb,y\nc,x\n", []string{"branch"}, 3, ""},
		{"repeats dropped", "id,branch\na,x\nb,y\na,x\n", []string{"branch"}, 2, ""},
		{"byte order mark", "\ufeffID,branch\na,x\n", nil, 1, ""},
		{"repeat with another branch", "id,branch\na,x\nb,y\na,y\n", []string{"branch"}, 0, `line 4: id repeated with branch "y", first given "x"`},
		{"empty id", "id,branch\na,x\n,y\n", nil, 0, "line 3: empty id in column id"},
		{"spaces", "id,branch\n a,x\n", nil, 0, "line 2: the id in column id has leading or trailing spaces"},
		{"short line", "id,branch\na,x\nb\n", nil, 0, "line 3"},
		{"no column", "person,branch\na,x\n", nil, 0, `line 1: the header (person,branch) has no column "id"`},
		{"no further column", "id\na\n", []string{"branch"}, 0, `no column "branch"`},
		{"header only", "id,branch\n", nil, 0, "no ids under the header"},
		{"empty", "", nil, 0, "empty file"},
		{"bad utf-8", "id\n\xff\n", nil, 0, "line 2: the id in column id is not valid UTF-8"},
	} {
		t.Run(c.name, func(t *testing.T) {
			lf, err := readList(strings.NewReader(c.csv), "list.csv", "id", c.further)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) || !strings.HasPrefix(err.Error(), "list.csv: ") {
					t.Fatalf("got %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || len(lf.ids) != c.ids {
				t.Fatalf("got %v ids, %v", lf, err)
			}
			for _, f := range c.further {
				if len(lf.cols[f]) != c.ids {
					t.Fatalf("column %s: %v", f, lf.cols[f])
				}
			}
		})
	}
}

func TestPrepareListMatchesQuery(t *testing.T) {
	for _, c := range []struct{ query, flag, err string }{
		{"SELECT COUNT(*) FROM tax t JOIN customers c ON t.person_id = c.id", "applicants=x.csv:id", "the query joins no table applicants"},
		{"SELECT COUNT(*) FROM tax t JOIN applicants a ON t.person_id = a.cid", "applicants=x.csv:id", "joins applicants on its column cid, the list's ids are in column id"},
	} {
		spec, err := parseListSpec(c.flag)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := prepareList(c.query, spec); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Fatalf("%s: got %v, want %q", c.query, err, c.err)
		}
	}
}
