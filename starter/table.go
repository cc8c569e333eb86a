package main

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/pipeline"
	"github.com/sluicehq/sluice/store"
)

func newTableCmd(g *globals) *cobra.Command {
	var changes bool
	var formatName string
	var limit int
	var from int64
	cmd := &cobra.Command{
		Use:   "table PIPELINE TABLE",
		Short: "Print a table's current rows (weights applied) or its change stream",
		Long: `Print a table's rows from the table store (--data-dir): by default its current
snapshot's rows, every insert minus every delete; with --changes the change
stream, version by version (--from-version on), each row with its weight, the
table version that committed it and the connector that wrote it.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if formatName != "json" && formatName != "csv" {
				return fmt.Errorf("--format: want json or csv, got %q", formatName)
			}
			t, err := store.Open(cmd.Context(), store.Location(g.dataDir, args[0], args[1]), g.storeOptions())
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("no table %s in pipeline %s under %s", args[1], args[0], g.dataDir)
			}
			if err != nil {
				return err
			}
			w := newRowWriter(formatName, changes)
			defer w.flush()
			n := 0
			if changes {
				err := t.Changes(cmd.Context(), from, -1, func(c store.Change, rec arrow.RecordBatch) error {
					for i := range int(rec.NumRows()) {
						if limit > 0 && n >= limit {
							return errStop
						}
						row, weight := rowValues(rec, i)
						w.write(rec.Schema(), row, weight, &c)
						n++
					}
					return nil
				})
				if errors.Is(err, errStop) {
					return nil
				}
				return err
			}
			type entry struct {
				row    []any
				weight int64
			}
			var order []string
			rows := map[string]*entry{}
			var schema *arrow.Schema
			err = t.Scan(cmd.Context(), func(rec arrow.RecordBatch) error {
				schema = rec.Schema()
				for i := range int(rec.NumRows()) {
					row, weight := rowValues(rec, i)
					key, _ := json.Marshal(row)
					e := rows[string(key)]
					if e == nil {
						e = &entry{row: row}
						rows[string(key)] = e
						order = append(order, string(key))
					}
					e.weight += weight
				}
				return nil
			})
			if err != nil {
				return err
			}
			for _, k := range order {
				e := rows[k]
				for range e.weight {
					if limit > 0 && n >= limit {
						return nil
					}
					w.write(schema, e.row, 1, nil)
					n++
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&changes, "changes", false, "print the change stream instead of the current rows")
	cmd.Flags().StringVar(&formatName, "format", "json", "json (one object per line) or csv")
	cmd.Flags().IntVar(&limit, "limit", 0, "print at most N rows (0: all)")
	cmd.Flags().Int64Var(&from, "from-version", 0, "with --changes: start at this table version")
	return cmd
}

var errStop = errors.New("stop")

// rowValues returns a row's column values (JSON-ready) and its weight.
func rowValues(rec arrow.RecordBatch, i int) ([]any, int64) {
	n := int(rec.NumCols()) - 1
	row := make([]any, n)
	for c := range n {
		col := rec.Column(c)
		if col.IsNull(i) {
			continue
		}
		row[c] = col.GetOneForMarshal(i)
	}
	weight := rec.Column(n).GetOneForMarshal(i).(int64)
	return row, weight
}

type rowWriter struct {
	format  string
	changes bool
	csv     *csv.Writer
	header  bool
}

func newRowWriter(format string, changes bool) *rowWriter {
	return &rowWriter{format: format, changes: changes, csv: csv.NewWriter(os.Stdout)}
}

func (w *rowWriter) write(schema *arrow.Schema, row []any, weight int64, c *store.Change) {
	if w.format == "json" {
		obj := make(map[string]any, len(row)+3)
		for i, v := range row {
			obj[schema.Field(i).Name] = v
		}
		if w.changes {
			obj[pipeline.WeightColumn] = weight
			obj["_version"] = c.Version
			obj["_connector"] = c.Connector
		}
		b, _ := json.Marshal(obj)
		fmt.Println(string(b))
		return
	}
	if !w.header {
		var names []string
		for i := range row {
			names = append(names, schema.Field(i).Name)
		}
		if w.changes {
			names = append(names, pipeline.WeightColumn, "_version", "_connector")
		}
		_ = w.csv.Write(names)
		w.header = true
	}
	rec := make([]string, 0, len(row)+3)
	for _, v := range row {
		switch v := v.(type) {
		case nil:
			rec = append(rec, "")
		case string:
			rec = append(rec, v)
		default:
			b, _ := json.Marshal(v)
			rec = append(rec, string(b))
		}
	}
	if w.changes {
		rec = append(rec, strconv.FormatInt(weight, 10), strconv.FormatInt(c.Version, 10), c.Connector)
	}
	_ = w.csv.Write(rec)
}

func (w *rowWriter) flush() { w.csv.Flush() }
