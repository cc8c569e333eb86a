package iceberg

import "github.com/sluicehq/sluice/connectors"

// CachedDeletes returns what src's delete cache holds: the lists of
// positions (one per position delete file and data file) and the sets
// of equality delete keys.
func CachedDeletes(src connectors.Source) (positions, keySets int) {
	c := src.(*Source).dels
	if c == nil {
		return 0, 0
	}
	for _, m := range c.pos {
		positions += len(m)
	}
	for _, m := range c.eq {
		keySets += len(m)
	}
	return positions, keySets
}
