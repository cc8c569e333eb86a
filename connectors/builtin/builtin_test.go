package builtin_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/builtin"
	"github.com/sluicehq/sluice/connectors/builtin/checks"
	"github.com/sluicehq/sluice/pipeline"
)

// The command line validates with checks.Registry and the worker runs
// with builtin.Registry: a pipeline one accepts, the other must accept,
// with the same errors, bounds and guarantees.
func TestChecksAgreeWithBuiltin(t *testing.T) {
	full, light := builtin.Registry(), checks.Registry()
	if !slices.Equal(full.Names(), light.Names()) {
		t.Fatalf("names differ:\nbuiltin %v\nchecks  %v", full.Names(), light.Names())
	}
	schema := []pipeline.Column{{Name: "id", Type: "BIGINT"}, {Name: "label", Type: "VARCHAR"}}
	cases := []struct{ transport, config string }{
		{"iceberg_input", `{"mode": "snapshot", "metadata_location": "/data/t"}`},
		{"iceberg_input", `{"mode": "follow", "metadata_location": "/t", "end_snapshot_id": 3}`},
		{"iceberg_input", `{"mode": "follow", "metadata_location": "/t"}`},
		{"iceberg_input", `{"mode": "snapshot", "catalog_type": "sql", "table_name": "ns.t", "sql.uri": "x", "sql.driver": "odbc"}`},
		{"iceberg_input", `{"mode": "tail", "snapshot_filter": "id >", "bogus": 1}`},
		{"iceberg_input", `{"mode": "snapshot", "metadata_location": "/t", "snapshot_id": 1, "datetime": "yesterday"}`},
		{"datagen", `{"plan": [{"limit": 5}]}`},
		{"datagen", `{"plan": [{"rate": -1}]}`},
		{"file_input", `{"path": "x.json", "follow": true}`},
		{"kafka_input", `{"bootstrap.servers": "b:9092", "topic": "t", "enable.partition.eof": true}`},
		{"nope_input", `{}`},
	}
	for i, tc := range cases {
		tbl := &pipeline.Table{Name: "t", Columns: schema}
		sc, err := tbl.Schema()
		if err != nil {
			t.Fatal(err)
		}
		c := &pipeline.Connector{Name: fmt.Sprint("c", i), Transport: pipeline.Transport{Name: tc.transport, Config: json.RawMessage(tc.config)}}
		if tc.transport != "iceberg_input" {
			c.Format = &pipeline.Format{Name: "json"}
		}
		errFull, errLight := fmt.Sprint(full.CheckConnector(tbl, c, sc)), fmt.Sprint(light.CheckConnector(tbl, c, sc))
		if errFull != errLight {
			t.Errorf("%s %s: builtin says %s, checks says %s", tc.transport, tc.config, errFull, errLight)
		}
		if full.Bounded(c, sc) != light.Bounded(c, sc) || full.Guarantee(tbl, c, sc) != light.Guarantee(tbl, c, sc) {
			t.Errorf("%s %s: bounds or guarantees differ", tc.transport, tc.config)
		}
		t.Logf("%s %s: %s (bounded %v)", tc.transport, tc.config, errFull, full.Bounded(c, sc))
	}
	// the cases above cover both answers
	ok := &pipeline.Connector{Name: "i", Transport: pipeline.Transport{Name: "iceberg_input", Config: json.RawMessage(cases[0].config)}}
	tbl := &pipeline.Table{Name: "t", Columns: schema}
	sc, _ := tbl.Schema()
	if err := light.CheckConnector(tbl, ok, sc); err != nil || !light.Bounded(ok, sc) {
		t.Fatalf("a valid snapshot-mode iceberg_input: err %v, bounded %v", err, light.Bounded(ok, sc))
	}
	bad := &pipeline.Connector{Name: "i", Transport: pipeline.Transport{Name: "iceberg_input", Config: json.RawMessage(cases[4].config)}}
	if err := light.CheckConnector(tbl, bad, sc); err == nil {
		t.Fatal("an invalid iceberg_input passed checks")
	}
	p := connectors.Params{Endpoint: "i", Config: json.RawMessage(cases[0].config), Schema: sc}
	if _, err := light.New("iceberg_input", p); err == nil {
		t.Error("checks.Registry built an iceberg_input source; it has only its check")
	}
	if _, err := full.New("iceberg_input", p); err != nil {
		t.Errorf("builtin.Registry cannot build iceberg_input: %v", err)
	}
}
