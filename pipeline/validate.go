package pipeline

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
)

// Checker validates a connector's transport and format against the table's
// schema. connectors.Registry implements it. Errors name the field relative
// to the connector ("transport.config.rate: must be positive"); several may
// be joined with errors.Join.
type Checker interface {
	CheckConnector(t *Table, c *Connector, schema *arrow.Schema) error
}

// GuaranteeChecker is a Checker that also knows each connector's
// delivery guarantee, for Pipeline.DeliveryGuarantee: it returns
// "exactly_once" or "at_least_once".
type GuaranteeChecker interface {
	Guarantee(t *Table, c *Connector, schema *arrow.Schema) string
}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_-]*$`)

// CheckName returns an error unless name is a well-formed pipeline, table
// or connector name: letters, digits, '_' and '-', not starting with '-'.
// Names become directories of the table store and parts of workflow and
// endpoint IDs, so nothing else ('/', "..", '.') may pass. The loader,
// the Pipeline workflow and the activities all check with it, since a
// workflow can be started without the loader (SDK, Web UI, temporal CLI).
func CheckName(name string) error {
	if name == "" {
		return fmt.Errorf("required")
	}
	if !namePattern.MatchString(name) {
		return fmt.Errorf("%q: use letters, digits, '-' and '_' only", name)
	}
	return nil
}

// CheckNames checks the names of the pipeline, its tables and their
// connectors with [CheckName], returning every problem with its path.
func CheckNames(p *Pipeline) error {
	var errs []error
	if err := CheckName(p.Name); err != nil {
		errs = append(errs, fmt.Errorf("name: %w", err))
	}
	for ti, t := range p.Tables {
		if err := CheckName(t.Name); err != nil {
			errs = append(errs, fmt.Errorf("tables[%d].name: %w", ti, err))
		}
		for ci, c := range t.Connectors {
			if err := CheckName(c.Name); err != nil {
				errs = append(errs, fmt.Errorf("tables[%d].connectors[%d].name: %w", ti, ci, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Validate checks the whole pipeline and returns every problem at once,
// joined, each prefixed with its path:
//
//	tables[0].connectors[1].start_after: no connector has label "backfil"
//
// It checks names (present, well formed, unique), column types, primary
// keys, labels, start_after (known labels, no cycles), the queue settings,
// and, through checker, each transport's and format's config.
func Validate(p *Pipeline, checker Checker) error {
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	if err := CheckName(p.Name); err != nil {
		add("name", "%v", err)
	}
	if len(p.Tables) == 0 {
		add("tables", "a pipeline needs at least one table")
	}
	labels := map[string][]string{} // label -> endpoints carrying it
	tableNames := map[string]int{}
	for ti := range p.Tables {
		t := &p.Tables[ti]
		tp := fmt.Sprintf("tables[%d]", ti)
		if err := CheckName(t.Name); err != nil {
			add(tp+".name", "%v", err)
		} else if prev, dup := tableNames[strings.ToLower(t.Name)]; dup {
			add(tp+".name", "duplicate table %q (also tables[%d])", t.Name, prev)
		} else {
			tableNames[strings.ToLower(t.Name)] = ti
		}
		if len(t.Columns) == 0 {
			add(tp+".columns", "a table needs at least one column")
		}
		cols := map[string]bool{}
		schemaOK := true
		for ci, c := range t.Columns {
			cp := fmt.Sprintf("%s.columns[%d]", tp, ci)
			switch {
			case c.Name == "":
				add(cp+".name", "required")
			case strings.EqualFold(c.Name, WeightColumn):
				add(cp+".name", "%q is reserved for the table store's weights", c.Name)
			case cols[strings.ToLower(c.Name)]:
				add(cp+".name", "duplicate column %q", c.Name)
			}
			cols[strings.ToLower(c.Name)] = true
			if _, err := ArrowType(c.Type); err != nil {
				add(cp+".type", "%v", err)
				schemaOK = false
			}
		}
		for ki, k := range t.PrimaryKey {
			if !cols[strings.ToLower(k)] {
				add(fmt.Sprintf("%s.primary_key[%d]", tp, ki), "no column %q", k)
			}
		}
		var schema *arrow.Schema
		if schemaOK && len(t.Columns) > 0 {
			schema, _ = t.Schema()
		}
		names := map[string]bool{}
		for ci := range t.Connectors {
			c := &t.Connectors[ci]
			cp := fmt.Sprintf("%s.connectors[%d]", tp, ci)
			if err := CheckName(c.Name); err != nil {
				add(cp+".name", "%v", err)
			} else if names[c.Name] {
				add(cp+".name", "duplicate connector %q in table %s", c.Name, t.Name)
			}
			names[c.Name] = true
			for li, l := range c.Labels {
				if l == "" {
					add(fmt.Sprintf("%s.labels[%d]", cp, li), "empty label")
				}
				labels[l] = append(labels[l], Endpoint(t.Name, c.Name))
			}
			if c.MaxQueuedRecords < 0 {
				add(cp+".max_queued_records", "must not be negative")
			}
			if c.MaxBatchSize < 0 {
				add(cp+".max_batch_size", "must not be negative")
			}
			if c.CommitIntervalMs < 0 {
				add(cp+".commit_interval_ms", "must not be negative")
			}
			if c.Transport.Name == "" {
				add(cp+".transport.name", "required")
			} else if checker != nil && schema != nil {
				if err := checker.CheckConnector(t, c, schema); err != nil {
					for _, e := range flatten(err) {
						errs = append(errs, fmt.Errorf("%s.%w", cp, e))
					}
				}
			}
		}
	}
	for ti := range p.Tables {
		for ci, c := range p.Tables[ti].Connectors {
			for _, l := range c.StartAfter {
				if len(labels[l]) == 0 {
					add(fmt.Sprintf("tables[%d].connectors[%d].start_after", ti, ci), "no connector has label %q", l)
				}
			}
		}
	}
	if cycle := startAfterCycle(p); cycle != nil {
		add("start_after", "cycle: %s", strings.Join(cycle, " -> "))
	}
	switch p.DeliveryGuarantee {
	case "", "at_least_once":
	case "exactly_once":
		if g, ok := checker.(GuaranteeChecker); ok && len(errs) == 0 {
			for ti := range p.Tables {
				t := &p.Tables[ti]
				schema, _ := t.Schema()
				for ci := range t.Connectors {
					if got := g.Guarantee(t, &t.Connectors[ci], schema); got != "exactly_once" {
						add(fmt.Sprintf("tables[%d].connectors[%d]", ti, ci), "connector %s is %s, but the pipeline's delivery_guarantee is exactly_once", Endpoint(t.Name, t.Connectors[ci].Name), got)
					}
				}
			}
		}
	default:
		add("delivery_guarantee", "%q: want exactly_once or at_least_once", p.DeliveryGuarantee)
	}
	return errors.Join(errs...)
}

// flatten splits errors joined with errors.Join.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// StartAfter returns, for each endpoint, the endpoints it waits for: every
// connector carrying one of its start_after labels.
func (p *Pipeline) StartAfter() map[string][]string {
	labels := map[string][]string{}
	for _, t := range p.Tables {
		for _, c := range t.Connectors {
			for _, l := range c.Labels {
				labels[l] = append(labels[l], Endpoint(t.Name, c.Name))
			}
		}
	}
	deps := map[string][]string{}
	for _, t := range p.Tables {
		for _, c := range t.Connectors {
			for _, l := range c.StartAfter {
				deps[Endpoint(t.Name, c.Name)] = append(deps[Endpoint(t.Name, c.Name)], labels[l]...)
			}
		}
	}
	return deps
}

// startAfterCycle returns one cycle of the start_after graph, or nil.
func startAfterCycle(p *Pipeline) []string {
	deps := p.StartAfter()
	nodes := make([]string, 0, len(deps))
	for n := range deps {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var stack []string
	var found []string
	var visit func(n string) bool
	visit = func(n string) bool {
		color[n] = grey
		stack = append(stack, n)
		for _, d := range deps[n] {
			if color[d] == grey {
				for i, s := range stack {
					if s == d {
						found = append(append([]string{}, stack[i:]...), d)
					}
				}
				return true
			}
			if color[d] == white && visit(d) {
				return true
			}
		}
		stack = stack[:len(stack)-1]
		color[n] = black
		return false
	}
	for _, n := range nodes {
		if color[n] == white && visit(n) {
			return found
		}
	}
	return nil
}
