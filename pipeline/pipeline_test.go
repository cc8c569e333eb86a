package pipeline_test

import (
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/connectors/builtin"
	"github.com/sluicehq/sluice/pipeline"
)

const base = `
name: p
tables:
  - name: t
    columns: [{name: a, type: INT}]
    connectors:
      - name: hist
        labels: [backfill]
        transport: {name: datagen, config: {plan: [{limit: 5}]}}
      - name: live
        start_after: backfill
        transport: {name: datagen}
`

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr []string
	}{
		{name: "valid", yaml: base},
		{name: "unknown label", yaml: strings.Replace(base, "start_after: backfill", "start_after: backfil", 1),
			wantErr: []string{`tables[0].connectors[1].start_after: no connector has label "backfil"`}},
		{name: "unknown transport", yaml: strings.Replace(base, "name: datagen}", "name: kafka_inptu}", 1),
			wantErr: []string{`tables[0].connectors[1].transport.name: unknown transport "kafka_inptu"`}},
		{name: "bad transport field", yaml: strings.Replace(base, "plan: [{limit: 5}]", "plan: [{limit: 5, rate: -1}]", 1),
			wantErr: []string{"tables[0].connectors[0].transport.config.plan[0].rate: must not be negative"}},
		{name: "unknown transport field", yaml: strings.Replace(base, "plan: [{limit: 5}]", "plan: [{limit: 5}], rat: 1", 1),
			wantErr: []string{`tables[0].connectors[0].transport.config: json: unknown field "rat"`}},
		{name: "unknown format", yaml: strings.Replace(base, "transport: {name: datagen}", "transport: {name: file_input, config: {path: x}}\n        format: {name: xml}", 1),
			wantErr: []string{`tables[0].connectors[1].format.name: unknown format "xml"`}},
		{name: "duplicate connector", yaml: strings.Replace(base, "name: live", "name: hist", 1),
			wantErr: []string{`tables[0].connectors[1].name: duplicate connector "hist"`}},
		{name: "duplicate column", yaml: strings.Replace(base, "[{name: a, type: INT}]", "[{name: a, type: INT}, {name: A, type: INT}]", 1),
			wantErr: []string{`tables[0].columns[1].name: duplicate column "A"`}},
		{name: "unsupported type", yaml: strings.Replace(base, "type: INT", "type: GEOMETRY", 1),
			wantErr: []string{`tables[0].columns[0].type: unsupported column type "GEOMETRY"`}},
		{name: "reserved column", yaml: strings.Replace(base, "name: a,", "name: _weight,", 1),
			wantErr: []string{`tables[0].columns[0].name: "_weight" is reserved`}},
		{name: "start_after cycle", yaml: strings.Replace(strings.Replace(base, "labels: [backfill]", "labels: [backfill]\n        start_after: live", 1), "start_after: backfill", "start_after: backfill\n        labels: [live]", 1),
			wantErr: []string{"start_after: cycle: t.hist -> t.live -> t.hist"}},
		{name: "every problem at once", yaml: strings.Replace(strings.Replace(base, "name: p", "name: 'bad name'", 1), "start_after: backfill", "start_after: [nope, backfill]", 1),
			wantErr: []string{`name: "bad name"`, `tables[0].connectors[1].start_after: no connector has label "nope"`}},
		{name: "no tables", yaml: "name: p\ntables: []", wantErr: []string{"tables: a pipeline needs at least one table"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _, err := pipeline.Load([]byte(tt.yaml), ".yaml", "")
			require.NoError(t, err)
			err = pipeline.Validate(p, builtin.Registry())
			if len(tt.wantErr) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, want := range tt.wantErr {
				require.Contains(t, err.Error(), want)
			}
		})
	}
}

func TestLoadRejectsUnknownFields(t *testing.T) {
	_, _, err := pipeline.Load([]byte(`{"name": "p", "tabels": []}`), ".json", "")
	require.ErrorContains(t, err, `unknown field "tabels"`)
}

func TestParseSQL(t *testing.T) {
	src := `-- Feldera's example
CREATE TABLE Numbers (
  num INT NOT NULL,
  "Label" VARCHAR(20),
  price DECIMAL(15, 2) DEFAULT 0,
  at TIMESTAMP,
  PRIMARY KEY (num)
) WITH (
  'materialized' = 'true',
  'connectors' = '[{"name": "c1", "paused": true, "transport": {"name": "datagen", "config": {"plan": [{"limit": 10}]}}}]'
);
CREATE VIEW v AS SELECT * FROM numbers;
/* a second table */ create table t2 (b BIGINT PRIMARY KEY, s TEXT);`
	tables, notices, err := pipeline.ParseSQL(src)
	require.NoError(t, err)
	require.Len(t, tables, 2)
	require.Equal(t, []string{"line 12: CREATE VIEW statement ignored: Sluice runs CREATE TABLE statements only"}, notices)
	n := tables[0]
	require.Equal(t, "numbers", n.Name)
	require.Equal(t, []string{"num"}, n.PrimaryKey)
	require.Equal(t, "Label", n.Columns[1].Name)
	require.False(t, n.Columns[0].IsNullable())
	require.True(t, n.Columns[1].IsNullable())
	require.Equal(t, "DECIMAL(15,2)", n.Columns[2].Type)
	require.Len(t, n.Connectors, 1)
	require.True(t, n.Connectors[0].Paused)
	require.Equal(t, []string{"b"}, tables[1].PrimaryKey)

	_, _, err = pipeline.ParseSQL("CREATE TABLE t (a INT, FOREIGN KEY (a) REFERENCES u(a));")
	require.ErrorContains(t, err, "FOREIGN is not supported")
	_, _, err = pipeline.ParseSQL("CREATE TABLE t (a INT) WITH ('connectors' = 'not json');")
	require.ErrorContains(t, err, "'connectors' is not a JSON list")
	_, _, err = pipeline.ParseSQL("CREATE TABLE t (a INT")
	require.ErrorContains(t, err, "unbalanced")
}

func TestArrowType(t *testing.T) {
	tests := []struct {
		sql  string
		want arrow.DataType
	}{
		{"BOOLEAN", arrow.FixedWidthTypes.Boolean},
		{"tinyint", arrow.PrimitiveTypes.Int8},
		{"SMALLINT", arrow.PrimitiveTypes.Int16},
		{"INTEGER", arrow.PrimitiveTypes.Int32},
		{"BIGINT", arrow.PrimitiveTypes.Int64},
		{"REAL", arrow.PrimitiveTypes.Float32},
		{"DOUBLE", arrow.PrimitiveTypes.Float64},
		{"DECIMAL(15,2)", &arrow.Decimal128Type{Precision: 15, Scale: 2}},
		{"VARCHAR(10)", arrow.BinaryTypes.String},
		{"CHAR", arrow.BinaryTypes.String},
		{"TEXT", arrow.BinaryTypes.String},
		{"STRING", arrow.BinaryTypes.String},
		{"DATE", arrow.FixedWidthTypes.Date32},
		{"TIME", arrow.FixedWidthTypes.Time64us},
		{"TIMESTAMP", &arrow.TimestampType{Unit: arrow.Microsecond}},
		{"VARBINARY", arrow.BinaryTypes.Binary},
		{"BYTEA", arrow.BinaryTypes.Binary},
	}
	for _, tt := range tests {
		got, err := pipeline.ArrowType(tt.sql)
		require.NoError(t, err, tt.sql)
		require.True(t, arrow.TypeEqual(tt.want, got), "%s: got %s", tt.sql, got)
	}
	for _, bad := range []string{"DECIMAL(40,2)", "INT(3)", "MAP<INT,INT>", ""} {
		_, err := pipeline.ArrowType(bad)
		require.Error(t, err, bad)
	}
}
