package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/datasandbox/datasandbox/api/client"
	"github.com/datasandbox/datasandbox/audit"
)

// verifyRun is the console's ledger verification: one at a time, run in
// this process by ledger verify's own steps (client.Verify, the same
// verdict), so the console checks exactly what the command checks.
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
	// kept is the file where ledger verify keeps the last checkpoint it
	// verified against trusted keys, across sessions ("" if unknown).
	kept string
	wg   sync.WaitGroup
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
	// Kept is the last checkpoint verified against trusted keys, kept
	// (--state) for the next run's rollback check, in any session.
	Kept *keptCheckpoint `json:"kept,omitempty"`
}

// keptCheckpoint is the checkpoint kept for the rollback check.
type keptCheckpoint struct {
	File string `json:"file"`
	Size uint64 `json:"size"`
	Root string `json:"root"`
}

func (v *verifyRun) status() verifyStatus {
	v.mu.Lock()
	defer v.mu.Unlock()
	var kept *keptCheckpoint
	if v.kept != "" {
		if lv, err := audit.LoadLastVerified(v.kept); err == nil && lv != nil {
			kept = &keptCheckpoint{File: v.kept, Size: lv.Size, Root: lv.Root}
		}
	}
	s := verifyStatus{Running: v.running, Label: v.label, Done: v.done, Total: v.total, Source: v.source, OK: v.ok, Error: v.errMsg, Report: v.report, HasHTML: len(v.html) > 0, History: append([]verifyRecord{}, v.history...), Kept: kept}
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
	report, page, err := con.verifyOnce(ctx, file)
	v.mu.Lock()
	defer v.mu.Unlock()
	v.running, v.finished, v.ok, v.html, v.report = false, time.Now(), err == nil, page, report
	if err != nil {
		v.errMsg = oneLine(err.Error())
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

// verifyOnce runs ledger verify's own steps (client.Verify, or
// client.VerifyExport for a file) with the console's trusted keys and
// state file, its progress to the page, and returns the JSON report, the
// HTML report and ledger verify's verdict.
func (con *console) verifyOnce(ctx context.Context, file string) (json.RawMessage, []byte, error) {
	trust, _, err := trustKeys(con.g, con.cfg.trust)
	if err != nil {
		return nil, nil, err
	}
	cfg := client.VerifyConfig{Trust: trust, StateFile: con.cfg.state, Progress: func(done, total int64) {
		con.verify.Progress("verifying entries", done, total)
	}}
	var ver *client.Verification
	if file != "" {
		ver, err = client.VerifyExport(ctx, file, cfg)
	} else {
		ver, err = client.Verify(ctx, con.c, cfg)
	}
	if err != nil {
		return nil, nil, err
	}
	var page bytes.Buffer
	if err := audit.WriteHTML(&page, ver.View(), "Ledger audit of "+ver.Report.Source, ver.Report.Checks); err != nil {
		return nil, nil, err
	}
	report, err := json.Marshal(ver.Report)
	if err != nil {
		return nil, nil, err
	}
	return report, page.Bytes(), verdict(ver)
}
