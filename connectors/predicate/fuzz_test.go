package predicate_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/compute"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/connectors/predicate"
)

// fuzzSchema has a column of every type a filter may compare, and row,
// each row's index, to tell which rows a filter kept.
var fuzzSchema = arrow.NewSchema([]arrow.Field{
	{Name: "row", Type: arrow.PrimitiveTypes.Int64},
	{Name: "id", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	{Name: "price", Type: &arrow.Decimal128Type{Precision: 15, Scale: 2}, Nullable: true},
	{Name: "Origin", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "day", Type: arrow.FixedWidthTypes.Date32, Nullable: true},
	{Name: "x", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: "ok", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
	{Name: "at", Type: &arrow.TimestampType{Unit: arrow.Microsecond}, Nullable: true},
	{Name: "n", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
	{Name: "r", Type: arrow.PrimitiveTypes.Float32, Nullable: true},
	{Name: "small", Type: arrow.PrimitiveTypes.Int8, Nullable: true},
	{Name: "bin", Type: arrow.BinaryTypes.Binary, Nullable: true},
	{Name: "t", Type: arrow.FixedWidthTypes.Time64us, Nullable: true},
	{Name: "amount", Type: &arrow.Decimal128Type{Precision: 10, Scale: 2}, Nullable: true},
}, nil)

// fuzzRows are the rows every parsed filter is applied to: ordinary
// values, extremes and NULLs.
const fuzzRows = `[
	{"row": 0, "id": 1, "price": "9999.99", "Origin": "SFO", "day": "2024-01-01", "x": 1.5, "ok": true, "at": "2024-01-01 00:00:00", "n": 7, "r": 0.5, "small": -1, "bin": "YWJj", "t": "12:00:00", "amount": "1.00"},
	{"row": 1, "id": 2, "price": "10000.00", "Origin": "ORD", "day": "2024-02-01", "x": -0.0, "ok": false, "at": "1970-01-01 00:00:00", "n": -2147483648, "r": 3.4e38, "small": 127, "bin": "", "t": "00:00:00", "amount": "-99999999.99"},
	{"row": 2, "id": 3, "price": "12.50", "Origin": null, "day": "2024-03-01", "x": 1e308, "ok": null, "at": null, "n": 2147483647, "r": null, "small": -128, "bin": null, "t": null, "amount": null},
	{"row": 3, "id": 4, "price": null, "Origin": "it's", "day": null, "x": null, "ok": true, "at": "2262-04-11 23:47:16", "n": null, "r": -1, "small": null, "bin": "/w==", "t": "23:59:59.999999", "amount": "0.01"},
	{"row": 4, "id": null, "price": "1.00", "Origin": "", "day": "1900-01-01", "x": 0, "ok": false, "at": "1900-01-01 00:00:00", "n": 0, "r": 0, "small": 0, "bin": "AA==", "t": "06:30:00", "amount": "99999999.99"},
	{"row": 5, "id": -9223372036854775808, "price": "-9999999999999.99", "Origin": "é", "day": "9999-12-31", "x": -1e-308, "ok": true, "at": "2024-02-29 12:34:56.789", "n": 1, "r": 1e-45, "small": 1, "bin": "gA==", "t": "00:00:00.000001", "amount": "0.00"}
]`

// FuzzParse parses fuzzed filters against a table of every column type.
// Nothing may panic; a filter that parses applies to the rows above
// without a panic or a leak, keeps a subset of them in order, and does
// so deterministically; and it composes as SQL says: "(f)" and
// "NOT (NOT (f))" keep the same rows as f, and "NOT (f)" keeps none of
// them. (Predicate has no String method, so there is no printed form to
// re-parse; these rewritings are the round trip.)
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"id = 2",
		"price >= 10000.00 OR origin = 'SFO'",
		`"Origin" IS NULL AND NOT id IN (1, 4)`,
		"day BETWEEN DATE '2024-01-01' AND DATE '2024-01-31'",
		"at > TIMESTAMP '2024-01-01 00:00:00' AND x <= -1.5e3",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		p, err := predicate.Parse(src, fuzzSchema)
		if err != nil {
			return
		}
		alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
		defer alloc.AssertSize(t, 0)
		ctx := compute.WithAllocator(context.Background(), alloc)
		rec, _, err := array.RecordFromJSON(alloc, fuzzSchema, strings.NewReader(fuzzRows))
		if err != nil {
			t.Fatal(err)
		}
		defer rec.Release()

		kept, applyErr := fuzzApply(ctx, t, p, rec)
		if again, err := fuzzApply(ctx, t, p, rec); (err == nil) != (applyErr == nil) || !slices.Equal(kept, again) {
			t.Fatalf("%q: applied twice, kept %v (%v), then %v (%v)", src, kept, applyErr, again, err)
		}
		for _, form := range []struct {
			src  string
			same bool // keeps the same rows as src; else none of them
		}{
			{"(" + src + ")", true},
			{"NOT (NOT (" + src + "))", true},
			{"NOT (" + src + ")", false},
		} {
			q, err := predicate.Parse(form.src, fuzzSchema)
			if err != nil {
				t.Fatalf("%q parses, but %q does not: %v", src, form.src, err)
			}
			got, err := fuzzApply(ctx, t, q, rec)
			if (err == nil) != (applyErr == nil) {
				t.Fatalf("%q applies with error %v, but %q with %v", src, applyErr, form.src, err)
			}
			if applyErr != nil {
				continue
			}
			if form.same && !slices.Equal(kept, got) {
				t.Fatalf("%q keeps rows %v, but %q keeps %v", src, kept, form.src, got)
			}
			for _, r := range got {
				if !form.same && slices.Contains(kept, r) {
					t.Fatalf("%q and %q both keep row %d", src, form.src, r)
				}
			}
		}
	})
}

// fuzzApply applies p to rec and returns the indexes of the rows kept,
// checking that they are rows of rec, in order, with rec's schema.
func fuzzApply(ctx context.Context, t *testing.T, p *predicate.Predicate, rec arrow.RecordBatch) (kept []int64, err error) {
	rec.Retain()
	out, err := p.Apply(ctx, rec)
	if err != nil {
		return nil, err
	}
	defer out.Release()
	if !out.Schema().Equal(rec.Schema()) {
		t.Fatalf("Apply returned schema %s", out.Schema())
	}
	rows := out.Column(0).(*array.Int64)
	for i := range rows.Len() {
		r := rows.Value(i)
		if r < 0 || r >= rec.NumRows() || (len(kept) > 0 && r <= kept[len(kept)-1]) {
			t.Fatalf("Apply kept row %d after rows %v", r, kept)
		}
		kept = append(kept, r)
	}
	return kept, nil
}
