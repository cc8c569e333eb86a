package connectors

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"sort"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluicehq/sluice/pipeline"
)

// Registry maps transport names ("datagen", "file_input", ...) to their
// factories, as Conduit's builtin registry does. Build one with
// [NewRegistry] and [Registry.Register] in one place and pass it to the
// worker; there is no global registry. It implements pipeline.Checker.
type Registry struct {
	factories map[string]Factory
	checks    map[string]Check
	sinks     map[string]SinkFactory
}

// Check validates an input transport's config without I/O, as its
// [Factory] does before it builds the source, and returns what it
// decoded. The value may implement interface{ Bounded() bool } and
// [Guaranteed], as a Source does. A registry that only validates
// pipelines (the command line's) registers a Check where the Factory
// would link a heavy library: iceberg_input's reader links iceberg-go,
// whose package initialization costs about 90 ms at every start.
type Check func(p Params) (any, error)

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{factories: map[string]Factory{}, checks: map[string]Check{}, sinks: map[string]SinkFactory{}}
}

// Register adds an input transport. Registering a name twice, or a name
// ending in "_output", is an error; a name registered with only a
// [Registry.RegisterCheck] gets its factory, and the factory replaces
// the check.
func (r *Registry) Register(name string, f Factory) error {
	if _, ok := r.checks[name]; ok {
		delete(r.checks, name)
	} else if err := r.checkNew(name, false); err != nil {
		return err
	}
	r.factories[name] = f
	return nil
}

// RegisterCheck adds an input transport that this registry validates
// (CheckConnector, Bounded, Guarantee) but cannot build: New fails for
// it until [Registry.Register] gives it a factory. The names rules are
// Register's.
func (r *Registry) RegisterCheck(name string, c Check) error {
	if err := r.checkNew(name, false); err != nil {
		return err
	}
	r.checks[name] = c
	return nil
}

// RegisterSink adds an output transport, whose name must end in
// "_output" (pipeline.IsOutput). Registering a name twice is an error.
func (r *Registry) RegisterSink(name string, f SinkFactory) error {
	if err := r.checkNew(name, true); err != nil {
		return err
	}
	r.sinks[name] = f
	return nil
}

func (r *Registry) checkNew(name string, output bool) error {
	_, src := r.factories[name]
	_, check := r.checks[name]
	_, sink := r.sinks[name]
	if src || check || sink {
		return fmt.Errorf("transport %q registered twice", name)
	}
	if pipeline.IsOutput(name) != output {
		return fmt.Errorf("transport %q: output transports, and only they, end in _output", name)
	}
	return nil
}

// Names returns the registered transport names, inputs and outputs,
// sorted.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.factories)+len(r.checks)+len(r.sinks))
	for n := range r.factories {
		names = append(names, n)
	}
	for n := range r.checks {
		names = append(names, n)
	}
	for n := range r.sinks {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// NewSink builds the sink for p's output transport name.
func (r *Registry) NewSink(transport string, p SinkParams) (sink Sink, err error) {
	f, ok := r.sinks[transport]
	if !ok {
		return nil, Fatal(fmt.Errorf("transport.name: unknown output transport %q (known: %v)", transport, r.Names()))
	}
	defer Recover(&err, transport+" config")
	return f(p)
}

// New builds the source for p's transport name.
func (r *Registry) New(transport string, p Params) (src Source, err error) {
	f, ok := r.factories[transport]
	if !ok {
		if _, ok := r.checks[transport]; ok {
			return nil, Fatal(fmt.Errorf("transport %q: this registry validates its configs but cannot run it (registered with RegisterCheck)", transport))
		}
		return nil, Fatal(fmt.Errorf("transport.name: unknown transport %q (known: %v)", transport, r.Names()))
	}
	defer Recover(&err, transport+" config")
	return f(p)
}

// inspect decodes and validates an input connector's config, as
// CheckConnector, Bounded and Guarantee need: its source (built, not
// opened) or what its Check returned. ok is false for a name that is no
// registered input.
func (r *Registry) inspect(name string, p Params) (v any, ok bool, err error) {
	if f, found := r.factories[name]; found {
		v, err = f(p)
		return v, true, err
	}
	if c, found := r.checks[name]; found {
		v, err = c(p)
		return v, true, err
	}
	return nil, false, nil
}

// Recover turns a panic in the calling function into *err: a [Fatal]
// error "what panicked: value", so that a bug in a connector fails that
// connector, never the worker. Use it as defer Recover(&err, "...").
func Recover(err *error, what string) {
	if r := recover(); r != nil {
		*err = Fatal(&PanicError{What: what, Value: r, Stack: string(debug.Stack())})
	}
}

// PanicError is a recovered panic: what panicked, the value, and the
// stack for the worker's log (the message leaves it out).
type PanicError struct {
	What  string
	Value any
	Stack string
}

func (e *PanicError) Error() string { return fmt.Sprintf("%s panicked: %v", e.What, e.Value) }

// CheckConnector implements pipeline.Checker: it builds the connector's
// source without opening it, so every config error is found before
// anything starts. ${env:NAME} references are not resolved here: secrets
// are read only inside the activity.
func (r *Registry) CheckConnector(t *pipeline.Table, c *pipeline.Connector, schema *arrow.Schema) error {
	_, isInput := r.factories[c.Transport.Name]
	_, isCheck := r.checks[c.Transport.Name]
	sf, isSink := r.sinks[c.Transport.Name]
	if !isInput && !isCheck && !isSink {
		return fmt.Errorf("transport.name: unknown transport %q (known: %v)", c.Transport.Name, r.Names())
	}
	err := func() (err error) {
		defer Recover(&err, "transport.config")
		if isSink {
			p := checkParams(c, schema)
			_, err = sf(SinkParams{Endpoint: p.Endpoint, Table: t.Name, Connector: c.Name, Config: p.Config, Format: p.Format, Schema: schema, PrimaryKey: t.PrimaryKey})
			return err
		}
		_, _, err = r.inspect(c.Transport.Name, checkParams(c, schema))
		return err
	}()
	if err == nil {
		return nil
	}
	var out []error
	for _, e := range unjoin(err) {
		if fe := (*FieldError)(nil); errors.As(e, &fe) {
			out = append(out, fmt.Errorf("%s: %s", fe.Path(), fe.Err))
			continue
		}
		out = append(out, fmt.Errorf("transport.config: %w", e))
	}
	return errors.Join(out...)
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok && !errors.Is(err, ErrFatal) {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}

// FieldError is a config problem with the field it concerns. Section is
// "transport" or "format"; Field is the path inside its config ("plan[0].rate").
type FieldError struct {
	Section string
	Field   string
	Err     error
}

// Path returns "transport.config.<field>" (or format); Field "name" is
// the section's own name field: "format.name".
func (e *FieldError) Path() string {
	if e.Field == "name" { // the section's own name ("format.name"), not a config field
		return e.Section + ".name"
	}
	if e.Field == "" {
		return e.Section + ".config"
	}
	return e.Section + ".config." + e.Field
}

func (e *FieldError) Error() string { return e.Path() + ": " + e.Err.Error() }

func (e *FieldError) Unwrap() error { return e.Err }

// TransportError returns a [FieldError] for a transport config field.
func TransportError(field, format string, args ...any) error {
	return &FieldError{Section: "transport", Field: field, Err: fmt.Errorf(format, args...)}
}

// FormatError returns a [FieldError] for a format config field.
func FormatError(field, format string, args ...any) error {
	return &FieldError{Section: "format", Field: field, Err: fmt.Errorf(format, args...)}
}

// DecodeConfig unmarshals a transport or format config into v, rejecting
// unknown fields, and reports problems as FieldErrors of section.
func DecodeConfig(section string, raw json.RawMessage, v any) error {
	if len(raw) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytesReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) && ute.Field != "" {
			return &FieldError{Section: section, Field: ute.Field, Err: fmt.Errorf("want %s, got JSON %s", ute.Type, ute.Value)}
		}
		return &FieldError{Section: section, Field: "", Err: err}
	}
	return nil
}

// Guarantee implements pipeline.GuaranteeChecker: the connector's
// delivery guarantee as its source or sink declares it
// ([Guaranteed]), exactly once when it declares none.
func (r *Registry) Guarantee(t *pipeline.Table, c *pipeline.Connector, schema *arrow.Schema) string {
	p := checkParams(c, schema)
	built, isInput, _ := r.inspect(c.Transport.Name, p)
	if f, ok := r.sinks[c.Transport.Name]; ok && !isInput {
		built, _ = f(SinkParams{Endpoint: p.Endpoint, Table: t.Name, Connector: c.Name, Config: p.Config, Format: p.Format, Schema: schema, PrimaryKey: t.PrimaryKey})
	}
	if g, ok := built.(Guaranteed); ok {
		return string(g.Guarantee())
	}
	return string(ExactlyOnce)
}

// Bounded reports whether the connector reaches end of input on its own
// (Feldera: datagen with a limit, file_input without follow, url_input).
// Its source says so by implementing interface{ Bounded() bool }; a
// source that does not is unbounded.
func (r *Registry) Bounded(c *pipeline.Connector, schema *arrow.Schema) bool {
	v, _, err := r.inspect(c.Transport.Name, checkParams(c, schema))
	if err != nil {
		return false
	}
	b, ok := v.(interface{ Bounded() bool })
	return ok && b.Bounded()
}

// checkParams are the Params of a connector built only to inspect it: its
// ${env:NAME} references masked, nothing opened.
func checkParams(c *pipeline.Connector, schema *arrow.Schema) Params {
	cfg := c.Transport.Config
	if len(cfg) == 0 {
		cfg = json.RawMessage("{}")
	}
	return Params{Endpoint: c.Name, Config: MaskEnv(cfg), Format: c.Format, Schema: schema, BatchSize: c.BatchLimit()}
}
