package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The command line starts in milliseconds only while it links neither
// the Temporal server and its Web UI (the worker runs them for --dev)
// nor iceberg-go (whose package initialization took 90 ms of the 100 ms
// `sluice --help` cost): validation uses checks.Registry. This test
// keeps it so.
func TestCommandLineLinksNoHeavyLibrary(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	heavyModules := []string{"go.temporal.io/server", "github.com/temporalio/ui-server", "github.com/apache/iceberg-go", "github.com/substrait-io"}
	heavyPackages := []string{"github.com/sluicehq/sluice/connectors/iceberg", "github.com/sluicehq/sluice/connectors/builtin", "github.com/sluicehq/sluice/devserver"}
	for _, pkg := range strings.Fields(string(out)) {
		for _, m := range heavyModules {
			if pkg == m || strings.HasPrefix(pkg, m+"/") {
				t.Errorf("sluice links %s (of %s)", pkg, m)
			}
		}
		if slices.Contains(heavyPackages, pkg) {
			t.Errorf("sluice links %s", pkg)
		}
	}
}
