package connectors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	neturl "net/url"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"
)

var envRef = regexp.MustCompile(`\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}`)

// DefaultAllowEnv is the allow-list a worker resolves ${env:NAME}
// references against unless told otherwise (worker --allow-env).
var DefaultAllowEnv = []string{"SLUICE_*"}

// Env resolves the ${env:NAME} references of connector configs inside a
// worker. Only variables whose names match one of Allow (globs as
// path.Match: "SLUICE_*", "KAFKA_PASSWORD") resolve, so that a pipeline
// author cannot read the worker's own credentials (TEMPORAL_API_KEY,
// AWS_SECRET_ACCESS_KEY) by naming them in a URL. A nil Allow is
// [DefaultAllowEnv]; an empty non-nil Allow resolves nothing.
type Env struct {
	Allow []string
}

func (e Env) allow() []string {
	if e.Allow == nil {
		return DefaultAllowEnv
	}
	return e.Allow
}

// Allowed reports whether the variable name matches the allow-list.
func (e Env) Allowed(name string) bool {
	for _, pat := range e.allow() {
		if ok, _ := path.Match(pat, name); ok {
			return true
		}
	}
	return false
}

// CheckPatterns returns an error naming the first malformed glob in
// patterns (path.ErrBadPattern), so a worker refuses a bad --allow-env at
// start.
func CheckPatterns(patterns []string) error {
	for _, p := range patterns {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("--allow-env %q: %w", p, err)
		}
	}
	return nil
}

// Resolve replaces every ${env:NAME} in raw (a transport or format config)
// with the variable's value, escaped for a JSON string, and returns the
// values it substituted, so that whatever reports on the connector can
// [Secrets.Redact] them. A reference outside the allow-list, or to a
// variable that is not set, is a [Fatal] error naming the variables,
// never their values.
func (e Env) Resolve(raw json.RawMessage) (json.RawMessage, Secrets, error) {
	var refused, missing []string
	var secrets Secrets
	out := envRef.ReplaceAllFunc(raw, func(m []byte) []byte {
		name := string(envRef.FindSubmatch(m)[1])
		if !e.Allowed(name) {
			refused = append(refused, name)
			return m
		}
		v, ok := os.LookupEnv(name)
		if !ok {
			missing = append(missing, name)
			return m
		}
		secrets = secrets.add(v)
		q, _ := json.Marshal(v) // the value lands inside a JSON string: escape it
		return q[1 : len(q)-1]
	})
	var errs []error
	if len(refused) > 0 {
		errs = append(errs, fmt.Errorf("environment variables %v are not in the worker's allow-list %v: start the worker with --allow-env NAME to let pipelines read them", dedup(refused), e.allow()))
	}
	if len(missing) > 0 {
		errs = append(errs, fmt.Errorf("environment variables not set: %v", dedup(missing)))
	}
	if len(errs) > 0 {
		return nil, nil, Fatal(errors.Join(errs...))
	}
	return out, secrets, nil
}

func dedup(names []string) []string {
	sort.Strings(names)
	out := names[:0]
	for i, n := range names {
		if i == 0 || n != names[i-1] {
			out = append(out, n)
		}
	}
	return out
}

// Secrets are the values a connector's ${env:NAME} references resolved
// to. Everything a connector reports (errors, parse errors, logs, stats)
// passes through Redact before it leaves the activity, so that no value
// reaches workflow history, the worker's log or `sluice connector stats`.
type Secrets []string

// RedactedValue replaces a secret in messages.
const RedactedValue = "[REDACTED]"

// add records v and the forms it takes when quoted in JSON or escaped in
// a URL, longest first so that a form containing another is replaced
// whole.
func (s Secrets) add(v string) Secrets {
	if v == "" {
		return s
	}
	q, _ := json.Marshal(v)
	for _, f := range []string{v, string(q[1 : len(q)-1]), neturl.QueryEscape(v), neturl.PathEscape(v)} {
		if !containsString(s, f) {
			s = append(s, f)
		}
	}
	sort.Slice(s, func(i, j int) bool { return len(s[i]) > len(s[j]) })
	return s
}

func containsString(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// Redact returns msg with every secret replaced by [RedactedValue].
func (s Secrets) Redact(msg string) string {
	for _, v := range s {
		msg = strings.ReplaceAll(msg, v, RedactedValue)
	}
	return msg
}

// RedactError returns err with its message redacted, or err itself when it
// holds no secret. The result keeps err's [ErrFatal]-ness and
// [*PanicError] (redacted), but no other wrapped error: a wrapped error
// would carry the secret on.
func (s Secrets) RedactError(err error) error {
	if err == nil || len(s) == 0 {
		return err
	}
	msg := err.Error()
	red := s.Redact(msg)
	if red == msg {
		return err
	}
	out := &redactedError{msg: red, fatal: errors.Is(err, ErrFatal)}
	var p *PanicError
	if errors.As(err, &p) {
		out.panic = &PanicError{What: s.Redact(p.What), Value: s.Redact(fmt.Sprint(p.Value)), Stack: p.Stack}
	}
	return out
}

type redactedError struct {
	msg   string
	fatal bool
	panic *PanicError
}

func (e *redactedError) Error() string { return e.msg }

func (e *redactedError) Is(target error) bool { return e.fatal && target == ErrFatal }

func (e *redactedError) As(target any) bool {
	if t, ok := target.(**PanicError); ok && e.panic != nil {
		*t = e.panic
		return true
	}
	return false
}

// RedactParseErrors redacts the messages and record excerpts of errs in
// place.
func (s Secrets) RedactParseErrors(errs []ParseError) {
	if len(s) == 0 {
		return
	}
	for i := range errs {
		errs[i].Message = s.Redact(errs[i].Message)
		errs[i].Record = s.Redact(errs[i].Record)
		errs[i].Position = s.Redact(errs[i].Position)
	}
}

// MaskEnv replaces ${env:NAME} references with a placeholder so a config can
// be validated without reading secrets.
func MaskEnv(raw json.RawMessage) json.RawMessage {
	return envRef.ReplaceAll(raw, []byte("env-NAME"))
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
