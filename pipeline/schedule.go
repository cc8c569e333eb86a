package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Placeholders for a scheduled run's window, usable in any string of a
// connector's transport or format config:
//
//	${schedule:start_time}          the window's start, RFC 3339 in UTC
//	${schedule:start_time|LAYOUT}   the start in a Go time layout, in UTC
//	                                (${schedule:start_time|2006/01/02})
//	${schedule:end_time}            the window's end: start + the --every interval
//	${schedule:end_time|LAYOUT}
//
// They are substituted in each run a Temporal Schedule starts (sluice
// schedule create), with the run's scheduled time as the window's start;
// a pipeline started otherwise must not hold any ([CheckNoSchedulePlaceholders]).
const (
	SchedulePlaceholderPrefix = "${schedule:"
	ScheduleStartTime         = "start_time"
	ScheduleEndTime           = "end_time"
)

// Window is the time window of a scheduled run: Start is the run's
// scheduled time, End is Start plus the schedule's interval, or zero when
// the schedule has no interval (a cron schedule).
type Window struct {
	Start, End time.Time
}

// ExpandSchedule substitutes the ${schedule:...} placeholders of every
// string value of every connector's transport and format config with w's
// times. Only JSON string values change; object keys, numbers, the
// layout of the JSON and everything around a placeholder are kept. It
// reports every malformed placeholder (unknown name, bad layout,
// end_time with no End) with its path, such as
// "tables[0].connectors[1].transport.config.path", and then changes
// nothing. p.Tables and the connector lists are replaced by copies, so
// other copies of *p that share them are left as they were.
func ExpandSchedule(p *Pipeline, w Window) error {
	type change struct {
		ti, ci int
		format bool
		raw    json.RawMessage
	}
	var changes []change
	var errs []error
	each(p, func(ti, ci int, section string, raw json.RawMessage) {
		out, changed, err := expandRaw(raw, section, w)
		if err != nil {
			errs = append(errs, prefixErrs(fmt.Sprintf("tables[%d].connectors[%d].", ti, ci), err)...)
			return
		}
		if changed {
			changes = append(changes, change{ti: ti, ci: ci, format: section == "format", raw: out})
		}
	})
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if len(changes) == 0 {
		return nil
	}
	tables := append([]Table(nil), p.Tables...)
	copied := map[int]bool{}
	for _, c := range changes {
		t := &tables[c.ti]
		if !copied[c.ti] {
			t.Connectors = append([]Connector(nil), t.Connectors...)
			copied[c.ti] = true
		}
		conn := &t.Connectors[c.ci]
		if c.format {
			f := *conn.Format
			f.Config = c.raw
			conn.Format = &f
		} else {
			conn.Transport.Config = c.raw
		}
	}
	p.Tables = tables
	return nil
}

// HasSchedulePlaceholders reports whether some connector config of p
// holds a ${schedule:...} placeholder, well formed or not.
func HasSchedulePlaceholders(p *Pipeline) bool {
	found := false
	each(p, func(_, _ int, _ string, raw json.RawMessage) {
		if !found {
			_ = walkStrings(raw, func(_, s string) {
				found = found || strings.Contains(s, SchedulePlaceholderPrefix)
			})
		}
	})
	return found
}

// CheckNoSchedulePlaceholders returns an error naming, with its path,
// every config field that holds a ${schedule:...} placeholder: they take
// a value only in the runs of a schedule (sluice schedule create), so a
// pipeline started any other way must not have them.
func CheckNoSchedulePlaceholders(p *Pipeline) error {
	var errs []error
	each(p, func(ti, ci int, section string, raw json.RawMessage) {
		_ = walkStrings(raw, func(path, s string) {
			if i := strings.Index(s, SchedulePlaceholderPrefix); i >= 0 {
				ref := s[i:]
				if j := strings.IndexByte(ref, '}'); j >= 0 {
					ref = ref[:j+1]
				}
				errs = append(errs, fmt.Errorf("tables[%d].connectors[%d].%s: %s: ${schedule:...} placeholders are only for scheduled runs (sluice schedule create NAME FILE --every ... or --cron ...)",
					ti, ci, joinPath(section+".config", path), ref))
			}
		})
	})
	return errors.Join(errs...)
}

// each calls fn with every connector's non-empty transport and format
// config, in order; section is "transport" or "format".
func each(p *Pipeline, fn func(ti, ci int, section string, raw json.RawMessage)) {
	for ti := range p.Tables {
		for ci := range p.Tables[ti].Connectors {
			c := &p.Tables[ti].Connectors[ci]
			if len(c.Transport.Config) > 0 {
				fn(ti, ci, "transport", c.Transport.Config)
			}
			if c.Format != nil && len(c.Format.Config) > 0 {
				fn(ti, ci, "format", c.Format.Config)
			}
		}
	}
}

func prefixErrs(prefix string, err error) []error {
	var out []error
	for _, e := range flatten(err) {
		out = append(out, fmt.Errorf("%s%w", prefix, e))
	}
	return out
}

// expandRaw substitutes the placeholders of one config; errors are
// prefixed with "<section>.config[.path]: ".
func expandRaw(raw json.RawMessage, section string, w Window) (json.RawMessage, bool, error) {
	var errs []error
	var edits []edit
	err := walkStringsAt(raw, func(path, s string, start, end int) {
		if !strings.Contains(s, SchedulePlaceholderPrefix) {
			return
		}
		v, err := ExpandScheduleString(s, w)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", joinPath(section+".config", path), err))
			return
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(v)
		edits = append(edits, edit{start, end, bytes.TrimRight(buf.Bytes(), "\n")})
	})
	if err != nil {
		return nil, false, fmt.Errorf("%s.config: %w", section, err)
	}
	if len(errs) > 0 {
		return nil, false, errors.Join(errs...)
	}
	if len(edits) == 0 {
		return raw, false, nil
	}
	var out json.RawMessage
	prev := 0
	for _, e := range edits {
		out = append(out, raw[prev:e.start]...)
		out = append(out, e.text...)
		prev = e.end
	}
	return append(out, raw[prev:]...), true, nil
}

type edit struct {
	start, end int
	text       []byte
}

// ExpandScheduleString substitutes the ${schedule:...} placeholders of
// one string with w's times. A placeholder with an unknown name, a bad
// layout or no closing brace, or an end_time when w.End is zero, is an
// error.
func ExpandScheduleString(s string, w Window) (string, error) {
	var b strings.Builder
	var errs []error
	for {
		i := strings.Index(s, SchedulePlaceholderPrefix)
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		rest := s[i+len(SchedulePlaceholderPrefix):]
		j := strings.IndexByte(rest, '}')
		if j < 0 {
			errs = append(errs, fmt.Errorf("%s: no closing '}'", s[i:]))
			break
		}
		ref := s[i : i+len(SchedulePlaceholderPrefix)+j+1]
		v, err := placeholderValue(rest[:j], w)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ref, err))
		}
		b.WriteString(v)
		s = rest[j+1:]
	}
	return b.String(), errors.Join(errs...)
}

// placeholderValue is the value of "start_time", "end_time|LAYOUT", ...
func placeholderValue(body string, w Window) (string, error) {
	name, layout, hasLayout := strings.Cut(body, "|")
	var t time.Time
	switch name {
	case ScheduleStartTime:
		t = w.Start
	case ScheduleEndTime:
		if w.End.IsZero() {
			return "", fmt.Errorf("end_time needs the schedule's interval (--every); a cron schedule's window has a start only: use start_time")
		}
		t = w.End
	default:
		return "", fmt.Errorf("unknown placeholder %q: want start_time or end_time, optionally followed by |LAYOUT (a Go time layout such as 2006-01-02)", name)
	}
	if !hasLayout {
		return t.UTC().Format(time.RFC3339), nil
	}
	if err := CheckLayout(layout); err != nil {
		return "", err
	}
	return t.UTC().Format(layout), nil
}

// CheckLayout returns an error unless layout is a Go time layout that
// shows some part of the time: "2006-01-02", "2006/01/02/15", time.RFC3339.
// strftime or Java patterns ("%Y-%m-%d", "yyyy-MM-dd") are errors, as is a
// layout that would print the same text for every time.
func CheckLayout(layout string) error {
	if layout == "" {
		return errors.New("empty layout after '|': want a Go time layout such as 2006-01-02")
	}
	for _, bad := range []string{"%", "yyyy", "YYYY", "yy", "dd", "HH"} {
		if strings.Contains(layout, bad) {
			return fmt.Errorf("layout %q: %q is not a Go time layout element: write the reference time Mon Jan 2 15:04:05 MST 2006 the way you want it, e.g. 2006-01-02", layout, bad)
		}
	}
	a := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC).Format(layout)
	b := time.Date(2011, 12, 13, 14, 15, 16, 0, time.UTC).Format(layout)
	if a == b {
		return fmt.Errorf("layout %q shows no part of the time: write the reference time Mon Jan 2 15:04:05 MST 2006 the way you want it, e.g. 2006-01-02", layout)
	}
	return nil
}

func joinPath(base, path string) string {
	switch {
	case path == "":
		return base
	case path[0] == '[':
		return base + path
	}
	return base + "." + path
}

// walkStrings calls fn with the path ("a.b[2].c") and value of every
// string value (not object keys) of the JSON document raw.
func walkStrings(raw json.RawMessage, fn func(path, s string)) error {
	return walkStringsAt(raw, func(path, s string, _, _ int) { fn(path, s) })
}

// walkStringsAt is walkStrings that also gives each string literal's byte
// range in raw, quotes included.
func walkStringsAt(raw json.RawMessage, fn func(path, s string, start, end int)) error {
	type frame struct {
		object    bool
		key       string
		index     int
		expectKey bool
	}
	var stack []*frame
	path := func() string {
		var b strings.Builder
		for _, f := range stack {
			if f.object {
				if b.Len() > 0 {
					b.WriteByte('.')
				}
				b.WriteString(f.key)
			} else {
				fmt.Fprintf(&b, "[%d]", f.index)
			}
		}
		return b.String()
	}
	advance := func() {
		if len(stack) == 0 {
			return
		}
		f := stack[len(stack)-1]
		if f.object {
			f.expectKey = true
		} else {
			f.index++
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	for {
		before := int(dec.InputOffset())
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				stack = append(stack, &frame{object: true, expectKey: true})
			case '[':
				stack = append(stack, &frame{})
			default:
				stack = stack[:len(stack)-1]
				advance()
			}
		case string:
			if len(stack) > 0 && stack[len(stack)-1].object && stack[len(stack)-1].expectKey {
				stack[len(stack)-1].key = v
				stack[len(stack)-1].expectKey = false
				continue
			}
			end := int(dec.InputOffset())
			start := before + bytes.IndexByte(raw[before:end], '"')
			fn(path(), v, start, end)
			advance()
		default:
			advance()
		}
	}
}
