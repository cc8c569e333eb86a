// Command sluice is Sluice's command line, shaped like Feldera's fda:
//
//	sluice run [--dev] FILE                          start a pipeline and follow its progress
//	sluice pipeline start FILE                       start a pipeline's workflow
//	sluice pipeline pause|resume|stop|stats NAME     control or inspect a pipeline
//	sluice pipeline list                             list pipelines
//	sluice connector PIPELINE TABLE CONNECTOR start|pause|stats
//	sluice table PIPELINE TABLE [--changes] [--format json|csv] [--limit N]
//
// It connects with the standard Temporal environment (TEMPORAL_ADDRESS,
// TEMPORAL_NAMESPACE, ...). Errors are one line on stderr and exit code 1;
// `sluice run` exits 1 once connectors have failed and no connector can
// make progress, and 130 or 143 when interrupted by SIGINT or SIGTERM.
package main

import (
	"errors"
	"fmt"
	"os"
)

func main() {
	err := newRoot().Execute()
	var code exitCode
	if errors.As(err, &code) {
		os.Exit(int(code))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sluice:", err)
		os.Exit(1)
	}
}
