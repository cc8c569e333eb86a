package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestWebUIScreenshots runs tests/ui/screenshot.sh: examples/numbers.sql
// under `sluice run --dev`, and headless Chromium on the Temporal Web
// UI's workflow list filtered by SluiceState="Running" and on the
// pipeline's workflow page (its summary and the current details' table
// of connectors). The script fails when a page never shows the
// pipeline, its connectors and their states. It needs chromium and
// Node.js (.ci/run installs them): without them it fails in CI and is
// skipped elsewhere.
func TestWebUIScreenshots(t *testing.T) {
	for _, tool := range []string{"chromium", "node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is needed (.ci/run installs it)", tool)
			}
			t.Skipf("%s is not installed: apt-get install chromium nodejs npm", tool)
		}
	}
	out := t.TempDir()
	cmd := exec.Command("bash", filepath.Join("ui", "screenshot.sh"), out)
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(freePorts(t, 4)), "UI_PORT="+strconv.Itoa(freePort(t)))
	logs, err := cmd.CombinedOutput()
	require.NoError(t, err, string(logs))
	for _, png := range []string{"list.png", "workflow.png"} {
		st, err := os.Stat(filepath.Join(out, png))
		require.NoError(t, err, string(logs))
		require.Greater(t, st.Size(), int64(10_000), "%s is an image of a page", png)
	}
	if dir := os.Getenv("SLUICE_UI_SCREENSHOTS"); dir != "" { // keep them to look at
		for _, png := range []string{"list.png", "workflow.png"} {
			b, err := os.ReadFile(filepath.Join(out, png))
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(dir, png), b, 0o644))
		}
	}
}
