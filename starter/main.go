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
// TEMPORAL_NAMESPACE, ...). Errors are one line on stderr and exit code 1.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "sluice:", err)
		os.Exit(1)
	}
}
