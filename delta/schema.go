package delta

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
)

// field is a top-level column of a Delta schema (PROTOCOL.md, "Schema
// Serialization Format").
type field struct {
	Name     string          `json:"name"`
	Type     json.RawMessage `json:"type"`
	Nullable bool            `json:"nullable"`
	Metadata map[string]any  `json:"metadata"`
}

// Columns maps the table's logical column names to what the data files
// and partitionValues call them.
type Columns struct {
	// physical maps a logical name (lower case) to its physical name: the
	// name itself without column mapping, the
	// delta.columnMapping.physicalName with it.
	Physical map[string]string
	// partition holds the lower-case logical names of partition columns.
	Partition map[string]bool
}

// ParseColumns reads the metadata's schema and partition columns.
func ParseColumns(md *Metadata) (*Columns, error) {
	var schema struct {
		Fields []field `json:"fields"`
	}
	if err := json.Unmarshal([]byte(md.SchemaString), &schema); err != nil {
		return nil, fmt.Errorf("metaData.schemaString: %w", err)
	}
	mode := md.Configuration["delta.columnMapping.mode"]
	c := &Columns{Physical: map[string]string{}, Partition: map[string]bool{}}
	for _, f := range schema.Fields {
		phys := f.Name
		if mode == "name" || mode == "id" {
			p, ok := f.Metadata["delta.columnMapping.physicalName"].(string)
			if !ok || p == "" {
				return nil, fmt.Errorf("column mapping mode %s, but column %s has no delta.columnMapping.physicalName", mode, f.Name)
			}
			phys = p
		} else if mode != "" && mode != "none" {
			return nil, fmt.Errorf("unknown delta.columnMapping.mode %q", mode)
		}
		c.Physical[strings.ToLower(f.Name)] = phys
	}
	for _, p := range md.PartitionColumns {
		c.Partition[strings.ToLower(p)] = true
	}
	return c, nil
}

// PhysicalName returns the name a logical column has in data files.
func (c *Columns) PhysicalName(logical string) string {
	if p, ok := c.Physical[strings.ToLower(logical)]; ok {
		return p
	}
	return logical
}

// Has reports whether the table has the column (case-insensitive).
func (c *Columns) Has(logical string) bool {
	_, ok := c.Physical[strings.ToLower(logical)]
	return ok
}

// TypeName returns the Delta type of an Arrow type (PROTOCOL.md,
// "Primitive Types"). A timestamp without a time zone is timestamp_ntz,
// which needs the timestampNtz table feature (reader version 3). TIME has
// no Delta type: it is a long, microseconds since midnight (see
// [StorageType]). Other types are an error.
func TypeName(t arrow.DataType) (string, error) {
	switch t := t.(type) {
	case *arrow.BooleanType:
		return "boolean", nil
	case *arrow.Int8Type:
		return "byte", nil
	case *arrow.Int16Type:
		return "short", nil
	case *arrow.Int32Type:
		return "integer", nil
	case *arrow.Int64Type, *arrow.Time64Type:
		return "long", nil
	case *arrow.Float32Type:
		return "float", nil
	case *arrow.Float64Type:
		return "double", nil
	case *arrow.Decimal128Type:
		return fmt.Sprintf("decimal(%d,%d)", t.Precision, t.Scale), nil
	case *arrow.StringType:
		return "string", nil
	case *arrow.BinaryType:
		return "binary", nil
	case *arrow.Date32Type:
		return "date", nil
	case *arrow.TimestampType:
		if t.TimeZone == "" {
			return "timestamp_ntz", nil
		}
		return "timestamp", nil
	}
	return "", fmt.Errorf("no Delta type for %s", t)
}

// SchemaString is the metaData.schemaString of an Arrow schema
// (PROTOCOL.md, "Schema Serialization Format").
func SchemaString(schema *arrow.Schema) (string, error) {
	type fieldOut struct {
		Name     string         `json:"name"`
		Type     string         `json:"type"`
		Nullable bool           `json:"nullable"`
		Metadata map[string]any `json:"metadata"`
	}
	out := struct {
		Type   string     `json:"type"`
		Fields []fieldOut `json:"fields"`
	}{Type: "struct"}
	for _, f := range schema.Fields() {
		t, err := TypeName(f.Type)
		if err != nil {
			return "", fmt.Errorf("column %s: %w", f.Name, err)
		}
		out.Fields = append(out.Fields, fieldOut{Name: f.Name, Type: t, Nullable: f.Nullable, Metadata: map[string]any{}})
	}
	b, err := json.Marshal(out)
	return string(b), err
}

// StorageType is the Arrow type a column has in the data files Sluice
// writes: its own type, except TIME (time64[us]), which Delta lacks and
// is stored as int64 microseconds since midnight.
func StorageType(t arrow.DataType) arrow.DataType {
	if t.ID() == arrow.TIME64 {
		return arrow.PrimitiveTypes.Int64
	}
	return t
}

// primitiveTypes are the Arrow types of Delta's primitive types, as
// Sluice writes them (PROTOCOL.md, "Primitive Types"); decimal(p,s) is
// parsed apart.
var primitiveTypes = map[string]arrow.DataType{
	"boolean":       arrow.FixedWidthTypes.Boolean,
	"byte":          arrow.PrimitiveTypes.Int8,
	"short":         arrow.PrimitiveTypes.Int16,
	"integer":       arrow.PrimitiveTypes.Int32,
	"long":          arrow.PrimitiveTypes.Int64,
	"float":         arrow.PrimitiveTypes.Float32,
	"double":        arrow.PrimitiveTypes.Float64,
	"string":        arrow.BinaryTypes.String,
	"binary":        arrow.BinaryTypes.Binary,
	"date":          arrow.FixedWidthTypes.Date32,
	"timestamp_ntz": &arrow.TimestampType{Unit: arrow.Microsecond},
	"timestamp":     &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"},
}

// ArrowSchema returns the Arrow schema of a table's top-level primitive
// columns, the inverse of [SchemaString] (TIME columns read as the long
// they are stored as). Nested types are an error.
func ArrowSchema(md *Metadata) (*arrow.Schema, error) {
	var s struct {
		Fields []field `json:"fields"`
	}
	if err := json.Unmarshal([]byte(md.SchemaString), &s); err != nil {
		return nil, fmt.Errorf("metaData.schemaString: %w", err)
	}
	fields := make([]arrow.Field, len(s.Fields))
	for i, f := range s.Fields {
		var name string
		if err := json.Unmarshal(f.Type, &name); err != nil {
			return nil, fmt.Errorf("column %s: type %s is not a primitive type", f.Name, f.Type)
		}
		dt, ok := primitiveTypes[name]
		if !ok {
			var p, sc int32
			if _, err := fmt.Sscanf(name, "decimal(%d,%d)", &p, &sc); err != nil {
				return nil, fmt.Errorf("column %s: unsupported type %q", f.Name, name)
			}
			if p < 1 || p > 38 || sc < 0 || sc > p {
				return nil, fmt.Errorf("column %s: type %q: want 1 <= precision <= 38 and 0 <= scale <= precision", f.Name, name)
			}
			dt = &arrow.Decimal128Type{Precision: p, Scale: sc}
		}
		fields[i] = arrow.Field{Name: f.Name, Type: dt, Nullable: f.Nullable}
	}
	return arrow.NewSchema(fields, nil), nil
}
