package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server is the HTTP server of a worker's metrics, started by [Serve].
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Serve listens on addr (HOST:PORT; port 0 picks a free one, see
// [Server.Addr]) and serves, until [Server.Shutdown]:
//
//   - GET /metrics: what g gathers, in Prometheus' text format
//     (promhttp);
//   - GET /healthz: 200 "ok" once ready returns true (the worker has
//     started), 503 before (nil: always ready).
//
// Errors are returned only for the listen; a gather error is logged and
// the metrics that could be gathered are served.
func Serve(addr string, g prometheus.Gatherer, ready func() bool) (*Server, error) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if ready != nil && !ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "starting")
			return
		}
		fmt.Fprintln(w, "ok")
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics server: %w", err)
	}
	s := &Server{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, ln: ln}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("metrics server stopped", "addr", ln.Addr().String(), "error", err)
		}
	}()
	return s, nil
}

// Addr is the address the server listens on, with the port it picked.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Shutdown stops the server, waiting for the requests under way until
// ctx ends.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
