// Package datagen is the datagen transport: Feldera's random data
// generator (https://docs.feldera.com/connectors/sources/datagen). A plan
// lists phases, each with a record limit, a rate and per-column
// strategies. Generation is deterministic: record i's values are a pure
// function of (seed, i, column), so a connector resumed from a checkpoint
// yields exactly the records it would have produced.
package datagen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/decimal128"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/format"
)

// Config is Feldera's datagen transport config.
type Config struct {
	// Plan lists the generation phases, run in order. Default: one phase,
	// unbounded, as fast as possible, every column "increment".
	Plan []Plan `json:"plan,omitempty"`
	// Seed makes runs reproducible; default 0. Generation is deterministic
	// for any seed.
	Seed uint64 `json:"seed,omitempty"`
	// Workers is accepted for compatibility with Feldera; Sluice generates
	// from one goroutine per connector.
	Workers int `json:"workers,omitempty"`
}

// Plan is one phase of generation.
type Plan struct {
	// Limit is the number of records of this phase; nil means unbounded
	// (only the last phase may be unbounded). With every phase bounded the
	// connector reaches end of input.
	Limit *int64 `json:"limit,omitempty"`
	// Rate is records per second; nil or 0 means as fast as possible.
	Rate *int64 `json:"rate,omitempty"`
	// Fields configures columns by name; unlisted columns use "increment".
	Fields map[string]Field `json:"fields,omitempty"`
}

// Field says how one column's values are generated.
type Field struct {
	// Strategy is "increment" (the default), "uniform" or "zipf".
	Strategy string `json:"strategy,omitempty"`
	// Range is [min, max): numbers for numeric columns, days since
	// 1970-01-01 for DATE, milliseconds since the epoch for TIMESTAMP and
	// since midnight for TIME. For strings it ranges the generated number.
	Range []float64 `json:"range,omitempty"`
	// Scale multiplies increment's step; default 1.
	Scale int64 `json:"scale,omitempty"`
	// Values, when set, are picked from instead of numbers: increment
	// cycles through them, uniform and zipf pick by index.
	Values []any `json:"values,omitempty"`
	// NullPercentage is the chance, 0 to 100, that a value is NULL; a
	// NOT NULL column takes none.
	NullPercentage int `json:"null_percentage,omitempty"`
	// E is zipf's exponent; default 1.
	E float64 `json:"e,omitempty"`
}

// Source generates records.
type Source struct {
	cfg     Config
	p       connectors.Params
	gens    [][]generator // per plan, per column
	starts  []int64       // first global record index of each plan
	next    int64         // next record to generate
	rows    *format.Rows
	started time.Time // when this activation started generating
	base    int64     // next at activation
	values  []any
}

// New validates cfg and returns a source. Errors name the config field.
func New(p connectors.Params) (connectors.Source, error) {
	var cfg Config
	if err := connectors.DecodeConfig("transport", p.Config, &cfg); err != nil {
		return nil, err
	}
	if len(cfg.Plan) == 0 {
		cfg.Plan = []Plan{{}}
	}
	s := &Source{cfg: cfg, p: p}
	var errs []error
	var start int64
	zipfLeft := maxZipfValues // what the zipf fields of all plans may still take
	for pi, plan := range cfg.Plan {
		path := fmt.Sprintf("plan[%d]", pi)
		if plan.Limit == nil && pi != len(cfg.Plan)-1 {
			errs = append(errs, connectors.TransportError(path+".limit", "only the last plan may be unbounded"))
		}
		if plan.Limit != nil && *plan.Limit < 0 {
			errs = append(errs, connectors.TransportError(path+".limit", "must not be negative"))
		}
		if plan.Rate != nil && *plan.Rate < 0 {
			errs = append(errs, connectors.TransportError(path+".rate", "must not be negative"))
		}
		names := make([]string, 0, len(plan.Fields))
		for name := range plan.Fields {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			if len(p.Schema.FieldIndices(name)) == 0 {
				errs = append(errs, connectors.TransportError(path+".fields."+name, "no such column"))
			}
		}
		gens := make([]generator, p.Schema.NumFields())
		for ci, f := range p.Schema.Fields() {
			g, err := newGenerator(plan.Fields[f.Name], f.Type, cfg.Seed, uint64(pi)<<32|uint64(ci), &zipfLeft)
			if err != nil {
				errs = append(errs, connectors.TransportError(path+".fields."+f.Name, "%v", err))
			}
			if plan.Fields[f.Name].NullPercentage > 0 && !f.Nullable {
				errs = append(errs, connectors.TransportError(path+".fields."+f.Name+".null_percentage", "column %s is NOT NULL", f.Name))
			}
			gens[ci] = g
		}
		s.gens = append(s.gens, gens)
		s.starts = append(s.starts, start)
		switch {
		case plan.Limit == nil:
			start = math.MaxInt64
		case *plan.Limit > math.MaxInt64-start:
			errs = append(errs, connectors.TransportError(path+".limit", "the plans' limits add up to more than %d records", int64(math.MaxInt64)))
			start = math.MaxInt64
		case *plan.Limit > 0:
			start += *plan.Limit
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s.values = make([]any, p.Schema.NumFields())
	return s, nil
}

type checkpoint struct {
	Records int64 `json:"records"`
}

// Open positions the generator after checkpoint's record count.
func (s *Source) Open(_ context.Context, cp connectors.Checkpoint) error {
	if len(cp) > 0 {
		var c checkpoint
		if err := json.Unmarshal(cp, &c); err != nil {
			return connectors.Fatal(fmt.Errorf("datagen checkpoint %s: %w", cp, err))
		}
		s.next = c.Records
	}
	s.rows = format.NewRows(s.p.Alloc(), s.p.Schema)
	s.started, s.base = time.Now(), s.next
	return nil
}

// plan returns the index of the plan that generates record i, or -1 past
// the last.
func (s *Source) plan(i int64) int {
	for pi := len(s.starts) - 1; pi >= 0; pi-- {
		if i >= s.starts[pi] {
			if l := s.cfg.Plan[pi].Limit; l != nil && i >= s.starts[pi]+*l {
				return -1
			}
			return pi
		}
	}
	return -1
}

// Read generates up to BatchSize records of the current plan, as many as
// its rate allows now, waiting for the first one if needed.
func (s *Source) Read(ctx context.Context) (connectors.Batch, error) {
	pi := s.plan(s.next)
	if pi < 0 {
		return connectors.Batch{}, connectors.ErrEndOfInput
	}
	plan := s.cfg.Plan[pi]
	n := int64(s.p.BatchSize)
	if plan.Limit != nil {
		n = min(n, s.starts[pi]+*plan.Limit-s.next)
	}
	if plan.Rate != nil && *plan.Rate > 0 {
		rate := *plan.Rate
		// Pace from where this plan started in this activation.
		from := max(s.base, s.starts[pi])
		origin := s.started
		if s.starts[pi] > s.base {
			origin = s.started.Add(time.Duration(float64(s.starts[pi]-s.base) / float64(rate) * float64(time.Second)))
		}
		due := func(k int64) time.Time {
			return origin.Add(time.Duration(float64(k-from) / float64(rate) * float64(time.Second)))
		}
		if wait := time.Until(due(s.next)); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return connectors.Batch{}, ctx.Err()
			case <-t.C:
			}
		}
		ready := from + int64(time.Since(origin).Seconds()*float64(rate)) + 1
		n = max(1, min(n, ready-s.next))
	}
	for range n {
		idx := s.next - s.starts[pi]
		for ci, g := range s.gens[pi] {
			s.values[ci] = g.value(s.next, idx)
		}
		if err := s.rows.AppendValues(s.values, 1); err != nil {
			return connectors.Batch{}, connectors.Fatal(fmt.Errorf("datagen: %w", err))
		}
		s.next++
	}
	cp, _ := json.Marshal(checkpoint{Records: s.next})
	return connectors.Batch{Record: s.rows.NewRecordBatch(), Checkpoint: cp}, nil
}

// Close releases the builder.
func (s *Source) Close() error {
	if s.rows != nil {
		s.rows.Release()
	}
	return nil
}

// generator produces one column's values.
type generator struct {
	dt       arrow.DataType
	strategy string
	lo, hi   float64 // range; hi <= lo means unbounded
	scale    int64
	values   []any
	nullPct  uint64
	seed     uint64
	cdf      []float64 // zipf
}

// maxZipfValues bounds the values of a connector's zipf fields, all
// plans together: each takes 8 bytes of table and some work in New
// (10,000,000 values are 80 MB and about half a second).
const maxZipfValues = 10_000_000

// newGenerator checks f and builds its generator; a zipf field takes
// its values from *zipfLeft.
func newGenerator(f Field, dt arrow.DataType, seed, stream uint64, zipfLeft *int) (generator, error) {
	g := generator{dt: dt, strategy: f.Strategy, scale: f.Scale, values: f.Values, nullPct: uint64(f.NullPercentage), seed: mix(seed ^ mix(stream+1))}
	if g.strategy == "" {
		g.strategy = "increment"
	}
	if g.scale == 0 {
		g.scale = 1
	}
	if f.NullPercentage < 0 || f.NullPercentage > 100 {
		return g, fmt.Errorf("null_percentage: want 0 to 100, got %d", f.NullPercentage)
	}
	switch len(f.Range) {
	case 0:
	case 2:
		g.lo, g.hi = f.Range[0], f.Range[1]
		if g.hi <= g.lo {
			return g, fmt.Errorf("range: want [min, max) with min < max, got %v", f.Range)
		}
	default:
		return g, fmt.Errorf("range: want [min, max), got %d numbers", len(f.Range))
	}
	for i, v := range g.values {
		if _, err := convertValue(dt, v); err != nil {
			return g, fmt.Errorf("values[%d]: %w", i, err)
		}
	}
	switch g.strategy {
	case "increment", "uniform":
	case "zipf":
		n := len(g.values)
		if n == 0 {
			if g.hi <= g.lo {
				return g, fmt.Errorf("zipf wants a range or values")
			}
			if g.hi-g.lo > 10_000_000 {
				return g, fmt.Errorf("range: zipf over %g values: at most 10,000,000", g.hi-g.lo)
			}
			n = int(g.hi - g.lo)
		}
		if n > 10_000_000 {
			return g, fmt.Errorf("zipf over %d values: at most 10,000,000", n)
		}
		if n > *zipfLeft {
			return g, fmt.Errorf("zipf over %d values: the connector's zipf fields take at most 10,000,000 values in all, and the fields before this one take %d", n, maxZipfValues-*zipfLeft)
		}
		*zipfLeft -= n
		e := f.E
		if e == 0 {
			e = 1
		}
		g.cdf = make([]float64, n)
		sum := 0.0
		for k := range n {
			sum += 1 / math.Pow(float64(k+1), e)
			g.cdf[k] = sum
		}
		if math.IsInf(sum, 0) || math.IsNaN(sum) {
			// A very negative e overflows the weights (k+1)^-e: scale
			// them by the largest, the last one, in log space.
			top := -e * math.Log(float64(n))
			sum = 0
			for k := range n {
				sum += math.Exp(-e*math.Log(float64(k+1)) - top)
				g.cdf[k] = sum
			}
		}
		for k := range g.cdf {
			g.cdf[k] /= sum
		}
	default:
		return g, fmt.Errorf("strategy: unknown %q: want increment, uniform or zipf", g.strategy)
	}
	switch dt.ID() {
	case arrow.BOOL, arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64, arrow.FLOAT32, arrow.FLOAT64,
		arrow.DECIMAL128, arrow.STRING, arrow.BINARY, arrow.DATE32, arrow.TIME64, arrow.TIMESTAMP:
	default:
		return g, fmt.Errorf("cannot generate %s", dt)
	}
	return g, nil
}

// mix is splitmix64's finalizer: a bijective 64-bit hash.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// value returns the value for global record i, the idx-th of its plan.
func (g *generator) value(i, idx int64) any {
	h := mix(g.seed ^ mix(uint64(i)))
	if g.nullPct > 0 && mix(h)%100 < g.nullPct {
		return nil
	}
	unit := float64(h>>11) / (1 << 53) // uniform in [0, 1)
	if len(g.values) > 0 {
		var k int
		switch g.strategy {
		case "increment":
			n := int64(len(g.values)) // a negative scale cycles backwards
			k = int((idx*g.scale%n + n) % n)
		case "uniform":
			k = int(h % uint64(len(g.values)))
		case "zipf":
			k = sort.SearchFloat64s(g.cdf, unit)
		}
		v, _ := convertValue(g.dt, g.values[k])
		return v
	}
	var x float64
	switch g.strategy {
	case "increment":
		x = float64(idx * g.scale)
		if g.hi > g.lo {
			x = g.lo + math.Mod(x, math.Floor(g.hi-g.lo))
		}
	case "uniform":
		lo, hi := g.lo, g.hi
		if hi <= lo {
			lo, hi = defaultRange(g.dt)
		}
		x = lo + unit*(hi-lo)
		if !isFloat(g.dt) {
			x = math.Floor(x)
		}
	case "zipf":
		x = g.lo + float64(sort.SearchFloat64s(g.cdf, unit))
	}
	return numberValue(g.dt, x, h)
}

func isFloat(dt arrow.DataType) bool {
	return dt.ID() == arrow.FLOAT32 || dt.ID() == arrow.FLOAT64 || dt.ID() == arrow.DECIMAL128
}

func defaultRange(dt arrow.DataType) (float64, float64) {
	switch dt.ID() {
	case arrow.INT8:
		return math.MinInt8, math.MaxInt8
	case arrow.INT16:
		return math.MinInt16, math.MaxInt16
	case arrow.INT32:
		return math.MinInt32, math.MaxInt32
	case arrow.INT64, arrow.STRING, arrow.BINARY:
		return 0, 1 << 53
	case arrow.DATE32:
		return 0, 36525 // 1970 .. 2070
	case arrow.TIMESTAMP:
		return 0, 3.15576e12 // 1970 .. 2070, in ms
	case arrow.TIME64:
		return 0, 86400e3
	case arrow.BOOL:
		return 0, 2
	}
	return 0, 1
}

func numberValue(dt arrow.DataType, x float64, h uint64) any {
	switch dt.ID() {
	case arrow.BOOL:
		return int64(x)%2 == 1
	case arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64:
		lo, hi := defaultRange(dt)
		if dt.ID() == arrow.INT64 {
			return int64(x)
		}
		return int64(math.Max(lo, math.Min(hi, x)))
	case arrow.FLOAT32, arrow.FLOAT64:
		return x
	case arrow.DECIMAL128:
		d := dt.(*arrow.Decimal128Type)
		n, err := decimal128.FromFloat64(x, d.Precision, d.Scale)
		if err != nil {
			return decimal128.Num{}
		}
		return n
	case arrow.STRING:
		return strconv.FormatInt(int64(x), 10)
	case arrow.BINARY:
		return []byte(strconv.FormatInt(int64(x), 10))
	case arrow.DATE32:
		return arrow.Date32(int32(x))
	case arrow.TIME64:
		return arrow.Time64(int64(math.Mod(x, 86400e3)) * 1000)
	case arrow.TIMESTAMP:
		return arrow.Timestamp(int64(x) * 1000)
	}
	return nil
}

// convertValue converts a config value to the column's Go value.
func convertValue(dt arrow.DataType, v any) (any, error) {
	switch v := v.(type) {
	case float64:
		if !isFloat(dt) && v != math.Trunc(v) {
			return nil, fmt.Errorf("want an integer, got %v", v)
		}
		if dt.ID() == arrow.STRING {
			return strconv.FormatFloat(v, 'f', -1, 64), nil
		}
		return numberValue(dt, v, 0), nil
	case string:
		return format.ParseText(dt, v)
	case bool:
		if dt.ID() == arrow.BOOL {
			return v, nil
		}
	}
	return nil, fmt.Errorf("cannot use %v as %s", v, dt)
}

// Bounded reports whether every phase of the plan has a limit.
func (s *Source) Bounded() bool {
	for _, p := range s.cfg.Plan {
		if p.Limit == nil {
			return false
		}
	}
	return true
}
