package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/zaits/webhooks/gateway"
	"github.com/zaits/webhooks/internal/flagenv"
)

// mintKey mints a management API key for an account (-account) or an
// ingestion service token (-service): it prints the key once and the
// configuration entry (its SHA-256) to add to the gateway's flags.
func mintKey(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("zaits mint-key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	account := fs.String("account", "", "account the API key belongs to (management API and ingestion for that account)")
	service := fs.String("service", "", "name of an ingestion service: mints a service token instead (may post events for any account, no management API)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if (*account == "") == (*service == "") || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "zaits mint-key: give exactly one of -account <id> or -service <name>")
		fs.Usage()
		return 2
	}
	owner, what, flagName := *account, "API key for account", "gateway.api-keys"
	if *service != "" {
		owner, what, flagName = *service, "Service token for", "gateway.service-tokens"
	}
	key, entry, err := gateway.MintKey(owner, *service != "")
	if err != nil {
		fmt.Fprintf(stderr, "zaits mint-key: %v\n", err)
		return 2
	}
	fmt.Fprintf(stdout, "%s %s (shown once, store it now; use it as Authorization: Bearer <key>):\n\n  %s\n\n", what, owner, key)
	fmt.Fprintf(stdout, "Add this entry to the gateway configuration (comma-separated with the existing ones):\n\n  -%s=%s\n  or %s=%s\n",
		flagName, entry, flagenv.EnvName("ZAITS", flagName), entry)
	return 0
}
