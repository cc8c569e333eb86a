package tests

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
)

// devServer is the real Temporal CLI's development server,
// `temporal server start-dev`, as its own process with a SQLite file
// database, so that a test can SIGKILL it and start it again on the
// same database and ports, as an operator restarting a server would.
type devServer struct {
	t    *testing.T
	bin  string
	db   string
	port int
	http int
	metr int
	cmd  *exec.Cmd
	logs *strings.Builder
	args []string // more start-dev flags
}

// temporalCLI finds the temporal CLI (go install
// github.com/temporalio/cli/cmd/temporal@v1.5.1, which .ci/run does);
// without it the test fails in CI and is skipped elsewhere.
func temporalCLI(t *testing.T) string {
	if bin, err := exec.LookPath("temporal"); err == nil {
		return bin
	}
	gopath, _ := exec.Command("go", "env", "GOPATH").Output()
	bin := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "temporal")
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("the temporal CLI is needed: go install github.com/temporalio/cli/cmd/temporal@v1.5.1")
		}
		t.Skip("the temporal CLI is not installed: go install github.com/temporalio/cli/cmd/temporal@v1.5.1")
	}
	return bin
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startDevServer starts a dev server on free ports with a new database;
// args are more `temporal server start-dev` flags.
func startDevServer(t *testing.T, args ...string) *devServer {
	d := &devServer{t: t, bin: temporalCLI(t), db: filepath.Join(t.TempDir(), "temporal.db"), port: freePort(t), http: freePort(t), metr: freePort(t), logs: &strings.Builder{}, args: args}
	d.start()
	t.Cleanup(d.kill)
	return d
}

// Address is the frontend's host:port.
func (d *devServer) Address() string { return "127.0.0.1:" + strconv.Itoa(d.port) }

// start runs the server on d's database and ports and waits until it
// answers.
func (d *devServer) start() {
	t := d.t
	d.cmd = exec.Command(d.bin, "server", "start-dev", "--headless", "--db-filename", d.db,
		"--ip", "127.0.0.1", "--port", strconv.Itoa(d.port), "--http-port", strconv.Itoa(d.http),
		"--metrics-port", strconv.Itoa(d.metr), "--log-level", "error")
	d.cmd.Args = append(d.cmd.Args, d.args...)
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	require.NoError(t, d.cmd.Start())
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := client.Dial(client.Options{HostPort: d.Address(), Logger: quiet{}})
		if err == nil {
			_, err = c.CheckHealth(context.Background(), nil)
			if err == nil {
				_, err = c.WorkflowService().DescribeNamespace(context.Background(), describeDefault)
			}
			c.Close()
			if err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dev server did not answer at %s: %v\n%s", d.Address(), err, d.logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// kill SIGKILLs the server, as a crash would.
func (d *devServer) kill() {
	if d.cmd != nil && d.cmd.Process != nil {
		_ = d.cmd.Process.Signal(syscall.SIGKILL)
		_ = d.cmd.Wait()
	}
}

// client dials the server.
func (d *devServer) client() client.Client {
	c, err := client.Dial(client.Options{HostPort: d.Address(), Logger: quiet{}})
	require.NoError(d.t, err)
	d.t.Cleanup(c.Close)
	return c
}

var describeDefault = &workflowservice.DescribeNamespaceRequest{Namespace: "default"}

// quiet is a Temporal SDK logger that drops everything: a client of a
// server the test kills on purpose would log every failed poll.
type quiet struct{}

func (quiet) Debug(string, ...any) {}
func (quiet) Info(string, ...any)  {}
func (quiet) Warn(string, ...any)  {}
func (quiet) Error(string, ...any) {}
