package tests

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// freePorts returns a port p such that p..p+n-1 are all free: the dev
// server takes the frontend's port and the next three.
func freePorts(t *testing.T, n int) int {
	for range 50 {
		base := freePort(t)
		if base+n > 65535 {
			continue
		}
		var ls []net.Listener
		for i := range n {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(base+i))
			if err != nil {
				break
			}
			ls = append(ls, l)
		}
		for _, l := range ls {
			l.Close()
		}
		if len(ls) == n {
			return base
		}
	}
	t.Fatal("no range of free ports")
	return 0
}

// portFree reports whether nothing listens on 127.0.0.1:port.
func portFree(port int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// TestRunDev runs the README's first command as a newcomer does,
// `sluice run --dev FILE` from sluice and worker built side by side:
// the embedded server and a worker start in a worker --dev child
// process; a bounded pipeline ingests everything and sluice run exits 0,
// the child with it. An endless pipeline interrupted with Ctrl-C
// (SIGINT) exits 130 and keeps its state in .sluice: the same command
// goes on from the checkpoints, and across both interruptions every
// generated record is in the table exactly once.
func TestRunDev(t *testing.T) {
	bin := t.TempDir()
	sluiceBin := buildBinary(t, "starter", bin)
	buildBinary(t, "worker", bin) // beside sluice, where --dev looks first
	dir := t.TempDir()
	port := freePorts(t, 4)
	run := func(file string) *exec.Cmd {
		cmd := exec.Command(sluiceBin, "run", "--dev", "--port", strconv.Itoa(port), "--ui-port", "-1", file)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "SLUICE_WORKER=") // found beside sluice
		return cmd
	}
	table := func(name string) []string {
		cmd := exec.Command(sluiceBin, "table", name, "t", "--format", "csv")
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
		return strings.Split(strings.TrimSpace(string(out)), "\n")[1:]
	}
	write := func(name, gen string) string {
		p := filepath.Join(dir, name+".yaml")
		require.NoError(t, os.WriteFile(p, []byte(fmt.Sprintf(`
name: %s
tables:
  - name: t
    columns: [{name: x, type: BIGINT}]
    connectors:
      - {name: gen, transport: {name: datagen, config: {plan: [%s]}}}
`, name, gen)), 0o644))
		return p
	}

	// Bounded: it ends by itself, with every record, and takes its server along.
	out, err := run(write("bounded", "{limit: 5000}")).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "pipeline bounded: every connector finished (5000 input records)")
	require.Len(t, table("bounded"), 5000)
	require.FileExists(t, filepath.Join(dir, ".sluice", "temporal.db"))
	eventually(t, 20*time.Second, "the worker --dev child exits with sluice run", func() bool { return portFree(port) })

	// Endless, interrupted twice: each Ctrl-C exits 130 and stops the child;
	// the second run goes on where the first stopped.
	endless := write("endless", "{rate: 2000}")
	var seen int
	for i := range 2 {
		cmd := run(endless)
		var buf lockedBuffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		require.NoError(t, cmd.Start())
		// Records arrive in this run, beyond those of the run before.
		eventually(t, 90*time.Second, "sluice run --dev ingests", func() bool {
			return strings.Contains(buf.String(), "CONNECTOR") && len(table("endless")) > seen+1000
		})
		require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
		err := cmd.Wait()
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit, buf.String())
		require.Equal(t, 130, exit.ExitCode(), buf.String())
		require.Contains(t, buf.String(), "interrupted; pipeline endless's workflow keeps its state", "run %d", i)
		eventually(t, 20*time.Second, "the worker --dev child exits with sluice run", func() bool { return portFree(port) })
		rows := table("endless")
		require.Greater(t, len(rows), seen, "run %d", i)
		seen = len(rows)
	}
	// datagen's x is the record's index: 0..n-1, each once.
	var xs []int
	for _, r := range table("endless") {
		x, err := strconv.Atoi(r)
		require.NoError(t, err, r)
		xs = append(xs, x)
	}
	slices.Sort(xs)
	for i, x := range xs {
		require.Equal(t, i, x, "after two interruptions, record %d is missing or duplicated", i)
	}
}

// TestRunDevFromSource is the README's first command as a newcomer runs
// it, `go run ./starter run --dev FILE`: a sluice built in the source
// tree with no worker beside it runs the worker with `go run ./worker`,
// in the directory sluice was started in, so the pipeline's relative
// paths and .sluice are there.
func TestRunDevFromSource(t *testing.T) {
	sluiceBin := buildBinary(t, "starter", t.TempDir()) // alone in its directory, as go run leaves it
	dir := t.TempDir()
	csv, err := os.ReadFile(sharedData(t, "seattle-weather.csv"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "weather.csv"), csv, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "weather.json"), []byte(fmt.Sprintf(`{
  "name": "weather",
  "tables": [{"name": "weather", "columns": %s,
    "connectors": [{"name": "csv", "transport": {"name": "file_input", "config": {"path": "weather.csv"}},
                    "format": {"name": "csv", "config": {"headers": true}}}]}]
}`, weatherColumns)), 0o644))
	cmd := exec.Command(sluiceBin, "run", "--dev", "--port", strconv.Itoa(freePorts(t, 4)), "--ui-port", "-1", "weather.json")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SLUICE_WORKER=")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "go run ./worker --dev")
	require.Contains(t, string(out), fmt.Sprintf("every connector finished (%d input records)", weatherRows))
	require.Len(t, readTable(t, filepath.Join(dir, ".sluice", "tables"), "weather", "weather"), weatherRows)
}
