package connectors_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice/connectors"
)

func TestEnvAllowList(t *testing.T) {
	t.Setenv("SLUICE_TOKEN", `to"k/en?&`)
	t.Setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-value")
	raw := json.RawMessage(`{"path": "http://h/x?t=${env:SLUICE_TOKEN}"}`)

	out, secrets, err := connectors.Env{}.Resolve(raw)
	require.NoError(t, err)
	var cfg struct{ Path string }
	require.NoError(t, json.Unmarshal(out, &cfg))
	require.Equal(t, `http://h/x?t=to"k/en?&`, cfg.Path, "the value is escaped into the JSON string")

	// Every form the value takes is redacted: raw, JSON-quoted, URL-escaped.
	for _, msg := range []string{cfg.Path, string(out), "GET http://h/x?t=to%22k%2Fen%3F%26: 404"} {
		red := secrets.Redact(msg)
		require.NotContains(t, red, "k/en", msg)
		require.NotContains(t, red, "k%2Fen", msg)
		require.Contains(t, red, connectors.RedactedValue, msg)
	}
	err = secrets.RedactError(connectors.Fatal(fmt.Errorf("open /data/%s: no such file", `to"k/en?&`)))
	require.EqualError(t, err, "open /data/[REDACTED]: no such file")
	require.ErrorIs(t, err, connectors.ErrFatal, "redaction keeps an error fatal")

	// Outside the default allow-list (SLUICE_*): refused by name.
	_, _, err = connectors.Env{}.Resolve(json.RawMessage(`{"k": "${env:AWS_SECRET_ACCESS_KEY}", "j": "${env:AWS_SECRET_ACCESS_KEY}"}`))
	require.ErrorIs(t, err, connectors.ErrFatal)
	require.ErrorContains(t, err, "environment variables [AWS_SECRET_ACCESS_KEY] are not in the worker's allow-list [SLUICE_*]")
	require.NotContains(t, err.Error(), "aws-secret-value")

	// An explicit allow-list replaces the default.
	_, secrets, err = connectors.Env{Allow: []string{"AWS_*"}}.Resolve(json.RawMessage(`{"k": "${env:AWS_SECRET_ACCESS_KEY}"}`))
	require.NoError(t, err)
	require.Equal(t, "[REDACTED]", secrets.Redact("aws-secret-value"))
	_, _, err = connectors.Env{Allow: []string{"AWS_*"}}.Resolve(raw)
	require.ErrorContains(t, err, "SLUICE_TOKEN")

	// A variable that is not set is named.
	_, _, err = connectors.Env{}.Resolve(json.RawMessage(`{"k": "${env:SLUICE_UNSET_VAR}"}`))
	require.ErrorContains(t, err, "environment variables not set: [SLUICE_UNSET_VAR]")

	require.Error(t, connectors.CheckPatterns([]string{"SLUICE_["}))
	require.NoError(t, connectors.CheckPatterns([]string{"SLUICE_*", "KAFKA_PASSWORD"}))

	// A panic's value is redacted too, and stays a *PanicError.
	err = secrets.RedactError(connectors.Fatal(&connectors.PanicError{What: "read", Value: "bad aws-secret-value", Stack: "stack"}))
	var p *connectors.PanicError
	require.True(t, errors.As(err, &p))
	require.Equal(t, "bad [REDACTED]", p.Value)
}
