package connectors

import (
	"fmt"
	"time"
)

// ParseDatetime parses a point in time as the lakehouse sources' datetime
// options take it (Feldera's delta_table_input and iceberg_input): RFC
// 3339 ("2024-01-02T15:04:05Z"), or "2024-01-02 15:04:05[.fraction]",
// "2024-01-02T15:04:05" or "2024-01-02", read as UTC.
func ParseDatetime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("want RFC 3339 (2024-01-02T15:04:05Z) or 2024-01-02 15:04:05, got %q", s)
}
