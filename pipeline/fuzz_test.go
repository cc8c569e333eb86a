package pipeline_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/connectors/builtin"
	"github.com/sluicehq/sluice/pipeline"
)

// fuzzExts are the pipeline file types FuzzLoad picks from.
var fuzzExts = []string{".yaml", ".json", ".sql"}

// FuzzLoad loads fuzzed bytes as a YAML, JSON or SQL pipeline and
// validates it with the builtin registry, as the starter does. Nothing
// may panic, in the loader, the validator or a transport's config check
// (the registry turns a connector's panic into a "panicked" error, which
// fails the target too); validation is deterministic; and a pipeline that
// validates round-trips: marshalled to JSON or YAML and loaded again, it
// is the same pipeline and still valid.
func FuzzLoad(f *testing.F) {
	examples, err := filepath.Glob(filepath.Join("..", "examples", "*.*"))
	if err != nil {
		f.Fatal(err)
	}
	for _, path := range examples {
		ext := filepath.Ext(path)
		for i, e := range fuzzExts {
			if e == ext || (ext == ".yml" && e == ".yaml") {
				data, err := os.ReadFile(path)
				if err != nil {
					f.Fatal(err)
				}
				f.Add(data, uint8(i))
			}
		}
	}
	f.Add([]byte(base), uint8(0))
	reg := builtin.Registry()
	f.Fuzz(func(t *testing.T, data []byte, kind uint8) {
		ext := fuzzExts[int(kind)%len(fuzzExts)]
		p, _, err := pipeline.Load(data, ext, "fuzz")
		if err != nil {
			return
		}
		err = pipeline.Validate(p, reg)
		if err != nil && strings.Contains(err.Error(), " panicked: ") {
			t.Fatalf("validation panicked: %v", err)
		}
		if again := pipeline.Validate(p, reg); (err == nil) != (again == nil) || (err != nil && err.Error() != again.Error()) {
			t.Fatalf("validation is not deterministic:\n%v\n---\n%v", err, again)
		}
		if err != nil {
			return
		}
		j, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("marshal a valid pipeline: %v", err)
		}
		y, err := yaml.JSONToYAML(j)
		if err != nil {
			t.Fatalf("marshal a valid pipeline as YAML: %v", err)
		}
		for _, again := range []struct {
			ext  string
			data []byte
		}{{".json", j}, {".yaml", y}} {
			q, _, err := pipeline.Load(again.data, again.ext, "fuzz")
			if err != nil {
				t.Fatalf("load a valid pipeline marshalled as %s: %v\n%s", again.ext, err, again.data)
			}
			if err := pipeline.Validate(q, reg); err != nil {
				t.Fatalf("a valid pipeline marshalled as %s no longer validates: %v\n%s", again.ext, err, again.data)
			}
			if !reflect.DeepEqual(fuzzCanonical(t, p), fuzzCanonical(t, q)) {
				t.Fatalf("a valid pipeline changed through %s:\nbefore: %+v\n after: %+v\n%s", again.ext, p, q, again.data)
			}
			if again.ext == ".json" {
				if j2, err := json.Marshal(q); err != nil || !bytes.Equal(j, j2) {
					t.Fatalf("marshalling is not stable (%v):\n%s\n%s", err, j, j2)
				}
			}
		}
	})
}

// fuzzCanonical returns a copy of p whose transport and format configs
// are decoded values rather than raw JSON, so that two pipelines that
// differ only in the configs' spacing or escapes compare equal.
func fuzzCanonical(t *testing.T, p *pipeline.Pipeline) any {
	type connector struct {
		pipeline.Connector
		Transport, Format any
	}
	decode := func(raw json.RawMessage) any {
		if raw == nil {
			return nil
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("config %s: %v", raw, err)
		}
		return v
	}
	var out []any
	c := *p
	for _, tb := range c.Tables {
		var cs []connector
		for _, cn := range tb.Connectors {
			x := connector{Connector: cn, Transport: []any{cn.Transport.Name, decode(cn.Transport.Config)}}
			if cn.Format != nil {
				x.Format = []any{cn.Format.Name, decode(cn.Format.Config)}
			}
			x.Connector.Transport, x.Connector.Format = pipeline.Transport{}, nil
			cs = append(cs, x)
		}
		tb.Connectors = nil
		out = append(out, tb, cs)
	}
	c.Tables = nil
	return append(out, c)
}
