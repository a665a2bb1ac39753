package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/datasandbox/datasandbox/api/client"
)

// verifyRun is the console's ledger verification: one at a time, run in
// this process by ledger verify's own code (cmdLedgerVerify, with --json
// and --html), so the console checks exactly what the command checks. Its
// progress comes through the progress bar's sink.
type verifyRun struct {
	mu       sync.Mutex
	running  bool
	label    string
	done     int64
	total    int64
	source   string
	started  time.Time
	finished time.Time
	ok       bool
	errMsg   string
	report   json.RawMessage
	html     []byte
	history  []verifyRecord // this session's verifications, newest last
	wg       sync.WaitGroup
}

// verifyRecord is one verification in the console's checkpoint history.
type verifyRecord struct {
	Finished string   `json:"finished"`
	Source   string   `json:"source"`
	OK       bool     `json:"ok"`
	Size     uint64   `json:"size"`
	Root     string   `json:"root,omitempty"`
	Signers  []string `json:"signers,omitempty"`
	Trusted  bool     `json:"trusted"`
	Failure  string   `json:"failure,omitempty"`
}

// Progress is the progress bar's sink (see newProgress).
func (v *verifyRun) Progress(label string, done, total int64) {
	v.mu.Lock()
	v.label, v.done, v.total = label, done, total
	v.mu.Unlock()
}

// Write discards what the command would print on stderr.
func (v *verifyRun) Write(p []byte) (int, error) { return len(p), nil }

func (v *verifyRun) wait(ctx context.Context) {
	done := make(chan struct{})
	go func() { v.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// verifyStatus is GET /api/verify.
type verifyStatus struct {
	Running  bool            `json:"running"`
	Label    string          `json:"label,omitempty"`
	Done     int64           `json:"done"`
	Total    int64           `json:"total"`
	Source   string          `json:"source,omitempty"`
	Started  string          `json:"started,omitempty"`
	Finished string          `json:"finished,omitempty"`
	OK       bool            `json:"ok"`
	Error    string          `json:"error,omitempty"`
	Report   json.RawMessage `json:"report,omitempty"`
	HasHTML  bool            `json:"has_html"`
	History  []verifyRecord  `json:"history"`
}

func (v *verifyRun) status() verifyStatus {
	v.mu.Lock()
	defer v.mu.Unlock()
	s := verifyStatus{Running: v.running, Label: v.label, Done: v.done, Total: v.total, Source: v.source, OK: v.ok, Error: v.errMsg, Report: v.report, HasHTML: len(v.html) > 0, History: append([]verifyRecord{}, v.history...)}
	if !v.started.IsZero() {
		s.Started = v.started.UTC().Format(time.RFC3339)
	}
	if !v.finished.IsZero() {
		s.Finished = v.finished.UTC().Format(time.RFC3339)
	}
	return s
}

func (v *verifyRun) writeHTML(w http.ResponseWriter) error {
	v.mu.Lock()
	page := v.html
	v.mu.Unlock()
	if len(page) == 0 {
		consoleError(w, http.StatusNotFound, "console: no verification report yet")
		return nil
	}
	// The report has no script; it is shown in a sandboxed frame.
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, err := w.Write(page)
	return err
}

// startVerify starts a verification of the node's ledger, or of an export
// file on this machine ({"file": PATH}); the page polls GET /api/verify.
func (con *console) startVerify(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		File string `json:"file"`
	}
	if r.ContentLength != 0 {
		if err := readBody(r, &in); err != nil {
			return err
		}
	}
	in.File = strings.TrimSpace(in.File)
	if in.File != "" {
		if st, err := os.Stat(in.File); err != nil || !st.Mode().IsRegular() {
			return badInput("console: " + in.File + " is not a readable file (give the path of a ledger export on this machine)")
		}
	}
	v := con.verify
	v.mu.Lock()
	if v.running {
		v.mu.Unlock()
		consoleError(w, http.StatusConflict, "console: a verification is already running")
		return nil
	}
	v.running, v.label, v.done, v.total = true, "starting", 0, 0
	v.started, v.finished, v.ok, v.errMsg, v.report, v.html = time.Now(), time.Time{}, false, "", nil, nil
	v.source = con.c.Server()
	if in.File != "" {
		v.source = in.File
	}
	v.wg.Add(1)
	v.mu.Unlock()
	go con.runVerify(in.File)
	return writeJSON(w, v.status())
}

func (con *console) runVerify(file string) {
	v := con.verify
	defer v.wg.Done()
	ctx, cancel := context.WithTimeout(con.ctx, 30*time.Minute)
	defer cancel()
	var out bytes.Buffer
	var page []byte
	dir, err := os.MkdirTemp("", "sandboxctl-console-")
	if err == nil {
		defer os.RemoveAll(dir)
		htmlFile := filepath.Join(dir, "report.html")
		args := append(con.baseArgs(), "--json", "ledger", "verify", "--html", htmlFile)
		if con.cfg.trust != "" {
			args = append(args, "--trust", con.cfg.trust)
		}
		if con.cfg.state != "" {
			args = append(args, "--state", con.cfg.state)
		}
		if file != "" {
			args = append(args, "--file", file)
		}
		err = run(ctx, args, &out, v)
		page, _ = os.ReadFile(htmlFile)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.running, v.finished, v.ok, v.html = false, time.Now(), err == nil, page
	if err != nil {
		v.errMsg = oneLine(err.Error())
	}
	if b := bytes.TrimSpace(out.Bytes()); json.Valid(b) && len(b) > 0 {
		v.report = b
	} else if err == nil {
		v.ok, v.errMsg = false, errors.New("ledger verify printed no report").Error()
	}
	rec := verifyRecord{Finished: v.finished.UTC().Format(time.RFC3339), Source: v.source, OK: v.ok, Failure: v.errMsg}
	var rep struct {
		Checkpoint *client.ReportCheckpoint `json:"checkpoint"`
	}
	if json.Unmarshal(v.report, &rep) == nil && rep.Checkpoint != nil {
		rec.Size, rec.Root, rec.Signers, rec.Trusted = rep.Checkpoint.Size, rep.Checkpoint.Root, rep.Checkpoint.Signers, rep.Checkpoint.Trusted
	}
	v.history = append(v.history, rec)
}
