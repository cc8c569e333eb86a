package predicate_test

import (
	"context"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/compute"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/connectors/predicate"
)

var schema = arrow.NewSchema([]arrow.Field{
	{Name: "id", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	{Name: "price", Type: &arrow.Decimal128Type{Precision: 15, Scale: 2}, Nullable: true},
	{Name: "Origin", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "day", Type: arrow.FixedWidthTypes.Date32, Nullable: true},
}, nil)

const rows = `[
	{"id": 1, "price": "9999.99", "Origin": "SFO", "day": "2024-01-01"},
	{"id": 2, "price": "10000.00", "Origin": "ORD", "day": "2024-02-01"},
	{"id": 3, "price": "12.50", "Origin": null, "day": "2024-03-01"},
	{"id": 4, "price": null, "Origin": "it's", "day": null},
	{"id": null, "price": "1.00", "Origin": "SFO", "day": "2024-01-15"}
]`

func TestApply(t *testing.T) {
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	ctx := compute.WithAllocator(context.Background(), alloc)
	for _, tc := range []struct {
		filter string
		ids    string // the ids kept, "(null)" for the row without one
	}{
		{"id = 2", "2"},
		{"price < 10000", "1 3 (null)"},
		{"price >= 10000.00 OR origin = 'SFO'", "1 2 (null)"},
		{`"Origin" IS NULL`, "3"},
		{"origin IS NOT NULL AND NOT id IN (1, 4)", "2"},
		{"origin <> 'SFO'", "2 4"}, // NULL <> 'SFO' is NULL: dropped, as in SQL
		{"day BETWEEN DATE '2024-01-01' AND DATE '2024-01-31'", "1 (null)"},
		{"id NOT BETWEEN 2 AND 3", "1 4"},
		{"origin = 'it''s'", "4"},
		{"(id > 1 OR id < -1) AND (price IS NULL OR price > 20)", "2 4"},
		{"2 < id", "3 4"},
	} {
		t.Run(tc.filter, func(t *testing.T) {
			p, err := predicate.Parse(tc.filter, schema)
			require.NoError(t, err)
			rec, _, err := array.RecordFromJSON(alloc, schema, strings.NewReader(rows))
			require.NoError(t, err)
			out, err := p.Apply(ctx, rec)
			require.NoError(t, err)
			defer out.Release()
			var ids []string
			for i := range int(out.NumRows()) {
				ids = append(ids, out.Column(0).ValueStr(i))
			}
			require.Equal(t, tc.ids, strings.Join(ids, " "))
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ filter, want string }{
		{"idx = 1", `unknown column "idx" at character 1`},
		{"id = ", "expected a column or a value at the end"},
		{"id = 1 AND", "expected a column or a value at the end"},
		{"id 1", `expected a comparison (=, <>, <, <=, >, >=, IS, BETWEEN, IN) at character 4, found "1"`},
		{"(id = 1", `expected ")" at the end`},
		{"id = 1.5", "cannot compare integer column id with 1.5: write an integer"},
		{"price = 'cheap'", `cannot compare column price (decimal(15, 2)) with cheap`},
		{"origin = 'SFO", "unterminated ' at character 10"},
		{"1 = 1", "compare at least one column"},
		{"id = 1 id", `unexpected "id" at character 8`},
		{"day > DATE 'monday'", `bad DATE literal "monday" at character 12`},
	} {
		t.Run(tc.filter, func(t *testing.T) {
			_, err := predicate.Parse(tc.filter, schema)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}
