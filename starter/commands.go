package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/connectors/s3"
	"github.com/sluicehq/sluice/store"
)

type globals struct {
	dataDir   string
	taskQueue string
	s3        s3.Settings
}

// storeOptions are the table store's options from the flags.
func (g *globals) storeOptions() store.Options { return store.Options{S3: g.s3} }

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "sluice",
		Short:         "Orchestrate data-ingestion connectors on Temporal",
		Version:       version(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.dataDir, "data-dir", sluice.DefaultDataDir, "the table store's root: a directory or s3://bucket/prefix")
	root.PersistentFlags().StringVar(&g.s3.EndpointURL, "s3-endpoint-url", "", "an S3-compatible store for an s3:// --data-dir (path-style requests); credentials from the standard AWS chain")
	root.PersistentFlags().StringVar(&g.s3.Region, "s3-region", "", "the AWS region of an s3:// --data-dir (default: the AWS chain's, else us-east-1)")
	root.PersistentFlags().StringVar(&g.taskQueue, "task-queue", sluice.DefaultTaskQueue, "the Temporal task queue of Sluice's workers")
	root.AddCommand(newRunCmd(g), newPipelineCmd(g), newConnectorCmd(g), newTableCmd(g), newScheduleCmd(g))
	return root
}

// version is the module version and VCS revision the binary was built
// from: "v1.2.3", or "(devel), revision 8acbd7c1d2e3 (modified), 2026-12-02T18:00:00Z"
// for a build from a work tree; go run records no revision.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := info.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, at string
	modified := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev == "" {
		return v
	}
	v += ", revision " + rev[:min(12, len(rev))]
	if modified {
		v += " (modified)"
	}
	if at != "" {
		v += ", " + at
	}
	return v
}

// dial connects with the standard Temporal environment, failing fast when
// the server is unreachable.
func dial(ctx context.Context) (client.Client, error) {
	opts, err := sluice.ClientOptions()
	if err != nil {
		return nil, err
	}
	opts.Logger = silent{}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		addr := opts.HostPort
		if addr == "" {
			addr = client.DefaultHostPort
		}
		return nil, fmt.Errorf("cannot reach the Temporal server at %s (set TEMPORAL_ADDRESS, or use run --dev): %v", addr, firstLine(err))
	}
	return c, nil
}

// withClient dials the Temporal server (see dial), runs fn with the
// command's context and closes the client.
func withClient(cmd *cobra.Command, fn func(ctx context.Context, c client.Client) error) error {
	c, err := dial(cmd.Context())
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(cmd.Context(), c)
}

// namespace returns the namespace dial connects to (TEMPORAL_NAMESPACE,
// the config file's, or "" for the default).
func namespace() string {
	opts, err := sluice.ClientOptions()
	if err != nil {
		return ""
	}
	return opts.Namespace
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printNotices(notices []string) {
	for _, n := range notices {
		fmt.Fprintln(os.Stderr, "note:", n)
	}
}

type silent struct{}

func (silent) Debug(string, ...any) {}
func (silent) Info(string, ...any)  {}
func (silent) Warn(string, ...any)  {}
func (silent) Error(string, ...any) {}
