package pipeline

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func schedulePipeline(transport, format string) *Pipeline {
	c := Connector{Name: "c", Transport: Transport{Name: "file_input", Config: json.RawMessage(transport)}}
	if format != "" {
		c.Format = &Format{Name: "csv", Config: json.RawMessage(format)}
	}
	return &Pipeline{Name: "p", Tables: []Table{
		{Name: "t0", Columns: []Column{{Name: "x", Type: "INT"}}, Connectors: []Connector{{Name: "plain", Transport: Transport{Name: "datagen"}}}},
		{Name: "t1", Columns: []Column{{Name: "x", Type: "INT"}}, Connectors: []Connector{{Name: "other", Transport: Transport{Name: "datagen"}}, c}},
	}}
}

func TestExpandSchedule(t *testing.T) {
	start := time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("CET", 3600))
	day := Window{Start: start, End: start.Add(24 * time.Hour)}
	for _, tt := range []struct {
		name      string
		transport string
		format    string
		window    Window
		want      string // the transport config after expansion
		wantFmt   string
		err       []string // substrings of the error
	}{
		{
			name:      "start time RFC 3339 in UTC",
			transport: `{"path": "/in/${schedule:start_time}.csv"}`,
			window:    day,
			want:      `{"path": "/in/2026-03-04T04:06:07Z.csv"}`,
		},
		{
			name:      "layouts, several per string, JSON layout kept",
			transport: "{\n  \"path\" : \"s3://b/${schedule:start_time|2006/01/02}/x-${schedule:end_time|2006-01-02T15}.csv\",\n  \"follow\": false, \"n\": 1.50}",
			window:    day,
			want:      "{\n  \"path\" : \"s3://b/2026/03/04/x-2026-03-05T04.csv\",\n  \"follow\": false, \"n\": 1.50}",
		},
		{
			name:      "end time RFC 3339",
			transport: `{"datetime": "${schedule:end_time}"}`,
			window:    day,
			want:      `{"datetime": "2026-03-05T04:06:07Z"}`,
		},
		{
			name:      "nested objects and arrays, escaped characters, keys untouched",
			transport: `{"${schedule:start_time}": ["a", {"q": "say \"${schedule:start_time|2006}\" <b>\u0026"}]}`,
			window:    day,
			want:      `{"${schedule:start_time}": ["a", {"q": "say \"2026\" <b>&"}]}`,
		},
		{
			name:      "format config too",
			transport: `{"path": "/x"}`,
			format:    `{"delimiter": "${schedule:start_time|,}"}`,
			window:    day,
			want:      `{"path": "/x"}`,
			err:       []string{"tables[1].connectors[1].format.config.delimiter: ${schedule:start_time|,}: layout \",\" shows no part of the time"},
		},
		{
			name:      "format config expanded",
			transport: `{"path": "/x"}`,
			format:    `{"name": "${schedule:start_time|Jan}"}`,
			window:    day,
			want:      `{"path": "/x"}`,
			wantFmt:   `{"name": "Mar"}`,
		},
		{
			name:      "end time of a cron schedule",
			transport: `{"path": "/in/${schedule:end_time|2006}"}`,
			window:    Window{Start: start},
			err:       []string{"tables[1].connectors[1].transport.config.path: ${schedule:end_time|2006}: end_time needs the schedule's interval (--every)"},
		},
		{
			name:      "unknown name and bad layouts, every one reported",
			transport: `{"a": "${schedule:date}", "b": ["${schedule:start_time|yyyy-MM-dd}", "${schedule:start_time|}"], "c": "${schedule:start_time"}`,
			window:    day,
			err: []string{
				`transport.config.a: ${schedule:date}: unknown placeholder "date"`,
				`transport.config.b[0]: ${schedule:start_time|yyyy-MM-dd}: layout "yyyy-MM-dd": "yyyy" is not a Go time layout element`,
				`transport.config.b[1]: ${schedule:start_time|}: empty layout`,
				`transport.config.c: ${schedule:start_time: no closing '}'`,
			},
		},
		{
			name:      "no placeholder: unchanged",
			transport: `{"path": "${env:SLUICE_X}/$schedule"}`,
			window:    day,
			want:      `{"path": "${env:SLUICE_X}/$schedule"}`,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := schedulePipeline(tt.transport, tt.format)
			orig := *p // a shallow copy, as a workflow's input would hold
			err := ExpandSchedule(p, tt.window)
			if len(tt.err) > 0 {
				require.Error(t, err)
				for _, e := range tt.err {
					require.Contains(t, err.Error(), e)
				}
				require.Equal(t, tt.transport, string(p.Tables[1].Connectors[1].Transport.Config), "nothing changes on error")
				return
			}
			require.NoError(t, err)
			got := p.Tables[1].Connectors[1].Transport.Config
			require.Equal(t, tt.want, string(got))
			require.True(t, json.Valid(got))
			if tt.wantFmt != "" {
				require.Equal(t, tt.wantFmt, string(p.Tables[1].Connectors[1].Format.Config))
			}
			require.Equal(t, tt.transport, string(orig.Tables[1].Connectors[1].Transport.Config), "a copy sharing the tables is unchanged")
			if tt.format != "" {
				require.Equal(t, tt.format, string(orig.Tables[1].Connectors[1].Format.Config))
			}
			require.False(t, HasSchedulePlaceholders(p))
		})
	}
}

func TestSchedulePlaceholderChecks(t *testing.T) {
	p := schedulePipeline(`{"path": "/in/${schedule:start_time|2006-01-02}.csv", "other": ["${schedule:end_time}"]}`, "")
	require.True(t, HasSchedulePlaceholders(p))
	err := CheckNoSchedulePlaceholders(p)
	require.Error(t, err)
	require.Contains(t, err.Error(), "tables[1].connectors[1].transport.config.path: ${schedule:start_time|2006-01-02}: ${schedule:...} placeholders are only for scheduled runs")
	require.Contains(t, err.Error(), "tables[1].connectors[1].transport.config.other[0]: ${schedule:end_time}")

	require.NoError(t, ExpandSchedule(p, Window{Start: time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), End: time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC)}))
	require.False(t, HasSchedulePlaceholders(p))
	require.NoError(t, CheckNoSchedulePlaceholders(p))
	require.JSONEq(t, `{"path": "/in/2026-01-02.csv", "other": ["2026-01-03T00:00:00Z"]}`, string(p.Tables[1].Connectors[1].Transport.Config))

	plain := schedulePipeline(`{"path": "/in/x.csv"}`, `{"headers": true}`)
	require.False(t, HasSchedulePlaceholders(plain))
	require.NoError(t, CheckNoSchedulePlaceholders(plain))
	require.NoError(t, ExpandSchedule(plain, Window{}))
}

func TestCheckLayout(t *testing.T) {
	for _, tt := range []struct {
		name   string
		layout string
		ok     bool
	}{
		{name: "date", layout: "2006-01-02", ok: true},
		{name: "path", layout: "2006/01/02/15", ok: true},
		{name: "rfc3339", layout: time.RFC3339, ok: true},
		{name: "unix-like hour", layout: "15h04", ok: true},
		{name: "strftime", layout: "%Y-%m-%d"},
		{name: "java", layout: "yyyy-MM-dd"},
		{name: "no element", layout: "today"},
		{name: "empty", layout: ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckLayout(tt.layout)
			if tt.ok {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
			}
		})
	}
}
