package delta

import (
	"encoding/json"
	"fmt"
	"strings"
)

// field is a top-level column of a Delta schema (PROTOCOL.md, "Schema
// Serialization Format").
type field struct {
	Name     string          `json:"name"`
	Type     json.RawMessage `json:"type"`
	Nullable bool            `json:"nullable"`
	Metadata map[string]any  `json:"metadata"`
}

// columns maps the table's logical column names to what the data files
// and partitionValues call them.
type columns struct {
	// physical maps a logical name (lower case) to its physical name: the
	// name itself without column mapping, the
	// delta.columnMapping.physicalName with it.
	physical map[string]string
	// partition holds the lower-case logical names of partition columns.
	partition map[string]bool
}

// parseColumns reads the metadata's schema and partition columns.
func parseColumns(md *metadata) (*columns, error) {
	var schema struct {
		Fields []field `json:"fields"`
	}
	if err := json.Unmarshal([]byte(md.SchemaString), &schema); err != nil {
		return nil, fmt.Errorf("metaData.schemaString: %w", err)
	}
	mode := md.Configuration["delta.columnMapping.mode"]
	c := &columns{physical: map[string]string{}, partition: map[string]bool{}}
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
		c.physical[strings.ToLower(f.Name)] = phys
	}
	for _, p := range md.PartitionColumns {
		c.partition[strings.ToLower(p)] = true
	}
	return c, nil
}
