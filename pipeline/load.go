package pipeline

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"
)

// LoadFile reads a pipeline from a .yaml/.yml, .json or .sql file. It parses
// but does not validate: call [Validate] next. The notices say what was read
// but ignored (for example a CREATE VIEW in a SQL file). A SQL file's
// pipeline is named after the file (flights.sql is "flights").
func LoadFile(path string) (*Pipeline, []string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("load pipeline: %w", err)
	}
	ext := strings.ToLower(filepath.Ext(path))
	name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	p, notices, err := Load(data, ext, name)
	if err != nil {
		return nil, notices, fmt.Errorf("%s: %w", path, err)
	}
	return p, notices, nil
}

// Load parses a pipeline from data in the format named by ext (".yaml",
// ".yml", ".json" or ".sql"). name names a SQL pipeline, which has no name
// of its own.
func Load(data []byte, ext, name string) (*Pipeline, []string, error) {
	switch ext {
	case ".sql":
		tables, notices, err := ParseSQL(string(data))
		if err != nil {
			return nil, notices, err
		}
		return &Pipeline{Name: name, Tables: tables}, notices, nil
	case ".yaml", ".yml":
		j, err := yaml.YAMLToJSON(data)
		if err != nil {
			return nil, nil, fmt.Errorf("parse YAML: %w", err)
		}
		data = j
	case ".json":
	default:
		return nil, nil, fmt.Errorf("unknown pipeline file type %q: want .yaml, .yml, .json or .sql", ext)
	}
	var p Pipeline
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, nil, fmt.Errorf("parse pipeline: %w", err)
	}
	return &p, nil, nil
}
