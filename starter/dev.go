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
)

// The embedded Temporal server of `sluice run --dev` runs in a child
// process, the sluice-dev program (devserver/sluice-dev), rather than in
// sluice itself: linking the Temporal server and its Web UI made every
// sluice command pay for their package initialization (a quarter of a
// second and 130 MB before --help printed anything).

// devProgram is the dev server's program name.
const devProgram = "sluice-dev"

// devServer is a running sluice-dev child process.
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
// under the working directory; the Web UI on uiPort, -1 for none) and
// returns once it answers. It runs sluice-dev from $SLUICE_DEV, from
// beside the sluice executable, with `go run ./devserver/sluice-dev` in
// the source tree sluice was built from (as `go run ./starter` does), or
// from PATH, in that order.
func startDevServer(ctx context.Context, uiPort int) (*devServer, error) {
	db, err := filepath.Abs(filepath.Join(".sluice", "temporal.db"))
	if err != nil {
		return nil, fmt.Errorf("dev server: %w", err)
	}
	cmd, err := devCommand()
	if err != nil {
		return nil, err
	}
	cmd.Args = append(cmd.Args, "--db", db, "--ui-port", strconv.Itoa(uiPort), "--stop-at-stdin-eof")
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
		return nil, fmt.Errorf("dev server: %s did not start (its error is above)", devProgram)
	case err := <-exited:
		return nil, fmt.Errorf("dev server: %s exited before it was ready (%v)", devProgram, err)
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

// Stop stops the server and waits for its process to exit: closing its
// stdin asks it to stop; after 15 s it is killed.
func (d *devServer) Stop() {
	d.stdin.Close()
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		killProcessGroup(d.cmd)
		<-d.done
	}
}

// devCommand returns the command that runs sluice-dev, without its
// arguments.
func devCommand() (*exec.Cmd, error) {
	if p := os.Getenv("SLUICE_DEV"); p != "" {
		return exec.Command(p), nil
	}
	name := devProgram
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	if exe, err := os.Executable(); err == nil {
		if exe, err = filepath.EvalSymlinks(exe); err == nil {
			if p := filepath.Join(filepath.Dir(exe), name); isFile(p) {
				return exec.Command(p), nil
			}
		}
	}
	if root := sourceRoot(); root != "" {
		if goTool, err := exec.LookPath("go"); err == nil {
			fmt.Fprintf(os.Stderr, "starting the dev server with `go run ./devserver/%s` in %s (its first build takes a few minutes)\n", devProgram, root)
			cmd := exec.Command(goTool, "run", "./devserver/"+devProgram)
			cmd.Dir = root
			return cmd, nil
		}
	}
	if p, err := exec.LookPath(devProgram); err == nil {
		return exec.Command(p), nil
	}
	return nil, errors.New("--dev needs the sluice-dev program (the embedded Temporal server and Web UI): build it beside sluice with " +
		"`go build -o DIR/sluice-dev ./devserver/sluice-dev` in Sluice's source tree, or `go install github.com/sluicehq/sluice/devserver/sluice-dev@latest`; " +
		"or set SLUICE_DEV to its path")
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

// isModule reports whether dir holds the go.mod of module and the dev
// server's program.
func isModule(dir, module string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil || !isFile(filepath.Join(dir, "devserver", devProgram, "main.go")) {
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
