package connectors_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/connectors"
	"github.com/sluicehq/sluice/connectors/builtin"
	"github.com/sluicehq/sluice/pipeline"
)

// atLeastOnce is a transport that cannot deliver exactly once (as a
// postgres_input without key_columns).
type atLeastOnce struct{ connectors.Source }

func (atLeastOnce) Guarantee() connectors.Guarantee                   { return connectors.AtLeastOnce }
func (atLeastOnce) Open(context.Context, connectors.Checkpoint) error { return nil }

// transportYAML is a transport given by name, or whole when it starts
// with "{".
func transportYAML(t string) string {
	if strings.HasPrefix(t, "{") {
		return t
	}
	return "{name: " + t + "}"
}

// TestDeliveryGuarantee: delivery_guarantee: exactly_once refuses, at
// load, the connectors that cannot give it, naming them; the builtin
// outputs all can.
func TestDeliveryGuarantee(t *testing.T) {
	reg := builtin.Registry()
	require.NoError(t, reg.Register("alo_input", func(connectors.Params) (connectors.Source, error) { return atLeastOnce{}, nil }))
	load := func(guarantee, transport string) error {
		p, _, err := pipeline.Load([]byte(`
name: p
delivery_guarantee: `+guarantee+`
tables:
  - name: t
    columns: [{name: id, type: BIGINT}]
    primary_key: [id]
    connectors:
      - {name: in, transport: `+transportYAML(transport)+`}
      - {name: out, transport: {name: file_output, config: {path: /tmp/out.json}}, format: {name: json}}
      - {name: pg, transport: {name: postgres_output, config: {uri: "postgres://h/db", table: t}}}
`), ".yaml", "")
		require.NoError(t, err)
		return pipeline.Validate(p, reg)
	}
	require.NoError(t, load("exactly_once", "datagen"))
	require.EqualError(t, load("exactly_once", "alo_input"), "tables[0].connectors[0]: connector t.in is at_least_once, but the pipeline's delivery_guarantee is exactly_once")
	require.NoError(t, load("at_least_once", "alo_input"))
	require.ErrorContains(t, load("sometimes", "datagen"), `delivery_guarantee: "sometimes": want exactly_once or at_least_once`)

	// postgres_input is exactly once with key_columns only.
	pg := `{name: postgres_input, config: {uri: "postgres://h/db", query: "select id from t"`
	require.NoError(t, load("exactly_once", pg+`, key_columns: [id]}}`))
	require.EqualError(t, load("exactly_once", pg+`}}`), "tables[0].connectors[0]: connector t.in is at_least_once, but the pipeline's delivery_guarantee is exactly_once")
}
