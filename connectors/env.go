package connectors

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
)

var envRef = regexp.MustCompile(`\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}`)

// ResolveEnv replaces every ${env:NAME} in the string values of a config
// with the environment variable NAME, so that secrets stay out of workflow
// history and are read only inside the activity. A variable that is not set
// is a fatal error naming it.
func ResolveEnv(raw json.RawMessage) (json.RawMessage, error) {
	var missing []string
	out := envRef.ReplaceAllFunc(raw, func(m []byte) []byte {
		name := string(envRef.FindSubmatch(m)[1])
		v, ok := os.LookupEnv(name)
		if !ok {
			missing = append(missing, name)
			return m
		}
		q, _ := json.Marshal(v) // the value lands inside a JSON string: escape it
		return q[1 : len(q)-1]
	})
	if len(missing) > 0 {
		return nil, Fatal(fmt.Errorf("environment variables not set: %v", missing))
	}
	return out, nil
}

// MaskEnv replaces ${env:NAME} references with a placeholder so a config can
// be validated without reading secrets.
func MaskEnv(raw json.RawMessage) json.RawMessage {
	return envRef.ReplaceAll(raw, []byte("env-NAME"))
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
