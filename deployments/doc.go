// Package deployments holds what it takes to run Sluice outside one
// process: no Go code, only files, and the tests that check them.
//
//   - Dockerfile (with Dockerfile.dockerignore): the image, built from the
//     repository root with docker build -f deployments/Dockerfile .; the
//     worker is its entrypoint, the sluice command line is /sluice.
//   - compose.yaml: a Temporal server with PostgreSQL and its Web UI, two
//     Sluice workers, Redpanda (Kafka API), versitygw (S3) with the bucket,
//     PostgreSQL for outputs, Prometheus and Grafana, on one machine.
//     temporal/ holds its Temporal setup scripts and dynamic config,
//     prometheus/ and grafana/provisioning/ the monitoring configuration.
//   - kubernetes/: the workers on Kubernetes (kubectl apply -k), against a
//     Temporal cluster installed with temporalio/helm-charts.
//   - grafana/sluice-dashboard.json: a Grafana dashboard over the workers'
//     per-connector metrics and the Temporal SDK's worker metrics.
//
// The tests decode every Kubernetes manifest strictly into its k8s.io/api
// type, check the compose file with docker-compose config (and parse it),
// check that the dashboard only queries metrics the worker exports, and
// that the Dockerfile builds both commands. None needs a Docker engine or
// a Kubernetes cluster.
package deployments
