// Package devserver runs an embedded Temporal server for development, as
// `temporal server start-dev` does: every service in one process, SQLite
// persistence in one file, one namespace, Sluice's search attributes
// registered, and the Temporal Web UI (temporalio/ui-server) beside it.
// The setup follows go.temporal.io/server/temporaltest's LiteServer, whose
// package is internal.
package devserver

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/metrics"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uioptions "github.com/temporalio/ui-server/v2/server/server_options"

	"github.com/sluicehq/sluice/workflows"
)

// Options configure the dev server. Zero values take the defaults.
type Options struct {
	// DBPath is the SQLite file; default ".sluice/temporal.db".
	DBPath string
	// IP is the address to listen on; default 127.0.0.1.
	IP string
	// Port is the frontend's gRPC port; default 7233. The history,
	// matching and worker services take the next three ports.
	Port int
	// UIPort is the Web UI's HTTP port; default 8233; -1 disables the UI.
	UIPort int
	// Namespace is created at start; default "default".
	Namespace string
	// Logger receives the server's logs; default: none.
	Logger log.Logger
}

// Server is a running dev server.
type Server struct {
	opts Options
	srv  temporal.Server
	ui   *uiserver.Server
}

// SearchAttributes are the custom search attributes the dev server
// registers in its namespace.
var SearchAttributes = map[string]enumspb.IndexedValueType{
	workflows.SearchAttributePipeline: enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	workflows.SearchAttributeState:    enumspb.INDEXED_VALUE_TYPE_KEYWORD,
}

// Start starts the server and the UI and returns once the frontend
// answers. Stop it with Stop.
func Start(opts Options) (*Server, error) {
	if opts.DBPath == "" {
		opts.DBPath = filepath.Join(".sluice", "temporal.db")
	}
	if opts.IP == "" {
		opts.IP = "127.0.0.1"
	}
	if opts.Port == 0 {
		opts.Port = 7233
	}
	if opts.UIPort == 0 {
		opts.UIPort = 8233
	}
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	if opts.Logger == nil {
		opts.Logger = log.NewNoopLogger()
	}
	if err := os.MkdirAll(filepath.Dir(opts.DBPath), 0o755); err != nil {
		return nil, fmt.Errorf("dev server: %w", err)
	}
	for i := range 4 {
		if l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", opts.IP, opts.Port+i)); err != nil {
			return nil, fmt.Errorf("dev server: port %d is taken (another Temporal server?): %w", opts.Port+i, err)
		} else {
			l.Close()
		}
	}
	sqlCfg := &config.SQL{
		PluginName:        sqliteplugin.PluginName,
		DatabaseName:      opts.DBPath,
		ConnectAttributes: map[string]string{"mode": "rwc", "_journal_mode": "wal", "_synchronous": "2"},
	}
	if _, err := os.Stat(opts.DBPath); os.IsNotExist(err) {
		if err := sqlite.SetupSchema(sqlCfg); err != nil {
			return nil, fmt.Errorf("dev server: set up schema: %w", err)
		}
	}
	cfg := serverConfig(opts, sqlCfg)
	ns, err := sqlite.NewNamespaceConfig(cfg.ClusterMetadata.CurrentClusterName, opts.Namespace, false, SearchAttributes)
	if err != nil {
		return nil, fmt.Errorf("dev server: %w", err)
	}
	if err := sqlite.CreateNamespaces(sqlCfg, ns); err != nil {
		return nil, fmt.Errorf("dev server: create namespace: %w", err)
	}
	srv, err := temporal.NewServer(
		temporal.WithConfig(cfg),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithLogger(opts.Logger),
		temporal.WithDynamicConfigClient(dynamicconfig.StaticClient{
			dynamicconfig.ForceSearchAttributesCacheRefreshOnRead.Key(): []dynamicconfig.ConstrainedValue{{Value: true}},
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("dev server: %w", err)
	}
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("dev server: %w", err)
	}
	s := &Server{opts: opts, srv: srv}
	if opts.UIPort > 0 {
		s.ui = uiserver.NewServer(uioptions.WithConfigProvider(&uiconfig.Config{
			Host:                opts.IP,
			Port:                opts.UIPort,
			TemporalGRPCAddress: s.HostPort(),
			EnableUI:            true,
			DefaultNamespace:    opts.Namespace,
			HideLogs:            true,
			CORS:                uiconfig.CORS{CookieInsecure: true},
		}))
		go func() { _ = s.ui.Start() }()
	}
	if err := s.waitReady(); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// HostPort returns the frontend's address, for client.Options.HostPort.
func (s *Server) HostPort() string { return fmt.Sprintf("%s:%d", s.opts.IP, s.opts.Port) }

// UIAddress returns the Web UI's URL, or "" when disabled.
func (s *Server) UIAddress() string {
	if s.ui == nil {
		return ""
	}
	return fmt.Sprintf("http://%s:%d", s.opts.IP, s.opts.UIPort)
}

// Namespace returns the namespace the server created.
func (s *Server) Namespace() string { return s.opts.Namespace }

func (s *Server) waitReady() error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := client.Dial(client.Options{HostPort: s.HostPort(), Namespace: s.opts.Namespace, Logger: quiet{}})
		if err == nil {
			_, err = c.CheckHealth(context.Background(), nil)
			c.Close()
			if err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dev server: not ready after 30s: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Stop stops the UI and the server.
func (s *Server) Stop() {
	if s.ui != nil {
		s.ui.Stop()
	}
	_ = s.srv.Stop()
}

func serverConfig(opts Options, sqlCfg *config.SQL) *config.Config {
	service := func(offset int) config.Service {
		return config.Service{RPC: config.RPC{GRPCPort: opts.Port + offset, MembershipPort: opts.Port + 100 + offset, BindOnIP: opts.IP}}
	}
	return &config.Config{
		Global: config.Global{
			Membership: config.Membership{MaxJoinDuration: 30 * time.Second, BroadcastAddress: opts.IP},
			Metrics:    &metrics.Config{Prometheus: &metrics.PrometheusConfig{ListenAddress: fmt.Sprintf("%s:0", opts.IP), HandlerPath: "/metrics"}},
		},
		Persistence: config.Persistence{
			DefaultStore:     sqliteplugin.PluginName,
			VisibilityStore:  sqliteplugin.PluginName,
			NumHistoryShards: 1,
			DataStores:       map[string]config.DataStore{sqliteplugin.PluginName: {SQL: sqlCfg}},
		},
		ClusterMetadata: &cluster.Config{
			EnableGlobalNamespace:    false,
			FailoverVersionIncrement: 10,
			MasterClusterName:        "active",
			CurrentClusterName:       "active",
			ClusterInformation: map[string]cluster.ClusterInformation{
				"active": {Enabled: true, InitialFailoverVersion: 1, RPCAddress: fmt.Sprintf("%s:%d", opts.IP, opts.Port)},
			},
		},
		DCRedirectionPolicy: config.DCRedirectionPolicy{Policy: "noop"},
		Services: map[string]config.Service{
			"frontend": service(0), "history": service(1), "matching": service(2), "worker": service(3),
		},
		Archival: config.Archival{
			History:    config.HistoryArchival{State: "disabled"},
			Visibility: config.VisibilityArchival{State: "disabled"},
		},
		NamespaceDefaults: config.NamespaceDefaults{Archival: config.ArchivalNamespaceDefaults{
			History:    config.HistoryArchivalNamespaceDefaults{State: "disabled"},
			Visibility: config.VisibilityArchivalNamespaceDefaults{State: "disabled"},
		}},
		PublicClient: config.PublicClient{HostPort: fmt.Sprintf("%s:%d", opts.IP, opts.Port)},
	}
}

// quiet drops the SDK client's logs while polling for readiness.
type quiet struct{}

func (quiet) Debug(string, ...any) {}
func (quiet) Info(string, ...any)  {}
func (quiet) Warn(string, ...any)  {}
func (quiet) Error(string, ...any) {}
