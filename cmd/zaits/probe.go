package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"
)

// probe is a container health check: it GETs one URL (a component's
// /healthz or /readyz on its ops port) and exits 0 on a 200, 1 on anything
// else (another status, a connection error, no answer within -timeout), 2 on
// bad usage. The image has no shell and no curl, so its HEALTHCHECK runs
//
//	/zaits probe http://127.0.0.1:9101/healthz
func probe(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("zaits probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 2*time.Second, "how long the whole request may take")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: zaits probe [-timeout 2s] <url>   exit 0 when GET <url> answers 200, 1 otherwise")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 || *timeout <= 0 {
		fs.Usage()
		return 2
	}
	if err := probeURL(fs.Arg(0), *timeout); err != nil {
		fmt.Fprintf(stderr, "zaits probe: %v\n", err)
		return 1
	}
	return 0
}

// probeURL GETs url within timeout and returns nil only for a 200.
func probeURL(url string, timeout time.Duration) error {
	c := http.Client{
		Timeout: timeout,
		// A redirect is an answer other than 200, not something to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
