package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// progress draws a one-line bar on stderr for long work (uploads, ledger
// verification and export) when stderr is a terminal, and nothing
// otherwise: scripts and logs never see it. Done erases it.
type progress struct {
	w      io.Writer // nil: not a terminal, draw nothing
	sink   progressSink
	label  string
	total  int64
	bytes  bool // count bytes (else items)
	done   int64
	start  time.Time
	drawn  time.Time
	active bool
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// newProgress starts a bar on stderr (drawn only if it is a terminal).
func newProgress(stderr io.Writer, label string, total int64, bytes bool) *progress {
	p := &progress{label: label, total: total, bytes: bytes, start: time.Now()}
	if isTerminal(stderr) {
		p.w = stderr
	}
	p.sink, _ = stderr.(progressSink)
	return p
}

// progressSink is a stderr that takes a bar's counts instead of drawing
// (the console's verification reports its progress to the page).
type progressSink interface {
	Progress(label string, done, total int64)
}

// Add counts n more units, redrawing at most 10 times a second.
func (p *progress) Add(n int64) {
	p.done += n
	if p.sink != nil {
		p.sink.Progress(p.label, p.done, p.total)
	}
	if p.w == nil || time.Since(p.drawn) < 100*time.Millisecond && p.done < p.total {
		return
	}
	p.drawn = time.Now()
	p.active = true
	fmt.Fprintf(p.w, "\r\033[K%s", p.line())
}

// line renders the bar: label, bar, percentage, counts and rate.
func (p *progress) line() string {
	const width = 30
	frac := 0.0
	if p.total > 0 {
		frac = min(float64(p.done)/float64(p.total), 1)
	}
	fill := int(frac * width)
	count := fmt.Sprintf("%d/%d", p.done, p.total)
	rate := ""
	if el := time.Since(p.start).Seconds(); el > 0 {
		if p.bytes {
			count = fmt.Sprintf("%.1f/%.1f MB", float64(p.done)/1e6, float64(p.total)/1e6)
			rate = fmt.Sprintf(", %.1f MB/s", float64(p.done)/1e6/el)
		} else {
			rate = fmt.Sprintf(", %.0f/s", float64(p.done)/el)
		}
	}
	return fmt.Sprintf("%s [%s%s] %3.0f%% %s%s", p.label, strings.Repeat("=", fill), strings.Repeat(" ", width-fill), frac*100, count, rate)
}

// Done erases the bar.
func (p *progress) Done() {
	if p.active {
		fmt.Fprint(p.w, "\r\033[K")
		p.active = false
	}
}
