package pipeline

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
)

// WeightColumn is the column the table store adds to every change: +1 for an
// insert, -1 for a delete (DBSP's weights). Tables may not declare it.
const WeightColumn = "_weight"

var typePattern = regexp.MustCompile(`^([A-Z][A-Z ]*?)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?$`)

// ArrowType maps a SQL type to its Arrow type:
//
//	BOOLEAN                       bool
//	TINYINT SMALLINT INT BIGINT   int8 int16 int32 int64 (INTEGER = INT)
//	REAL, DOUBLE                  float32, float64 (FLOAT = DOUBLE PRECISION = DOUBLE)
//	DECIMAL(p,s), NUMERIC(p,s)    decimal128(p,s); DECIMAL alone is (38,0)
//	CHAR, VARCHAR, TEXT, STRING   utf8 (a length in parentheses is accepted)
//	DATE                          date32 (days since 1970-01-01)
//	TIME                          time64[us]
//	TIMESTAMP                     timestamp[us] without time zone
//	VARBINARY, BINARY, BYTEA      binary
//
// Matching is case-insensitive. Any other type is an error.
func ArrowType(sqlType string) (arrow.DataType, error) {
	m := typePattern.FindStringSubmatch(strings.ToUpper(strings.TrimSpace(sqlType)))
	if m == nil {
		return nil, fmt.Errorf("unsupported column type %q", sqlType)
	}
	name, hasArgs := strings.Join(strings.Fields(m[1]), " "), m[2] != ""
	noArgs := func(t arrow.DataType) (arrow.DataType, error) {
		if hasArgs {
			return nil, fmt.Errorf("column type %s takes no arguments", name)
		}
		return t, nil
	}
	switch name {
	case "BOOLEAN", "BOOL":
		return noArgs(arrow.FixedWidthTypes.Boolean)
	case "TINYINT":
		return noArgs(arrow.PrimitiveTypes.Int8)
	case "SMALLINT":
		return noArgs(arrow.PrimitiveTypes.Int16)
	case "INT", "INTEGER":
		return noArgs(arrow.PrimitiveTypes.Int32)
	case "BIGINT":
		return noArgs(arrow.PrimitiveTypes.Int64)
	case "REAL":
		return noArgs(arrow.PrimitiveTypes.Float32)
	case "DOUBLE", "DOUBLE PRECISION", "FLOAT":
		return noArgs(arrow.PrimitiveTypes.Float64)
	case "DECIMAL", "NUMERIC", "DEC":
		p, s := 38, 0
		if hasArgs {
			p, _ = strconv.Atoi(m[2])
			if m[3] != "" {
				s, _ = strconv.Atoi(m[3])
			}
		}
		if p < 1 || p > 38 || s > p {
			return nil, fmt.Errorf("column type %s: want 1 <= precision <= 38 and scale <= precision", sqlType)
		}
		return &arrow.Decimal128Type{Precision: int32(p), Scale: int32(s)}, nil
	case "CHAR", "CHARACTER", "VARCHAR", "CHARACTER VARYING", "TEXT", "STRING":
		if m[3] != "" {
			return nil, fmt.Errorf("column type %s takes one length", name)
		}
		return arrow.BinaryTypes.String, nil
	case "DATE":
		return noArgs(arrow.FixedWidthTypes.Date32)
	case "TIME":
		return noArgs(arrow.FixedWidthTypes.Time64us)
	case "TIMESTAMP":
		return noArgs(&arrow.TimestampType{Unit: arrow.Microsecond})
	case "VARBINARY", "BINARY", "BYTEA":
		if m[3] != "" {
			return nil, fmt.Errorf("column type %s takes one length", name)
		}
		return arrow.BinaryTypes.Binary, nil
	}
	return nil, fmt.Errorf("unsupported column type %q", sqlType)
}

// Schema returns the table's Arrow schema: one field per column, in order.
// Call it on a validated table; an unsupported type is an error.
func (t *Table) Schema() (*arrow.Schema, error) {
	fields := make([]arrow.Field, len(t.Columns))
	for i, c := range t.Columns {
		dt, err := ArrowType(c.Type)
		if err != nil {
			return nil, fmt.Errorf("table %s column %s: %w", t.Name, c.Name, err)
		}
		fields[i] = arrow.Field{Name: c.Name, Type: dt, Nullable: c.IsNullable()}
	}
	return arrow.NewSchema(fields, nil), nil
}

// ChangeSchema returns the table's schema followed by the int64
// [WeightColumn]: the shape of every record batch a source produces and the
// table store writes.
func (t *Table) ChangeSchema() (*arrow.Schema, error) {
	s, err := t.Schema()
	if err != nil {
		return nil, err
	}
	return WithWeight(s), nil
}

// WithWeight appends the non-nullable int64 [WeightColumn] to s.
func WithWeight(s *arrow.Schema) *arrow.Schema {
	fields := append(s.Fields(), arrow.Field{Name: WeightColumn, Type: arrow.PrimitiveTypes.Int64})
	return arrow.NewSchema(fields, nil)
}
