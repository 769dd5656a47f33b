// Command zaits is the Zaits webhook gateway: one binary, one subcommand per component.
//
//	zaits gateway      the public API and event ingestion (and a router, by default)
//	zaits router       fans events out to delivery tasks
//	zaits dispatcher   delivers tasks to endpoints, retries through delay topics
//	zaits analytics    writes the delivery log to ClickHouse
//	zaits all          the four in one process (development, make run)
//	zaits migrate      apply the ClickHouse migrations and exit
//
// Every flag can also be set through the environment: -kafka.brokers is
// ZAITS_KAFKA_BROKERS. Run `zaits <subcommand> -h` for the flags.
package main

import (
	"fmt"
	"os"
)

const usage = `usage: zaits <subcommand> [flags]

subcommands:
  gateway      serve the public API and event ingestion (and a router, unless -gateway.router=false)
  router       fan events out to delivery tasks (the consumer group over <p>.events)
  dispatcher   deliver tasks to endpoints, retry through delay topics
  analytics    write the delivery log to ClickHouse
  all          run gateway, router, dispatcher and analytics in one process
  migrate      apply the ClickHouse migrations (analytics does it at start-up too)
  dead         list or replay dead letters (-endpoint <id> or -account <id>)
  mint-key     mint an API key (-account <id>) or a service token (-service <name>)
  probe        exit 0 when GET <url> answers 200 (container health checks)

Run 'zaits <subcommand> -h' for its flags. Every flag can be set from the
environment as ZAITS_<FLAG>, e.g. -kafka.brokers is ZAITS_KAFKA_BROKERS.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	switch cmd := os.Args[1]; cmd {
	case "gateway", "router", "dispatcher", "analytics", "all":
		os.Exit(serve(cmd, os.Args[2:]))
	case "migrate":
		os.Exit(migrate(os.Args[2:]))
	case "mint-key":
		os.Exit(mintKey(os.Args[2:], os.Stdout, os.Stderr))
	case "dead":
		os.Exit(dead(os.Args[2:], os.Stdout, os.Stderr))
	case "probe":
		os.Exit(probe(os.Args[2:], os.Stderr))
	case "-h", "-help", "--help", "help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "zaits: unknown subcommand %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
}
