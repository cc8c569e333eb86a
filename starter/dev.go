package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/connectors/s3"
)

// The embedded Temporal server and the worker of `sluice run --dev` run
// in a child process, the worker program (worker/) with --dev, rather
// than in sluice itself: linking the Temporal server, its Web UI and the
// connectors' libraries made every sluice command pay for their package
// initialization (0.1 to 0.25 s and 70 to 130 MB before --help printed
// anything).

// devProgram is the program --dev runs, Sluice's worker: its package
// directory in the source tree.
const devProgram = "worker"

// devNames are the names the worker's executable is looked for under,
// in order: the README builds sluice-worker, go build and go install name
// it worker.
var devNames = []string{"sluice-worker", "worker"}

// devWorker are the options that sluice run --dev passes on to the
// worker: the server's frontend port, the table store, the task queue,
// and the environment variables connector configs may read.
type devWorker struct {
	port      int
	dataDir   string
	s3        s3.Settings
	taskQueue string
	allowEnv  []string
}

// devServer is a running `worker --dev` child process: the server and a
// worker.
type devServer struct {
	cmd   *exec.Cmd
	stdin io.Closer
	done  chan struct{} // closed once the process has exited
	ready struct {
		HostPort  string `json:"host_port"`
		Namespace string `json:"namespace"`
		UI        string `json:"ui"`
	}
}

// startDevServer starts the dev server (SQLite in .sluice/temporal.db
// under the working directory; the frontend on o.port, the Web UI on
// uiPort, -1 for none) with a worker of options o, and returns once the
// worker polls. It runs the
// worker program from $SLUICE_WORKER, from beside the sluice executable
// (named sluice-worker or worker), with `go run ./worker` in the source
// tree sluice was built from (as `go run ./starter` does), or from PATH,
// in that order.
func startDevServer(ctx context.Context, uiPort int, o devWorker) (*devServer, error) {
	db, err := filepath.Abs(filepath.Join(".sluice", "temporal.db"))
	if err != nil {
		return nil, fmt.Errorf("dev server: %w", err)
	}
	cmd, err := devCommand()
	if err != nil {
		return nil, err
	}
	cmd.Args = append(cmd.Args, "--dev", "--db", db, "--port", strconv.Itoa(o.port), "--ui-port", strconv.Itoa(uiPort), "--ready-json", "--stop-at-stdin-eof",
		"--data-dir", o.dataDir, "--task-queue", o.taskQueue)
	if o.s3.EndpointURL != "" {
		cmd.Args = append(cmd.Args, "--s3-endpoint-url", o.s3.EndpointURL)
	}
	if o.s3.Region != "" {
		cmd.Args = append(cmd.Args, "--s3-region", o.s3.Region)
	}
	for _, g := range o.allowEnv {
		cmd.Args = append(cmd.Args, "--allow-env", g)
	}
	cmd.Stderr = os.Stderr
	ownProcessGroup(cmd) // Ctrl-C reaches sluice, which stops the worker first and then the server
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("dev server: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("dev server: %w", err)
	}
	defer r.Close()
	cmd.Stdout = w
	err = cmd.Start()
	w.Close()
	if err != nil {
		return nil, fmt.Errorf("dev server: %w", err)
	}
	d := &devServer{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	exited := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		exited <- err
		close(d.done)
	}()
	line := make(chan []byte, 1)
	go func() {
		b, _ := bufio.NewReader(r).ReadBytes('\n')
		line <- b
	}()
	select {
	case b := <-line:
		if err := json.Unmarshal(b, &d.ready); err == nil && d.ready.HostPort != "" {
			return d, nil
		}
		d.Stop()
		return nil, fmt.Errorf("dev server: %s --dev did not start (its error is above)", devProgram)
	case err := <-exited:
		return nil, fmt.Errorf("dev server: %s --dev exited before it was ready (%v)", devProgram, err)
	case <-ctx.Done():
		d.Stop()
		return nil, fmt.Errorf("dev server: interrupted while starting")
	}
}

// HostPort returns the frontend's address.
func (d *devServer) HostPort() string { return d.ready.HostPort }

// Namespace returns the server's namespace.
func (d *devServer) Namespace() string { return d.ready.Namespace }

// UIAddress returns the Web UI's URL, or "" when disabled.
func (d *devServer) UIAddress() string { return d.ready.UI }

// Stop stops the worker and the server and waits for their process to
// exit: closing its stdin asks it to stop (the worker cancels its running
// connectors, which keep their checkpoints); after 15 s it is killed.
func (d *devServer) Stop() {
	d.stdin.Close()
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		killProcessGroup(d.cmd)
		<-d.done
	}
}

// devCommand returns the command that runs the worker program, without
// its arguments.
func devCommand() (*exec.Cmd, error) {
	if p := os.Getenv("SLUICE_WORKER"); p != "" {
		return exec.Command(p), nil
	}
	if exe, err := os.Executable(); err == nil {
		if exe, err = filepath.EvalSymlinks(exe); err == nil {
			for _, name := range devNames {
				if runtime.GOOS == "windows" {
					name += ".exe"
				}
				if p := filepath.Join(filepath.Dir(exe), name); isFile(p) {
					return exec.Command(p), nil
				}
			}
		}
	}
	if root := sourceRoot(); root != "" {
		if goTool, err := exec.LookPath("go"); err == nil {
			fmt.Fprintf(os.Stderr, "starting the dev server and a worker with `go run ./%s --dev` in %s (its first build takes a few minutes)\n", devProgram, root)
			cmd := exec.Command(goTool, "run", "./"+devProgram)
			cmd.Dir = root // go run builds in the source tree; the worker works where sluice was started:
			if wd, err := os.Getwd(); err == nil {
				cmd.Args = append(cmd.Args, "-C", wd)
			}
			return cmd, nil
		}
	}
	for _, name := range devNames {
		if p, err := exec.LookPath(name); err == nil {
			return exec.Command(p), nil
		}
	}
	return nil, errors.New("--dev needs Sluice's worker program (it runs the embedded Temporal server, its Web UI and the connectors): build it beside sluice with " +
		"`go build -o DIR/sluice-worker ./worker` in Sluice's source tree, or `go install github.com/sluicehq/sluice/worker@latest`; " +
		"or set SLUICE_WORKER to its path")
}

// sourceRoot returns the root of the Sluice source tree this program was
// built from, or "": the directory of this file's package's parent when
// built without -trimpath (go run, go build), else the module holding
// the working directory.
func sourceRoot() string {
	module := "github.com/sluicehq/sluice"
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Path != "" {
		module = info.Main.Path
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		if dir := filepath.Dir(filepath.Dir(file)); isModule(dir, module) {
			return dir
		}
	}
	dir, err := os.Getwd()
	for err == nil {
		if isModule(dir, module) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return ""
}

// isModule reports whether dir holds the go.mod of module and the worker
// program.
func isModule(dir, module string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil || !isFile(filepath.Join(dir, devProgram, "main.go")) {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`) == module
		}
	}
	return false
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}
